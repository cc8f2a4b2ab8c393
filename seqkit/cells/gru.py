"""Gated recurrent unit, PyTorch's form and gate order (r, z, n)."""

from __future__ import annotations

import attrs

from seqkit.cells._base import Cell

__all__ = ["GRU"]


@attrs.frozen
class GRU(Cell):
    """The full GRU with a reset gate; state ``(h,)``.

    Notation (we are at step t; ``xg`` and ``hg`` stack three blocks of H columns)::

        1. r = sigmoid(xg_r + hg_r)             reset gate (the seed's relevance gate)
        2. z = sigmoid(xg_z + hg_z)             update gate (the seed's Gamma_u)
        3. n = tanh(xg_n + r * hg_n)            candidate; hg_n includes bias_hn, as in PyTorch
        4. h<t> = (1 - z) * n + z * h<t-1>

    Note PyTorch's convention in step 4: ``z`` keeps the old state, where the seed writes
    ``Gamma_u * c~ + (1 - Gamma_u) * c<t-1>``; the two are the same model with ``z = 1 - Gamma_u``.
    """

    name = "gru"
    num_gates = 3

    def step(self, ops, xg, hg, state, params):
        (h_prev,) = state
        H = h_prev.shape[1]
        # 1-2. reset and update gates, in xg's memory
        rz = xg[:, : 2 * H]
        rz += hg[:, : 2 * H]
        ops.sigmoid_(rz)
        r, z = rz[:, :H], rz[:, H:]
        # 3. candidate; keep a copy of hg_n (not all of hg) for the backward of r
        hg_n = ops.copy(hg[:, 2 * H :])
        n = xg[:, 2 * H :]
        n += r * hg_n
        ops.tanh_(n)
        # 4. interpolate
        h = n + z * (h_prev - n)
        return (h,), (xg, hg_n, h_prev)

    def step_backward(self, ops, d_state, cache, params, grads):
        (d_h,) = d_state
        xg, hg_n, h_prev = cache
        H = d_h.shape[1]
        r, z, n = xg[:, :H], xg[:, H : 2 * H], xg[:, 2 * H :]
        d_xg = ops.empty_like(xg)
        d_hg = ops.empty_like(xg)
        # undo 4: h = (1 - z) n + z h_prev
        d_n = d_h * (1 - z)
        d_z = d_h * (h_prev - n)
        d_h_prev = d_h * z
        # undo 3: n = tanh(xg_n + r * hg_n)
        d_npre = d_n * (1 - n * n)
        d_r = d_npre * hg_n
        # undo 1-2: sigmoids
        d_rpre = d_r * r * (1 - r)
        d_zpre = d_z * z * (1 - z)
        d_xg[:, :H] = d_rpre
        d_xg[:, H : 2 * H] = d_zpre
        d_xg[:, 2 * H :] = d_npre
        d_hg[:, : 2 * H] = d_xg[:, : 2 * H]
        d_hg[:, 2 * H :] = d_npre * r
        return d_xg, d_hg, (d_h_prev,)
