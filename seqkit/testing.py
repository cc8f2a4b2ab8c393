"""A test kit for cell and backend authors: Hypothesis strategies and agreement checks.

Write a cell, register it, and run::

    from seqkit.testing import check_cell_gradients, check_backends_agree

    check_cell_gradients("my_cell")                  # hand-written BPTT vs finite differences
    check_backends_agree("my_cell")                  # NumPy vs torch: outputs, states, gradients
    check_backends_agree("my_cell", dtype="float32") # float32 within FLOAT32_TOLERANCE

Only :func:`check_cell_gradients` tests a cell's hand-written ``step_backward``: for a plugin
cell every backend runs that same backward (torch wraps it in one ``autograd.Function``), so
:func:`check_backends_agree` finds a wrong forward, a backend's own bug, or a fused kernel that
differs, but not a wrong gradient formula.

Each check raises :class:`AgreementError` (an ``AssertionError``) naming what disagrees: the
parameter, input (``"x"``) or initial state (``"h0"``, ``"c0"``), the index, the time step, and
the two values. The *time step* of an input or output entry is its first index; for a parameter
or an initial state, whose gradient sums over every step, it is the first step ``t`` whose loss
term on ``out<t>`` alone already shows the disagreement (``"final state"`` when only the loss on
the final state does).

The Hypothesis strategies (:func:`recurrent_layers`, :func:`sequence_batches`, :func:`lengths`)
draw small shapes and bounded values; Hypothesis is imported only when one is called.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import numpy as np

from seqkit.backend import Backend, get_backend
from seqkit.cells import Cell
from seqkit.recurrent import Recurrent, get_cell

__all__ = [
    "AgreementError",
    "FLOAT32_TOLERANCE",
    "FLOAT64_TOLERANCE",
    "SequenceBatch",
    "check_backends_agree",
    "check_cell_gradients",
    "check_layer_agrees",
    "check_layer_gradients",
    "lengths",
    "make_batch",
    "recurrent_layers",
    "sequence_batches",
]

#: ``(rtol, atol)`` for float64 runs compared with the float64 reference: rounding only.
FLOAT64_TOLERANCE = (1e-7, 1e-9)
#: ``(rtol, atol)`` for float32 runs compared with the float64 reference. float32 keeps about 7
#: digits; a few steps of matrix products and saturating gates lose one or two more, and a
#: gradient sums T*B terms, so 1e-3 relative plus 1e-4 absolute (on values of order one, the
#: size the strategies draw) passes every correct backend with room and still catches a 1% error.
FLOAT32_TOLERANCE = (1e-3, 1e-4)


class AgreementError(AssertionError):
    """Two computations of the same quantity disagree beyond the tolerance."""


# --- inputs -----------------------------------------------------------------------------------
@attrs.frozen
class SequenceBatch:
    """One batch for a layer, with the upstream gradients of a scalar loss, as NumPy arrays.

    The loss is ``sum(out * d_out) + sum(final * d_final)``, so ``d_out`` and ``d_final`` are
    exactly the gradients passed to ``recurrent_backward``.

    Attributes:
        x: (T, B, I).
        initial_state: h0 (L*D, B, H), or ``(h0, c0)``: the layer's state form, non-zero.
        lengths: None, or (B,) integers in 1..T.
        d_out: (T, B, D*H).
        d_final: the gradient of the final state, in the state's form.
    """

    x: np.ndarray
    initial_state: Any
    lengths: np.ndarray | None
    d_out: np.ndarray
    d_final: Any

    @property
    def steps(self) -> int:
        """T."""
        return self.x.shape[0]

    @property
    def batch(self) -> int:
        """B."""
        return self.x.shape[1]

    def astype(self, dtype: str) -> SequenceBatch:
        """The same batch with every float array cast to ``dtype``."""
        cast = _map_state(lambda a: a.astype(dtype))
        return SequenceBatch(
            self.x.astype(dtype),
            cast(self.initial_state),
            self.lengths,
            self.d_out.astype(dtype),
            cast(self.d_final),
        )


def _map_state(fn):
    return lambda s: tuple(fn(p) for p in s) if isinstance(s, tuple) else fn(s)


def _parts(state) -> tuple:
    return state if isinstance(state, tuple) else (state,)


def _pack(layer: Recurrent, parts: Sequence) -> Any:
    return tuple(parts) if len(layer.state_names) > 1 else parts[0]


def make_batch(
    layer: Recurrent,
    steps: int,
    batch: int,
    seed: int | np.random.Generator = 0,
    *,
    with_lengths: bool = False,
    dtype: str = "float64",
    scale: float = 1.0,
) -> SequenceBatch:
    """A random batch for ``layer``: values uniform in ``[-scale, scale]``, non-zero states.

    With ``with_lengths``, the first sequence has length T and the others random lengths in 1..T.
    """
    rng = np.random.default_rng(seed)
    T, B, LD = steps, batch, layer.num_layers * layer.num_directions

    def u(*shape):
        return rng.uniform(-scale, scale, size=shape).astype(dtype)

    lens = None
    if with_lengths:
        lens = rng.integers(1, T + 1, size=B)
        lens[0] = T
    x = u(T, B, layer.input_size)
    state = _pack(layer, [u(LD, B, n) for n in layer.state_sizes])
    d_out = u(T, B, layer.output_size)
    d_final = _pack(layer, [u(LD, B, n) for n in layer.state_sizes])
    return SequenceBatch(x, state, lens, d_out, d_final)


# --- Hypothesis strategies --------------------------------------------------------------------
def recurrent_layers(
    cells: Iterable[str | Cell] | None = None,
    *,
    max_layers: int = 3,
    bidirectional: bool | None = None,
    max_input_size: int = 3,
    max_hidden_size: int = 3,
):
    """Strategy for small :class:`~seqkit.Recurrent` layers.

    Args:
        cells: names or :class:`~seqkit.Cell` instances; default every registered cell, plus
            ``rnn`` with ``nonlinearity="relu"``.
        max_layers: L is drawn from 1..max_layers.
        bidirectional: fixed D, or None to draw both.
    """
    from hypothesis import strategies as st

    if cells is None:
        from seqkit._plugins import list_cells

        cells = [*list_cells()]
        if "rnn" in cells:
            cells.append(get_cell("rnn", nonlinearity="relu"))
    cells = [c if isinstance(c, Cell) else get_cell(c) for c in cells]
    bi = st.booleans() if bidirectional is None else st.just(bidirectional)
    return st.builds(
        lambda cell, i, h, n, b: Recurrent(cell, i, h, num_layers=n, bidirectional=b),
        st.sampled_from(cells),
        st.integers(1, max_input_size),
        st.integers(1, max_hidden_size),
        st.integers(1, max_layers),
        bi,
    )


def lengths(steps: int, batch: int):
    """Strategy for (B,) integer lengths in 1..T (any order, repeats allowed)."""
    from hypothesis import strategies as st

    return st.lists(st.integers(1, steps), min_size=batch, max_size=batch).map(
        lambda v: np.asarray(v, dtype=np.int64)
    )


def sequence_batches(
    layer: Recurrent,
    *,
    dtype: str = "float64",
    max_steps: int = 4,
    max_batch: int = 3,
    with_lengths: bool | None = None,
    scale: float = 1.0,
):
    """Strategy for a :class:`SequenceBatch` for ``layer``.

    T is drawn from 1..max_steps, B from 1..max_batch; lengths are drawn (``with_lengths`` None),
    always present (True) or absent (False). Values are uniform in ``[-scale, scale]`` from a
    drawn seed, so a failing example shrinks to small sizes and replays exactly.
    """
    from hypothesis import strategies as st

    @st.composite
    def draw_batch(draw):
        T = draw(st.integers(1, max_steps))
        B = draw(st.integers(1, max_batch))
        use = draw(st.booleans()) if with_lengths is None else with_lengths
        lens = draw(lengths(T, B)) if use else None
        seed = draw(st.integers(0, 2**32 - 1))
        base = make_batch(layer, T, B, seed, dtype=dtype, scale=scale)
        return attrs.evolve(base, lengths=lens)

    return draw_batch()


# --- running a layer --------------------------------------------------------------------------
def _backend(spec: str | Backend, dtype: str) -> Backend:
    return spec if isinstance(spec, Backend) else get_backend(spec, dtype=dtype, device="cpu")


def _describe(be: Backend) -> str:
    path = getattr(be, "path", None)
    extra = f", path {path!r}" if path not in (None, "auto") else ""
    return f"backend {be.name!r} ({be.dtype}, {be.device}{extra})"


def _run(
    be: Backend, layer: Recurrent, params: dict, batch: SequenceBatch, d_out=None, d_final=None
):
    """``(out, final parts, grads)`` as float64 NumPy arrays."""
    out, final, cache = be.recurrent_forward(
        layer, params, batch.x, initial_state=batch.initial_state, lengths=batch.lengths
    )
    d_out = batch.d_out if d_out is None else d_out
    d_final = batch.d_final if d_final is None else d_final
    grads = be.recurrent_backward(layer, cache, d_out, d_final_state=d_final)

    def np64(a):
        return np.asarray(be.to_numpy(a), dtype=np.float64)

    return np64(out), [np64(f) for f in _parts(final)], {k: np64(v) for k, v in grads.items()}


def _loss(
    be: Backend, layer: Recurrent, params: dict, x, state, batch: SequenceBatch, d_out, d_final
) -> float:
    out, final, _ = be.recurrent_forward(
        layer, params, x, initial_state=state, lengths=batch.lengths
    )
    total = float((np.asarray(be.to_numpy(out), dtype=np.float64) * d_out).sum())
    for f, w in zip(_parts(final), _parts(d_final), strict=True):
        total += float((np.asarray(be.to_numpy(f), dtype=np.float64) * w).sum())
    return total


def _expected_grad_shapes(layer: Recurrent, batch: SequenceBatch) -> dict:
    LD = layer.num_layers * layer.num_directions
    shapes = {"x": batch.x.shape}
    shapes.update(
        {f"{n}0": (LD, batch.batch, size) for n, size in zip(layer.state_names, layer.state_sizes)}
    )
    shapes.update(layer.param_shapes())
    return shapes


def _check_grad_keys(grads: dict, layer: Recurrent, batch: SequenceBatch, who: str) -> None:
    expected = _expected_grad_shapes(layer, batch)
    if list(grads) != list(expected):
        missing = [k for k in expected if k not in grads]
        extra = [k for k in grads if k not in expected]
        raise AgreementError(
            f"{who}: recurrent_backward must return the keys {list(expected)} "
            f"(missing {missing}, unexpected {extra})"
        )
    for k, shape in expected.items():
        if tuple(grads[k].shape) != tuple(shape):
            raise AgreementError(
                f"{who}: gradient {k!r} must have shape {shape} (got {grads[k].shape})"
            )


def _kind(name: str) -> str:
    if name == "x":
        return "input 'x'"
    if name in ("h0", "c0"):
        return f"initial state {name!r}"
    if name in ("out",):
        return "output 'out'"
    if name.startswith("final "):
        return f"final state {name.split()[1]!r}"
    return f"parameter {name!r}"


def _worst(expected: np.ndarray, actual: np.ndarray, rtol: float, atol: float):
    """``(index, count)`` of the worst entry beyond ``atol + rtol * |expected|``, or None."""
    excess = np.abs(actual - expected) - (atol + rtol * np.abs(expected))
    bad = ~(excess <= 0)  # NaN counts as bad
    if not bad.any():
        return None
    flat = np.where(np.isnan(excess), np.inf, excess)
    return np.unravel_index(int(np.argmax(flat)), expected.shape), int(bad.sum())


def _fmt_index(index) -> str:
    return (
        "(" + ", ".join(str(int(i)) for i in index) + ")"
        if len(index) != 1
        else f"({int(index[0])},)"
    )


def _setting(layer: Recurrent, batch: SequenceBatch) -> str:
    lens = (
        "None"
        if batch.lengths is None
        else np.array2string(np.asarray(batch.lengths), separator=", ")
    )
    return (
        f"cell {layer.cell.name!r}, L={layer.num_layers}, D={layer.num_directions}, "
        f"I={layer.input_size}, H={layer.hidden_size}, T={batch.steps}, B={batch.batch}, "
        f"lengths={lens}"
    )


# --- gradients against finite differences -----------------------------------------------------
def check_layer_gradients(
    layer: Recurrent,
    batch: SequenceBatch,
    *,
    backend: str | Backend = "numpy",
    params: dict | None = None,
    seed: int = 0,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Check ``recurrent_backward`` against central finite differences, in float64.

    Every entry of the gradients of ``x``, the initial state(s) and every parameter is compared
    with ``(loss(v + eps) - loss(v - eps)) / (2 eps)``; an entry fails when
    ``|numerical - analytical| > atol + rtol * |numerical|``.

    Args:
        layer: the layer to check.
        batch: a :class:`SequenceBatch` (cast to float64 here).
        backend: a backend name (built in float64) or a float64 :class:`~seqkit.Backend`.
        params: NumPy parameters; default ``layer.init_params(seed)``.

    Raises:
        AgreementError: naming the parameter, input or state, the index, the time step and the
        numerical and analytical values of the worst entry.
    """
    be = _backend(backend, "float64")
    if be.dtype != "float64":
        raise ValueError(f"check_layer_gradients needs a float64 backend (got {_describe(be)})")
    batch = batch.astype("float64")
    params = (
        layer.init_params(seed)
        if params is None
        else {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    )
    who = _describe(be)
    _, _, analytic = _run(be, layer, params, batch)
    _check_grad_keys(analytic, layer, batch, who)

    targets = _targets(layer, params, batch)
    failures = []
    for name, arr in targets.items():
        numeric = _numeric(be, layer, params, batch, targets, name, batch.d_out, batch.d_final, eps)
        worst = _worst(numeric, analytic[name], rtol, atol)
        if worst is not None:
            index, count = worst
            failures.append((name, index, count, numeric[index], analytic[name][index], arr.size))
    if not failures:
        return
    # report a parameter when one fails (what a cell author edits), else a state, else x
    failures.sort(key=lambda f: (f[0] == "x", f[0] in ("h0", "c0")))
    name, index, count, num, ana, size = failures[0]
    step = _time_step(be, layer, params, batch, targets, name, index, eps, rtol, atol)
    others = ", ".join(repr(f[0]) for f in failures[1:])
    raise AgreementError(
        f"gradient of {_kind(name)} at index {_fmt_index(index)}, {step}: "
        f"numerical {num:.10g} vs analytical {ana:.10g} "
        f"(|difference| {abs(num - ana):.3g} > atol {atol:g} + rtol {rtol:g} * |numerical|); "
        f"{count} of {size} entries of {name!r} disagree"
        + (f"; also disagreeing: {others}" if others else "")
        + f". {who}, {_setting(layer, batch)}"
    )


def _targets(layer: Recurrent, params: dict, batch: SequenceBatch) -> dict:
    """Copies of everything differentiated, by gradient key, perturbed in place by _numeric."""
    targets = {"x": batch.x.copy()}
    for n, part in zip(layer.state_names, _parts(batch.initial_state), strict=True):
        targets[f"{n}0"] = np.array(part, dtype=np.float64)
    for n in layer.param_shapes():
        targets[n] = params[n].copy()
    return targets


def _loss_of(be, layer, batch, targets, d_out, d_final) -> float:
    state = _pack(layer, [targets[f"{n}0"] for n in layer.state_names])
    params = {n: targets[n] for n in layer.param_shapes()}
    return _loss(be, layer, params, targets["x"], state, batch, d_out, d_final)


def _numeric(
    be, layer, params, batch, targets, name, d_out, d_final, eps, index=None
) -> np.ndarray:
    arr = targets[name]
    grad = np.zeros_like(arr)
    indices = [index] if index is not None else list(np.ndindex(arr.shape))
    for i in indices:
        old = arr[i]
        arr[i] = old + eps
        hi = _loss_of(be, layer, batch, targets, d_out, d_final)
        arr[i] = old - eps
        lo = _loss_of(be, layer, batch, targets, d_out, d_final)
        arr[i] = old
        grad[i] = (hi - lo) / (2 * eps)
    return grad


def _time_step(be, layer, params, batch, targets, name, index, eps, rtol, atol) -> str:
    """Which loss term first shows the disagreement of one entry, in words."""
    if name == "x":
        return f"time step {int(index[0])}"
    prefix = ""
    zero_final = _map_state(np.zeros_like)(batch.d_final)
    for t in range(batch.steps):
        d_out = np.zeros_like(batch.d_out)
        d_out[t] = batch.d_out[t]
        if _entry_disagrees(
            be, layer, params, batch, targets, name, index, d_out, zero_final, eps, rtol, atol
        ):
            return prefix + f"time step {t} (first visible in the loss on out<{t}> alone)"
    d_out = np.zeros_like(batch.d_out)
    if _entry_disagrees(
        be, layer, params, batch, targets, name, index, d_out, batch.d_final, eps, rtol, atol
    ):
        return prefix + f"time step {batch.steps - 1} (visible in the loss on the final state only)"
    return prefix + "no single time step (only the whole loss shows it)"


def _entry_disagrees(
    be, layer, params, batch, targets, name, index, d_out, d_final, eps, rtol, atol
) -> bool:
    _, _, analytic = _run(be, layer, params, batch, d_out=d_out, d_final=d_final)
    num = _numeric(be, layer, params, batch, targets, name, d_out, d_final, eps, index=index)[index]
    return not abs(num - analytic[name][index]) <= atol + rtol * abs(num)


def _configs(num_layers, bidirectional, with_lengths):
    return itertools.product(_seq(num_layers), _seq(bidirectional), _seq(with_lengths))


def _seq(v) -> tuple:
    return tuple(v) if isinstance(v, Iterable) and not isinstance(v, str) else (v,)


def check_cell_gradients(
    cell: str | Cell,
    *,
    backend: str | Backend = "numpy",
    num_layers: int | Iterable[int] = (1, 2),
    bidirectional: bool | Iterable[bool] = (False, True),
    with_lengths: bool | Iterable[bool] = (False, True),
    input_size: int = 2,
    hidden_size: int = 3,
    steps: int = 3,
    batch: int = 2,
    seed: int = 0,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
) -> None:
    """Check a cell's gradients against finite differences for every layer setting, in float64.

    Runs :func:`check_layer_gradients` for every combination of ``num_layers``,
    ``bidirectional`` and ``with_lengths``, with random non-zero initial states (a swapped
    ``h0``/``c0`` passes with zeros). First, a cell that declares ``sums_projections`` must
    step alike on ``(xg, hg)`` and on ``(xg + hg, 0)``: the drivers move ``bias_hh`` into
    ``xg`` and differentiate ``W_hh`` through ``d xg`` on that word alone.

    Args:
        cell: a registered cell name or a :class:`~seqkit.Cell` instance.
        backend: whose ``recurrent_backward`` is checked (hand-written BPTT on ``"numpy"``,
            autograd on ``"torch"``).

    Raises:
        AgreementError: from the first failing setting.
    """
    cell = get_cell(cell)
    _check_sums_projections(cell, input_size, hidden_size, batch, seed)
    for k, (n, bi, lens) in enumerate(_configs(num_layers, bidirectional, with_lengths)):
        layer = Recurrent(cell, input_size, hidden_size, num_layers=n, bidirectional=bi)
        data = make_batch(layer, steps, batch, seed + k, with_lengths=lens)
        check_layer_gradients(
            layer, data, backend=backend, seed=seed + k, eps=eps, rtol=rtol, atol=atol
        )


def _check_sums_projections(cell: Cell, input_size: int, hidden_size: int, batch: int, seed: int):
    """A cell declaring ``sums_projections`` steps alike on ``(xg, hg)`` and ``(xg + hg, 0)``."""
    if not cell.sums_projections:
        return
    layer = Recurrent(cell, input_size, hidden_size)
    ops = _backend("numpy", "float64").ops
    rng = np.random.default_rng(seed)
    p = {name: rng.uniform(-1.0, 1.0, size=s) for name, s in layer.direction_shapes(0).items()}
    xg, hg = (rng.uniform(-1.0, 1.0, size=(batch, p["weight_ih"].shape[0])) for _ in range(2))
    state = tuple(rng.uniform(-1.0, 1.0, size=(batch, n)) for n in layer.state_sizes)
    split, summed = (
        _parts(cell.step(ops, a.copy(), b.copy(), tuple(s.copy() for s in state), p)[0])
        for a, b in ((xg, hg), (xg + hg, np.zeros_like(hg)))
    )
    for name, a, b in zip(cell.state_names, split, summed, strict=True):
        if not np.allclose(a, b, rtol=1e-12, atol=1e-12):
            raise AgreementError(
                f"cell {cell.name!r} declares sums_projections = True, but its step reads xg and "
                f"hg apart: state {name!r} differs by up to {np.max(np.abs(a - b)):.3g} between "
                "(xg, hg) and (xg + hg, 0); set sums_projections = False"
            )


# --- agreement between backends ---------------------------------------------------------------
def check_layer_agrees(
    layer: Recurrent,
    batch: SequenceBatch,
    *,
    backends: Sequence[str | Backend] = ("numpy", "torch"),
    dtype: str = "float64",
    reference: str | Backend = "numpy",
    params: dict | None = None,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """Check that every backend gives the reference's outputs, final states and gradients.

    The reference runs in float64; each backend runs in ``dtype`` (backend names) or its own
    dtype (backend instances), on inputs cast to it.

    Args:
        rtol, atol: default :data:`FLOAT64_TOLERANCE` or :data:`FLOAT32_TOLERANCE` by the
            checked backend's dtype.

    Raises:
        AgreementError: naming the backend, the quantity (output, final state, gradient of a
        parameter, input or initial state), its index and time step, and both values.
    """
    ref = _backend(reference, "float64")
    params = layer.init_params(seed) if params is None else params
    batch64 = batch.astype("float64")
    expected_out, expected_final, expected_grads = _run(ref, layer, params, batch64)
    _check_grad_keys(expected_grads, layer, batch64, _describe(ref))
    for spec in backends:
        be = _backend(spec, dtype)
        who = _describe(be)
        tol = FLOAT32_TOLERANCE if be.dtype == "float32" else FLOAT64_TOLERANCE
        r = tol[0] if rtol is None else rtol
        a = tol[1] if atol is None else atol
        cast = {k: np.asarray(v, dtype=be.dtype) for k, v in params.items()}
        out, final, grads = _run(be, layer, cast, batch.astype(be.dtype))
        if out.shape != expected_out.shape:
            raise AgreementError(
                f"{who}: output must have shape (T, B, D*H) = {expected_out.shape} "
                f"(got {out.shape})"
            )
        _check_grad_keys(grads, layer, batch64, who)
        pairs = [("out", expected_out, out)]
        pairs += [
            (f"final {n}", e, g)
            for n, e, g in zip(layer.state_names, expected_final, final, strict=True)
        ]
        pairs += [(f"gradient {k}", expected_grads[k], grads[k]) for k in expected_grads]
        for what, e, g in pairs:
            if e.shape != g.shape:
                raise AgreementError(f"{who}: {what} must have shape {e.shape} (got {g.shape})")
            worst = _worst(e, g, r, a)
            if worst is None:
                continue
            index, count = worst
            name = what.split()[-1]
            kind = _kind(what if what.startswith("final ") else name)
            step = f", time step {int(index[0])}" if name in ("x", "out") else ""
            raise AgreementError(
                f"{who} disagrees with reference {_describe(ref)} on "
                f"{'the gradient of ' if what.startswith('gradient') else ''}{kind} at index "
                f"{_fmt_index(index)}{step}: {g[index]:.10g} vs reference {e[index]:.10g} "
                f"(|difference| {abs(g[index] - e[index]):.3g} > "
                f"atol {a:g} + rtol {r:g} * |reference|); "
                f"{count} of {e.size} entries disagree. {_setting(layer, batch64)}"
            )


def check_backends_agree(
    cell: str | Cell,
    *,
    backends: Sequence[str | Backend] = ("numpy", "torch"),
    dtype: str = "float64",
    reference: str | Backend = "numpy",
    num_layers: int | Iterable[int] = (1, 2, 3),
    bidirectional: bool | Iterable[bool] = (False, True),
    with_lengths: bool | Iterable[bool] = (False, True),
    input_size: int = 3,
    hidden_size: int = 4,
    steps: int = 5,
    batch: int = 3,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """Run :func:`check_layer_agrees` on ``cell`` for every layer setting.

    What it catches: a backend whose forward differs from the reference's (a wrong op, dtype or
    layout), and, for a built-in cell that a backend replaces with a fused kernel (cuDNN's
    LSTM), any difference between that kernel's autograd gradients and the reference's
    hand-written BPTT. What it cannot catch: a wrong ``step_backward`` of a plugin cell, since
    every backend runs that same backward (the torch backend wraps it in one
    ``autograd.Function``) and the results agree however wrong they are. Check a cell's
    gradients with :func:`check_cell_gradients` (central finite differences, float64). A false
    ``sums_projections`` would pass the same way on every backend, so it is checked first, as
    there.

    Args:
        cell: a registered cell name or a :class:`~seqkit.Cell` instance.
        backends: backend names (built in ``dtype`` on the CPU) or :class:`~seqkit.Backend`
            instances (a GPU backend, a torch backend forced onto its generic path).
        dtype: ``"float64"`` or ``"float32"``; the reference always runs in float64.
    """
    cell = get_cell(cell)
    _check_sums_projections(cell, input_size, hidden_size, batch, seed)
    for k, (n, bi, lens) in enumerate(_configs(num_layers, bidirectional, with_lengths)):
        layer = Recurrent(cell, input_size, hidden_size, num_layers=n, bidirectional=bi)
        data = make_batch(layer, steps, batch, seed + k, with_lengths=lens)
        check_layer_agrees(
            layer,
            data,
            backends=backends,
            dtype=dtype,
            reference=reference,
            seed=seed + k,
            rtol=rtol,
            atol=atol,
        )
