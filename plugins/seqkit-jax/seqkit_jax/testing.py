"""A third opinion on a cell's hand-written backward: JAX's autodiff of the cell's own ``step``.

NumPy and torch agreeing shows that two backends run the same ``step_backward``; it cannot show
that ``step_backward`` is the derivative of ``step``, because torch's generic path runs the same
hand-written code. Here the cell's ``step`` runs on :class:`~seqkit_jax.JaxOps` and is
differentiated by ``jax.vjp``; its ``step_backward`` runs where it runs in practice, on the NumPy
reference ops; the two must agree on every gradient of one step::

    from seqkit_jax.testing import check_step_backward

    check_step_backward("my_cell")      # AgreementError naming the gradient, index and values
"""

from __future__ import annotations

import numpy as np

from seqkit.cells import Cell
from seqkit.recurrent import Recurrent, get_cell
from seqkit.testing import AgreementError

__all__ = ["check_step_backward"]

_MATRICES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def check_step_backward(
    cell: str | Cell,
    *,
    hidden_size: int = 4,
    batch: int = 3,
    seed: int = 0,
    scale: float = 1.0,
    rtol: float = 1e-9,
    atol: float = 1e-11,
) -> None:
    """Check ``cell.step_backward`` (NumPy, float64) against ``jax.vjp`` of ``cell.step``.

    One step with random non-zero ``xg``, ``hg`` (B, G*H), state (B, H) each, upstream state
    gradients and extra parameters (uniform in ``[-scale, scale]``), compared on ``d xg``,
    ``d hg``, the gradient of every previous state part through paths other than ``hg``, and
    the gradient of every extra parameter (``extra_param_shapes``).

    Raises:
        AgreementError: naming the gradient, the worst index, both values and the setting.
    """
    import jax
    from seqkit_numpy import NumpyOps

    from seqkit_jax.backend import JaxBackend

    cell = get_cell(cell)
    B, H = batch, hidden_size
    GH = cell.num_gates * H
    rng = np.random.default_rng(seed)

    def u(*shape):
        return rng.uniform(-scale, scale, size=shape)

    layer = Recurrent(cell, 1, H)
    params = {name: u(*shape) for name, shape in layer.direction_shapes(0).items()}
    xg, hg = u(B, GH), u(B, GH)
    state = tuple(u(B, H) for _ in cell.state_names)
    d_state = tuple(u(B, H) for _ in cell.state_names)
    extras = [name for name in params if name not in _MATRICES]

    # the hand-written backward on the reference ops; the cell may overwrite xg and hg
    np_ops = NumpyOps("float64")
    _, step_cache = cell.step(np_ops, xg.copy(), hg.copy(), tuple(s.copy() for s in state), params)
    grads = {name: np.zeros_like(params[name]) for name in extras}
    d_xg, d_hg, d_prev = cell.step_backward(
        np_ops, tuple(d.copy() for d in d_state), step_cache, params, grads
    )
    written = {"xg": d_xg, "hg": d_hg}
    written.update(
        {
            f"{n}<t-1>": np.zeros((B, H)) if d is None else d
            for n, d in zip(cell.state_names, d_prev, strict=True)
        }
    )
    written.update(grads)

    # JAX's autodiff of the same step
    ops = JaxBackend(dtype="float64").ops
    fixed = {name: ops.asarray(params[name]) for name in _MATRICES}

    def run(xg, hg, state, extra):
        return cell.step(ops, xg, hg, state, {**fixed, **extra})[0]

    primals = (
        ops.asarray(xg),
        ops.asarray(hg),
        tuple(ops.asarray(s) for s in state),
        {name: ops.asarray(params[name]) for name in extras},
    )
    _, vjp = jax.vjp(run, *primals)
    a_xg, a_hg, a_state, a_extra = vjp(tuple(ops.asarray(d) for d in d_state))
    auto = {"xg": a_xg, "hg": a_hg}
    auto.update({f"{n}<t-1>": g for n, g in zip(cell.state_names, a_state, strict=True)})
    auto.update(a_extra)

    for name, expected in auto.items():
        expected = np.asarray(expected)
        actual = np.asarray(written[name], dtype=np.float64)
        if actual.shape != expected.shape:
            raise AgreementError(
                f"cell {cell.name!r}: step_backward's gradient of {name} must have shape "
                f"{expected.shape} (got {actual.shape})"
            )
        excess = np.abs(actual - expected) - (atol + rtol * np.abs(expected))
        if not np.all(excess <= 0):  # NaN counts as a disagreement
            index = np.unravel_index(
                int(np.argmax(np.nan_to_num(excess, nan=np.inf))), excess.shape
            )
            count = int(np.sum(~(excess <= 0)))
            raise AgreementError(
                f"cell {cell.name!r}: step_backward's gradient of {name} at index "
                f"{tuple(int(i) for i in index)} is {actual[index]:.10g}, JAX's autodiff of "
                f"step gives {expected[index]:.10g} (|difference| "
                f"{abs(actual[index] - expected[index]):.3g} > atol {atol:g} + rtol {rtol:g} * "
                f"|autodiff|); {count} of {expected.size} entries disagree. B={B}, H={H}, "
                f"seed={seed}"
            )
