"""The torch backend: registration, devices, conversion, the contract, fused and generic paths."""

import sys
import warnings

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import seqkit
from seqkit.errors import ConfigError, PluginError, ShapeError
from seqkit.testing import make_batch, recurrent_layers, sequence_batches

torch = pytest.importorskip("torch")
from seqkit_torch import TorchBackend  # noqa: E402

CELLS = ["rnn", "gru", "gru_simple", "lstm"]
FUSED = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def parts(state):
    return state if isinstance(state, tuple) else (state,)


def torch64(**kw):
    return TorchBackend(dtype="float64", **kw)


# --- registration, config, devices ------------------------------------------------------------
def test_registered_through_the_hook():
    assert "torch" in seqkit.list_backends()
    be = seqkit.get_backend("torch")
    assert isinstance(be, TorchBackend) and be.name == "torch" and be.dtype == "float32"
    info = {p.name: p for p in seqkit.list_plugins()}
    assert info["torch"].registered == {"backend": ("torch",)}


def test_selected_by_environment(monkeypatch):
    monkeypatch.setenv("SEQKIT_BACKEND", "torch")
    monkeypatch.setenv("SEQKIT_DTYPE", "float64")
    be = seqkit.get_backend()
    assert be.name == "torch" and be.dtype == "float64" and be.ops.torch_dtype == torch.float64


def test_without_torch_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" now raises ImportError
    with pytest.raises(PluginError, match=r"pip install 'seqkit\[torch\]'"):
        seqkit.get_backend("torch")


def test_package_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import seqkit, seqkit_torch\n"
        "assert 'torch' in seqkit.list_backends()\n"
        "try:\n    seqkit.get_backend('torch')\nexcept seqkit.PluginError as e:\n    print(e)\n"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install" in out.stdout


def test_auto_device_is_cuda_only_when_available():
    be = seqkit.get_backend("torch", device="auto")
    assert be.device == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_clear_error(device):
    with pytest.raises(
        ConfigError, match=rf"device '{device}' needs CUDA.*use device 'cpu' or 'auto'"
    ):
        seqkit.get_backend("torch", device=device)


def test_bad_path_lists_choices():
    with pytest.raises(
        ConfigError, match="'path' must be one of 'auto', 'fused', 'compiled', 'generic'"
    ):
        TorchBackend(path="cudnn")


def test_layer_path():
    be = seqkit.get_backend("torch")
    assert be.layer_path(seqkit.Recurrent("lstm", 2, 3)) == "fused"
    assert (
        be.layer_path(seqkit.Recurrent(seqkit.get_cell("rnn", nonlinearity="relu"), 2, 3))
        == "fused"
    )
    assert be.layer_path(seqkit.Recurrent("gru_simple", 2, 3)) == "generic"  # small: not compiled
    assert TorchBackend(path="generic").layer_path(seqkit.Recurrent("lstm", 2, 3)) == "generic"
    with pytest.raises(ConfigError, match="cell 'gru_simple' has no fused kernel"):
        TorchBackend(path="fused").layer_path(seqkit.Recurrent("gru_simple", 2, 3))


