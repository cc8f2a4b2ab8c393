"""The torch backend's compiled path: agreement with the reference, caching, fallback, choice.

Compiling a cell takes seconds (the C++ compiler runs), so the tests share one float64 backend
and a handful of cells; Inductor's on-disk cache makes a second run of the file fast.
"""

import warnings

import attrs
import numpy as np
import pytest

import seqkit
from seqkit.cells import LSTM, RNN
from seqkit.errors import ConfigError
from seqkit.testing import check_backends_agree, make_batch

torch = pytest.importorskip("torch")
from seqkit_torch import TorchBackend, _scan  # noqa: E402


@pytest.fixture(scope="module")
def compiled64():
    return TorchBackend(dtype="float64", path="compiled")


@pytest.fixture(scope="module")
def peephole():
    seqkit_peephole = pytest.importorskip("seqkit_peephole")
    if "lstm_peephole" not in seqkit.list_cells():
        seqkit.register_plugin(seqkit_peephole, name="peephole-for-compiled")
    return "lstm_peephole"


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "gru", "gru_simple", "lstm"])
def test_every_builtin_cell_agrees_with_numpy(compiled64, cell):
    check_backends_agree(cell, backends=[compiled64], num_layers=(1, 2), rtol=1e-9, atol=1e-9)
    assert compiled64.layer_path(seqkit.Recurrent(cell, 3, 4)) == "compiled"
    assert compiled64.compile_stats(seqkit.Recurrent(cell, 3, 4)).error is None


@pytest.mark.slow
def test_peephole_plugin_agrees_with_numpy(compiled64, peephole):
    check_backends_agree(peephole, backends=[compiled64], num_layers=(1, 2), rtol=1e-9, atol=1e-9)


def _run(be, layer, T, B, seed):
    data = make_batch(layer, T, B, seed, with_lengths=True)
    params = layer.init_params(seed)
    out, _, cache = be.recurrent_forward(layer, params, data.x, data.initial_state, data.lengths)
    return be.recurrent_backward(layer, cache, data.d_out, data.d_final)


@pytest.mark.slow
def test_cells_that_differ_only_inside_the_step_get_graphs_of_their_own(compiled64):
    """Inductor's on-disk cache holds the scans (``_scan._CACHE_SCANS``): its key must cover the
    step's code, or the second cell would run the first one's kernels. Same name, same shapes,
    one activation apart."""
    ref = seqkit.get_backend("numpy", dtype="float64")
    for nonlinearity in ("tanh", "relu"):
        layer = seqkit.Recurrent(RNN(nonlinearity=nonlinearity), 3, 4)
        got, want = _run(compiled64, layer, 5, 3, 0), _run(ref, layer, 5, 3, 0)
        for name, value in want.items():
            np.testing.assert_allclose(
                compiled64.to_numpy(got[name]), value, rtol=1e-9, atol=1e-9, err_msg=name
            )
        assert compiled64.compile_stats(layer).error is None


@pytest.mark.slow
def test_a_new_loop_loads_its_graphs_from_the_on_disk_cache(monkeypatch):
    """What a new process does: trace the scans again, then load them instead of compiling."""
    be = TorchBackend(dtype="float64", path="compiled")
    layer = seqkit.Recurrent("gru_simple", 3, 4)
    monkeypatch.setattr(_scan, "_LOOPS", {})
    _run(be, layer, 5, 3, 0)  # compiles, or finds the graphs of an earlier test or process
    monkeypatch.setattr(_scan, "_LOOPS", {})  # no loop, no graph in memory
    got = _run(be, layer, 5, 3, 0)
    stats = be.compile_stats(layer)
    assert (stats.graphs, stats.cached, stats.error) == (2, 2, None)
    want = _run(seqkit.get_backend("numpy", dtype="float64"), layer, 5, 3, 0)
    for name, value in want.items():
        np.testing.assert_allclose(be.to_numpy(got[name]), value, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("T", "B"), [(1, 3), (5, 1), (1, 1)])
def test_one_step_or_one_row_runs_the_step_loop(monkeypatch, T, B):
    """Sampling's single steps and a batch of one build no graphs (dynamo would specialise a
    size of 1: graphs of their own, 20-40 s to compile) and agree with NumPy."""
    monkeypatch.setattr(_scan, "_LOOPS", {})
    be = TorchBackend(dtype="float64", path="compiled")
    layer = seqkit.Recurrent("gru_simple", 3, 4, bidirectional=True)
    got = _run(be, layer, T, B, 2)
    want = _run(seqkit.get_backend("numpy", dtype="float64"), layer, T, B, 2)
    for name, value in want.items():
        np.testing.assert_allclose(be.to_numpy(got[name]), value, rtol=1e-10, atol=1e-12)
    assert be.compile_stats(layer) == _scan.CompileStats()  # nothing compiled, nothing failed


