"""The compiled path: each direction's loop over time as two scans that Inductor compiles.

:mod:`seqkit.bptt` drives the stack (F1 and B1 as big products, the layers, the directions, the
padding); this module is its loop over time (the ``loop`` of
:func:`seqkit.bptt.recurrent_forward`) on the compiled path. The forward loop, F2-F4 of every
step, is one ``torch._higher_order_ops.scan`` over the cell's own ``step``; the backward loop,
B4-B2 from the last step down, is a second scan over its hand-written ``step_backward``. Each is
compiled once by ``torch.compile`` (Inductor: C++ on a CPU, Triton on a GPU), so that the loop
runs in generated code: a step costs its recurrent product and a fused kernel or two, with no
Python and no guard check per step.

Three things make it fast, each measured (docs/reference/performance.rst):

- The cell runs on :class:`PureOps`, which ignores ``inplace`` as an immutable-array backend
  does: the traced step is pure and Inductor fuses it. In-place writes into slices of a gate
  array became chains of ``slice_scatter`` that Inductor compiled into masked, partly scalar
  loops (the LSTM step backward: a 4,576-line kernel, 208 us per step at B = 32, H = 256,
  against 26 us once pure).
- On a CPU in float32 the per-step products, ``h<t-1> @ W_hh^T`` (F2) and ``d hg<t> @ W_hh``
  (B2), run on oneDNN with W_hh packed once per call (:func:`packed_linear`) from H = 192 on,
  1.1-1.6x faster there than the BLAS product ``torch.mm`` calls, and what ``torch.nn.LSTM``
  runs on (below that, packing costs more than it saves).
- Every per-step array is row-major (B, F), the layout a cell's new arrays get, so no kernel
  transposes.

On a CPU the loop itself is C++ too (Inductor's ``cpp_wrapper``), not generated Python.

Shapes are dynamic (``dynamic=True``): T, B and the sizes are symbols, and a new batch or length
reuses the compiled graphs (dynamo would specialise a size of 1: one step or one row runs the
step loop instead). Graphs are kept per (cell, dtype, device) for the life of the process, and
in Inductor's on-disk cache across processes (``_CACHE_SCANS``): a new process traces the scans
again and loads the rest, 3-5 s for a cell instead of 20-25 s. :attr:`ScanLoop.stats` counts
the graphs, those found on disk and the seconds spent. When compiling fails (no C++ compiler, an
operation Inductor cannot compile, a graph break), the loop warns once, naming the reason, and
runs :data:`seqkit.bptt.STEP_LOOP` from then on: the results are the generic path's either way.
"""

from __future__ import annotations

import contextlib
import threading
import time
import types
import warnings

import attrs
import torch
import torch.utils._pytree as pytree

from seqkit import __version__, bptt
from seqkit.cells import Cell
from seqkit_torch.ops import TorchOps

__all__ = ["CompileStats", "PureOps", "ScanLoop", "packed_linear", "scan_loop"]


@attrs.define
class CompileStats:
    """What compiling a cell's loops cost: graphs built so far, seconds spent, why it fell back."""

    graphs: int = 0
    #: how many of the graphs came from Inductor's on-disk cache (compiled by an earlier process)
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


