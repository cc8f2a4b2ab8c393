"""The compiled path: each direction's loop over time as two scans, compiled or captured.

:mod:`seqkit.bptt` drives the stack (F1 and B1 as big products, the layers, the directions, the
padding); this module is its loop over time (the ``loop`` of
:func:`seqkit.bptt.recurrent_forward`) on the compiled path. The forward loop, F2-F4 of every
step, is one scan over the cell's own ``step``; the backward loop, B4-B2 from the last step
down, is a second scan over its hand-written ``step_backward``.

On a CPU each scan is ``torch._higher_order_ops.scan``, exported and compiled by AOTInductor
into a C++ package (:mod:`seqkit_torch._packages`), so that the loop runs in generated code: a
step costs its recurrent product and a fused kernel or two, with no Python and no guard check
per step. Three things make it fast, each measured (docs/reference/performance.rst):

- The cell runs on :class:`PureOps`, which ignores ``inplace`` as an immutable-array backend
  does: the traced step is pure and Inductor fuses it. In-place writes into slices of a gate
  array became chains of ``slice_scatter`` that Inductor compiled into masked, partly scalar
  loops (the LSTM step backward: a 4,576-line kernel, 208 us per step at B = 32, H = 256,
  against 26 us once pure).
- In float32 the per-step products, ``h<t-1> @ W_hh^T`` (F2) and ``d hg<t> @ W_hh`` (B2), run
  on oneDNN with W_hh packed once per call (:func:`packed_linear`) from H = 192 on, 1.1-1.6x
  faster there than the BLAS product ``torch.mm`` calls, and what ``torch.nn.LSTM`` runs on
  (below that, packing costs more than it saves). Where ``torch.mm`` is MKL on an Intel CPU,
  F2 runs on MKL's packed sgemm (:func:`_mkl_on_intel`), and B2 as two products, one per half
  of W_hh's columns, in one batched call (:func:`step_product`'s "halves"), faster there.
- Every per-step array is row-major (B, F), the layout a cell's new arrays get, so no kernel
  transposes.

T and B are symbols of the exported graphs (every other size fixed), so a new batch or length
reuses a package; one step or one row runs the step loop, where a compiled loop saves nothing.
Packages are kept per (cell, direction, signature of the inputs) for the life of the process,
and in the store on disk across processes: a new process loads a cell's two in hundredths of a
second instead of compiling them (20-30 s).

On a GPU the time a step takes is the launches of its few dozen small kernels, so each scan is
the same function run as a Python loop (:func:`_eager_scan`) and captured once per shape as a
CUDA graph (:class:`Graphed`): a call is one replay, the whole loop without a launch from the
host. (AOTInductor's CUDA packages failed to compile the scans under torch 2.11; and captured,
the generic loop already ran an LSTM layer at 1.13x and 1.74x cuDNN on an H200.)

:attr:`ScanLoop.stats` counts the packages or graphs, those found in the store and the seconds
spent. When compiling or capturing fails (no C++ compiler, an operation export or Inductor
cannot handle, a cell that syncs with the host), the loop warns once, naming the reason, and
runs :data:`seqkit.bptt.STEP_LOOP` from then on: the results are the generic path's either way.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import attrs
import torch
import torch.utils._pytree as pytree

from seqkit import bptt
from seqkit.cells import Cell
from seqkit_torch import _malloc, _packages
from seqkit_torch.ops import TorchOps

__all__ = ["CompileStats", "Graphed", "PureOps", "ScanLoop", "packed_linear", "scan_loop"]


@attrs.define
class CompileStats:
    """What compiling a cell's loops cost: packages in use, seconds spent, why it fell back."""

    #: compiled packages in use (a forward and a backward scan per signature of their inputs),
    #: or on a GPU the CUDA graphs captured (a forward and a backward per shape)
    graphs: int = 0
    #: how many of them came from the store on disk (compiled by an earlier process)
    cached: int = 0
    seconds: float = 0.0
    #: None while compiled; the reason once the loop fell back to the step loop.
    error: str | None = None


class PureOps(TorchOps):
    """:class:`~seqkit_torch.ops.TorchOps` with ``inplace`` ignored: every result a new tensor.

    What a cell sees inside a compiled scan. The cell contract allows a backend to ignore
    ``inplace`` (JAX does), and a graph without writes into views is one Inductor can fuse.
    """

    def add(self, a, b, *, inplace=False):
        return a + b

    def sub(self, a, b, *, inplace=False):
        return a - b

    def mul(self, a, b, *, inplace=False):
        return a * b

    def sigmoid(self, x, *, inplace=False):
        return torch.sigmoid(x)

    def tanh(self, x, *, inplace=False):
        return torch.tanh(x)

    def relu(self, x, *, inplace=False):
        return torch.relu(x)

    def concat(self, blocks, *, inplace=False):
        return torch.cat(list(blocks), dim=-1)


