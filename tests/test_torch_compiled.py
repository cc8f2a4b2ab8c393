"""The torch backend's compiled path: agreement with the reference, caching, fallback, choice.

Compiling a cell takes seconds (the C++ compiler runs), so the tests share one float64 backend
and a handful of cells; the store of compiled packages makes a second run of the file fast.
Tests of compiling itself get a store of their own (``fresh_store``).
"""

import glob
import json
import os
import subprocess
import sys
import warnings

import attrs
import numpy as np
import pytest

import seqkit
from seqkit.cells import LSTM, RNN
from seqkit.errors import ConfigError
from seqkit.testing import check_backends_agree, check_layer_agrees, make_batch

torch = pytest.importorskip("torch")
from seqkit_torch import TorchBackend, _packages, _scan  # noqa: E402


@pytest.fixture
def fresh_store(monkeypatch, tmp_path):
    """An empty store of packages and no loop in memory: the next compiled call compiles."""
    monkeypatch.setenv(_packages.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(_scan, "_LOOPS", {})
    return tmp_path / "compiled"


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


def _forward(be, layer):
    data = make_batch(layer, 5, 3, 0)
    return be.recurrent_forward(layer, layer.init_params(0), data.x, data.initial_state)[0]


def _run(be, layer, T, B, seed):
    data = make_batch(layer, T, B, seed, with_lengths=True)
    params = layer.init_params(seed)
    out, _, cache = be.recurrent_forward(layer, params, data.x, data.initial_state, data.lengths)
    return be.recurrent_backward(layer, cache, data.d_out, data.d_final)


@pytest.mark.slow
def test_cells_that_differ_only_in_a_field_get_packages_of_their_own(compiled64):
    """A package's name covers the cell's fields: same class, same shapes, one activation
    apart, and the second cell must not run the first one's code."""
    ref = seqkit.get_backend("numpy", dtype="float64")
    for nonlinearity in ("tanh", "relu"):
        layer = seqkit.Recurrent(RNN(nonlinearity=nonlinearity), 3, 4)
        got, want = _run(compiled64, layer, 5, 3, 0), _run(ref, layer, 5, 3, 0)
        for name, value in want.items():
            np.testing.assert_allclose(
                compiled64.to_numpy(got[name]), value, rtol=1e-9, atol=1e-9, err_msg=name
            )
        assert compiled64.compile_stats(layer).error is None


_EDITABLE_CELL = """
import attrs
from seqkit.cells import RNN


@attrs.frozen
class EditedRNN(RNN):
    name = "rnn_edited_on_disk"

    def step(self, ops, xg, hg, state, params):
        z = ops.add(xg, hg)
        h = ops.tanh(z) if ACTIVATION == "tanh" else ops.relu(z)
        return (h,), h

    def step_backward(self, ops, d_state, cache, params, grads):
        (d_h,), h = d_state, cache
        d_z = d_h * (1 - h * h) if ACTIVATION == "tanh" else d_h * (h > 0)
        return d_z, d_z, (None,)
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["same file", "another folder"])
def test_a_cell_whose_source_changed_is_compiled_again(fresh_store, tmp_path, monkeypatch, where):
    """The store keys a package by the cell's class and fields and the files of this process's
    code, and checks the files whose code the export ran: an edited step (same name, same
    fields), in the same file or in another checkout's, compiles again and runs the new code."""
    import importlib

    ref = seqkit.get_backend("numpy", dtype="float64")
    results = []
    for activation in ("tanh", "relu"):  # the second file steps differently
        folder = tmp_path / (activation if where == "another folder" else "cells")
        folder.mkdir(exist_ok=True)
        source = folder / "edited_cell.py"
        source.write_text(f"ACTIVATION = {activation!r}\n" + _EDITABLE_CELL)
        monkeypatch.syspath_prepend(str(folder))
        sys.modules.pop("edited_cell", None)
        importlib.invalidate_caches()
        cell = importlib.import_module("edited_cell").EditedRNN()
        monkeypatch.setattr(_scan, "_LOOPS", {})  # a new process, as far as memory goes
        be = TorchBackend(dtype="float64", path="compiled")
        layer = seqkit.Recurrent(cell, 3, 4)
        got = _forward(be, layer)  # the forward scan only: its package is what is checked
        want = _forward(ref, seqkit.Recurrent(RNN(nonlinearity=activation), 3, 4))
        np.testing.assert_allclose(be.to_numpy(got), want, rtol=1e-9, atol=1e-9)
        results.append(be.compile_stats(layer))
    sys.modules.pop("edited_cell", None)
    # compiled both times, each under a name of its own (the first file still exists or is gone)
    assert [(s.graphs, s.cached, s.error) for s in results] == [(1, 0, None), (1, 0, None)]
    assert len(list(fresh_store.glob("*.pt2"))) == 2


@pytest.mark.slow
def test_a_cell_without_a_source_file_is_compiled_for_this_process_only(fresh_store, monkeypatch):
    """A cell defined in a notebook or at the prompt has no file to watch: its packages are
    never stored (a second definition under the same name must not load the first one's)."""
    import types

    ref = seqkit.get_backend("numpy", dtype="float64")
    for activation in ("tanh", "relu"):
        notebook = types.ModuleType("notebook_cell")  # as a notebook's cell runs in __main__
        notebook.ACTIVATION = activation
        monkeypatch.setitem(sys.modules, "notebook_cell", notebook)
        exec(compile(_EDITABLE_CELL, "<ipython-input-1>", "exec"), notebook.__dict__)
        _scan._LOOPS.clear()
        be = TorchBackend(dtype="float64", path="compiled")
        layer = seqkit.Recurrent(notebook.EditedRNN(), 3, 4)
        got = _forward(be, layer)  # the forward scan only: its package is what is checked
        want = _forward(ref, seqkit.Recurrent(RNN(nonlinearity=activation), 3, 4))
        np.testing.assert_allclose(be.to_numpy(got), want, rtol=1e-9, atol=1e-9)
        stats = be.compile_stats(layer)
        assert (stats.graphs, stats.cached, stats.error) == (1, 0, None)
    assert list(fresh_store.glob("*")) == []


@pytest.mark.slow
def test_a_new_loop_loads_its_packages_from_the_store(monkeypatch):
    """What a new process does: load the packages an earlier one compiled, no tracing."""
    be = TorchBackend(dtype="float64", path="compiled")
    layer = seqkit.Recurrent("gru_simple", 3, 4)
    monkeypatch.setattr(_scan, "_LOOPS", {})
    _run(be, layer, 5, 3, 0)  # compiles, or finds the packages of an earlier test or process
    monkeypatch.setattr(_scan, "_LOOPS", {})  # no loop, nothing in memory
    got = _run(be, layer, 5, 3, 0)
    stats = be.compile_stats(layer)
    assert (stats.graphs, stats.cached, stats.error) == (2, 2, None)
    want = _run(seqkit.get_backend("numpy", dtype="float64"), layer, 5, 3, 0)
    for name, value in want.items():
        np.testing.assert_allclose(be.to_numpy(got[name]), value, rtol=1e-9, atol=1e-9)


@pytest.fixture
def seeded_store(fresh_store, compiled64):
    """A fresh store holding the packages of gru_simple at (I, H) = (3, 4), float64, copied
    from the default store (compiled there first if need be, once for the session)."""
    import shutil

    layer = seqkit.Recurrent("gru_simple", 3, 4)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(_packages.CACHE_ENV)
        _run(compiled64, layer, 5, 3, 0)
    fresh_store.mkdir(mode=0o700, parents=True)
    loop = _scan.scan_loop(layer.cell, compiled64.ops)
    for package in loop.functions.values():
        for path in (package.path, package.path.with_suffix(".json")):
            shutil.copyfile(path, fresh_store / path.name)
    _scan._LOOPS.clear()
    return fresh_store


def _compile_from_copies(monkeypatch, store):
    """Make compiling a package copy what the C++ compiler made of it before (the seeded store's
    packages), and list the packages compiled: a test of the store needs no compiler."""
    pristine = {path.name: path.read_bytes() for path in store.glob("*.pt2")}
    compiled = []

    def compile_from_copy(fn, args, roles, path, files=()):
        compiled.append(path.name)
        path.write_bytes(pristine[path.name])
        return {}  # no source file to watch

    monkeypatch.setattr(_packages, "compile_package", compile_from_copy)
    return compiled


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated package", "garbage record", "no package"])
def test_a_damaged_store_entry_is_compiled_again(seeded_store, damage, monkeypatch):
    compiled = _compile_from_copies(monkeypatch, seeded_store)
    be = TorchBackend(dtype="float64", path="compiled")
    layer = seqkit.Recurrent("gru_simple", 3, 4)
    package = sorted(seeded_store.glob("*.pt2"))[0]
    record = package.with_suffix(".json")
    if damage == "truncated package":
        package.write_bytes(package.read_bytes()[:1000])
    elif damage == "garbage record":
        record.write_text("{not json")
    else:
        package.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # damage is not an error: the package is made again
        got = _run(be, layer, 5, 3, 0)
    stats = be.compile_stats(layer)
    assert (stats.graphs, stats.cached, stats.error) == (2, 1, None)
    assert compiled == [package.name]
    want = _run(seqkit.get_backend("numpy", dtype="float64"), layer, 5, 3, 0)
    for name, value in want.items():
        np.testing.assert_allclose(be.to_numpy(got[name]), value, rtol=1e-9, atol=1e-9)
    assert package.stat().st_size > 10_000 and json.loads(record.read_text())["key"]


@pytest.mark.parametrize(("T", "B"), [(1, 3), (5, 1), (1, 1)])
def test_one_step_or_one_row_runs_the_step_loop(monkeypatch, T, B):
    """Sampling's single steps and a batch of one build no graphs (a compiled loop saves
    milliseconds there) and agree with NumPy."""
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
    # a new input size too (F1's weights are not inputs of the scans), with torch.nn.Parameter
    # weights
    bigger = seqkit.Recurrent("gru_simple", 5, 4, bidirectional=True)
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


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_store_others_can_write_is_never_read(seeded_store, monkeypatch):
    """A package is code: a store folder that other users can write is neither read nor
    written; the process compiles for itself."""
    be = TorchBackend(dtype="float64", path="compiled")
    layer = seqkit.Recurrent("gru_simple", 3, 4)
    _run(be, layer, 5, 3, 0)
    assert be.compile_stats(layer).cached == 2  # the store serves while only its user writes
    compiled = _compile_from_copies(monkeypatch, seeded_store)
    before = {path.name: path.stat().st_mtime_ns for path in seeded_store.iterdir()}
    seeded_store.chmod(0o777)
    _scan._LOOPS.clear()
    got = _run(be, layer, 5, 3, 0)
    stats = be.compile_stats(layer)
    assert (stats.graphs, stats.cached, stats.error) == (2, 0, None)
    assert sorted(compiled) == sorted(name for name in before if name.endswith(".pt2"))
    assert {path.name: path.stat().st_mtime_ns for path in seeded_store.iterdir()} == before
    want = _run(seqkit.get_backend("numpy", dtype="float64"), layer, 5, 3, 0)
    for name, value in want.items():
        np.testing.assert_allclose(be.to_numpy(got[name]), value, rtol=1e-9, atol=1e-9)


def _tanh_and_sigmoid(x):
    return torch.tanh(x), torch.sigmoid(x)


@pytest.mark.slow
@pytest.mark.parametrize("dtype, bound", [(torch.float32, 2e-7), (torch.float64, 4e-16)])
def test_a_packages_tanh_and_sigmoid_stay_within_the_documented_error(fresh_store, dtype, bound):
    """Packages compute tanh as 2 / (1 + exp(-2x)) - 1 (_packages._inductor_configs): its error
    is absolute, within the bound docs/reference/performance.rst gives, from 0 to saturation,
    in both signs, in the vectorized loop and its tail."""
    mags = torch.cat([torch.zeros(1), torch.logspace(-12, 2, 4093, dtype=torch.float64)])
    x = torch.cat([mags, -mags, torch.tensor([float("inf"), -float("inf")])]).to(dtype)
    x = x.reshape(2, 7, -1)  # (T, B, F): 585 columns, not a multiple of any vector width
    package, stored = _packages.load_or_compile(
        _tanh_and_sigmoid, (x,), ("tb",), {"test": "tanh"}, torch.device("cpu")
    )
    assert not stored
    got = package(_packages.Flat((x,), ("tb",)))
    exact = x.double()
    for value, want in zip(got, (torch.tanh(exact), torch.sigmoid(exact)), strict=True):
        assert value.dtype == dtype
        error = (value.double() - want).abs().max().item()
        assert error <= bound, error


@pytest.mark.slow
def test_inductor_settings_from_the_environment_get_packages_of_their_own(fresh_store, monkeypatch):
    """A ``TORCHINDUCTOR_*`` variable can change the code Inductor writes (its options read
    them), so a package compiled under one is never loaded without it, nor the other way round;
    a folder of Inductor's own (``TORCHINDUCTOR_CACHE_DIR``) changes nothing."""
    x = torch.linspace(-3, 3, 24, dtype=torch.float64).reshape(2, 3, 4)

    def load():
        return _packages.load_or_compile(
            _tanh_and_sigmoid, (x,), ("tb",), {"test": "environment"}, torch.device("cpu")
        )[1]

    monkeypatch.delenv("TORCHINDUCTOR_SEQKIT_TEST", raising=False)
    assert load() is False and load() is True
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(fresh_store.parent / "inductor"))
    assert load() is True
    monkeypatch.setenv("TORCHINDUCTOR_SEQKIT_TEST", "1")
    assert load() is False and load() is True
    assert len(list(fresh_store.glob("*.pt2"))) == 2


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_the_store_is_made_readable_by_its_user_only(fresh_store):
    assert _packages._usable(fresh_store)
    assert fresh_store.stat().st_mode & 0o077 == 0
    fresh_store.chmod(0o775)
    assert not _packages._usable(fresh_store)  # group-writable