@pytest.mark.slow
def test_new_batch_and_length_reuse_the_compiled_graphs(compiled64):
    layer = seqkit.Recurrent("gru_simple", 3, 4, bidirectional=True)
    _run(compiled64, layer, 5, 3, 0)  # compiles (or finds the graphs of an earlier test)
    graphs = compiled64.compile_stats(layer).graphs
    assert graphs >= 2  # a forward and a backward graph at least
    for T, B in [(2, 4), (7, 2), (3, 9), (11, 5), (1, 6)]:
        _run(compiled64, layer, T, B, T + B)
    assert compiled64.compile_stats(layer).graphs == graphs
    # new input and hidden sizes too, with torch.nn.Parameter weights (whose shapes dynamo
    # would keep static)
    bigger = seqkit.Recurrent("gru_simple", 5, 7, bidirectional=True)
    params = {k: torch.nn.Parameter(torch.as_tensor(v)) for k, v in bigger.init_params(0).items()}
    data = make_batch(bigger, 4, 3, 0, with_lengths=True)
    _, _, cache = compiled64.recurrent_forward(
        bigger, params, data.x, data.initial_state, data.lengths
    )
    compiled64.recurrent_backward(bigger, cache, data.d_out, data.d_final)
    assert compiled64.compile_stats(layer).graphs == graphs
    # a second backend on the same dtype and device shares the cache
    other = TorchBackend(dtype="float64", path="auto")
    assert other.compile_stats(layer) is compiled64.compile_stats(layer)


@attrs.frozen
class FailingLSTM(LSTM):
    """The LSTM under a name of its own, so that it gets a cache entry of its own."""

    name = "lstm_compile_fails"


def test_a_compile_error_at_the_first_call_warns_once_and_agrees(monkeypatch):
    def compile_that_fails(fn, name, backend):
        def call(*args):
            raise RuntimeError(f"InductorError: C++ compile error in {name}")

        return call

    monkeypatch.setattr(_scan, "_compile", compile_that_fails)
    be = TorchBackend(dtype="float64", path="compiled")
    layer = seqkit.Recurrent(FailingLSTM(), 3, 4, bidirectional=True)
    assert be.layer_path(layer) == "compiled"  # not known to fail before it runs
    ref = seqkit.get_backend("numpy", dtype="float64")
    with pytest.warns(RuntimeWarning, match="cannot compile cell 'lstm_compile_fails'") as record:
        got = _run(be, layer, 4, 3, 0)
    assert len([w for w in record if "cannot compile" in str(w.message)]) == 1
    assert be.layer_path(layer) == "generic"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _run(be, layer, 4, 3, 0)  # no second warning
    want = _run(ref, layer, 4, 3, 0)
    for name, value in want.items():
        np.testing.assert_allclose(be.to_numpy(got[name]), value, rtol=1e-10, atol=1e-12)


def test_torch_compile_raising_falls_back(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(_scan, "_LOOPS", {})
    be = TorchBackend(dtype="float64", path="compiled")
    layer = seqkit.Recurrent("gru_simple", 3, 4)
    assert be.layer_path(layer) == "compiled"  # torch.compile is first called on the first run
    with pytest.warns(RuntimeWarning, match=r"\(RuntimeError: no C\+\+ compiler found\)"):
        got = _run(be, layer, 4, 2, 1)
    assert be.layer_path(layer) == "generic"
    ref = seqkit.get_backend("numpy", dtype="float64")
    want = _run(ref, layer, 4, 2, 1)
    for name, value in want.items():
        np.testing.assert_allclose(be.to_numpy(got[name]), value, rtol=1e-10, atol=1e-12)


def test_auto_takes_fused_kernels_then_compiles_where_it_pays():
    be = TorchBackend(path="auto")
    assert be.layer_path(seqkit.Recurrent("lstm", 2, 3)) == "fused"
    assert be.layer_path(seqkit.Recurrent("gru", 2, 600)) == "fused"
    # on a CPU auto compiles from H = 128 on, where a run soon wins back the compile time
    assert be.layer_path(seqkit.Recurrent("gru_simple", 2, 3)) == "generic"
    assert be.layer_path(seqkit.Recurrent("gru_simple", 2, 127)) == "generic"
    assert be.layer_path(seqkit.Recurrent("gru_simple", 2, 128)) == "compiled"
    assert TorchBackend(path="compiled").layer_path(seqkit.Recurrent("lstm", 2, 3)) == "compiled"
    assert TorchBackend(path="generic").layer_path(seqkit.Recurrent("gru_simple", 2, 512)) == (
        "generic"
    )


def test_bad_path_names_the_choices():
    with pytest.raises(ConfigError) as info:
        TorchBackend(path="compiledd")
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        "backend 'torch': 'path' must be one of 'auto', 'fused', 'compiled', 'generic' "
        "(got 'compiledd')"
    )


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_loop_masks_on_the_compiled_path_agree_with_numpy(compiled64, cell):
    """Recurrent dropout, input dropout and zoneout act in the loop around the compiled step."""
    from seqkit.context import Context
    from seqkit.dropout import stack_backward, stack_forward

    layer = seqkit.Recurrent(
        cell,
        2,
        3,
        num_layers=2,
        bidirectional=True,
        recurrent_dropout=0.3,
        input_dropout=0.2,
        zoneout=0.25,
    )
    assert compiled64.layer_path(layer) == "compiled"
    params = layer.init_params(5)
    data = make_batch(layer, 6, 4, seed=2, with_lengths=True)
    results = []
    for be in (seqkit.get_backend("numpy", dtype="float64"), compiled64):
        ctx = Context(training=True, rng=np.random.default_rng(11))
        out, final, cache = stack_forward(
            be, layer, params, data.x, data.initial_state, data.lengths, ctx=ctx
        )
        d_x, _, grads = stack_backward(be, cache, data.d_out, data.d_final)
        results.append({"out": out, "d_x": d_x, **grads})
    want, got = results
    for name in want:
        np.testing.assert_allclose(
            np.asarray(compiled64.to_numpy(got[name])),
            want[name],
            rtol=1e-9,
            atol=1e-9,
            err_msg=name,
        )
    assert compiled64.compile_stats(layer).error is None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cell", "options"),
    [("lstm", {"proj_size": 2}), ("lstm_ln", {}), ("gru_ln", {})],
    ids=["projection", "lstm_ln", "gru_ln"],
)
def test_projection_and_cells_with_own_parameters_agree_with_numpy(compiled64, cell, options):
    """F3p/B3p run inside the scans; a cell's own parameters' gradients ride in the carry."""
    from seqkit.testing import check_layer_agrees

    layer = seqkit.Recurrent(cell, 3, 4, num_layers=2, bidirectional=True, **options)
    data = make_batch(layer, 6, 3, seed=4, with_lengths=True)
    check_layer_agrees(layer, data, backends=[compiled64], rtol=1e-9, atol=1e-9)
    assert compiled64.compile_stats(layer).error is None


