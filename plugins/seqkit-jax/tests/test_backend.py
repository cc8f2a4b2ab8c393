"""The jax backend as a plugin: registration, config, dtypes, devices, errors, the compiled loop."""

import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from seqkit_jax import JaxBackend, JaxCache, _scan  # noqa: E402

import seqkit  # noqa: E402
from seqkit.errors import ConfigError, PluginError, ShapeError  # noqa: E402
from seqkit.testing import make_batch  # noqa: E402


def _run(be, layer, batch, seed=0):
    params = layer.init_params(seed, dtype=be.dtype)
    out, final, cache = be.recurrent_forward(
        layer, params, batch.x.astype(be.dtype), batch.initial_state, batch.lengths
    )
    return out, final, cache


# --- registration and config ------------------------------------------------------------------
def test_registered_through_the_entry_point():
    assert "jax" in seqkit.list_backends()
    (info,) = [p for p in seqkit.list_plugins() if p.registered.get("backend") == ("jax",)]
    assert info.distribution == "seqkit-jax"
    assert info.entry_point == "jax = seqkit_jax"


def test_get_backend_by_name_dtype_and_device():
    be = seqkit.get_backend("jax", dtype="float64", device="cpu")
    assert isinstance(be, JaxBackend)
    assert (be.name, be.dtype, be.device) == ("jax", "float64", "cpu")
    assert be.asarray([1.0, 2.0]).dtype == np.float64


def test_environment_selects_the_backend(monkeypatch):
    monkeypatch.setenv("SEQKIT_BACKEND", "jax")
    monkeypatch.setenv("SEQKIT_DTYPE", "float64")
    be = seqkit.get_backend()
    assert (be.name, be.dtype) == ("jax", "float64")


def test_config_file_selects_the_backend(tmp_path):
    (tmp_path / "seqkit.toml").write_text('backend = "jax"\ndtype = "float32"\n')
    be = seqkit.get_backend()
    assert (be.name, be.dtype) == ("jax", "float32")


# --- dtypes -------------------------------------------------------------------------------------
def test_float32_stays_float32_before_and_after_a_float64_backend():
    """jax_enable_x64 is global; a float32 backend's results must not depend on it."""
    layer = seqkit.Recurrent("rnn", 3, 4, num_layers=2, bidirectional=True)
    batch = make_batch(layer, 5, 2, seed=1, with_lengths=True, dtype="float32")
    be32 = JaxBackend(dtype="float32")
    out, final, cache = _run(be32, layer, batch)
    grads = be32.recurrent_backward(layer, cache, batch.d_out, batch.d_final)
    JaxBackend(dtype="float64")  # turns on jax_enable_x64 for the process
    assert jax.config.jax_enable_x64
    out2, final2, cache2 = _run(be32, layer, batch)
    grads2 = be32.recurrent_backward(layer, cache2, batch.d_out, batch.d_final)
    assert out2.dtype == final2.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(out), np.asarray(out2))
    for name, g in grads2.items():
        assert g.dtype == np.float32, name
        np.testing.assert_array_equal(np.asarray(grads[name]), np.asarray(g), err_msg=name)


def test_bad_dtype_names_the_choices():
    with pytest.raises(
        ConfigError, match=r"'dtype' must be one of 'float32', 'float64' \(got 'float16'\)"
    ):
        JaxBackend(dtype="float16")


# --- devices ------------------------------------------------------------------------------------
def test_bad_device_names_the_choices():
    with pytest.raises(
        ConfigError, match=r"backend 'jax': 'device' must be one of 'cpu', 'gpu'.*\(got 'tpu'\)"
    ):
        JaxBackend(device="tpu")


def test_auto_is_a_gpu_when_jax_sees_one_else_the_cpu():
    be = JaxBackend(device="auto")
    has_gpu = any(d.platform == "gpu" for d in jax.devices())
    assert be.device == ("gpu:0" if has_gpu else "cpu")
    assert be.asarray(np.ones(2)).devices() == {be.ops.device}


@pytest.mark.skipif(
    any(d.platform == "gpu" for d in jax.devices()), reason="this machine has a GPU"
)
@pytest.mark.parametrize("device", ["gpu", "cuda:0"])
def test_gpu_without_one_says_what_jax_sees(device):
    with pytest.raises(
        ConfigError, match=rf"device '{device}' needs a GPU, but JAX .* sees only: cpu"
    ):
        JaxBackend(device=device)


@pytest.mark.skipif(
    not any(d.platform == "gpu" for d in jax.devices()), reason="JAX sees no GPU here"
)
def test_gpu_agrees_with_numpy():
    from seqkit.testing import check_backends_agree

    be = JaxBackend(dtype="float64", device="gpu")
    check_backends_agree("lstm", backends=[be], num_layers=2)


# --- without jax --------------------------------------------------------------------------------
def test_missing_jax_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax now raises ImportError
    with pytest.raises(PluginError) as info:
        seqkit.get_backend("jax")
    message = str(info.value)
    assert "backend 'jax' needs JAX, which is not installed" in message
    assert "pip install seqkit-jax" in message and "\n" not in message


