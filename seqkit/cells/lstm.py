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

    def step(self, ops, xg, hg, state, params):
        h_prev, c_prev = state
        H = h_prev.shape[1]
        # 1. pre-activations, in xg's memory
        z = xg
        z += hg
        # 2. gates
        ops.sigmoid_(z[:, : 2 * H])
        ops.tanh_(z[:, 2 * H : 3 * H])
        ops.sigmoid_(z[:, 3 * H :])
        i, f, g, o = z[:, :H], z[:, H : 2 * H], z[:, 2 * H : 3 * H], z[:, 3 * H :]
        # 3. c<t> = f * c<t-1> + i * g
        c = f * c_prev
        c += i * g
        # 4. h<t> = o * tanh(c<t>)
        tanh_c = ops.tanh(c)
        h = o * tanh_c
        return (h, c), (z, c_prev, tanh_c)

    def step_backward(self, ops, d_state, cache, params, grads):
        d_h, d_c = d_state
        z, c_prev, tanh_c = cache
        H = d_h.shape[1]
        i, f, g, o = z[:, :H], z[:, H : 2 * H], z[:, 2 * H : 3 * H], z[:, 3 * H :]
        d_z = ops.empty(z.shape)
        # undo 4: h = o * tanh(c)
        d_o = d_h * tanh_c
        d_c = d_c + d_h * o * (1 - tanh_c * tanh_c)
        # undo 3: c = f * c_prev + i * g
        d_i = d_c * g
        d_f = d_c * c_prev
        d_g = d_c * i
        d_c_prev = d_c * f
        # undo 2: sigmoid' = s (1 - s), tanh' = 1 - t^2
        d_z[:, :H] = d_i * i * (1 - i)
        d_z[:, H : 2 * H] = d_f * f * (1 - f)
        d_z[:, 2 * H : 3 * H] = d_g * (1 - g * g)
        d_z[:, 3 * H :] = d_o * o * (1 - o)
        # undo 1: h<t-1> reaches the step only through hg
        return d_z, d_z, (None, d_c_prev)
