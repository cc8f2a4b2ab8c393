"""An LSTM with peephole connections, registered with seqkit as cell ``"lstm_peephole"``.

The example third-party cell plugin: one module, one hook implementation, one cell definition.
"""

from __future__ import annotations

import attrs

import seqkit

__all__ = ["PeepholeLSTM", "seqkit_register_cells"]
__version__ = "0.1.0"


@attrs.frozen
class PeepholeLSTM(seqkit.Cell):
    """LSTM whose gates also read the memory cell (Gers & Schmidhuber, 2000); state ``(h, c)``.

    Parameters are those of :class:`seqkit.cells.LSTM` (gate order ``i, f, g, o``) plus three
    diagonal peephole weights of shape ``(H,)``: ``weight_ci`` and ``weight_cf`` read ``c<t-1>``,
    ``weight_co`` reads ``c<t>``.

    Notation (we are at step t; ``xg + hg`` stacks four blocks of H columns; ``*`` is
    elementwise, ``w_c?`` broadcasts over the batch)::

        1. i, f, g, o = xg + hg                      pre-activations, (B, H) each
        2. i = sigmoid(i + w_ci * c<t-1>)            input gate, peeks at the old cell
           f = sigmoid(f + w_cf * c<t-1>)            forget gate, peeks at the old cell
           g = tanh(g)                               candidate
        3. c<t> = f * c<t-1> + i * g                 memory cell
        4. o = sigmoid(o + w_co * c<t>)              output gate, peeks at the new cell
        5. h<t> = o * tanh(c<t>)                     output

    With the three peephole weights at zero this is exactly ``lstm``.
    """

    name = "lstm_peephole"
    num_gates = 4
    state_names = ("h", "c")

    def extra_param_shapes(self, hidden_size):
        H = hidden_size
        return {"weight_ci": (H,), "weight_cf": (H,), "weight_co": (H,)}

    def step(self, ops, xg, hg, state, params):
        h_prev, c_prev = state
        H = h_prev.shape[1]
        # 1. pre-activations, in xg's memory (the driver allows the cell to overwrite xg)
        z = xg
        z += hg
        # 2. peepholes into i and f, then the activations
        z[:, :H] += params["weight_ci"] * c_prev
        z[:, H : 2 * H] += params["weight_cf"] * c_prev
        ops.sigmoid_(z[:, : 2 * H])
        ops.tanh_(z[:, 2 * H : 3 * H])
        i, f, g = z[:, :H], z[:, H : 2 * H], z[:, 2 * H : 3 * H]
        # 3. c<t> = f * c<t-1> + i * g
        c = f * c_prev
        c += i * g
        # 4. the output gate peeks at the new cell
        z[:, 3 * H :] += params["weight_co"] * c
        o = ops.sigmoid_(z[:, 3 * H :])
        # 5. h<t> = o * tanh(c<t>)
        tanh_c = ops.tanh(c)
        h = o * tanh_c
        return (h, c), (z, c_prev, c, tanh_c)

    def step_backward(self, ops, d_state, cache, params, grads):
        d_h, d_c = d_state
        z, c_prev, c, tanh_c = cache
        H = d_h.shape[1]
        i, f, g, o = z[:, :H], z[:, H : 2 * H], z[:, 2 * H : 3 * H], z[:, 3 * H :]
        d_z = ops.empty_like(z)
        # undo 5: h = o * tanh(c)
        d_o = d_h * tanh_c
        d_c = d_c + d_h * o * (1 - tanh_c * tanh_c)
        # undo 4: o = sigmoid(o_pre), o_pre = ... + w_co * c<t>: a second path into c<t>
        d_opre = d_o * o * (1 - o)
        d_z[:, 3 * H :] = d_opre
        d_c = d_c + d_opre * params["weight_co"]
        grads["weight_co"] += ops.sum_leading(d_opre * c)
        # undo 3: c = f * c_prev + i * g
        d_c_prev = d_c * f
        # undo 2: sigmoid' = s (1 - s), tanh' = 1 - t^2; the peepholes reach c<t-1> as well
        d_ipre = d_c * g * i * (1 - i)
        d_fpre = d_c * c_prev * f * (1 - f)
        d_z[:, :H] = d_ipre
        d_z[:, H : 2 * H] = d_fpre
        d_z[:, 2 * H : 3 * H] = d_c * i * (1 - g * g)
        d_c_prev += d_ipre * params["weight_ci"] + d_fpre * params["weight_cf"]
        grads["weight_ci"] += ops.sum_leading(d_ipre * c_prev)
        grads["weight_cf"] += ops.sum_leading(d_fpre * c_prev)
        # undo 1: z = xg + hg sends d_z to both; h<t-1> reaches the step only through hg
        return d_z, d_z, (None, d_c_prev)


@seqkit.hookimpl
def seqkit_register_cells():
    return [PeepholeLSTM]
