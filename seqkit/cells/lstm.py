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

    def step(self, ops, xg, hg, state, params):
        h_prev, c_prev = state
        H = h_prev.shape[1]
        # 1. pre-activations, in xg's memory
        z = xg
        z += hg
        # 2. gates. tanh(g) = 2 sigmoid(2g) - 1, so one sigmoid pass (one exp) serves all four
        #    blocks: a pass over 4H costs less than two passes over 3H and H.
        g = z[:, 2 * H : 3 * H]
        g *= 2.0
        ops.sigmoid_(z)
        g *= 2.0
        g -= 1.0
        i, f, o = z[:, :H], z[:, H : 2 * H], z[:, 3 * H :]
        # 3. c<t> = f * c<t-1> + i * g
        c = f * c_prev
        c += i * g
        # 4. h<t> = o * tanh(c<t>)
        tanh_c = ops.tanh(c)
        h = o * tanh_c
        # the cache holds c<t-1> (the previous step's c<t>: no extra memory) and tanh(c<t>),
        # which the backward needs twice and would otherwise recompute
        return (h, c), (z, c_prev, tanh_c)

    def step_backward(self, ops, d_state, cache, params, grads):
        d_h, d_c = d_state
        z, c_prev, tanh_c = cache
        H = d_h.shape[1]
        i, f, g, o = z[:, :H], z[:, H : 2 * H], z[:, 2 * H : 3 * H], z[:, 3 * H :]
        # undo 2 first, on all four blocks: sigmoid' = s (1 - s), tanh' = 1 - g^2 = (1 - g)(1 + g);
        # d_z starts as 1 - z (a new array in z's layout) and collects the other factors in place
        d_z = 1.0 - z
        d_i, d_f, d_g, d_o = d_z[:, :H], d_z[:, H : 2 * H], d_z[:, 2 * H : 3 * H], d_z[:, 3 * H :]
        d_z[:, : 2 * H] *= z[:, : 2 * H]
        d_g *= g + 1.0
        # undo 4: h = o * tanh(c), with u = d_h * o and w = u * tanh(c):
        #   d o_pre = d_h tanh(c) o (1 - o) = w (1 - o)
        #   d c = d_c + d_h o (1 - tanh(c)^2) = d_c + u - w tanh(c)
        u = d_h * o
        w = u * tanh_c
        d_o *= w
        w *= tanh_c
        u -= w
        u += d_c
        d_c = u
        # undo 3: c = f * c_prev + i * g
        d_i *= g
        d_i *= d_c
        d_f *= c_prev
        d_f *= d_c
        d_g *= i
        d_g *= d_c
        d_c_prev = d_c * f
        # undo 1: h<t-1> reaches the step only through hg
        return d_z, d_z, (None, d_c_prev)
