"""Layer-normalised LSTM (Ba, Kiros and Hinton 2016), PyTorch's gate order (i, f, g, o)."""

from __future__ import annotations

import attrs

from seqkit.cells._base import Cell
from seqkit.cells._layer_norm import normalise, normalise_backward, positive_eps, unit_gains

__all__ = ["LayerNormLSTM"]


@attrs.frozen
class LayerNormLSTM(Cell):
    """LSTM with layer normalisation; state ``(h, c)``; registered as ``"lstm_ln"``.

    Args:
        eps: added to each row's variance before the square root (``torch.nn.LayerNorm``'s
            default, 1e-5).

    Notation (we are at step t; ``LN_k(a) = (a - mean(a)) / sqrt(var(a) + eps) * g_k + b_k``
    over the features of each row)::

        1. a = LN_ih(xg) + LN_hh(hg)                   (B, 4H): each projection normalised over
                                                       all 4H features, as in the paper's eq. 20
        2. i, f, o = sigmoid(a_i, a_f, a_o);  g = tanh(a_g)
        3. c<t> = f * c<t-1> + i * g                   the state keeps c un-normalised
        4. h<t> = o * tanh(LN_c(c<t>))                 (B, H): the cell normalised before tanh

    The paper normalises the whole projection, not each gate block (TensorFlow's
    ``LayerNormBasicLSTMCell`` does the latter). ``xg`` and ``hg`` carry ``bias_ih`` and
    ``bias_hh`` into the normalisation (PyTorch's layout is kept); the paper's bias after it is
    the shifts ``b_ih + b_hh``. Extra parameters per layer and direction, gains starting at 1 and
    shifts at 0: ``ln_ih_weight``, ``ln_ih_bias``, ``ln_hh_weight``, ``ln_hh_bias`` (4H,) and
    ``ln_c_weight``, ``ln_c_bias`` (H,). Allows ``proj_size`` and ``forget_bias`` as ``lstm``.
    """

    name = "lstm_ln"
    num_gates = 4
    state_names = ("h", "c")
    forget_gate = 1
    projectable = True  # h<t-1> enters only through hg; H comes from c<t-1>

    eps: float = attrs.field(default=1e-5, kw_only=True, validator=positive_eps)

    def extra_param_shapes(self, hidden_size):
        G, H = self.num_gates * hidden_size, hidden_size
        return {
            "ln_ih_weight": (G,),
            "ln_ih_bias": (G,),
            "ln_hh_weight": (G,),
            "ln_hh_bias": (G,),
            "ln_c_weight": (H,),
            "ln_c_bias": (H,),
        }

    def init_extra_params(self, rng, hidden_size, input_size):
        return unit_gains(self.extra_param_shapes(hidden_size))

    def step(self, ops, xg, hg, state, params):
        _, c_prev = state
        H = c_prev.shape[1]
        p, eps = params, self.eps
        # 1. both projections normalised over their 4H features
        ax, ln_x = normalise(ops, xg, p, "ln_ih", eps)
        ah, ln_h = normalise(ops, hg, p, "ln_hh", eps)
        a = ops.add(ax, ah, inplace=True)
        # 2. gates
        i = ops.sigmoid(a[:, :H])
        f = ops.sigmoid(a[:, H : 2 * H])
        g = ops.tanh(a[:, 2 * H : 3 * H])
        o = ops.sigmoid(a[:, 3 * H :])
        # 3. c<t> = f * c<t-1> + i * g
        c = ops.add(f * c_prev, i * g, inplace=True)
        # 4. h<t> = o * tanh(LN_c(c<t>))
        cn, ln_c = normalise(ops, c, p, "ln_c", eps)
        tanh_cn = ops.tanh(cn, inplace=True)
        h = o * tanh_cn
        return (h, c), (i, f, g, o, c_prev, tanh_cn, ln_x, ln_h, ln_c)

    def step_backward(self, ops, d_state, cache, params, grads):
        d_h, d_c = d_state
        i, f, g, o, c_prev, tanh_cn, ln_x, ln_h, ln_c = cache
        # undo 4: h = o * tanh(cn), cn = LN_c(c)
        d_o = d_h * tanh_cn
        d_cn = d_h * o * (1.0 - tanh_cn * tanh_cn)
        d_c = ops.add(normalise_backward(ops, d_cn, ln_c, params, grads, "ln_c"), d_c)
        # undo 3: c = f * c_prev + i * g
        d_i, d_f, d_g = d_c * g, d_c * c_prev, d_c * i
        d_c_prev = d_c * f
        # undo 2: sigmoid' = s (1 - s), tanh' = 1 - g^2
        d_a = ops.concat(
            (d_i * i * (1.0 - i), d_f * f * (1.0 - f), d_g * (1.0 - g * g), d_o * o * (1.0 - o))
        )
        # undo 1: through each normalisation to xg and hg
        d_xg = normalise_backward(ops, d_a, ln_x, params, grads, "ln_ih")
        d_hg = normalise_backward(ops, d_a, ln_h, params, grads, "ln_hh")
        return d_xg, d_hg, (None, d_c_prev)