# --- the per-step product ---------------------------------------------------------------------


# The per-step product: mkldnn::_linear_pointwise under seqkit's namespace, with its schema, so
# that Inductor neither rewrites it (its oneDNN lowering wants the packed weight to be a constant)
# nor calls it through AOTInductor's proxy executor (arguments boxed, then a Python kernel, every
# step: 1 ms of the 33 of bench_torch --small). AOTInductor calls a custom op's C function when it
# is given one (_packages.C_SHIMS), and an op named _linear_pointwise on a CPU names oneDNN's own,
# aoti_torch_cpu__linear_pointwise in libtorch. Registered with the dispatcher directly:
# torch.library.custom_op's wrappers cost 8-16 us a call, a tenth of a step.
_LIBRARY = torch.library.Library("seqkit", "DEF")
_LIBRARY.define(
    "_linear_pointwise(Tensor X, Tensor W, Tensor? B, str attr, Scalar?[] scalars, str? algorithm)"
    " -> Tensor"
)
for _key in ("CPU", "MkldnnCPU"):  # x is a plain tensor, the packed weight an oneDNN one
    _LIBRARY.impl("_linear_pointwise", torch.ops.mkldnn._linear_pointwise.default, _key)


@torch.library.register_fake("seqkit::_linear_pointwise")
def _(X, W, B, attr, scalars, algorithm):
    return X.new_empty((*X.shape[:-1], W.shape[0]))


