"""Long short-term memory, PyTorch's form and gate order (i, f, g, o)."""

from __future__ import annotations

import attrs

from seqkit.cells._base import Cell

__all__ = ["LSTM"]


@attrs.frozen
class LSTM(Cell):
    """LSTM cell; state ``(h, c)``.

    Notation (we are at step t; ``xg + hg`` stacks four blocks of H columns)::

        1. i, f, g, o = xg + hg                        pre-activations, (B, H) each
        2. i, f, o = sigmoid(i, f, o);  g = tanh(g)    the input, forget, output gates, candidate
        3. c<t> = f * c<t-1> + i * g                   memory cell
        4. h<t> = o * tanh(c<t>)                       output

    The seed's update gate is ``i``; the GRU's ``1 - u`` becomes a separate forget gate ``f``.
    """

    name = "lstm"
    num_gates = 4
    state_names = ("h", "c")
    #: Step 1 only adds xg and hg, so the backend may fold bias_hh into xg before the loop.
    sums_projections = True
    forget_gate = 1
    #: h<t-1> enters only through hg, so ``Recurrent(proj_size=P)`` may project h (torch's LSTMP)
    projectable = True

    def step(self, ops, xg, hg, state, params):
        _, c_prev = state
        H = c_prev.shape[1]  # h<t-1> is (B, P) under a projection; c<t-1> is always (B, H)
        # 1. pre-activations, in xg's memory where the backend allows
        z = ops.add(xg, hg, inplace=True)
        # 2. gates, each in its own block of z where the backend allows (i and f in one pass).
        #    No concatenation: a compiled step fuses every array below into one loop, where a
        #    joined gate array is a buffer of its own (docs/reference/performance.rst)
        i_f = ops.sigmoid(z[:, : 2 * H], inplace=True)
        i, f = i_f[:, :H], i_f[:, H:]
        g = ops.tanh(z[:, 2 * H : 3 * H], inplace=True)
        o = ops.sigmoid(z[:, 3 * H :], inplace=True)
        # 3. c<t> = f * c<t-1> + i * g
        c = ops.add(f * c_prev, i * g, inplace=True)
        # 4. h<t> = o * tanh(c<t>)
        tanh_c = ops.tanh(c)
        h = o * tanh_c
        # the cache holds c<t-1> (the previous step's c<t>: no extra memory) and tanh(c<t>),
        # which the backward needs twice and would otherwise recompute
        return (h, c), (i, f, g, o, c_prev, tanh_c)

    def step_backward(self, ops, d_state, cache, params, grads):
        d_h, d_c = d_state
        i, f, g, o, c_prev, tanh_c = cache
        # undo 4: h = o * tanh(c):  d o = d_h tanh(c),  d c += d_h o (1 - tanh(c)^2)
        d_o = d_h * tanh_c
        d_c = ops.add(ops.mul(d_h * o, 1.0 - tanh_c * tanh_c, inplace=True), d_c, inplace=True)
        # undo 3: c = f * c<t-1> + i * g
        d_c_prev = d_c * f
        # undo 2: sigmoid' = s (1 - s), tanh' = 1 - t^2
        d_i = ops.mul(d_c * g, i * (1.0 - i), inplace=True)
        d_f = ops.mul(d_c * c_prev, f * (1.0 - f), inplace=True)
        d_g = ops.mul(d_c * i, 1.0 - g * g, inplace=True)
        d_o = ops.mul(d_o, o * (1.0 - o), inplace=True)
        # undo 1: z = xg + hg sends d_z to both; h<t-1> reaches the step only through hg
        d_z = ops.concat((d_i, d_f, d_g, d_o))
        return d_z, d_z, (None, d_c_prev)
