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
        return a.copy()

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
        return a.reshape(-1, a.shape[-1]).sum(axis=0)

    def sigmoid_(self, x):
        # sigmoid(x) = (1 + tanh(x / 2)) / 2: no exp, so no overflow for any finite x
        x *= 0.5
        np.tanh(x, out=x)
        x += 1.0
        x *= 0.5
        return x

    def tanh_(self, x):
        return np.tanh(x, out=x)

    def relu_(self, x):
        return np.maximum(x, 0, out=x)


class NumpyBackend(Backend):
    """The reference: hand-written BPTT (``seqkit.bptt``) on NumPy, float32 or float64, CPU."""

    name = "numpy"

    def __init__(self, *, dtype: str = "float32", device: str = "cpu") -> None:
        if device not in ("cpu", "auto"):
            raise ConfigError(f"backend 'numpy' runs on device 'cpu' only (got device {device!r}); use backend 'torch' for {device!r}")
        super().__init__(dtype=dtype, device="cpu")
        self.ops = NumpyOps(dtype)
