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
        # 1-2. reset and update gates, in xg's memory where the backend allows
        rz = ops.sigmoid(ops.add(xg[:, : 2 * H], hg[:, : 2 * H], inplace=True), inplace=True)
        r, z = rz[:, :H], rz[:, H:]
        # 3. candidate; keep a copy of hg_n (not all of hg) for the backward of r: the driver
        #    reuses hg's memory at the next step
        hg_n = ops.copy(hg[:, 2 * H :])
        n = ops.tanh(ops.add(xg[:, 2 * H :], r * hg_n, inplace=True), inplace=True)
        # 4. interpolate
        h = n + z * (h_prev - n)
        return (h,), (r, z, n, hg_n, h_prev)

    def step_backward(self, ops, d_state, cache, params, grads):
        (d_h,) = d_state
        r, z, n, hg_n, h_prev = cache
        # undo 4: h = (1 - z) n + z h_prev
        d_n = d_h * (1 - z)
        d_z = d_h * (h_prev - n)
        d_h_prev = d_h * z
        # undo 3: n = tanh(xg_n + r * hg_n)
        d_npre = ops.mul(d_n, 1 - n * n, inplace=True)
        d_r = d_npre * hg_n
        # undo 1-2: sigmoids
        d_rpre = ops.mul(d_r, r * (1 - r), inplace=True)
        d_zpre = ops.mul(d_z, z * (1 - z), inplace=True)
        d_xg = ops.concat((d_rpre, d_zpre, d_npre))
        d_hg = ops.concat((d_rpre, d_zpre, d_npre * r))
        return d_xg, d_hg, (d_h_prev,)