# --- arrays -----------------------------------------------------------------------------------
def test_asarray_and_to_numpy():
    be = torch64()
    a = np.arange(6.0).reshape(2, 3)
    t = be.asarray(a)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    assert be.asarray(t) is t
    np.testing.assert_array_equal(be.to_numpy(t), a)
    assert be.asarray(torch.arange(3)).dtype == torch.float64  # ints are cast
    f32 = torch.ones(2, dtype=torch.float32, requires_grad=True)
    cast = be.asarray(f32)
    assert cast.dtype == torch.float64
    cast.sum().backward()  # the cast stays in the graph
    assert f32.grad is not None
    with pytest.raises(ShapeError, match="real floating tensor"):
        be.asarray(torch.ones(2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="could not convert"):
        be.asarray(["a"])


# --- the contract -----------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bi", [False, True])
def test_shapes_and_grad_keys(cell, bi):
    layer = seqkit.Recurrent(cell, 3, 4, num_layers=2, bidirectional=bi)
    be = seqkit.get_backend("torch")
    data = make_batch(layer, 5, 2, with_lengths=True, dtype="float32")
    out, final, cache = be.recurrent_forward(
        layer, layer.init_params(0), data.x, data.initial_state, data.lengths
    )
    D = 2 if bi else 1
    assert out.shape == (5, 2, D * 4) and out.dtype == torch.float32
    assert len(parts(final)) == len(layer.state_names)
    assert all(f.shape == (2 * D, 2, 4) for f in parts(final))
    assert not out[data.lengths[1] :, 1].any()  # zeros past the length
    grads = be.recurrent_backward(layer, cache, data.d_out)
    expected = ["x", *(f"{n}0" for n in layer.state_names), *layer.param_shapes()]
    assert list(grads) == expected
    assert grads["x"].shape == (5, 2, 3)
    # the cache may be differentiated again, as on NumPy
    again = be.recurrent_backward(layer, cache, data.d_out)
    torch.testing.assert_close(again["x"], grads["x"])


def test_default_initial_state_is_zeros():
    layer = seqkit.Recurrent("lstm", 2, 3)
    be, data = torch64(), make_batch(layer, 3, 2)
    params = layer.init_params(0)
    zeros = tuple(np.zeros_like(p) for p in data.initial_state)
    a, _, _ = be.recurrent_forward(layer, params, data.x)
    b, _, _ = be.recurrent_forward(layer, params, data.x, zeros)
    torch.testing.assert_close(a, b)


def nn_module(layer, params):
    """``torch.nn.RNN/GRU/LSTM`` with ``params`` copied in, float64."""
    kwargs = {"nonlinearity": layer.cell.nonlinearity} if layer.cell.name == "rnn" else {}
    module = getattr(torch.nn, FUSED[layer.cell.name])(
        layer.input_size,
        layer.hidden_size,
        num_layers=layer.num_layers,
        bidirectional=layer.bidirectional,
        **kwargs,
    ).double()
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(params[name]))
    return module


@pytest.mark.parametrize("cell", ["rnn", "rnn-relu", "gru", "lstm"])
@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_fused_path_equals_torch_nn(cell, bi, with_lengths):
    c = seqkit.get_cell("rnn", nonlinearity="relu") if cell == "rnn-relu" else cell
    layer = seqkit.Recurrent(c, 3, 4, num_layers=2, bidirectional=bi)
    params = layer.init_params(1)
    data = make_batch(layer, 5, 3, seed=2, with_lengths=with_lengths)
    be = torch64()
    assert be.layer_path(layer) == "fused"
    out, final, cache = be.recurrent_forward(
        layer, params, data.x, data.initial_state, data.lengths
    )
    assert cache.path == "fused"
    grads = be.recurrent_backward(layer, cache, data.d_out, data.d_final)

    module = nn_module(layer, params)
    x = torch.tensor(data.x, requires_grad=True)
    s0 = tuple(torch.tensor(s, requires_grad=True) for s in parts(data.initial_state))
    inp = x
    if with_lengths:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.tensor(data.lengths), enforce_sorted=False
        )
    ref_out, ref_final = module(inp, s0 if len(s0) == 2 else s0[0])
    if with_lengths:
        ref_out, _ = torch.nn.utils.rnn.pad_packed_sequence(ref_out, total_length=5)
    ref_final = parts(ref_final)
    loss = (ref_out * torch.from_numpy(data.d_out)).sum()
    loss = loss + sum(
        (f * torch.from_numpy(w)).sum() for f, w in zip(ref_final, parts(data.d_final), strict=True)
    )
    loss.backward()
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    for a, b in zip(parts(final), ref_final, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads["x"], x.grad, rtol=1e-10, atol=1e-12)
    for n, s in zip(layer.state_names, s0, strict=True):
        torch.testing.assert_close(grads[f"{n}0"], s.grad, rtol=1e-10, atol=1e-12)
    for name, p in module.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-10, atol=1e-12, msg=name)


def _fused_run(layer, params, data, dtype, unpacked, monkeypatch):
    """Forward and backward on the fused path, variable lengths packed or frozen unpacked."""
    from seqkit_torch import _fused

    monkeypatch.setattr(_fused, "unpacked_pays", lambda layer, x, lengths: unpacked)
    be = TorchBackend(dtype=dtype)
    out, final, cache = be.recurrent_forward(
        layer, params, data.x, data.initial_state, data.lengths
    )
    assert cache.path == "fused"
    return out, parts(final), be.recurrent_backward(layer, cache, data.d_out, data.d_final)


