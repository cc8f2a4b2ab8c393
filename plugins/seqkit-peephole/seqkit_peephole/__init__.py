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
    #: block 1 is the forget gate, so Recurrent(..., forget_bias=1.0) works for this cell too
    forget_gate = 1
    #: step 1 reads xg and hg only through their sum: the backend adds bias_hh once to the
    #: hoisted input projection and keeps one d xg for both weight gradients
    sums_projections = True

    def extra_param_shapes(self, hidden_size):
        H = hidden_size
        return {"weight_ci": (H,), "weight_cf": (H,), "weight_co": (H,)}

    def step(self, ops, xg, hg, state, params):
        h_prev, c_prev = state
        H = h_prev.shape[1]
        # 1. pre-activations, in xg's memory where the backend allows
        z = ops.add(xg, hg, inplace=True)
        # 2. peepholes into i and f, then the activations
        i = ops.sigmoid(ops.add(z[:, :H], params["weight_ci"] * c_prev, inplace=True), inplace=True)
        f = ops.sigmoid(
            ops.add(z[:, H : 2 * H], params["weight_cf"] * c_prev, inplace=True), inplace=True
        )
        g = ops.tanh(z[:, 2 * H : 3 * H], inplace=True)
        # 3. c<t> = f * c<t-1> + i * g
        c = ops.add(f * c_prev, i * g, inplace=True)
        # 4. the output gate peeks at the new cell
        o = ops.sigmoid(ops.add(z[:, 3 * H :], params["weight_co"] * c, inplace=True), inplace=True)
        # 5. h<t> = o * tanh(c<t>)
        tanh_c = ops.tanh(c)
        h = o * tanh_c
        return (h, c), (i, f, g, o, c_prev, c, tanh_c)

    def step_backward(self, ops, d_state, cache, params, grads):
        d_h, d_c = d_state
        i, f, g, o, c_prev, c, tanh_c = cache
        # undo 5: h = o * tanh(c)
        d_o = d_h * tanh_c
        d_c = d_c + d_h * o * (1 - tanh_c * tanh_c)
        # undo 4: o = sigmoid(o_pre), o_pre = ... + w_co * c<t>: a second path into c<t>
        d_opre = ops.mul(d_o, o * (1 - o), inplace=True)
        d_c = ops.add(d_c, d_opre * params["weight_co"], inplace=True)
        # undo 3: c = f * c_prev + i * g
        d_c_prev = d_c * f
        # undo 2: sigmoid' = s (1 - s), tanh' = 1 - t^2; the peepholes reach c<t-1> as well
        d_ipre = d_c * g * i * (1 - i)
        d_fpre = d_c * c_prev * f * (1 - f)
        d_gpre = d_c * i * (1 - g * g)
        d_c_prev = ops.add(
            d_c_prev, d_ipre * params["weight_ci"] + d_fpre * params["weight_cf"], inplace=True
        )
        # the peephole weights' gradients accumulate into grads (new arrays on every backend)
        for name, d_pre, peeked in (
            ("weight_ci", d_ipre, c_prev),
            ("weight_cf", d_fpre, c_prev),
            ("weight_co", d_opre, c),
        ):
            grads[name] = ops.add(grads[name], ops.sum_leading(d_pre * peeked), inplace=True)
        # undo 1: z = xg + hg sends d_z to both; h<t-1> reaches the step only through hg
        d_z = ops.concat((d_ipre, d_fpre, d_gpre, d_opre))
        return d_z, d_z, (None, d_c_prev)


@seqkit.hookimpl
def seqkit_register_cells():
    return [PeepholeLSTM]