def _packed_linear(x: torch.Tensor, packed: torch.Tensor, features: int) -> torch.Tensor:
    """``x @ W^T`` (B, features) on oneDNN, ``packed`` being ``W`` reordered by :func:`pack`."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")


# An operator of its own, so that Inductor calls it as it is inside the scan instead of rewriting
# it (its oneDNN fusion passes expect packed weights to be constants). Registered with the
# dispatcher directly: torch.library.custom_op's wrappers cost 8-16 us a call, a tenth of a step.
_LIBRARY = torch.library.Library("seqkit", "DEF")
_LIBRARY.define("packed_linear(Tensor x, Tensor packed, SymInt features) -> Tensor")
for _key in ("CPU", "MkldnnCPU"):  # x is a plain tensor, the packed weight an oneDNN one
    _LIBRARY.impl("packed_linear", _packed_linear, _key)
packed_linear = torch.ops.seqkit.packed_linear.default


@torch.library.register_fake("seqkit::packed_linear")
def _(x, packed, features):
    return x.new_empty((x.shape[0], features))


def _can_pack(ops) -> bool:
    """Whether the per-step products can run on oneDNN with packed weights: a CPU, float32."""
    return (
        ops.device.type == "cpu"
        and ops.torch_dtype == torch.float32
        and torch.backends.mkldnn.is_available()
    )


#: The smallest H whose per-step products run on packed weights. Packing W_hh and its transpose
#: costs 0.3 ms at H = 128 and 0.6 ms at 256 per call; the packed products save 10-30% a step
#: from H = 192 on, and nothing at 128 (B = 32..64; docs/reference/performance.rst).
_PACK_MIN_HIDDEN = 192


def pack(w: torch.Tensor, batch: int) -> torch.Tensor:
    """``w`` (N, K) reordered for oneDNN products ``x @ w^T`` with x of ``batch`` rows."""
    return torch.ops.mkldnn._reorder_linear_weight(w.detach().contiguous(), batch)


# --- the two scans, traced and compiled -----------------------------------------------------


def _contiguous(tree):
    """Every tensor in ``tree`` as a new row-major tensor: a scan's carry keeps its layout from
    step to step, and its outputs may not alias its inputs (a cell's cache holds s<t-1>)."""
    return pytree.tree_map_only(
        torch.Tensor, lambda t: torch.clone(t, memory_format=torch.contiguous_format), tree
    )


def _forward_function(cell: Cell, ops: PureOps, packed: bool):
    """F2-F4 of every step as one scan.

    ``forward(xg, state, p, w, b_hh, mask, hidden, zone, w_hr) -> (out, final, caches, full)``:
    xg (T, B, G*H) row-major; state a tuple of (B, F); p the direction's parameters; w W_hh or
    its packed form; mask (T, B, 1) bool (all True without padding); hidden None or F2r's
    (B, P) mask; zone None or F3z's (z, 1 - z) per state part (floats, or (T, B, F) arrays);
    w_hr None or F3p's (P, H). Returns out (T, B, P), the final state, the cell's caches stacked
    over T, and the cell's h~ (T, B, H) under a projection (else None).
    """

    def forward(xg, state, p, w, b_hh, mask, hidden, zone, w_hr):
        summed = cell.sums_projections
        features = p["weight_hh"].shape[0]  # G*H
        xs = {"xg": xg, "mask": mask}
        steps_of_zone = zone is not None and isinstance(zone[0][0], torch.Tensor)
        if steps_of_zone:
            xs["zone"] = zone

        def step(s, inputs):
            h = s[0] if hidden is None else s[0] * hidden  # F2r
            hg = packed_linear(h, w, features) if packed else h @ w.mT  # F2
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
            return _contiguous(tuple(new)), _contiguous(kept)

        final, kept = torch._higher_order_ops.scan(step, state, xs)
        return kept["out"], final, kept["cache"], kept.get("full")

    return forward


def _backward_function(cell: Cell, ops: PureOps, packed: bool):
    """B4-B2 of every step, last first, as one scan.

    ``backward(d_out, d_state, steps, p, w, mask, hidden, zone, w_hr, grads)`` ->
    ``(d_state0, grads, kept)``: d_out (T, B, P); d_state the final state's gradient; steps the
    forward scan's caches; w W_hh or its transpose packed; grads zeros of the cell's own
    parameters, which its step_backward accumulates; the rest as in the forward scan. kept
    holds every step's d xg (and d hg unless the cell ``sums_projections``, and B3p's d h<t>).
    """

    def backward(d_out, d_state, steps, p, w, mask, hidden, zone, w_hr, grads):
        summed = cell.sums_projections
        features = p["weight_hh"].shape[1]  # P
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
            d_h = packed_linear(d_hg, w, features) if packed else d_hg @ w  # B2
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
            return _contiguous((d_prev, g)), _contiguous(kept)

        (d_state0, grads), kept = torch._higher_order_ops.scan(
            step, (d_state, grads), xs, reverse=True
        )
        return d_state0, grads, kept

    return backward


def _compile(fn, name: str, backend):
    # dynamo keeps its compiled graphs per code object, at most recompile_limit of them: every
    # (cell, dtype, device) gets a code object of its own, so that one cell's graphs never push
    # out another's
    code = fn.__code__.replace(co_name=name, co_qualname=name)
    own = types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    return torch.compile(own, backend=backend, dynamic=True, fullgraph=True)


#: Inductor keeps no graph with a higher-order operator in its on-disk caches (FX graph and
#: AOTAutograd) unless the operator is named here, since a cache key must cover the operator's
#: subgraphs. A scan's are submodules of the graph, and the key pickles every submodule by its
#: code (as for ``invoke_subgraph``, which torch marks cacheable): a cell whose step differs gets
#: a key of its own (tests/test_torch_compiled.py). With it a new process traces the scans and
#: loads the rest, 3-5 s a cell, instead of compiling them (20-25 s the first time).
_CACHE_SCANS = {
    "unsafe_marked_cacheable_functions": {"torch.ops.higher_order.scan": f"seqkit-{__version__}"}
}

#: On a CPU the loop over time runs in a C++ wrapper instead of generated Python: 0.9 ms less of
#: 7.2 at (T, B, I, H) = (16, 64, 29, 128), 2-3 ms less of 38 at (64, 32, 64, 256) (A/B in one
#: process, three runs each). Not measured on a GPU, so not used there.
_CPU_OPTIONS = {"cpp_wrapper": True}


def _inductor_options(device: torch.device) -> dict:
    """The Inductor options of the compiled scans on ``device``."""
    return {**_CACHE_SCANS, **(_CPU_OPTIONS if device.type == "cpu" else {})}


def _probe_cpu() -> threading.Thread:
    """Inductor's probe of the CPU's vector instruction sets, started in a thread.

    Before its first C++ kernel in a process Inductor loads a test library per instruction set,
    each in a child process: 1.5 s here, spent waiting. Started before the rest of Inductor is
    imported (1.2 s) and dynamo traces the scans, the probe is over by the time Inductor needs
    it; its own module is imported beforehand, so that the thread imports nothing. Whatever
    fails in it, the compile meets and reports.
    """
    # the modules the probe imports as it runs, imported here: two threads importing one module
    # can deadlock on a cycle, and the main thread goes on to import the rest of Inductor
    import torch._inductor.codecache  # noqa: F401
    import torch._inductor.cpp_builder  # noqa: F401
    import torch.utils.cpp_extension  # noqa: F401
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    def probe():
        with contextlib.suppress(Exception):
            pick_vec_isa()

    thread = threading.Thread(target=probe, name="seqkit-inductor-cpu-probe", daemon=True)
    thread.start()
    return thread


#: Per device type, once per process: the CPU probe's thread (None elsewhere).
_PREPARED: dict[str, threading.Thread | None] = {}


def _prepare_inductor(device: torch.device) -> None:
    """Start the CPU probe and import Inductor (2.7 s with dynamo), once per process, just
    before the first compiled call: a process that never compiles (sampling runs one step at a
    time) pays neither."""
    if device.type in _PREPARED:
        return
    with warnings.catch_warnings():
        # importing Inductor imports torch.utils.mkldnn, which uses the deprecated TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        _PREPARED[device.type] = _probe_cpu() if device.type == "cpu" else None
        import torch._inductor.compile_fx  # noqa: F401


def _timed_inductor(stats: CompileStats, options: dict, device: torch.device):
    """Inductor (with ``options``) as a torch.compile backend that counts the graphs it builds,
    and those it found in its on-disk cache."""

    def inductor(gm, example_inputs):
        from torch._dynamo.utils import counters
        from torch._inductor.compile_fx import compile_fx

        probe = _PREPARED.get(device.type)
        if probe is not None:
            probe.join()  # else Inductor would probe a second time, in parallel
        hits = counters["inductor"]["fxgraph_cache_hit"]
        compiled = compile_fx(gm, example_inputs, config_patches=options)
        stats.graphs += 1
        stats.cached += counters["inductor"]["fxgraph_cache_hit"] - hits
        return compiled

    return inductor


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
        #: the compiled scans by (direction, packed), made on first use (torch.compile imports
        #: dynamo, 3 s, which a process that never runs more than one step at a time skips)
        self.functions: dict[tuple[str, bool], object] = {}
        self._backend = _timed_inductor(self.stats, _inductor_options(ops.device), ops.device)

    def __repr__(self) -> str:
        return f"ScanLoop({self.cell!r}, {self.ops!r}, stats={self.stats!r})"

    @property
    def failed(self) -> bool:
        """True once compilation failed and the loop runs :data:`seqkit.bptt.STEP_LOOP`."""
        return self.stats.error is not None

    def forward(self, ops, cell, p, x, state, mask, partial, hidden=None, zone=None):
        T, B = x.shape[:2]
        # one step (sampling) gains nothing from a compiled loop, and one row would cost graphs
        # of its own (dynamo specialises a size of 1: 20-40 s to compile, 3-5 s in every new
        # process) to save milliseconds: a one-example corpus or a last dev batch of one
        if self.failed or T <= 1 or B <= 1:
            return bptt.direction_forward(ops, cell, p, x, state, mask, partial, hidden, zone)
        xg = bptt.input_projection(ops, cell, p, x, feature_major=False)  # F1, row-major
        state = tuple(s.contiguous() for s in state)
        every = self._every_step(mask, T, B)
        if zone is not None:
            zone = tuple((z, 1.0 - z) for z in zone)  # F3z's weights of s<t-1> and the new s<t>
        packed = self.packs(p["weight_hh"].shape[1])
        w = pack(p["weight_hh"], B) if packed else p["weight_hh"]
        try:
            out, final, steps, full = self._call(
                ("forward", packed),
                xg,
                state,
                p,
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
        packed = self.packs(p["weight_hh"].shape[1])
        w = pack(p["weight_hh"].mT, B) if packed else p["weight_hh"]
        if not self.failed:
            try:
                d_state0, extra, kept = self._call(
                    ("backward", packed),
                    d_out.contiguous(),
                    d_state,
                    saved.steps,
                    p,
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

    def packs(self, hidden: int) -> bool:
        """Whether the per-step products of a direction with ``hidden`` columns of state run on
        packed weights (:func:`packed_linear`): a CPU, float32 and H >= ``_PACK_MIN_HIDDEN``."""
        return self.can_pack and hidden >= _PACK_MIN_HIDDEN

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
        weights.add_steps(kept["d_xg"], kept.get("d_hg"))
        grads = {**extra, **weights.result()}
        if "d_proj" in kept:  # B3p. d W_hr = sum_t d h<t>^T h~<t>
            P, H = p["weight_hr"].shape
            rows = kept["d_proj"].shape[0] * kept["d_proj"].shape[1]
            grads["weight_hr"] = kept["d_proj"].reshape(rows, P).mT @ saved.full.reshape(rows, H)
        return weights.d_x, tuple(d_state0), grads

    def _function(self, key: tuple[str, bool]):
        """The compiled scan of ``key`` (direction, packed), wrapped by torch.compile on first
        use; each gets a code object of its own (see :func:`_compile`)."""
        function = self.functions.get(key)
        if function is None:
            direction, packed = key
            build = _forward_function if direction == "forward" else _backward_function
            tag = f"{direction}_{self.cell.name}_{self.ops.dtype}_{self.ops.device.type}"
            name = (f"{tag}_packed" if packed else tag).replace("-", "_")
            function = _compile(build(self.cell, self.pure, packed), name, self._backend)
            self.functions[key] = function
        return function

    def _call(self, key: tuple[str, bool], *args):
        # detached aliases (no copies): dynamo keeps a parameter's shape static (a new hidden
        # size recompiled every graph) and guards a view's base as well as the view
        args = pytree.tree_map_only(torch.Tensor, torch.Tensor.detach, args)
        graphs = self.stats.graphs
        start = time.perf_counter()
        _prepare_inductor(self.ops.device)
        result = self._function(key)(*args)
        if self.stats.graphs != graphs:  # this call compiled: tracing + Inductor + one run
            self.stats.seconds += time.perf_counter() - start
        return result

    def _fall_back(self, exc: Exception) -> None:
        lines = str(exc).strip().splitlines()
        self.stats.error = f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
        warnings.warn(
            f"backend 'torch', path 'compiled': cannot compile cell {self.cell.name!r} "
            f"({self.stats.error}); it runs on the generic path instead",
            RuntimeWarning,
            stacklevel=5,
        )


def _at(t: int):
    return lambda a: a[t]


#: Parameters the driver's own products use; every other one is the cell's (its gradient is
#: accumulated by step_backward, in the backward scan's carry).
_OWN = frozenset({"weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"})

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