def _assert_frozen_equals_packed(layer, params, data, dtype, tol, monkeypatch):
    packed = _fused_run(layer, params, data, dtype, False, monkeypatch)
    frozen = _fused_run(layer, params, data, dtype, True, monkeypatch)
    (o1, f1, g1), (o2, f2, g2) = packed, frozen
    torch.testing.assert_close(o2, o1, rtol=tol, atol=tol)
    for a, b in zip(f2, f1, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    assert list(g2) == list(g1)
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=tol, atol=tol, msg=k)
    for b, n in enumerate(data.lengths):
        assert not o2[n:, b].any() and not g2["x"][n:, b].any()


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-6)])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_frozen_padding_equals_packing(dtype, tol, num_layers, monkeypatch):
    """An LSTM over variable lengths, unpacked with the padding frozen, gives the packed run's
    outputs, final states and gradients (exactly in float64, to rounding in float32); the
    padding's outputs and input gradients are zeros."""
    layer = seqkit.Recurrent("lstm", 3, 4, num_layers=num_layers)
    data = make_batch(layer, 7, 6, seed=6, with_lengths=True, dtype=dtype, scale=2.0)
    _assert_frozen_equals_packed(layer, layer.init_params(5), data, dtype, tol, monkeypatch)


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-6)])
def test_frozen_padding_equals_packing_past_the_longest_length(dtype, tol, monkeypatch):
    """Steps past the batch's longest length are not run, and come out as zeros, as packed."""
    layer = seqkit.Recurrent("lstm", 3, 4, num_layers=2)
    data = make_batch(layer, 9, 5, seed=7, with_lengths=True, dtype=dtype, scale=2.0)
    data = attrs.evolve(data, lengths=np.minimum(data.lengths, 6))
    assert data.lengths.max() == 6
    _assert_frozen_equals_packed(layer, layer.init_params(2), data, dtype, tol, monkeypatch)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    layer=recurrent_layers(["lstm"], max_layers=3, bidirectional=False, max_hidden_size=5),
    data=st.data(),
)
def test_frozen_padding_equals_packing_for_any_lengths(layer, data, monkeypatch):
    """The same, for drawn sizes, lengths (any of 1..T, some shorter than T) and states."""
    batch = data.draw(
        sequence_batches(layer, max_steps=6, max_batch=4, with_lengths=True, scale=3.0)
    )
    assume(batch.lengths is not None and int(batch.lengths.min()) < batch.x.shape[0])
    params = layer.init_params(data.draw(st.integers(0, 2**16)))
    _assert_frozen_equals_packed(layer, params, batch, "float64", 1e-12, monkeypatch)


def test_unpacked_only_where_torch_runs_onednn(monkeypatch):
    """The frozen route is taken where torch.nn.LSTM itself would run oneDNN's kernel."""
    from seqkit_torch._fused import unpacked_pays

    x32, x64 = torch.zeros(2, 1, 3), torch.zeros(2, 1, 3, dtype=torch.float64)
    full = np.array([2])
    lstm = seqkit.Recurrent("lstm", 3, 4, num_layers=2)
    onednn = torch.backends.mkldnn.is_available()
    assert unpacked_pays(lstm, x32, full) == onednn
    assert not unpacked_pays(lstm, x64, full)
    assert not unpacked_pays(seqkit.Recurrent("lstm", 3, 4, bidirectional=True), x32, full)
    assert not unpacked_pays(seqkit.Recurrent("lstm", 3, 4, proj_size=2), x32, full)
    assert not unpacked_pays(seqkit.Recurrent("gru", 3, 4), x32, full)
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)  # torch.nn.LSTM's switch
    assert not unpacked_pays(lstm, x32, full)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")
