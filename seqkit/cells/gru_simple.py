"""The seed's simplified GRU: a memory cell, a candidate and one update gate, no reset gate."""

from __future__ import annotations

import attrs

from seqkit.cells._base import Cell

__all__ = ["SimpleGRU"]


@attrs.frozen
class SimpleGRU(Cell):
    """The simplified GRU of the seed's chapter 9; state ``(c,)`` where ``c<t> = a<t>``.

    Notation (we are at step t; the seed's equation numbers in brackets)::

        1. u = sigmoid(xg_u + hg_u)             Gamma_u = sigma(W_u [c<t-1>, x<t>] + b_u)    (3)
        2. c~ = tanh(xg_c + hg_c)               c~<t> = tanh(W_c [c<t-1>, x<t>] + b_c)        (2)
        3. c<t> = u * c~ + (1 - u) * c<t-1>                                                  (4)

    Gate order is ``(u, c~)``: ``weight_ih = [W_ux; W_cx]`` and ``weight_hh = [W_uc; W_cc]``, so
    ``W_u [c, x] = c W_uc^T + x W_ux^T``. The seed's one bias per gate is ``bias_ih + bias_hh``.
    There is no PyTorch twin; finite differences and autograd check it.
    """

    name = "gru_simple"
    num_gates = 2
    #: Step 1 only adds xg and hg, so the backend may fold bias_hh into xg before the loop.
    sums_projections = True

    def step(self, ops, xg, hg, state, params):
        (c_prev,) = state
        H = c_prev.shape[1]
        # 1-2. gate and candidate, in xg's memory where the backend allows
        z = ops.add(xg, hg, inplace=True)
        u = ops.sigmoid(z[:, :H], inplace=True)
        cand = ops.tanh(z[:, H:], inplace=True)
        # 3. c<t> = u * c~ + (1 - u) * c<t-1>
        c = c_prev + u * (cand - c_prev)
        return (c,), (u, cand, c_prev)

    def step_backward(self, ops, d_state, cache, params, grads):
        (d_c,) = d_state
        u, cand, c_prev = cache
        # undo 3
        d_u = d_c * (cand - c_prev)
        d_cand = d_c * u
        d_c_prev = d_c * (1 - u)
        # undo 1-2
        d_upre = ops.mul(d_u, u * (1 - u), inplace=True)
        d_cpre = ops.mul(d_cand, 1 - cand * cand, inplace=True)
        d_z = ops.concat((d_upre, d_cpre))
        return d_z, d_z, (d_c_prev,)
