"""The Elman RNN cell, the seed's ``a<t> = g(W_aa a<t-1> + W_ax x<t> + b_a)``."""

from __future__ import annotations

import attrs

from seqkit.cells._base import Cell

__all__ = ["RNN"]


@attrs.frozen
class RNN(Cell):
    """``h<t> = g(x<t> W_ih^T + b_ih + h<t-1> W_hh^T + b_hh)`` with ``g`` tanh (or relu).

    The seed's ``W_ax`` is ``weight_ih``, ``W_aa`` is ``weight_hh`` and ``b_a`` is
    ``bias_ih + bias_hh`` (PyTorch keeps two biases; only their sum matters).
    """

    name = "rnn"
    num_gates = 1
    #: Step 1 only adds xg and hg, so the backend may fold bias_hh into xg before the loop.
    sums_projections = True

    nonlinearity: str = attrs.field(
        default="tanh", validator=attrs.validators.in_(("tanh", "relu"))
    )

    # Notation: z = xg + hg is the pre-activation, h = g(z).
    def step(self, ops, xg, hg, state, params):
        # 1. z = xg + hg                       (B, H), in xg's memory where the backend allows
        z = ops.add(xg, hg, inplace=True)
        # 2. h = g(z)
        h = ops.tanh(z, inplace=True) if self.nonlinearity == "tanh" else ops.relu(z, inplace=True)
        return (h,), h

    def step_backward(self, ops, d_state, cache, params, grads):
        (d_h,) = d_state
        h = cache
        # undo 2: tanh' = 1 - h^2; relu' = [h > 0]
        d_z = d_h * (1 - h * h) if self.nonlinearity == "tanh" else d_h * (h > 0)
        # undo 1: z = xg + hg sends d_z to both
        return d_z, d_z, (None,)