def test_a_compile_error_at_the_first_call_warns_once_and_agrees(monkeypatch, fresh_store):
    def compile_that_fails(fn, args, roles, path, files=()):
        raise RuntimeError(f"InductorError: C++ compile error in {path.name}")

    monkeypatch.setattr(_packages, "compile_package", compile_that_fails)
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
    assert list(fresh_store.iterdir()) == []  # nothing half-written is left in the store


@pytest.mark.parametrize("stage", ["export", "compile"])
def test_torch_raising_falls_back(monkeypatch, fresh_store, stage):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    if stage == "export":
        monkeypatch.setattr(torch.export, "export", broken)
    else:
        monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", broken)
    be = TorchBackend(dtype="float64", path="compiled")
    layer = seqkit.Recurrent("gru_simple", 3, 4)
    assert be.layer_path(layer) == "compiled"  # torch is first called on the first run
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
    assert be.layer_path(seqkit.Recurrent("lstm", 2, 600)) == "fused"  # oneDNN's LSTM on a CPU
    # on a CPU auto compiles from H = 128 on, where a run soon wins back the compile time
    assert be.layer_path(seqkit.Recurrent("gru_simple", 2, 3)) == "generic"
    assert be.layer_path(seqkit.Recurrent("gru_simple", 2, 127)) == "generic"
    assert be.layer_path(seqkit.Recurrent("gru_simple", 2, 128)) == "compiled"
    # torch's gru and rnn on a CPU are per-step loops, which the compiled loops beat enough to
    # pay for a first compile from H = 256 on
    for cell in ("gru", "rnn"):
        assert be.layer_path(seqkit.Recurrent(cell, 2, 255)) == "fused"
        assert be.layer_path(seqkit.Recurrent(cell, 2, 256, bidirectional=True)) == "compiled"
        assert TorchBackend(path="fused").layer_path(seqkit.Recurrent(cell, 2, 600)) == "fused"
    assert TorchBackend(path="compiled").layer_path(seqkit.Recurrent("lstm", 2, 3)) == "compiled"
    assert TorchBackend(path="generic").layer_path(seqkit.Recurrent("gru_simple", 2, 512)) == (
        "generic"
    )
    assert TorchBackend(path="generic").layer_path(seqkit.Recurrent("gru", 2, 512)) == "generic"


