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
        # 2. gates. tanh(g) = 2 sigmoid(2g) - 1, so one sigmoid pass (one exp) serves all four
        #    blocks: a pass over 4H costs less than two passes over 3H and H. s keeps sigmoid(2g)
        #    in its g block, on every backend; g itself is a new array.
        g2 = ops.mul(z[:, 2 * H : 3 * H], 2.0, inplace=True)
        s = ops.sigmoid(ops.concat((z[:, : 2 * H], g2, z[:, 3 * H :]), inplace=True), inplace=True)
        i, f, o = s[:, :H], s[:, H : 2 * H], s[:, 3 * H :]
        g = ops.sub(ops.mul(s[:, 2 * H : 3 * H], 2.0), 1.0, inplace=True)
        # 3. c<t> = f * c<t-1> + i * g
        c = ops.add(f * c_prev, i * g, inplace=True)
        # 4. h<t> = o * tanh(c<t>)
        tanh_c = ops.tanh(c)
        h = o * tanh_c
        # the cache holds c<t-1> (the previous step's c<t>: no extra memory) and tanh(c<t>),
        # which the backward needs twice and would otherwise recompute
        return (h, c), (s, g, c_prev, tanh_c)

    def step_backward(self, ops, d_state, cache, params, grads):
        d_h, d_c = d_state
        s, g, c_prev, tanh_c = cache
        H = d_h.shape[1]
        i, f, o = s[:, :H], s[:, H : 2 * H], s[:, 3 * H :]
        # undo 2 first: sigmoid' = s (1 - s), and for the candidate g = 2 sigmoid(2a) - 1, so
        # tanh'(a) = 1 - g^2 = 4 s_g (1 - s_g) with s_g = sigmoid(2a) (the 4 joins below). The
        # output gate keeps its factor 1 - o: the o of s (1 - s) comes in with w below.
        one_minus_s = 1.0 - s
        d_ifg = ops.mul(one_minus_s[:, : 3 * H], s[:, : 3 * H], inplace=True)
        d_i, d_f, d_g = d_ifg[:, :H], d_ifg[:, H : 2 * H], d_ifg[:, 2 * H :]
        d_o = one_minus_s[:, 3 * H :]
        # undo 4: h = o * tanh(c), with u = d_h * o and w = u * tanh(c):
        #   d o_pre = d_h tanh(c) o (1 - o) = w (1 - o)
        #   d c = d_c + d_h o (1 - tanh(c)^2) = d_c + u - w tanh(c)
        u = d_h * o
        w = u * tanh_c
        d_o = ops.mul(d_o, w, inplace=True)
        w = ops.mul(w, tanh_c, inplace=True)
        d_c = ops.add(ops.sub(u, w, inplace=True), d_c, inplace=True)
        # undo 3: c = f * c_prev + i * g
        d_i = ops.mul(ops.mul(d_i, g, inplace=True), d_c, inplace=True)
        d_f = ops.mul(ops.mul(d_f, c_prev, inplace=True), d_c, inplace=True)
        d_g = ops.mul(ops.mul(ops.mul(d_g, i, inplace=True), d_c, inplace=True), 4.0, inplace=True)
        d_c_prev = d_c * f
        # undo 1: h<t-1> reaches the step only through hg; on NumPy the four blocks are still
        # d_s's memory, so the concatenation copies nothing
        d_z = ops.concat((d_i, d_f, d_g, d_o), inplace=True)
        return d_z, d_z, (None, d_c_prev)