def test_core_imports_and_lists_the_backend_without_jax():
    code = (
        "import sys; sys.modules['jax'] = None\n"
        "import seqkit\n"
        "assert 'jax' in seqkit.list_backends(), seqkit.list_backends()\n"
        "seqkit.get_backend('numpy')\n"
        "try:\n"
        "    seqkit.get_backend('jax')\n"
        "except seqkit.PluginError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.startswith("backend 'jax' needs JAX, which is not installed")


# --- the compiled loop --------------------------------------------------------------------------
def test_compiled_once_per_shape_class():
    """New values reuse the compiled forward and backward; a new T compiles once more."""
    be = JaxBackend(dtype="float64")
    layer = seqkit.Recurrent("gru", 2, 3, num_layers=2)
    batch = make_batch(layer, 4, 2, seed=0)
    _, _, cache = _run(be, layer, batch, seed=0)
    be.recurrent_backward(layer, cache, batch.d_out)
    sizes = _scan.forward._cache_size(), _scan.backward._cache_size()
    for seed in (1, 2):
        again = make_batch(layer, 4, 2, seed=seed)
        _, _, cache = _run(be, layer, again, seed=seed)
        be.recurrent_backward(layer, cache, again.d_out, again.d_final)
    assert (_scan.forward._cache_size(), _scan.backward._cache_size()) == sizes
    _run(JaxBackend(dtype="float64"), layer, make_batch(layer, 4, 2, seed=3))  # a new backend
    assert _scan.forward._cache_size() == sizes[0]
    _run(be, layer, make_batch(layer, 6, 2, seed=0))
    assert _scan.forward._cache_size() == sizes[0] + 1


def test_zero_length_input_returns_the_initial_state():
    be = JaxBackend(dtype="float64")
    layer = seqkit.Recurrent("lstm", 2, 3, num_layers=2, bidirectional=True)
    batch = make_batch(layer, 1, 2, seed=0)
    h0, c0 = batch.initial_state
    out, (h, c), cache = be.recurrent_forward(
        layer, layer.init_params(0), np.zeros((0, 2, 2)), (h0, c0)
    )
    assert out.shape == (0, 2, 6)
    np.testing.assert_array_equal(np.asarray(h), h0)
    np.testing.assert_array_equal(np.asarray(c), c0)
    grads = be.recurrent_backward(layer, cache, np.zeros((0, 2, 6)), (h0, c0))
    np.testing.assert_array_equal(np.asarray(grads["h0"]), h0)  # the identity map's gradient


def test_padding_values_never_matter():
    """Whatever the padded steps hold, outputs, states and gradients are the same."""
    be = JaxBackend(dtype="float64")
    layer = seqkit.Recurrent("lstm", 2, 3, bidirectional=True)
    batch = make_batch(layer, 5, 3, seed=4, with_lengths=True)
    noisy = batch.x.copy()
    t = np.arange(5)[:, None]
    noisy[t >= batch.lengths[None, :]] = 1e3
    params = layer.init_params(0)
    runs = []
    for x in (batch.x * (t < batch.lengths[None, :])[:, :, None], noisy):
        out, final, cache = be.recurrent_forward(
            layer, params, x, batch.initial_state, batch.lengths
        )
        grads = be.recurrent_backward(layer, cache, batch.d_out, batch.d_final)
        runs.append((np.asarray(out), [np.asarray(f) for f in final], grads))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)
    for name in runs[0][2]:
        if name != "x":
            np.testing.assert_array_equal(
                np.asarray(runs[0][2][name]), np.asarray(runs[1][2][name])
            )


def test_two_chunks_with_the_state_carried_equal_one_pass():
    be = JaxBackend(dtype="float64")
    layer = seqkit.Recurrent("lstm", 2, 3, num_layers=2)
    batch = make_batch(layer, 6, 2, seed=5)
    params = layer.init_params(1)
    out, final, _ = be.recurrent_forward(layer, params, batch.x, batch.initial_state)
    out_a, mid, _ = be.recurrent_forward(layer, params, batch.x[:2], batch.initial_state)
    out_b, end, _ = be.recurrent_forward(layer, params, batch.x[2:], mid)
    np.testing.assert_allclose(
        np.concatenate([out_a, out_b]), np.asarray(out), rtol=1e-12, atol=1e-14
    )
    for a, b in zip(end, final):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)


def test_backward_twice_gives_the_same_gradients():
    be = JaxBackend(dtype="float64")
    layer = seqkit.Recurrent("rnn", 2, 3)
    batch = make_batch(layer, 3, 2, seed=0)
    _, _, cache = _run(be, layer, batch)
    first = be.recurrent_backward(layer, cache, batch.d_out)
    second = be.recurrent_backward(layer, cache, batch.d_out)
    assert list(first) == ["x", "h0", *layer.param_shapes()]
    for name in first:
        np.testing.assert_array_equal(np.asarray(first[name]), np.asarray(second[name]))