def test_a_built_in_cell_that_cannot_compile_goes_back_to_its_fused_kernel(
    monkeypatch, fresh_store
):
    """Under auto a gru of H = 256 on a CPU compiles; if that fails it warns once, the call
    runs uncompiled and agrees, and the layer takes torch's fused kernel from then on."""

    def compile_that_fails(fn, args, roles, path, files=()):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(_packages, "compile_package", compile_that_fails)
    be = TorchBackend(dtype="float64", path="auto")
    layer = seqkit.Recurrent("gru", 3, 256)
    assert be.layer_path(layer) == "compiled"
    ref = seqkit.get_backend("numpy", dtype="float64")
    want = _run(ref, layer, 4, 3, 0)
    with pytest.warns(RuntimeWarning, match="cannot compile cell 'gru'.*runs uncompiled"):
        first = _run(be, layer, 4, 3, 0)
    assert be.layer_path(layer) == "fused"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = _run(be, layer, 4, 3, 0)
    for got in (first, again):
        for name, value in want.items():
            np.testing.assert_allclose(be.to_numpy(got[name]), value, rtol=1e-9, atol=1e-12)


def test_bad_path_names_the_choices():
    with pytest.raises(ConfigError) as info:
        TorchBackend(path="compiledd")
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        "backend 'torch': 'path' must be one of 'auto', 'fused', 'compiled', 'generic' "
        "(got 'compiledd')"
    )


