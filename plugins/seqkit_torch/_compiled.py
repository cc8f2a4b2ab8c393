"""The compiled path: any cell's ``step`` and hand-written ``step_backward`` fused by Inductor.

The loop over time is the generic path's (:mod:`seqkit.bptt` inside one
``torch.autograd.Function``, see :mod:`seqkit_torch._generic`); only the cell is swapped for a
:class:`CompiledCell`, whose ``step`` and ``step_backward`` call the cell's own methods compiled
by ``torch.compile`` (Inductor: C++ on one thread on a CPU, Triton on a GPU). The forty-odd small
elementwise operations of an LSTM step and its backward become one kernel each, and the matrix
products stay where the driver batches them. The driver's per-step arrays go in as their
contiguous (F, B) transposes (:func:`_plain`), so every array of a compiled step has one layout.

One :class:`CompiledCell` is built per (cell, dtype, device) and kept for the life of the process.
Its two functions are compiled with ``dynamic=True``: the batch size B and the hidden size H are
symbols in the generated code, and the length T never reaches them (the loop over time is
Python), so a new batch or a new sequence length reuses the compiled kernels. dynamo still adds a
graph for a size of 1 (it specialises 0 and 1) and, at most once, for a new memory layout.

Compilation happens on the first call; it takes seconds (the C++ compiler runs) and is counted in
:attr:`CompiledCell.stats`. When it fails (no C++ compiler, an operation Inductor cannot compile,
a graph break: ``fullgraph=True`` turns those into errors), the cell falls back to its eager
methods for good, with one warning that names the reason; results are the generic path's either
way. On CUDA the compiled step also runs as a CUDA graph (``triton.cudagraphs``, what
``mode="reduce-overhead"`` sets), so that a step costs a handful of launches.
"""

from __future__ import annotations

import time
import types
import warnings
from typing import Any

import attrs
import torch
import torch.utils._pytree as pytree

from seqkit.cells import Cell
from seqkit.recurrent import Recurrent

__all__ = ["CompileStats", "CompiledCell", "compiled_cell", "compiled_layer"]


@attrs.define
class CompileStats:
    """What compiling one cell cost: graphs built so far, seconds spent, why it fell back."""

    graphs: int = 0
    seconds: float = 0.0
    #: None while compiled; the reason once the cell fell back to its eager methods.
    error: str | None = None