# --- errors shared with the other backends --------------------------------------------------------
def test_a_foreign_cache_is_refused():
    be = JaxBackend()
    layer = seqkit.Recurrent("rnn", 2, 3)
    with pytest.raises(
        TypeError, match="cache must be the third value returned by recurrent_forward"
    ):
        be.recurrent_backward(layer, object(), np.zeros((1, 1, 3)))
    assert JaxCache  # the documented cache type


def test_bad_shapes_raise_the_core_errors():
    be = JaxBackend()
    layer = seqkit.Recurrent("rnn", 2, 3)
    params = layer.init_params(0)
    with pytest.raises(ShapeError, match=r"x must have input size I=2"):
        be.recurrent_forward(layer, params, np.zeros((3, 2, 5)))
    _, _, cache = be.recurrent_forward(layer, params, np.zeros((3, 2, 2)))
    with pytest.raises(ShapeError, match=r"d_out must have shape \(T, B, D\*H\) = \(3, 2, 3\)"):
        be.recurrent_backward(layer, cache, np.zeros((3, 2, 4)))


# --- ops -----------------------------------------------------------------------------------------
_UNARY = ["sigmoid", "tanh", "relu", "exp", "log_sigmoid", "softmax", "log_softmax"]


@pytest.mark.parametrize("name", _UNARY)
def test_ops_equal_numpy_and_ignore_inplace(name):
    """Each op gives NumPy's values; inplace=True returns the result and leaves x alone."""
    from seqkit_numpy import NumpyOps

    ops, ref = JaxBackend(dtype="float64").ops, NumpyOps("float64")
    values = np.random.default_rng(0).uniform(-30, 30, size=(3, 4))
    x = ops.asarray(values)
    kwargs = {"inplace": True} if name in ("sigmoid", "tanh", "relu") else {}
    got = getattr(ops, name)(x, **kwargs)
    np.testing.assert_array_equal(np.asarray(x), values)
    expected = getattr(ref, name)(values.copy())
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-13, atol=1e-300)


def test_add_rows_accumulates_repeated_ids_into_a_new_array():
    ops = JaxBackend(dtype="float64").ops
    dW = ops.zeros((3, 2))
    d = ops.asarray([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    out = ops.add_rows(dW, ops.int_array([0, 2, 0]), d, inplace=True)
    np.testing.assert_array_equal(np.asarray(out), [[4.0, 4.0], [0.0, 0.0], [2.0, 2.0]])
    np.testing.assert_array_equal(np.asarray(dW), np.zeros((3, 2)))


def test_matmul_returns_the_product_and_ignores_out():
    ops = JaxBackend(dtype="float64").ops
    a, b = ops.asarray(np.eye(2) * 2.0), ops.asarray([[1.0, 2.0], [3.0, 4.0]])
    out = ops.zeros((2, 2))
    np.testing.assert_array_equal(np.asarray(ops.matmul(a, b, out=out)), [[2.0, 4.0], [6.0, 8.0]])


def test_to_numpy_is_a_writable_copy():
    be = JaxBackend()
    a = be.asarray([1.0, 2.0])
    host = be.to_numpy(a)
    host[0] = 5.0
    assert float(a[0]) == 1.0


def test_ops_are_equal_by_dtype_and_device():
    assert JaxBackend().ops == JaxBackend().ops
    assert hash(JaxBackend().ops) == hash(JaxBackend().ops)
    assert JaxBackend(dtype="float64").ops != JaxBackend().ops


def test_batches_with_lengths_share_one_compiled_bucket():
    """T = 5, 7, 9 with lengths run padded to 16 steps: one compile, the unpadded results."""
    layer = seqkit.Recurrent("gru", 2, 3, bidirectional=True)
    bucketed, exact = JaxBackend(dtype="float64"), JaxBackend(dtype="float64", time_bucket=1)
    before = None
    for T in (5, 7, 9):
        batch = make_batch(layer, T, 3, seed=T, with_lengths=True)
        runs = []
        for be in (bucketed, exact):
            out, final, cache = _run(be, layer, batch)
            grads = be.recurrent_backward(layer, cache, batch.d_out, batch.d_final)
            runs.append((out, final, grads))
            if be is bucketed and before is None:
                before = _scan.forward._cache_size()
        (out_b, fin_b, g_b), (out_e, fin_e, g_e) = runs
        assert out_b.shape == (T, 3, 6) and g_b["x"].shape == (T, 3, 2)
        np.testing.assert_allclose(np.asarray(out_b), np.asarray(out_e), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(fin_b), np.asarray(fin_e), rtol=1e-12, atol=1e-14)
        for name in g_e:
            np.testing.assert_allclose(
                np.asarray(g_b[name]), np.asarray(g_e[name]), rtol=1e-12, atol=1e-14, err_msg=name
            )
    # one entry for the bucket, plus the exact backend's three Ts
    assert _scan.forward._cache_size() == before + 3


def test_bad_time_bucket_is_refused():
    with pytest.raises(ConfigError, match=r"'time_bucket' must be a positive integer \(got 0\)"):
        JaxBackend(time_bucket=0)