def _check_loop_masks(be, cell):
    """Recurrent dropout, input dropout and zoneout act in the loop around the cell's step."""
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
    assert be.layer_path(layer) == "compiled"
    params = layer.init_params(5)
    data = make_batch(layer, 6, 4, seed=2, with_lengths=True)
    results = []
    for each in (seqkit.get_backend("numpy", dtype="float64"), be):
        ctx = Context(training=True, rng=np.random.default_rng(11))
        out, final, cache = stack_forward(
            each, layer, params, data.x, data.initial_state, data.lengths, ctx=ctx
        )
        d_x, _, grads = stack_backward(each, cache, data.d_out, data.d_final)
        results.append({"out": out, "d_x": d_x, **grads})
    want, got = results
    for name in want:
        np.testing.assert_allclose(
            np.asarray(be.to_numpy(got[name])), want[name], rtol=1e-9, atol=1e-9, err_msg=name
        )
    assert be.compile_stats(layer).error is None


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm"])  # the masks' code is every cell's; two state parts
def test_loop_masks_on_the_compiled_path_agree_with_numpy(compiled64, cell):
    _check_loop_masks(compiled64, cell)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cell", "options"),
    [("lstm", {"proj_size": 2}), ("lstm_ln", {})],
    ids=["projection", "lstm_ln"],
)
def test_projection_and_cells_with_own_parameters_agree_with_numpy(compiled64, cell, options):
    """F3p/B3p run inside the scans; a cell's own parameters' gradients ride in the carry."""
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
@pytest.mark.parametrize("intel", [False, True])
def test_float32_with_packed_products_agrees_with_numpy(monkeypatch, intel):
    """On a CPU in float32 the per-step products of a large H run on packed weights (here from
    H = 1 on), a small H on torch.mm; each agrees with NumPy. Not on MKL on an Intel CPU: F2
    and B2 on oneDNN (W_hh and its transpose packed); there: F2 on MKL's packed sgemm, B2 as
    two half products (here from H = 2 on; the next tests say where which runs)."""
    if intel and not _scan._HAS_MKL_LINEAR:
        pytest.skip("no MKL in this torch")
    packed = []

    def counting(pack):
        def counted(w, batch):
            packed.append((pack.__name__, tuple(w.shape)))
            return pack(w, batch)

        return counted

    monkeypatch.setattr(_scan, "pack", counting(_scan.pack))
    monkeypatch.setattr(_scan, "mkl_pack", counting(_scan.mkl_pack))
    monkeypatch.setattr(_scan, "_mkl_on_intel", lambda: intel)
    be = TorchBackend(dtype="float32", path="compiled")
    loop = _scan.scan_loop(seqkit.get_cell("gru_simple"), be.ops)
    assert loop.can_pack and loop.product(128, "forward") == "mm"
    check_backends_agree("gru_simple", backends=[be], dtype="float32", num_layers=(2,))
    assert packed == []
    monkeypatch.setattr(_scan, "_PACK_MIN_HIDDEN", 1)
    monkeypatch.setattr(_scan, "_HALVES_MIN_HIDDEN", 2)
    assert loop.product(4, "backward") == ("halves" if intel else "onednn")
    check_backends_agree(
        "gru_simple", backends=[be], dtype="float32", num_layers=(2,), bidirectional=(True,)
    )
    # forward: W_hh (G*H, H); backward: its transpose (H, G*H)
    if intel:
        assert {name for name, _ in packed} == {"mkl_pack"}
        assert {shape[0] > shape[1] for _, shape in packed} == {True}
    else:
        assert {name for name, _ in packed} == {"pack"}
        assert {shape[0] > shape[1] for _, shape in packed} == {True, False}
    assert loop.stats.error is None


