"""Layer-normalised GRU (after Ba, Kiros and Hinton 2016), PyTorch's gate order (r, z, n)."""

from __future__ import annotations

import attrs

from seqkit.cells._base import Cell
from seqkit.cells._layer_norm import normalise, normalise_backward, positive_eps, unit_gains

__all__ = ["LayerNormGRU"]


@attrs.frozen
class LayerNormGRU(Cell):
    """GRU with layer normalisation of both projections; state ``(h,)``; ``"gru_ln"``.

    Args:
        eps: added to each row's variance before the square root (default 1e-5).

    Notation (we are at step t; ``LN_k`` as in :class:`~seqkit.cells.LayerNormLSTM`)::

        1. ax = LN_ih(xg), ah = LN_hh(hg)        (B, 3H) each, normalised over all 3H features
        2. r, z = sigmoid(ax_rz + ah_rz)         reset and update gates
        3. n = tanh(ax_n + r * ah_n)             candidate: the reset gate scales the normalised
                                                 recurrent part, PyTorch's GRU form
        4. h<t> = (1 - z) * n + z * h<t-1>

    The paper gives the LSTM and the GRU the same treatment: each projection normalised before
    the gates. Extra parameters per layer and direction, gains at 1 and shifts at 0:
    ``ln_ih_weight``, ``ln_ih_bias``, ``ln_hh_weight``, ``ln_hh_bias`` (3H,).
    """

    name = "gru_ln"
    num_gates = 3

    eps: float = attrs.field(default=1e-5, kw_only=True, validator=positive_eps)

    def extra_param_shapes(self, hidden_size):
        G = self.num_gates * hidden_size
        return {"ln_ih_weight": (G,), "ln_ih_bias": (G,), "ln_hh_weight": (G,), "ln_hh_bias": (G,)}

    def init_extra_params(self, rng, hidden_size, input_size):
        return unit_gains(self.extra_param_shapes(hidden_size))

    def step(self, ops, xg, hg, state, params):
        (h_prev,) = state
        H = h_prev.shape[1]
        p, eps = params, self.eps
        # 1. normalised projections (new arrays: the driver may reuse hg's memory)
        ax, ln_x = normalise(ops, xg, p, "ln_ih", eps)
        ah, ln_h = normalise(ops, hg, p, "ln_hh", eps)
        # 2. gates
        rz = ops.sigmoid(ops.add(ax[:, : 2 * H], ah[:, : 2 * H]), inplace=True)
        r, z = rz[:, :H], rz[:, H:]
        # 3. candidate
        ah_n = ah[:, 2 * H :]
        n = ops.tanh(ops.add(ax[:, 2 * H :], r * ah_n), inplace=True)
        # 4. interpolate
        h = n + z * (h_prev - n)
        return (h,), (r, z, n, ah_n, h_prev, ln_x, ln_h)

    def step_backward(self, ops, d_state, cache, params, grads):
        (d_h,) = d_state
        r, z, n, ah_n, h_prev, ln_x, ln_h = cache
        # undo 4: h = (1 - z) n + z h_prev
        d_n = d_h * (1.0 - z)
        d_z = d_h * (h_prev - n)
        d_h_prev = d_h * z
        # undo 3: n = tanh(ax_n + r * ah_n)
        d_npre = d_n * (1.0 - n * n)
        d_r = d_npre * ah_n
        # undo 2: sigmoids
        d_rpre = d_r * r * (1.0 - r)
        d_zpre = d_z * z * (1.0 - z)
        d_ax = ops.concat((d_rpre, d_zpre, d_npre))
        d_ah = ops.concat((d_rpre, d_zpre, d_npre * r))
        # undo 1: through each normalisation
        d_xg = normalise_backward(ops, d_ax, ln_x, params, grads, "ln_ih")
        d_hg = normalise_backward(ops, d_ah, ln_h, params, grads, "ln_hh")
        return d_xg, d_hg, (d_h_prev,)
