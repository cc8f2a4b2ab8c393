"""NumPy arrays, in-place activations, and the reference backend built on them."""

from __future__ import annotations

import numpy as np

from seqkit.backend import Backend
from seqkit.errors import ConfigError
from seqkit.ops import Ops


class NumpyOps(Ops):
    """:class:`seqkit.ops.Ops` on NumPy, CPU only."""

    xp = np

    def __init__(self, dtype: str = "float32") -> None:
        self.dtype = dtype
        self._dtype = np.dtype(dtype)

    def asarray(self, a):
        if hasattr(a, "detach"):  # a torch tensor: NumPy reads CPU tensors without a copy
            a = a.detach().cpu().numpy()
        return np.asarray(a, dtype=self._dtype)

    def to_numpy(self, a):
        return np.asarray(a)

    def empty(self, shape):
        return np.empty(shape, dtype=self._dtype)

    def copy(self, a):
        return a.copy(order="K")  # keeps a feature-major array feature-major

    def empty_like(self, a):
        return np.empty_like(a)

    def zeros(self, shape):
        return np.zeros(shape, dtype=self._dtype)

    def mask(self, lengths, steps):
        return (np.arange(steps)[:, None] < lengths[None, :])[:, :, None]

    def matmul(self, a, b, out=None):
        return np.matmul(a, b, out=out)

    def take_time(self, x, index):
        return x[index, np.arange(x.shape[1])[None, :]]

    def where(self, cond, a, b):
        return np.where(cond, a, b)

    def sum_leading(self, a):
        # a matrix-vector product with ones: BLAS takes the column sums of a (T*B, G*H) chunk of
        # gate gradients four times faster than np.sum(axis=0) does
        rows = a.reshape(-1, a.shape[-1])
        return np.ones(rows.shape[0], dtype=rows.dtype) @ rows

    def sigmoid_(self, x):
        # 1 / (1 + exp(-x)): np.exp costs about half of np.tanh per element. For x below about
        # -88 (float32) exp(-x) overflows to inf and 1 / (1 + inf) is the correct 0, so the
        # overflow warning is silenced rather than the input clipped (a clip is one more pass).
        x *= -1.0  # not np.negative(x, out=x): NumPy 2.4 misreads some strided float32 views
        with np.errstate(over="ignore"):
            np.exp(x, out=x)
        x += 1.0
        return np.divide(1.0, x, out=x)

    def tanh_(self, x):
        return np.tanh(x, out=x)

    def tanh(self, x):
        # one pass into a new array of x's layout; the default (copy, then tanh_) is two
        return np.tanh(x, out=np.empty_like(x))

    def relu_(self, x):
        return np.maximum(x, 0, out=x)

    # --- losses, layers and optimizers ---------------------------------------------------------
    def int_array(self, a):
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        return np.asarray(a, dtype=np.int64)

    def exp(self, x):
        return np.exp(x)

    def log(self, x):
        return np.log(x)

    def sqrt(self, x):
        return np.sqrt(x)

    def sum(self, x, axis=None, keepdims=False):
        return np.asarray(np.sum(x, axis=axis, keepdims=keepdims))

    def logsumexp(self, x, keepdims=False):
        # shift by the row maximum so that exp never overflows; the largest term is exp(0) = 1
        m = np.max(x, axis=-1, keepdims=True)
        out = np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)) + m
        return out if keepdims else out[..., 0]

    def log_softmax(self, x):
        return x - self.logsumexp(x, keepdims=True)

    def softmax(self, x):
        e = np.exp(x - np.max(x, axis=-1, keepdims=True))
        return e / np.sum(e, axis=-1, keepdims=True)

    def log_sigmoid(self, x):
        # log sigmoid(x) = min(x, 0) - log(1 + exp(-|x|)); exp(-|x|) <= 1 never overflows
        return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))

    def take_last(self, x, ids):
        return np.take_along_axis(x, ids[..., None], axis=-1)[..., 0]

    def one_hot(self, ids, n):
        out = np.zeros(ids.shape + (n,), dtype=self._dtype)
        np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
        return out

    def rows(self, W, ids):
        return W[ids]

    def add_rows_(self, dW, ids, d):
        np.add.at(dW, ids.reshape(-1), d.reshape(-1, dW.shape[-1]))
        return dW


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