def packed_linear(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """``x @ W^T`` on oneDNN, ``packed`` being ``W`` reordered by :func:`pack`."""
    return torch.ops.seqkit._linear_pointwise.default(x, packed, None, "none", [], "")


# declared as in torch's shim_cpu.h
_packages.C_SHIMS.update(
    {
        torch.ops.seqkit._linear_pointwise.default: [
            "AOTITorchError aoti_torch_cpu__linear_pointwise(AtenTensorHandle X, "
            "AtenTensorHandle W, AtenTensorHandle* B, const char* attr, const double** scalars, "
            "int64_t scalars_len_, const char** algorithm, AtenTensorHandle* ret0)"
        ]
    }
)

# The same for MKL's packed sgemm, mkl::_mkl_linear (x86 builds of torch only), which runs F2
# where torch.mm is MKL on an Intel CPU (_mkl_on_intel); its batch size is a symbol of the
# export, hence SymInt where torch's schema says int.
_HAS_MKL_LINEAR = hasattr(torch.ops.mkl, "_mkl_linear")
if _HAS_MKL_LINEAR:
    _LIBRARY.define(
        "_mkl_linear(Tensor X, Tensor W, Tensor origin_W, Tensor? B, SymInt prepack_batch_size)"
        " -> Tensor"
    )
    for _key in ("CPU", "MkldnnCPU"):
        _LIBRARY.impl("_mkl_linear", torch.ops.mkl._mkl_linear.default, _key)

    @torch.library.register_fake("seqkit::_mkl_linear")
    def _(X, W, origin_W, B, prepack_batch_size):
        return X.new_empty((*X.shape[:-1], origin_W.shape[0]))

    _packages.C_SHIMS.update(
        {
            torch.ops.seqkit._mkl_linear.default: [
                "AOTITorchError aoti_torch_cpu__mkl_linear(AtenTensorHandle X, AtenTensorHandle W, "
                "AtenTensorHandle origin_W, AtenTensorHandle* B, int64_t prepack_batch_size, "
                "AtenTensorHandle* ret0)"
            ]
        }
    )


def mkl_linear(x: torch.Tensor, weights: tuple, batch) -> torch.Tensor:
    """``x @ W^T`` on MKL's packed sgemm, ``weights`` being :func:`mkl_pack`'s (packed, W) and
    ``batch`` the rows it was packed for (x's)."""
    packed, w = weights
    return torch.ops.seqkit._mkl_linear.default(x, packed, w, None, batch)


def mkl_pack(w: torch.Tensor, batch: int) -> tuple:
    """``w`` (N, K) packed by MKL for products ``x @ w^T`` with x of ``batch`` rows, and ``w``
    itself, which MKL reads for any other number of rows: 20 us at N = 1024, K = 256."""
    w = w.detach()
    return torch.ops.mkl._mkl_reorder_linear_weight(w, batch), w


def step_weight(w_hh: torch.Tensor, batch: int, product: str, loop: str):
    """W_hh as the per-step product of ``loop`` reads it on ``product``
    (:meth:`ScanLoop.product`): packed for oneDNN (:func:`pack`) or MKL (:func:`mkl_pack`) as
    ``w`` of ``x @ w^T``, W_hh for F2 ("forward") and its transpose for B2 ("backward"); for
    ``torch.mm`` W_hh itself (a package copies a transposed input row-major); for "halves"
    W_hh's left and right halves of columns, (2, G*H, H/2). Once per call, for every step's
    :func:`step_product`."""
    if product == "halves":
        return w_hh.detach().unflatten(1, (2, -1)).transpose(0, 1).contiguous()
    w = w_hh if loop == "forward" or product == "mm" else w_hh.mT
    if product == "onednn":
        return pack(w, batch)
    if product == "mkl":
        return mkl_pack(w, batch)
    return w


def step_product(x: torch.Tensor, w, batch, product: str, loop: str) -> torch.Tensor:
    """F2's ``h<t-1> @ W_hh^T`` (``loop`` "forward") or B2's ``d hg<t> @ W_hh`` ("backward") on
    ``product``, ``w`` from :func:`step_weight`. ``product`` and ``loop`` are constants of the
    traced step, so the choice costs nothing per step.

    "halves" (B2 only) is ``d hg @ W_hh`` as ``bmm`` of ``d hg`` twice (a view) with the two
    halves of W_hh's columns: MKL runs a batch of two as one product per core, on the operands
    as they lie, where ``torch.mm`` on two cores splits K = G*H between them and packs both
    operands first. At B = 32, H = 256 on an Intel Xeon: 42-47 against 60-63 us a step
    (docs/reference/performance.rst)."""
    if product == "onednn":
        return packed_linear(x, w)
    if product == "mkl":
        return mkl_linear(x, w, batch)
    if product == "halves":
        return torch.bmm(x.expand(2, *x.shape), w).transpose(0, 1).flatten(1)
    return x @ w.mT if loop == "forward" else x @ w


def _can_pack(ops) -> bool:
    """Whether the per-step products can run on oneDNN with packed weights: a CPU, float32."""
    return (
        ops.device.type == "cpu"
        and ops.torch_dtype == torch.float32
        and torch.backends.mkldnn.is_available()
    )


#: The smallest (even) H whose B2 runs as "halves" where torch.mm is MKL on an Intel CPU: from
#: H = 64 on the halves are faster (at B = 32 in float32, ``torch.mm`` against the halves: 7.2
#: against 5.3 us at H = 64, 20 against 14 us at H = 128; float64 alike), at H = 32 slower
#: (2.3 against 3.6 us).
_HALVES_MIN_HIDDEN = 64

#: The smallest H whose per-step products run on packed weights. Packing W_hh and its transpose
#: costs 0.3 ms at H = 128 and 0.6 ms at 256 per call; the packed products save 10-30% a step
#: from H = 192 on, and nothing at 128 (B = 32..64; docs/reference/performance.rst).
_PACK_MIN_HIDDEN = 192


@functools.cache
def _mkl_on_intel() -> bool:
    """Whether ``torch.mm``'s BLAS is MKL running on an Intel CPU, where its sgemm is tuned.

    There the per-step products run on MKL (:meth:`ScanLoop.product`). F2's ``h @ W_hh^T`` on
    MKL's packed sgemm takes 43 us against 61 us for oneDNN's packed product at B = 32,
    H = 256, and packing costs 20 us against 120 us. B2's ``d hg @ W_hh`` (K = G*H) runs on MKL as
    well, unpacked: on ``torch.mm`` on an Intel Xeon (AVX-512, AMX) at H = 256 and 512 the
    backward loop took 0.6-1 ms and 3.5-9 ms less a call than with oneDNN, and packing 0.6 and
    2.6 ms less; as "halves" (:func:`step_product`) another 0.7-0.9 and 3-5 ms less. MKL's
    packed sgemm runs B2 faster alone than ``torch.mm`` (46-50 against 58-62 us) but packs only a
    row-major ``W_hh^T``, and torch copies a transposed matrix at 160-180 us a MB: with that copy
    made in each call, a call was no faster at either size (with it made once for all calls, no
    faster beyond the noise at the small one). On an AMD EPYC (Zen 4) MKL's
    products were slower than oneDNN's packed ones (B2 by 15-20 us a step, F2's packed
    sgemm 196-215 against 95 us), so there both stay on oneDNN
    (docs/reference/performance.rst).
    """
    if not (torch.backends.mkl.is_available() and _HAS_MKL_LINEAR):
        return False
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.partition(":")[2].strip() == "GenuineIntel"
    return False


def pack(w: torch.Tensor, batch: int) -> torch.Tensor:
    """``w`` (N, K) reordered for oneDNN products ``x @ w^T`` with x of ``batch`` rows.

    A transposed ``w`` (``W_hh^T`` for B2) is reordered as it is: oneDNN reads either layout,
    and a row-major copy first gains nothing (0.50 ms either way at H = 256, B = 32, with
    :mod:`seqkit_torch._malloc`'s thresholds set; 1.4-1.7 ms without them, the fresh blocks
    faulted in). W_hh^T costs more than W_hh (0.17-0.25 ms): its K is 4H."""
    w = w.detach()
    if not (w.is_contiguous() or w.mT.is_contiguous()):
        w = w.contiguous()
    return torch.ops.mkldnn._reorder_linear_weight(w, batch)


# --- the two scans, traced and compiled -----------------------------------------------------


def _contiguous(tree):
    """Every tensor in ``tree`` as a new row-major tensor: a scan's carry keeps its layout from
    step to step, and its outputs may not alias its inputs (a cell's cache holds s<t-1>)."""
    return pytree.tree_map_only(
        torch.Tensor, lambda t: torch.clone(t, memory_format=torch.contiguous_format), tree
    )


def _with_rows(tree: tuple, batch) -> tuple:
    """``tree`` (a state's (B, F) arrays) with its first array reshaped to ``batch`` rows.

    A no-op that makes the step use B, so that the export lifts B into the scan as an input
    of its own: the scan's lowering sizes its stacked outputs from the symbols among its
    inputs (without it Inductor fails, ``KeyError`` on B's symbol). Once only: dynamo cannot
    use a symbol from outside the step a second time.
    """
    return (tree[0].reshape(batch, -1), *tree[1:])


def _hop_scan(step, init, xs, reverse=False):
    """torch's scan operator: traced by export as one loop, which AOTInductor compiles.

    Reversed, the loop runs forward over the times T-1..0 and each step reads its slices of
    ``xs`` by index: torch's own reverse scan first copies every array of ``xs`` into reversed
    order (torch.flip: 16 MB a call of the backward loop at bench_torch --small), where an
    index is an offset of the fused kernels' loads. Its outputs stay in the loop's order, last
    step first: the caller flips only what it needs in time order, where a copy is made anyway.
    """

    leaves = pytree.tree_leaves(xs)
    steps = leaves[0].shape[0]

    def compiled_step(carry, inputs):
        if reverse:  # inputs is the time t
            t = inputs.item()
            torch._check(t >= 0)
            torch._check(t < steps)
            inputs = pytree.tree_map_only(torch.Tensor, lambda a: a.select(0, t), xs)
        carry, outputs = step(carry, inputs)
        return _contiguous(carry), _contiguous(outputs)

    if not reverse:
        return torch._higher_order_ops.scan(compiled_step, init, xs)
    times = torch.arange(steps - 1, -1, -1, device=leaves[0].device)
    return torch._higher_order_ops.scan(compiled_step, init, times)


def _eager_scan(step, init, xs, reverse=False):
    """The scan operator's meaning as a Python loop (what a CUDA graph captures): ``step`` on
    ``init`` and each slice ``xs[t]``, first to last (last to first if ``reverse``); returns
    the last carry and every step's outputs stacked in the loop's order, as :func:`_hop_scan`."""
    leaves, spec = pytree.tree_flatten(xs)
    steps = leaves[0].shape[0]
    carry, outputs = init, []
    for t in reversed(range(steps)) if reverse else range(steps):
        carry, kept = step(carry, pytree.tree_unflatten([a[t] for a in leaves], spec))
        outputs.append(kept)
    return carry, pytree.tree_map(lambda *ys: None if ys[0] is None else torch.stack(ys), *outputs)


def _forward_function(cell: Cell, ops: PureOps, product: str, scan=_hop_scan):
    """F2-F4 of every step as one scan.

    ``forward(xg, state, p, w, b_hh, mask, hidden, zone, w_hr) -> (out, final, caches, full)``:
    xg (T, B, G*H) row-major; state a tuple of (B, F); p the direction's parameters; w W_hh or
    as :func:`step_weight` gives it for ``product``; mask (T, B, 1) bool (all True
    without padding); hidden None or F2r's (B, P) mask; zone None or F3z's (z, 1 - z) per state
    part (floats, or (T, B, F) arrays); w_hr None or F3p's (P, H). Returns out (T, B, P), the
    final state, the cell's caches stacked over T, and the cell's h~ (T, B, H) under a
    projection (else None).
    """

    def forward(xg, state, p, w, b_hh, mask, hidden, zone, w_hr):
        summed = cell.sums_projections
        batch = xg.shape[1]  # B, for _with_rows and step_product
        xs = {"xg": xg, "mask": mask}
        steps_of_zone = zone is not None and isinstance(zone[0][0], torch.Tensor)
        if steps_of_zone:
            xs["zone"] = zone

        def step(s, inputs):
            h = s[0] if hidden is None else s[0] * hidden  # F2r
            hg = step_product(h, w, batch, product, "forward")  # F2
            if not summed:
                hg = hg + b_hh
            new, cache = cell.step(ops, inputs["xg"], hg, s, p)  # F3
            full = new[0]
            if w_hr is not None:  # F3p
                new = (new[0] @ w_hr.mT, *new[1:])
            if zone is not None:  # F3z
                weights = inputs["zone"] if steps_of_zone else zone
                new = tuple(z * old + f * n for (z, f), n, old in zip(weights, new, s))
            # F4
            new = tuple(torch.where(inputs["mask"], n, old) for n, old in zip(new, s))
            kept = {"out": new[0], "cache": cache}
            if w_hr is not None:
                kept["full"] = full
            return _with_rows(tuple(new), batch), kept

        final, kept = scan(step, state, xs)
        return kept["out"], final, kept["cache"], kept.get("full")

    return forward


def _backward_function(cell: Cell, ops: PureOps, product: str, scan=_hop_scan):
    """B4-B2 of every step, last first, as one scan.

    ``backward(d_out, d_state, steps, p, w, mask, hidden, zone, w_hr, grads)`` ->
    ``(d_state0, grads, kept)``: d_out (T, B, P); d_state the final state's gradient; steps the
    forward scan's caches; w W_hh as :func:`step_weight` gives it; grads zeros of the cell's own
    parameters, which its step_backward accumulates; the rest as in the forward scan. kept
    holds every step's d xg, (T, B, G*H) last step first, and again feature-major in time order
    as d_xg_t, (G*H, T, B); d_hg_t likewise unless the cell ``sums_projections``; and B3p's
    d h<t>, (T, B, H), in time order.
    """

    def backward(d_out, d_state, steps, p, w, mask, hidden, zone, w_hr, grads):
        summed = cell.sums_projections
        batch = d_out.shape[1]  # B, for _with_rows and step_product
        xs = {"d_out": d_out, "cache": steps, "mask": mask}
        steps_of_zone = zone is not None and isinstance(zone[0][0], torch.Tensor)
        if steps_of_zone:
            xs["zone"] = zone

        def step(carry, inputs):
            d_s, g = carry
            d_new = (d_s[0] + inputs["d_out"], *d_s[1:])
            # B4
            d_new = tuple(torch.where(inputs["mask"], dn, 0.0) for dn in d_new)
            d_kept = None
            if zone is not None:  # B3z
                weights = inputs["zone"] if steps_of_zone else zone
                d_kept = tuple(z * dn for (z, _), dn in zip(weights, d_new))
                d_new = tuple(f * dn for (_, f), dn in zip(weights, d_new))
            kept = {}
            if w_hr is not None:  # B3p
                kept["d_proj"] = d_new[0]
                d_new = (d_new[0] @ w_hr, *d_new[1:])
            g = dict(g)  # the cell puts the accumulated values of its extra parameters here
            d_xg, d_hg, d_prev = cell.step_backward(ops, d_new, inputs["cache"], p, g)  # B3
            d_h = step_product(d_hg, w, batch, product, "backward")  # B2
            if hidden is not None:
                d_h = d_h * hidden  # B2r
            if d_prev[0] is not None:
                d_h = d_h + d_prev[0]
            d_prev = (
                d_h,
                *(
                    torch.zeros_like(ds) if dp is None else dp
                    for dp, ds in zip(d_prev[1:], d_s[1:])
                ),
            )
            if d_kept is not None:
                d_prev = tuple(dp + dk for dp, dk in zip(d_prev, d_kept))  # B3z
            d_prev = tuple(torch.where(inputs["mask"], dp, ds) for dp, ds in zip(d_prev, d_s))
            kept["d_xg"] = d_xg
            if not summed:
                kept["d_hg"] = d_hg
            return (_with_rows(d_prev, batch), g), kept

        (d_state0, grads), kept = scan(step, (d_state, grads), xs, reverse=True)
        # kept holds the steps last first. B1's weight gradients read d xg^T and d hg^T: they
        # get them in time order and feature-major, (G*H, T, B), where their products run
        # fastest (one copy, which the flip fuses into). d x reads d xg as the loop left it,
        # row-major and last first (the loop's own array, not a flipped copy: 52 MB at T = 100,
        # B = 64, H = 512), and is flipped after its product, (T, B, I)
        kept["d_xg_t"] = kept["d_xg"].flip(0).permute(2, 0, 1).contiguous()
        if not summed:
            kept["d_hg_t"] = kept.pop("d_hg").flip(0).permute(2, 0, 1).contiguous()
        if "d_proj" in kept:
            kept["d_proj"] = kept["d_proj"].flip(0)
        return d_state0, grads, kept

    return backward


#: The role of each argument of the forward and backward scans in an exported graph: "tb" for
#: (T, B, ...) arrays, "b" for (B, ...) ones, None for fixed sizes (_packages.Roles).
_ROLES = {
    "forward": ("tb", "b", None, None, None, "tb", "b", "tb", None),
    "backward": ("tb", "b", "tb", None, None, "tb", "b", "tb", None, None),
}


# --- the loop object the driver calls -------------------------------------------------------


class ScanLoop:
    """:mod:`seqkit.bptt`'s loop over time for one cell on one dtype and device, compiled.

    ``forward`` and ``backward`` have the signatures of :func:`seqkit.bptt.direction_forward`
    and :func:`seqkit.bptt.direction_backward`; F1 and B1 are theirs too
    (:func:`seqkit.bptt.input_projection`, :class:`seqkit.bptt.WeightGradients`).
    """

    def __init__(self, cell: Cell, ops: TorchOps) -> None:
        self.cell, self.ops = cell, ops
        self.pure = PureOps(ops.dtype, str(ops.device))
        self.can_pack = _can_pack(ops)
        self.stats = CompileStats()
        #: on a GPU the loops are captured as CUDA graphs (one per shape) instead of compiled
        self.captures = _captures(ops)
        if ops.device.type == "cpu":
            _malloc.keep_freed_memory()  # its packages' outputs, allocated on every call
        self._pool = None
        #: the compiled scans by (direction, product, *key of their inputs' signature), loaded
        #: or compiled on first use (a process that never runs more than one step at a time
        #: never compiles)
        self.functions: dict[tuple, object] = {}

    def __repr__(self) -> str:
        return f"ScanLoop({self.cell!r}, {self.ops!r}, stats={self.stats!r})"

    @property
    def failed(self) -> bool:
        """True once compilation failed and the loop runs :data:`seqkit.bptt.STEP_LOOP`."""
        return self.stats.error is not None

    def forward(self, ops, cell, p, x, state, mask, partial, hidden=None, zone=None):
        T, B = x.shape[:2]
        # one step (sampling) or one row (a one-example corpus, a last dev batch of one) gains
        # nothing from a compiled loop; the packages' T and B start at 2
        if self.failed or T <= 1 or B <= 1:
            return bptt.direction_forward(ops, cell, p, x, state, mask, partial, hidden, zone)
        xg = bptt.input_projection(ops, cell, p, x, feature_major=False)  # F1, row-major
        state = tuple(s.contiguous() for s in state)
        every = self._every_step(mask, T, B)
        if zone is not None:
            zone = tuple((z, 1.0 - z) for z in zone)  # F3z's weights of s<t-1> and the new s<t>
        product = self.product(p["weight_hh"].shape[1], "forward")
        w = step_weight(p["weight_hh"], B, product, "forward")
        try:
            out, final, steps, full = self._call(
                ("forward", product),
                xg,
                state,
                _step_params(p),
                w,
                p["bias_hh"],
                every,
                hidden,
                zone,
                p.get("weight_hr"),
            )
        except Exception as exc:  # compile errors surface on the first call of a shape class
            self._fall_back(exc)
            zone = None if zone is None else tuple(z for z, _ in zone)
            return bptt.direction_forward(ops, cell, p, x, state, mask, partial, hidden, zone)
        return out, tuple(final), bptt.Direction(x, out, state, steps, full, hidden, zone)

    def backward(self, ops, cell, p, saved, d_out, d_state, mask, partial):
        if isinstance(saved.steps, list):  # the step loop ran the forward pass
            return bptt.direction_backward(ops, cell, p, saved, d_out, d_state, mask, partial)
        T, B = saved.x.shape[:2]
        d_state = tuple(
            torch.zeros_like(s) if isinstance(d, float) else d.contiguous()
            for d, s in zip(d_state, self._state_like(saved))
        )
        extra = {n: torch.zeros_like(v) for n, v in p.items() if n not in _OWN}
        product = self.product(p["weight_hh"].shape[1], "backward")
        w = step_weight(p["weight_hh"], B, product, "backward")
        if not self.failed:
            try:
                d_state0, extra, kept = self._call(
                    ("backward", product),
                    d_out.contiguous(),
                    d_state,
                    saved.steps,
                    _step_params(p),
                    w,
                    self._every_step(mask, T, B),
                    saved.hidden,
                    saved.zone,
                    p.get("weight_hr"),
                    extra,
                )
            except Exception as exc:
                self._fall_back(exc)
            else:
                return self._weight_gradients(ops, cell, p, saved, d_state0, extra, kept)
        # fell back after a compiled forward pass: the step loop reads one cache per step
        steps = [pytree.tree_map_only(torch.Tensor, _at(t), saved.steps) for t in range(T)]
        saved = attrs.evolve(saved, steps=steps)
        return bptt.direction_backward(ops, cell, p, saved, d_out, d_state, mask, partial)

    def product(self, hidden: int, loop: str) -> str:
        """What runs the per-step products of the ``loop`` ("forward" or "backward") of a
        direction with ``hidden`` columns of state (:func:`step_product`): "onednn"
        (:func:`packed_linear`) on a CPU in float32 from H = ``_PACK_MIN_HIDDEN`` on, except
        where ``torch.mm`` is MKL on an Intel CPU (:func:`_mkl_on_intel`): there F2 runs on
        "mkl" (:func:`mkl_linear`), and B2 as "halves" in any dtype from an even H =
        ``_HALVES_MIN_HIDDEN`` on. Every other case runs on "mm" (``torch.mm``)."""
        intel = self.ops.device.type == "cpu" and _mkl_on_intel()
        if loop == "backward" and intel:
            return "halves" if hidden >= _HALVES_MIN_HIDDEN and hidden % 2 == 0 else "mm"
        if not (self.can_pack and hidden >= _PACK_MIN_HIDDEN):
            return "mm"
        return "mkl" if intel else "onednn"

    def _every_step(self, mask, T: int, B: int):
        """F4's (T, B, 1) mask, all True when no row is padded: a batch with padding and one
        without then share one compiled graph (F4 costs a fused select per step)."""
        if mask is not None:
            return mask
        return torch.ones((T, B, 1), dtype=torch.bool, device=self.ops.device)

    @staticmethod
    def _state_like(saved):
        """Arrays of the state's shapes: h<T-1> from the output, the rest from the initial state."""
        return (saved.out[-1], *saved.state0[1:])

    @staticmethod
    def _weight_gradients(ops, cell, p, saved, d_state0, extra, kept):
        """B1 and the weight half of B2 (B3p's too) from every step's gradients at once."""
        weights = bptt.WeightGradients(
            ops, p, saved.x, saved.out, saved.state0[0], cell.sums_projections, saved.hidden
        )
        weights.add_steps(kept["d_xg"], None, kept["d_xg_t"], kept.get("d_hg_t"), last_first=True)
        grads = {**extra, **weights.result()}
        if "d_proj" in kept:  # B3p. d W_hr = sum_t d h<t>^T h~<t>
            P, H = p["weight_hr"].shape
            rows = kept["d_proj"].shape[0] * kept["d_proj"].shape[1]
            grads["weight_hr"] = kept["d_proj"].reshape(rows, P).mT @ saved.full.reshape(rows, H)
        return weights.d_x, tuple(d_state0), grads

    def _function(self, key: tuple[str, str], flat: _packages.Flat):
        """The compiled scan of ``key`` (direction, product) for inputs like ``flat``'s: from
        memory, from the store of packages, or compiled now (:mod:`seqkit_torch._packages`); on
        a GPU, the same function captured as a CUDA graph for inputs of ``flat``'s shapes."""
        full = (*key, *flat.key, flat.shapes) if self.captures else (*key, *flat.key)
        function = self.functions.get(full)
        if function is None:
            direction, product = key
            start = time.perf_counter()
            build = _forward_function if direction == "forward" else _backward_function
            if self.captures:
                if self._pool is None:
                    self._pool = torch.cuda.graph_pool_handle()
                eager = build(self.cell, self.pure, product, _eager_scan)
                function = Graphed(eager, flat, self._pool)
                stored = False
            else:
                identity = {
                    "function": f"{__name__}.{build.__name__}",
                    "cell": f"{type(self.cell).__module__}.{type(self.cell).__qualname__}",
                    "fields": repr(self.cell),
                    "product": product,
                }
                function, stored = _packages.load_or_compile(
                    build(self.cell, self.pure, product),
                    flat.args,
                    _ROLES[direction],
                    identity,
                    self.ops.device,
                    _class_files(self.cell),
                )
            while len(self.functions) >= _KEPT:  # the oldest go (a graph per (T, B) adds up)
                del self.functions[next(iter(self.functions))]
            self.functions[full] = function
            self.stats.graphs += 1
            self.stats.cached += stored
            self.stats.seconds += time.perf_counter() - start
        return function

    def _call(self, key: tuple[str, str], *args):
        # flattened once per call: detached, strided, keyed (a few microseconds a leaf)
        flat = _packages.Flat(args, _ROLES[key[0]])
        return self._function(key, flat)(flat)

    def _fall_back(self, exc: Exception) -> None:
        lines = str(exc).strip().splitlines()
        self.stats.error = f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
        warnings.warn(
            f"backend 'torch', path 'compiled': cannot compile cell {self.cell.name!r} "
            f"({self.stats.error}); it runs uncompiled instead (backend.layer_path says how)",
            RuntimeWarning,
            stacklevel=5,
        )


#: The most compiled functions or captured graphs a loop keeps (it drops the oldest).
_KEPT = 64


# --- on a GPU: the loops captured as CUDA graphs ----------------------------------------------


def _captures(ops: TorchOps) -> bool:
    """Whether the loops on ``ops``' device are captured as CUDA graphs rather than compiled."""
    return ops.device.type == "cuda"


def _capture(fn, args: tuple, pool) -> tuple[object, Callable[[], None]]:
    """``fn(*args)`` run once as it is captured into a CUDA graph: its outputs, which every
    replay of the graph writes anew, and the replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn(*args)  # warm-up outside the capture: cuBLAS's handles and workspaces, the allocator
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        outputs = fn(*args)
    return outputs, graph.replay


class Graphed:
    """A loop's function captured as a CUDA graph for inputs of one signature and shape.

    A call copies its inputs into the captured ones, replays the graph (the whole loop, one
    launch from the host) and returns copies of the outputs, so that a second call of the same
    graph (the next layer of a stack, the other direction) leaves the first's results intact.
    The graphs of a loop share one memory pool: between replays nothing lives in it.
    """

    def __init__(self, fn, flat: _packages.Flat, pool) -> None:
        inputs = [torch.clone(v) if isinstance(v, torch.Tensor) else v for v in flat.leaves]
        self._inputs = [v for v in inputs if isinstance(v, torch.Tensor)]
        with torch.no_grad():
            outputs, self._replay = _capture(fn, pytree.tree_unflatten(inputs, flat.spec), pool)
        self._outputs, self._spec = pytree.tree_flatten(outputs)
        self._tensors = [k for k, v in enumerate(self._outputs) if isinstance(v, torch.Tensor)]

    def __call__(self, flat: _packages.Flat):
        # one multi-tensor copy each way instead of a launch per array
        given = [leaf for leaf in flat.leaves if isinstance(leaf, torch.Tensor)]
        torch._foreach_copy_(self._inputs, given)
        self._replay()
        outputs = list(self._outputs)
        copies = [torch.empty_like(outputs[k]) for k in self._tensors]
        torch._foreach_copy_(copies, [outputs[k] for k in self._tensors])
        for k, copy in zip(self._tensors, copies, strict=True):
            outputs[k] = copy
        return pytree.tree_unflatten(outputs, self._spec)


def _class_files(cell: Cell) -> list[str]:
    """The source files of ``cell``'s classes, watched by its packages in any case; a class
    without one (defined in a notebook or at the prompt) is named ``<no source: ...>``."""
    files = []
    for cls in type(cell).__mro__:
        if cls is object:
            continue
        try:
            files.append(inspect.getsourcefile(cls) or "")
        except (TypeError, OSError):
            files.append("")
        files[-1] = files[-1] or f"<no source: {cls.__module__}.{cls.__qualname__}>"
    return files


def _step_params(p: dict) -> dict:
    """``p`` without F1's parameters, which the scans never use: a new input size then needs no
    new package."""
    return {name: value for name, value in p.items() if name not in _INPUT}


def _at(t: int):
    return lambda a: a[t]


#: Parameters the driver's own products use; every other one is the cell's (its gradient is
#: accumulated by step_backward, in the backward scan's carry).
_OWN = frozenset({"weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"})

#: F1's parameters (the driver's product before the loop).
_INPUT = frozenset({"weight_ih", "bias_ih"})

#: One ScanLoop per (cell, dtype, device), for the life of the process.
_LOOPS: dict[tuple, ScanLoop] = {}


def scan_loop(cell: Cell, ops: TorchOps) -> ScanLoop:
    """The cached :class:`ScanLoop` of ``cell`` on ``ops``' dtype and device."""
    try:
        key: tuple = (cell, ops.dtype, str(ops.device))
        hash(key)
    except TypeError:  # a cell without a hash: one entry per instance, which the entry keeps
        key = (id(cell), ops.dtype, str(ops.device))  # alive, so that its id is not reused
    entry = _LOOPS.get(key)
    if entry is None:
        entry = _LOOPS[key] = ScanLoop(cell, ops)
    return entry