@pytest.mark.slow
def test_one_hot_ids_on_the_compiled_path_agree_with_numpy(compiled64):
    from seqkit.layers import OneHot

    V, T, B = 7, 5, 3
    layer = seqkit.Recurrent("gru", V, 4, bidirectional=True)
    params = layer.init_params(1)
    rng = np.random.default_rng(1)
    ids, lengths = rng.integers(0, V, size=(T, B)), np.array([5, 3, 4])
    state0 = rng.normal(size=(2, B, 4))
    d_out = rng.normal(size=(T, B, 8))
    results = []
    for be in (seqkit.get_backend("numpy", dtype="float64"), compiled64):
        x, _ = OneHot(V).forward(be.ops, None, ids)
        out, _, cache = be.recurrent_forward(layer, params, x, state0, lengths)
        grads = be.recurrent_backward(layer, cache, be.asarray(d_out))
        assert grads.pop("x") is None  # ids have no gradient
        results.append({"out": out, **grads})
    want, got = results
    for name, value in want.items():
        np.testing.assert_allclose(
            compiled64.to_numpy(got[name]), value, rtol=1e-9, atol=1e-9, err_msg=name
        )


@pytest.mark.slow
@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")
def test_float32_with_packed_products_agrees_with_numpy(monkeypatch):
    """On a CPU in float32 the per-step products of a large H run on oneDNN with packed
    weights (here from H = 1 on), a small H on torch.mm; both agree with NumPy."""
    packed, pack = [], _scan.pack

    def counting_pack(w, batch):
        packed.append(tuple(w.shape))
        return pack(w, batch)

    monkeypatch.setattr(_scan, "pack", counting_pack)
    be = TorchBackend(dtype="float32", path="compiled")
    loop = _scan.scan_loop(seqkit.get_cell("gru_simple"), be.ops)
    assert loop.can_pack and not loop.packs(128) and loop.packs(_scan._PACK_MIN_HIDDEN)
    check_backends_agree("gru_simple", backends=[be], dtype="float32", num_layers=(2,))
    assert packed == []
    monkeypatch.setattr(_scan, "_PACK_MIN_HIDDEN", 1)
    check_backends_agree(
        "gru_simple", backends=[be], dtype="float32", num_layers=(2,), bidirectional=(True,)
    )
    assert packed  # forward: W_hh (G*H, H); backward: its transpose (H, G*H)
    assert {shape[0] > shape[1] for shape in packed} == {True, False}
    assert loop.stats.error is None


@pytest.mark.slow
def test_a_backward_that_fails_after_a_compiled_forward_still_agrees(monkeypatch, compiled64):
    """The step loop takes over mid-run: it reads the forward scan's stacked caches step by step."""
    layer = seqkit.Recurrent("gru_simple", 3, 4, bidirectional=True)
    _run(compiled64, layer, 5, 3, 0)  # compiled forward and backward graphs exist
    loop = _scan.scan_loop(layer.cell, compiled64.ops)

    def failing(*args):
        raise RuntimeError("InductorError: backward failed")

    monkeypatch.setitem(loop.functions, ("backward", False), failing)
    monkeypatch.setattr(loop, "stats", _scan.CompileStats())  # restored after the test
    with pytest.warns(RuntimeWarning, match="cannot compile cell 'gru_simple'"):
        got = _run(compiled64, layer, 5, 3, 0)
    want = _run(seqkit.get_backend("numpy", dtype="float64"), layer, 5, 3, 0)
    for name, value in want.items():
        np.testing.assert_allclose(compiled64.to_numpy(got[name]), value, rtol=1e-10, atol=1e-12)