class CompiledCell(Cell):
    """``cell`` with its ``step`` and ``step_backward`` compiled; everything else delegated.

    Not registered anywhere: :func:`compiled_layer` hands it to the BPTT driver in place of the
    cell it wraps, with the same name, gates, state and parameters.
    """

    def __init__(self, cell: Cell, ops, *, cuda_graphs: bool) -> None:
        self.cell, self.ops = cell, ops
        self.name, self.num_gates = cell.name, cell.num_gates
        self.state_names, self.sums_projections = cell.state_names, cell.sums_projections
        self.stats = CompileStats()
        self._clone_outputs = cuda_graphs  # a CUDA graph's outputs are overwritten by its replay
        tag = f"{cell.name}_{ops.dtype}_{ops.device.type}".replace("-", "_")
        try:
            backend = _timed_inductor(self.stats, cuda_graphs)
            self._step = _compile(_step_function(cell, ops), f"step_{tag}", backend)
            self._backward = _compile(
                _backward_function(cell, ops), f"step_backward_{tag}", backend
            )
        except Exception as exc:  # no Inductor, or torch.compile refused (an unsupported platform)
            self._fall_back(exc)

    def __repr__(self) -> str:
        return f"CompiledCell({self.cell!r}, stats={self.stats!r})"

    def extra_param_shapes(self, hidden_size: int) -> dict[str, tuple[int, ...]]:
        return self.cell.extra_param_shapes(hidden_size)

    def options(self) -> dict[str, Any]:
        return self.cell.options()

    @property
    def failed(self) -> bool:
        """True once compilation failed and the cell runs its eager methods."""
        return self.stats.error is not None

    def step(self, ops, xg, hg, state, params):
        if not self.failed:
            try:
                new, cache = self._call(self._step, (xg, hg, state), (params,))
            except Exception as exc:  # compile errors surface on the first call of a shape
                self._fall_back(exc)
            else:
                # Inductor drops a copy whose input it may alias (the graph is pure), so the
                # GRU's copy of hg_n can come back as a view of hg, whose memory the driver
                # reuses at the next step: such outputs are copied here, nothing else is
                return _unshare((new, cache), hg.untyped_storage().data_ptr())
        return self.cell.step(ops, xg, hg, state, params)

    def step_backward(self, ops, d_state, cache, params, grads):
        if not self.failed:
            try:
                return self._call(self._backward, (d_state, cache), (params, grads))
            except Exception as exc:
                self._fall_back(exc)
        # the compiled step's cache has the eager step's structure, so either backward reads it
        return self.cell.step_backward(ops, d_state, cache, params, grads)

    def _call(self, fn, arrays: tuple, rest: tuple):
        """``fn(*arrays, *rest)``: ``arrays`` are the driver's per-step (B, F) arrays, which go in
        as (F, B) (:func:`_plain`) and come back as (B, F) again; ``rest`` goes in as it is."""
        graphs = self.stats.graphs
        start = time.perf_counter()
        result = _swapped(fn(*_plain(arrays, swap=True), *_plain(rest)))
        if self.stats.graphs != graphs:  # this call compiled: tracing + Inductor + one run
            self.stats.seconds += time.perf_counter() - start
        if self._clone_outputs:
            result = pytree.tree_map_only(torch.Tensor, torch.clone, result)
        return result

    def _fall_back(self, exc: Exception) -> None:
        lines = str(exc).strip().splitlines()
        self.stats.error = f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
        warnings.warn(
            f"backend 'torch', path 'compiled': cannot compile cell {self.cell.name!r} "
            f"({self.stats.error}); it runs on the generic path instead",
            RuntimeWarning,
            stacklevel=4,
        )


def _plain(obj, *, swap: bool = False):
    """``obj`` with every tensor in it replaced by an alias that is not a view, with its two
    axes swapped (a (B, F) matrix as (F, B)) when ``swap`` is set.

    dynamo guards a view's base as well as the view: the driver's per-step arrays are views at
    the first step (of a buffer) and fresh tensors later, which would compile every function
    twice. ``detach`` gives an alias of the same memory without the base (no copy, about 1 us).

    Why swap: the driver's per-step arrays are feature-major (:mod:`seqkit.bptt`), so their
    (F, B) transposes are contiguous. Handed over so, and swapped back inside the graph
    (:func:`_swapped`), every array of the compiled step has one layout, inputs, outputs and the
    cache alike; Inductor then writes one loop over contiguous runs of B. Handed over as
    (B, F) views of column-major memory, its outputs came out row-major and its kernels read
    and wrote across strides (a compiled LSTM step backward took four times the eager one).
    """
    if isinstance(obj, torch.Tensor):
        return obj.mT.detach() if swap and obj.ndim == 2 else obj.detach()
    if isinstance(obj, tuple | list):
        return type(obj)(_plain(o, swap=swap) for o in obj)
    if isinstance(obj, dict):
        return {k: _plain(v, swap=swap) for k, v in obj.items()}
    return obj


def _swapped(obj, *, contiguous: bool = False):
    """``obj`` with the two axes of every matrix in it swapped (a view), laid out contiguously
    in the swapped order when ``contiguous`` is set (inside a graph: Inductor allocates its
    outputs so, which makes the (B, F) views outside feature-major)."""
    if isinstance(obj, torch.Tensor) and obj.ndim == 2:
        return obj.mT.contiguous() if contiguous else obj.mT
    if isinstance(obj, tuple | list):
        return type(obj)(_swapped(o, contiguous=contiguous) for o in obj)
    if isinstance(obj, dict):
        return {k: _swapped(v, contiguous=contiguous) for k, v in obj.items()}
    return obj