@pytest.mark.parametrize(
    ("mkl", "vendor", "forward", "backward"),
    [
        (True, "GenuineIntel", "mkl", "halves"),
        (True, "AuthenticAMD", "onednn", "onednn"),
        (False, "GenuineIntel", "onednn", "onednn"),
    ],
)
def test_the_per_step_products_by_cpu(monkeypatch, tmp_path, mkl, vendor, forward, backward):
    """Where torch.mm is MKL on an Intel CPU, F2 runs on MKL's packed sgemm and B2 as two half
    products (faster there than packed oneDNN), from _HALVES_MIN_HIDDEN on and for an even H
    only, in float64 too; elsewhere both on packed oneDNN; below _PACK_MIN_HIDDEN on
    torch.mm. An unreadable /proc/cpuinfo takes oneDNN."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: fpu\n")
    real_path = _scan.Path
    monkeypatch.setattr(_scan, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: mkl)
    monkeypatch.setattr(_scan, "_can_pack", lambda ops: True)
    _scan._mkl_on_intel.cache_clear()
    try:
        loop = _scan.ScanLoop(seqkit.get_cell("gru_simple"), TorchBackend(dtype="float32").ops)
        H = _scan._PACK_MIN_HIDDEN
        if forward == "mkl" and not _scan._HAS_MKL_LINEAR:
            forward, backward = "onednn", "onednn"
        assert (loop.product(H, "forward"), loop.product(H, "backward")) == (forward, backward)
        assert loop.product(H - 1, "forward") == loop.product(H - 1, "backward") == "mm"
        half = _scan._HALVES_MIN_HIDDEN
        below = loop.product(half - 2, "backward"), loop.product(half + 1, "backward")
        assert below == ("mm", "mm")
        f64 = _scan.ScanLoop(seqkit.get_cell("gru_simple"), TorchBackend(dtype="float64").ops)
        assert (f64.product(half, "forward"), f64.product(half, "backward")) == (
            "mm",
            "halves" if backward == "halves" else "mm",
        )
        cpuinfo.unlink()
        _scan._mkl_on_intel.cache_clear()
        assert loop.product(H, "forward") == loop.product(H, "backward") == "onednn"
    finally:
        _scan._mkl_on_intel.cache_clear()


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["gru", "lstm", "lstm_peephole"])
def test_backward_products_in_halves_agree_with_numpy(monkeypatch, compiled64, peephole, cell):
    """B2 as two half products in one batched call ("halves": MKL on an Intel CPU, from
    H = 64 on; here from H = 2 on any CPU) agrees with NumPy to 1e-9 in float64, padding and
    both directions included, for cells of three and four gates, a plugin's, and under a
    projection."""
    monkeypatch.setattr(_scan, "_mkl_on_intel", lambda: True)
    monkeypatch.setattr(_scan, "_HALVES_MIN_HIDDEN", 2)
    loop = _scan.scan_loop(seqkit.get_cell(cell), compiled64.ops)
    assert (loop.product(4, "backward"), loop.product(3, "backward")) == ("halves", "mm")
    check_backends_agree(
        cell, backends=[compiled64], num_layers=(2,), bidirectional=(True,), rtol=1e-9, atol=1e-9
    )
    if cell == "lstm":  # under a projection B2 is d hg @ W_hh (G*H, P): the halves split P
        layer = seqkit.Recurrent(cell, 3, 4, bidirectional=True, proj_size=2)
        data = make_batch(layer, 6, 3, seed=4, with_lengths=True)
        check_layer_agrees(layer, data, backends=[compiled64], rtol=1e-9, atol=1e-9)
    assert {key[:2] for key in loop.functions} >= {("backward", "halves")}
    assert loop.stats.error is None


@pytest.mark.slow
def test_a_backward_that_fails_after_a_compiled_forward_still_agrees(monkeypatch, compiled64):
    """The step loop takes over mid-run: it reads the forward scan's stacked caches step by step."""
    layer = seqkit.Recurrent("gru_simple", 3, 4, bidirectional=True)
    _run(compiled64, layer, 5, 3, 0)  # compiled forward and backward graphs exist
    loop = _scan.scan_loop(layer.cell, compiled64.ops)

    def failing(*args):
        raise RuntimeError("InductorError: backward failed")

    for key in [k for k in loop.functions if k[0] == "backward"]:
        monkeypatch.setitem(loop.functions, key, failing)
    monkeypatch.setattr(loop, "stats", _scan.CompileStats())  # restored after the test
    with pytest.warns(RuntimeWarning, match="cannot compile cell 'gru_simple'"):
        got = _run(compiled64, layer, 5, 3, 0)
    want = _run(seqkit.get_backend("numpy", dtype="float64"), layer, 5, 3, 0)
    for name, value in want.items():
        np.testing.assert_allclose(compiled64.to_numpy(got[name]), value, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the loader unpacks into /tmp")
def test_a_process_leaves_no_unpacked_package_behind():
    """torch's loader unpacks a package into /tmp/aotinductor_* and removes it when freed; the
    loops that hold the packages live until exit, where seqkit frees them."""
    script = (
        "import seqkit\n"
        "from seqkit.testing import make_batch\n"
        "from seqkit_torch import TorchBackend\n"
        "be = TorchBackend(dtype='float64', path='compiled')\n"
        "layer = seqkit.Recurrent('gru_simple', 3, 4)\n"
        "data = make_batch(layer, 5, 3, 0)\n"
        "out, _, cache = be.recurrent_forward(layer, layer.init_params(0), data.x, "
        "data.initial_state)\n"
        "be.recurrent_backward(layer, cache, data.d_out)\n"
        "assert be.compile_stats(layer).graphs == 2, be.compile_stats(layer)\n"
        "import glob\n"
        "print(len(glob.glob('/tmp/aotinductor_*')))\n"
    )
    before = set(glob.glob("/tmp/aotinductor_*"))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) >= len(before) + 2  # two packages were unpacked ...
    assert set(glob.glob("/tmp/aotinductor_*")) - before == set()  # ... and are gone


