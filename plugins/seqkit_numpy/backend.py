"""NumPy arrays with in-place options, and the reference backend built on them."""

from __future__ import annotations

import numpy as np

from seqkit.backend import Backend
from seqkit.errors import ConfigError
from seqkit.ops import Ops


class NumpyOps(Ops):
    """:class:`seqkit.ops.Ops` on NumPy, CPU only; every ``inplace=True`` is honoured."""

    xp = np

    def __init__(self, dtype: str = "float32") -> None:
        self.dtype = dtype
        self._dtype = np.dtype(dtype)

    def asarray(self, a):
        if hasattr(a, "detach"):  # a torch tensor: NumPy reads CPU tensors without a copy
            a = a.detach().cpu().numpy()
        return np.asarray(a, dtype=self._dtype)

    def int_array(self, a):
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        return np.asarray(a, dtype=np.int64)

    def to_numpy(self, a):
        return np.asarray(a)

    def empty(self, shape):
        return np.empty(shape, dtype=self._dtype)

    def zeros(self, shape):
        return np.zeros(shape, dtype=self._dtype)

    def copy(self, a):
        return a.copy(order="K")  # keeps a feature-major array feature-major

    def mask(self, lengths, steps):
        return (np.arange(steps)[:, None] < lengths[None, :])[:, :, None]

    def sum_leading(self, a):
        # a matrix-vector product with ones: BLAS takes the column sums of a (T*B, G*H) chunk of
        # gate gradients four times faster than np.sum(axis=0) does
        rows = a.reshape(-1, a.shape[-1])
        return np.ones(rows.shape[0], dtype=rows.dtype) @ rows

    def add_rows(self, dW, ids, d, *, inplace=False):
        # the positions sorted by id, each id's run summed by add.reduceat and added once: two to
        # three times faster than numpy.add.at for the (T*B, G*H) rows of an embedding or a
        # one-hot layer's weight gradient (a large vocabulary)
        out = dW if inplace else self.copy(dW)
        ids, d = ids.reshape(-1), d.reshape(-1, dW.shape[-1])
        if ids.size == 0:
            return out
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        out[sorted_ids[starts]] += np.add.reduceat(d[order], starts, axis=0)  # unique rows
        return out

    # --- activations: ufuncs keep the layout of their input (order "K") ----------------------
    def sigmoid(self, x, *, inplace=False):
        # 1 / (1 + exp(-x)): np.exp costs about half of np.tanh per element. For x below about
        # -88 (float32) exp(-x) overflows to inf and 1 / (1 + inf) is the correct 0, so the
        # overflow warning is silenced rather than the input clipped (a clip is one more pass).
        # Not np.negative(x, out=x): NumPy 2.4 misreads some strided float32 views.
        out = np.multiply(x, -1.0, out=x if inplace else None)
        with np.errstate(over="ignore"):
            np.exp(out, out=out)
        out += 1.0
        return np.divide(1.0, out, out=out)

    def tanh(self, x, *, inplace=False):
        return np.tanh(x, out=x if inplace else None)

    def relu(self, x, *, inplace=False):
        return np.maximum(x, 0, out=x if inplace else None)

    def add(self, a, b, *, inplace=False):
        return np.add(a, b, out=a if inplace else None)

    def sub(self, a, b, *, inplace=False):
        return np.subtract(a, b, out=a if inplace else None)

    def mul(self, a, b, *, inplace=False):
        return np.multiply(a, b, out=a if inplace else None)

    def concat(self, blocks, *, inplace=False):
        if inplace:
            joined = _adjacent(blocks)
            if joined is not None:
                return joined
        first = blocks[0]
        shape = first.shape[:-1] + (sum(b.shape[-1] for b in blocks),)
        # empty_like keeps a feature-major first block's layout for the whole result
        return np.concatenate(blocks, axis=-1, out=np.empty_like(first, shape=shape))


def _adjacent(blocks) -> np.ndarray | None:
    """The array that ``blocks`` tile side by side on the last axis, when they are views of one
    buffer that follow each other in memory (the gate blocks of one feature-major array); else
    None."""
    first = blocks[0]
    base = first.base if first.base is not None else first
    end = first.__array_interface__["data"][0]
    for b in blocks:
        if (
            b.strides != first.strides
            or b.shape[:-1] != first.shape[:-1]
            or b.dtype != first.dtype
            or (b.base if b.base is not None else b) is not base
            or b.__array_interface__["data"][0] != end
        ):
            return None
        end += b.shape[-1] * b.strides[-1]
    shape = first.shape[:-1] + (sum(b.shape[-1] for b in blocks),)
    return np.lib.stride_tricks.as_strided(first, shape=shape, strides=first.strides)


class NumpyBackend(Backend):
    """The reference: hand-written BPTT (``seqkit.bptt``) on NumPy, float32 or float64, CPU."""

    name = "numpy"

    def __init__(self, *, dtype: str = "float32", device: str = "cpu") -> None:
        if device not in ("cpu", "auto"):
            raise ConfigError(
                f"backend 'numpy' runs on device 'cpu' only (got device {device!r}); "
                f"use backend 'torch' for {device!r}"
            )
        super().__init__(dtype=dtype, device="cpu")
        self.ops = NumpyOps(dtype)