def _unshare(obj, data_ptr: int):
    """``obj`` with every tensor stored at ``data_ptr`` replaced by a copy."""
    if isinstance(obj, torch.Tensor):
        return obj.clone() if obj.untyped_storage().data_ptr() == data_ptr else obj
    if isinstance(obj, tuple | list):
        return type(obj)(_unshare(o, data_ptr) for o in obj)
    if isinstance(obj, dict):
        return {k: _unshare(v, data_ptr) for k, v in obj.items()}
    return obj


def _step_function(cell: Cell, ops):
    def step(xg, hg, state, params):
        xg, hg, state = _swapped((xg, hg, state))  # (F, B) in, the cell's (B, F) views (_plain)
        # the cell may overwrite xg and hg (its contract allows it); cloning them here keeps the
        # graph free of input mutation and its outputs free of aliases of the driver's buffers,
        # and Inductor fuses the copies into the kernel that reads them
        return _swapped(cell.step(ops, xg.clone(), hg.clone(), state, params), contiguous=True)

    return step


def _backward_function(cell: Cell, ops):
    def step_backward(d_state, cache, params, grads):
        d_state, cache = _swapped((d_state, cache))
        # grads (the extra parameters') are accumulated into with +=, which Inductor writes back
        result = cell.step_backward(ops, d_state, cache, params, grads)
        return _swapped(result, contiguous=True)

    return step_backward


def _compile(fn, name: str, backend):
    # dynamo keeps its compiled graphs per code object, at most recompile_limit (8) of them:
    # every (cell, dtype, device) gets a code object of its own, so that one cell's graphs
    # never push out another's and a cell that needs several layouts never reaches the limit
    code = fn.__code__.replace(co_name=name, co_qualname=name)
    own = types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    return torch.compile(own, backend=backend, dynamic=True, fullgraph=True)


def _timed_inductor(stats: CompileStats, cuda_graphs: bool):
    """Inductor as a torch.compile backend that counts the graphs it builds."""
    with warnings.catch_warnings():
        # importing Inductor imports torch.utils.mkldnn, which uses the deprecated TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch._inductor.compile_fx import compile_fx

    # On a CPU the kernels run on one thread: a step's elementwise work (B x G*H numbers) is too
    # small to repay the start and the barrier of an OpenMP team, which on a machine shared with
    # other work can wait milliseconds for a thread that is not scheduled; the matrix products
    # the driver runs outside the compiled step keep every thread.
    patches = {"triton.cudagraphs": True} if cuda_graphs else {"cpp.threads": 1}

    def inductor(gm, example_inputs):
        stats.graphs += 1
        return compile_fx(gm, example_inputs, config_patches=patches)

    return inductor


#: One CompiledCell per (cell, dtype, device), for the life of the process.
_CELLS: dict[tuple, CompiledCell] = {}


def compiled_cell(cell: Cell, ops) -> CompiledCell:
    """The cached :class:`CompiledCell` of ``cell`` on ``ops``' dtype and device."""
    try:
        key: tuple = (cell, ops.dtype, str(ops.device))
        hash(key)
    except TypeError:  # a cell without a hash: one entry per instance, which the entry keeps
        key = (id(cell), ops.dtype, str(ops.device))  # alive, so that its id is not reused
    entry = _CELLS.get(key)
    if entry is None:
        entry = _CELLS[key] = CompiledCell(cell, ops, cuda_graphs=ops.device.type == "cuda")
    return entry


def compiled_layer(layer: Recurrent, ops) -> Recurrent:
    """``layer`` with its cell replaced by the cell's :class:`CompiledCell`."""
    return attrs.evolve(layer, cell=compiled_cell(layer.cell, ops))