# --- on a GPU the loops are captured as CUDA graphs; here a stand-in capture plays the graph ---


def _stand_in_capture(fn, args, pool):
    """A CUDA graph's contract on the CPU: the outputs stay where every replay writes them anew,
    and a replay reads the captured inputs (whatever the caller passed is not seen)."""
    import torch.utils._pytree as pytree

    outputs = fn(*args)

    def replay():
        for kept, new in zip(pytree.tree_leaves(outputs), pytree.tree_leaves(fn(*args))):
            if isinstance(kept, torch.Tensor):
                kept.copy_(new)

    return outputs, replay


@pytest.fixture
def graphs(monkeypatch):
    """The compiled path as on a GPU: each loop captured per shape, replayed."""
    monkeypatch.setattr(_scan, "_captures", lambda ops: True)
    monkeypatch.setattr(_scan, "_capture", _stand_in_capture)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: None)
    monkeypatch.setattr(_scan, "_LOOPS", {})
    return TorchBackend(dtype="float64", path="compiled")


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "lstm_ln", "lstm_peephole"])
def test_captured_loops_agree_with_numpy(graphs, cell, request):
    """Two layers, both directions, padding: the directions and layers of one shape replay one
    graph, so each call must hand back its own copy of the outputs (fails without the copies)."""
    if cell == "lstm_peephole":
        request.getfixturevalue("peephole")
    check_backends_agree(cell, backends=[graphs], num_layers=(1, 2), rtol=1e-9, atol=1e-9)
    layer = seqkit.Recurrent(cell, 3, 4)
    assert graphs.layer_path(layer) == "compiled"
    assert graphs.compile_stats(layer).graphs > 0
    assert graphs.compile_stats(layer).error is None