@pytest.mark.parametrize("hidden_size", [4, 128, 256, 512, 1024, 4096])
def test_a_batch_mostly_padding_stays_packed(hidden_size):
    """Unpacked, the padding is computed too: a batch whose lengths fill less of its T x B steps
    (T the longest length, whatever the input's padded length) than the layer's size pays for
    stays packed, one that fills more runs unpacked."""
    from seqkit_torch._fused import min_fill, unpacked_pays

    T = B = 100
    lstm = seqkit.Recurrent("lstm", 3, hidden_size)
    x = torch.zeros(T, B, 3)
    need = min_fill(hidden_size)
    for share in (0.02, need - 0.01, need + 0.01, 1.0):
        total = round(min(share, 1.0) * T * B) - T  # one sequence of T, the others share the rest
        lengths = np.concatenate([[T], np.full(B - 1, total // (B - 1))])
        lengths[1 : 1 + total % (B - 1)] += 1  # the lengths fill exactly share of T * B steps
        assert lengths.sum() == round(min(share, 1.0) * T * B)
        assert unpacked_pays(lstm, x, lengths) == (share > need), share
        assert unpacked_pays(lstm, torch.zeros(T + 7, B, 3), lengths) == (share > need)


def test_the_share_of_real_steps_that_pays_grows_with_the_layer():
    """Where the two routes cross, as measured (docs/reference/performance.rst): about 0.3 at
    H = 128, under 0.4 at H = 256, about 0.5 at H = 512, about 0.6 at H = 1024."""
    from seqkit_torch._fused import min_fill

    sizes = [16, 64, 128, 256, 384, 512, 1024, 2048]
    needs = [min_fill(h) for h in sizes]
    assert needs == sorted(needs) and needs[0] == 0.3
    assert 0.3 <= min_fill(128) < 0.35 and 0.35 <= min_fill(256) <= 0.4
    assert 0.45 <= min_fill(512) <= 0.55 and 0.55 <= min_fill(1024) <= 0.65


def test_a_language_model_trains_alike_packed_or_frozen(monkeypatch):
    """The main job's path: one-hot ids in, a learned initial state, two layers, float32."""
    from seqkit_torch import _fused

    texts = ["anna", "bo", "carmen", "d", "eve", "fitzgerald"]
    vocab = seqkit.Vocabulary.build(texts, level="char")
    frozen_forward, runs = _fused.frozen_forward, []

    def spy(*args):
        runs.append(args[0].num_layers)
        return frozen_forward(*args)

    monkeypatch.setattr(_fused, "frozen_forward", spy)
    results = []
    for unpacked in (False, True):
        monkeypatch.setattr(_fused, "unpacked_pays", lambda layer, x, lengths, u=unpacked: u)
        model = seqkit.LanguageModel(
            vocab,
            cell="lstm",
            hidden_size=8,
            num_layers=2,
            backend="torch",
            seed=3,
            learn_initial_state=True,
        )
        results.append(model.loss_and_grads(model.batch(texts)))
        assert runs == ([2] if unpacked else [])  # the frozen route ran once, on the stack
    (loss1, g1), (loss2, g2) = results
    assert loss2 == pytest.approx(loss1, rel=1e-6)
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_generic_path_equals_fused_path(cell):
    layer = seqkit.Recurrent(cell, 3, 4, num_layers=2, bidirectional=True)
    params = layer.init_params(3)
    data = make_batch(layer, 6, 3, seed=4, with_lengths=True)
    results = []
    for path in ["fused", "generic"]:
        be = torch64(path=path)
        out, final, cache = be.recurrent_forward(
            layer, params, data.x, data.initial_state, data.lengths
        )
        assert cache.path == path
        results.append(
            (out, parts(final), be.recurrent_backward(layer, cache, data.d_out, data.d_final))
        )
    (o1, f1, g1), (o2, f2, g2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-10, atol=1e-12)
    for a, b in zip(f1, f2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-10, atol=1e-12, msg=k)


@pytest.mark.parametrize("backward", [True, False])
@pytest.mark.parametrize(
    "options, with_lengths",
    [({}, False), ({}, True), ({"num_layers": 2}, False), ({"bidirectional": True}, False)],
)
def test_a_generic_stack_is_freed_without_the_cycle_collector(options, with_lengths, backward):
    """The stack's tensors go when their last reference goes. The autograd node's context keeps
    the cache; the cache must not keep the output that points back at the node, or every call's
    activations wait for Python's cycle collector (tens of MB a call at benchmark sizes)."""
    import gc
    import weakref

    layer = seqkit.Recurrent("lstm", 3, 4, **options)
    be = torch64(path="generic")
    params = be.init_params(layer, seed=0)
    data = make_batch(layer, 5, 2, seed=1, with_lengths=with_lengths)
    gc.collect()
    gc.disable()
    try:
        out, final, cache = be.recurrent_forward(
            layer, params, data.x, data.initial_state, data.lengths
        )
        if backward:
            be.recurrent_backward(layer, cache, data.d_out, data.d_final)
        gone = [weakref.ref(out), *(weakref.ref(part) for part in parts(final))]
        del out, final, cache
        assert [ref() is None for ref in gone] == [True] * len(gone)
    finally:
        gc.enable()


@pytest.mark.parametrize("cell", ["lstm", "gru_simple"])
def test_inside_a_model_graph_params_get_their_grads(cell):
    """A model passes leaf parameters and calls loss.backward(): nothing is detached."""
    layer = seqkit.Recurrent(cell, 3, 4, num_layers=2)
    be = torch64()
    params = be.init_params(layer, seed=0)
    assert all(p.is_leaf and p.requires_grad for p in params.values())
    data = make_batch(layer, 4, 2)
    emb = torch.tensor(data.x, requires_grad=True)
    x = emb * 2.0  # an upstream op: x is not a leaf
    out, final, cache = be.recurrent_forward(layer, params, x, data.initial_state)
    loss = (out * torch.from_numpy(data.d_out)).sum()
    grads = be.recurrent_backward(layer, cache, data.d_out)
    loss.backward()
    for name, p in params.items():
        torch.testing.assert_close(p.grad, grads[name], msg=name)
    torch.testing.assert_close(emb.grad, 2.0 * grads["x"])


def test_caller_tensors_are_not_modified():
    layer = seqkit.Recurrent("lstm", 3, 4)
    be = torch64()
    params = {k: torch.from_numpy(v) for k, v in layer.init_params(0).items()}
    data = make_batch(layer, 3, 2)
    x = torch.from_numpy(data.x)
    be.recurrent_forward(layer, params, x, data.initial_state)
    assert not x.requires_grad and not any(p.requires_grad for p in params.values())


def test_backward_after_no_grad_forward_is_a_clear_error():
    layer = seqkit.Recurrent("gru", 2, 3)
    be, data = torch64(), make_batch(layer, 3, 2)
    with torch.no_grad():
        out, _, cache = be.recurrent_forward(layer, layer.init_params(0), data.x)
    assert not out.requires_grad
    with pytest.raises(RuntimeError, match=r"under torch.no_grad\(\)"):
        be.recurrent_backward(layer, cache, data.d_out)


# --- bad input: the NumPy backend's messages --------------------------------------------------
def _error(be, call):
    with pytest.raises(Exception) as info:
        call(be)
    return type(info.value), str(info.value)


BAD_CALLS = {
    "x rank": lambda be, L, p: be.recurrent_forward(L, p, np.zeros((3, 2))),
    "input size": lambda be, L, p: be.recurrent_forward(L, p, np.zeros((3, 2, 5))),
    "empty batch": lambda be, L, p: be.recurrent_forward(L, p, np.zeros((3, 0, 2))),
    "state shape": lambda be, L, p: be.recurrent_forward(
        L, p, np.zeros((3, 2, 2)), (np.zeros((1, 2, 4)), np.zeros((1, 2, 3)))
    ),
    "state form": lambda be, L, p: be.recurrent_forward(
        L, p, np.zeros((3, 2, 2)), np.zeros((1, 2, 3))
    ),
    "lengths range": lambda be, L, p: be.recurrent_forward(
        L, p, np.zeros((3, 2, 2)), lengths=[4, 1]
    ),
    "lengths shape": lambda be, L, p: be.recurrent_forward(L, p, np.zeros((3, 2, 2)), lengths=[3]),
    "missing param": lambda be, L, p: be.recurrent_forward(
        L, {k: v for k, v in list(p.items())[1:]}, np.zeros((3, 2, 2))
    ),
    "extra param": lambda be, L, p: be.recurrent_forward(L, {**p, "w": 1}, np.zeros((3, 2, 2))),
    "param shape": lambda be, L, p: be.recurrent_forward(
        L, {**p, "bias_ih_l0": np.zeros(3)}, np.zeros((3, 2, 2))
    ),
    "params type": lambda be, L, p: be.recurrent_forward(L, [1], np.zeros((3, 2, 2))),
    "layer type": lambda be, L, p: be.recurrent_forward("lstm", p, np.zeros((3, 2, 2))),
    "cache type": lambda be, L, p: be.recurrent_backward(L, object(), np.zeros((3, 2, 3))),
    "d_out shape": lambda be, L, p: be.recurrent_backward(
        L, be.recurrent_forward(L, p, np.zeros((3, 2, 2)))[2], np.zeros((3, 2, 4))
    ),
    "d_final shape": lambda be, L, p: be.recurrent_backward(
        L,
        be.recurrent_forward(L, p, np.zeros((3, 2, 2)))[2],
        np.zeros((3, 2, 3)),
        (np.zeros((1, 2, 3)), np.zeros((2, 2, 3))),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_gives_the_numpy_message(case):
    layer = seqkit.Recurrent("lstm", 2, 3)
    params = layer.init_params(0)
    call = BAD_CALLS[case]
    expected = _error(seqkit.get_backend("numpy"), lambda be: call(be, layer, params))
    got = _error(seqkit.get_backend("torch"), lambda be: call(be, layer, params))
    assert got == expected


def test_tensor_of_wrong_dtype_is_converted():
    layer = seqkit.Recurrent("gru", 2, 3)
    be = torch64()
    data = make_batch(layer, 3, 2)
    params = {k: torch.from_numpy(v).float() for k, v in layer.init_params(0).items()}
    out, final, _ = be.recurrent_forward(
        layer, params, torch.from_numpy(data.x).half(), torch.from_numpy(data.initial_state).float()
    )
    assert out.dtype == torch.float64 and final.dtype == torch.float64


def test_tensor_lengths_are_accepted():
    layer = seqkit.Recurrent("lstm", 2, 3)
    be, data = torch64(), make_batch(layer, 4, 3, with_lengths=True)
    a, _, _ = be.recurrent_forward(
        layer, layer.init_params(0), data.x, lengths=torch.from_numpy(data.lengths)
    )
    b, _, _ = be.recurrent_forward(layer, layer.init_params(0), data.x, lengths=data.lengths)
    torch.testing.assert_close(a, b)


# --- CUDA -------------------------------------------------------------------------------------
@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("cell", CELLS)
def test_cuda_agrees_with_numpy_reference(cell):
    from seqkit.testing import check_backends_agree

    for dtype in ["float64", "float32"]:
        gpu = TorchBackend(dtype=dtype, device="cuda")
        check_backends_agree(cell, backends=[gpu], num_layers=(1, 2), seed=7)
        if gpu.layer_path(seqkit.Recurrent(cell, 2, 2)) == "fused":
            check_backends_agree(
                cell,
                backends=[TorchBackend(dtype=dtype, device="cuda", path="generic")],
                num_layers=(1, 2),
            )


@pytest.mark.cuda
@cuda
def test_cuda_tensor_given_to_cpu_backend_is_moved():
    be = torch64()
    t = be.asarray(torch.ones(2, 3, device="cuda"))
    assert t.device.type == "cpu" and t.dtype == torch.float64
    gpu = TorchBackend(device="cuda")
    assert gpu.asarray(torch.ones(2)).device.type == "cuda"


@pytest.mark.cuda
@cuda
def test_cuda_flattened_params_are_used_without_copy_warning():
    layer = seqkit.Recurrent("lstm", 8, 16, num_layers=2, bidirectional=True)
    be = TorchBackend(device="cuda")
    params = be.init_params(layer, seed=0)
    data = make_batch(layer, 5, 4, dtype="float32", with_lengths=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*contiguous chunk of memory.*")
        out, _, cache = be.recurrent_forward(
            layer, params, data.x, data.initial_state, data.lengths
        )
        out.sum().backward()
    assert all(p.grad is not None for p in params.values())


def test_loss_and_grads_differentiates_the_forward():
    layer = seqkit.Recurrent("gru", 2, 3)
    data = make_batch(layer, 3, 2)
    params = layer.init_params(0)

    def forward(p, be):
        out, _, cache = be.recurrent_forward(layer, p, data.x, data.initial_state)
        return (out * be.asarray(data.d_out)).sum(), cache

    def backward(p, cache, be):
        return {k: v for k, v in be.recurrent_backward(layer, cache, data.d_out).items() if k in p}

    np_be, t_be = seqkit.get_backend("numpy", dtype="float64"), torch64()
    loss_np, grads_np = np_be.loss_and_grads(
        lambda p: forward(p, np_be), lambda p, c: backward(p, c, np_be), params
    )
    loss_t, grads_t = t_be.loss_and_grads(lambda p: forward(p, t_be), None, params)
    assert loss_t == pytest.approx(loss_np, rel=1e-12)
    for k in params:
        np.testing.assert_allclose(t_be.to_numpy(grads_t[k]), grads_np[k], rtol=1e-10, atol=1e-12)