def test_captured_loops_with_masks_and_projection_agree_with_numpy(graphs):
    _check_loop_masks(graphs, "lstm")
    layer = seqkit.Recurrent("lstm", 3, 4, num_layers=2, bidirectional=True, proj_size=2)
    check_layer_agrees(layer, make_batch(layer, 6, 3, seed=4, with_lengths=True), backends=[graphs])


def test_a_graph_per_shape_replayed_for_that_shape(graphs, monkeypatch):
    layer = seqkit.Recurrent("gru_simple", 3, 4)
    loop = _scan.scan_loop(layer.cell, graphs.ops)
    _run(graphs, layer, 5, 3, 0)
    assert loop.stats.graphs == 2  # forward and backward
    got = _run(graphs, layer, 5, 3, 1)  # same shapes, new values: replayed on them
    assert loop.stats.graphs == 2
    want = _run(seqkit.get_backend("numpy", dtype="float64"), layer, 5, 3, 1)
    for name, value in want.items():
        np.testing.assert_allclose(graphs.to_numpy(got[name]), value, rtol=1e-10, atol=1e-12)
    _run(graphs, layer, 6, 3, 0)  # a new length: captured
    assert loop.stats.graphs == 4
    monkeypatch.setattr(_scan, "_KEPT", 3)
    want = _run(seqkit.get_backend("numpy", dtype="float64"), layer, 7, 2, 0)
    got = _run(graphs, layer, 7, 2, 0)
    assert len(loop.functions) == 3  # the oldest went
    for name, value in want.items():
        np.testing.assert_allclose(graphs.to_numpy(got[name]), value, rtol=1e-10, atol=1e-12)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_graphs_agree_with_numpy(dtype, peephole):
    """The real capture: every cell with two layers, both directions and padding, replayed."""
    tol = {"float64": 1e-9, "float32": 1e-4}[dtype]
    be = TorchBackend(dtype=dtype, device="cuda", path="compiled")
    for cell in seqkit.list_cells():
        check_backends_agree(cell, backends=[be], num_layers=(1, 2), rtol=tol, atol=tol)
        stats = be.compile_stats(seqkit.Recurrent(cell, 3, 4))
        assert stats.error is None and stats.graphs > 0, (cell, stats)
