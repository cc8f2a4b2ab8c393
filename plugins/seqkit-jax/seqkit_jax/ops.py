"""JAX arrays on one device and dtype behind :class:`seqkit.ops.Ops`.

JAX arrays are immutable, so every operation returns a new array: ``inplace=True`` and
``matmul(..., out=...)`` are accepted and ignored (under ``jax.jit`` XLA reuses buffers anyway).
``jax.numpy`` has NumPy's API, so :class:`seqkit.ops.Ops`'s defaults serve for everything else;
what is here is conversion and placement, the few places where ``jax.numpy`` differs from NumPy
(no ``out=``, no ``add.at``), and ``jax.nn.sigmoid``, one fused XLA op. Every method is
traceable, so a cell's ``step`` runs inside ``jax.lax.scan`` and is differentiated by ``jax.vjp``.

This module imports jax at the top; :mod:`seqkit_jax` imports it only when a
:class:`~seqkit_jax.JaxBackend` is built.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from seqkit.errors import ConfigError, ShapeError
from seqkit.ops import Ops

__all__ = ["JaxOps"]

DTYPES = ("float32", "float64")


class JaxOps(Ops):
    """:class:`seqkit.ops.Ops` on ``jax.Array`` of one ``dtype`` on one JAX ``device``.

    Two instances with the same dtype and device are equal and hash alike, so the compiled
    functions of :mod:`seqkit_jax._scan` (which take the ops as a static argument) are shared by
    every backend built with the same settings.
    """

    xp = jnp

    def __init__(self, dtype: str = "float32", device: jax.Device | None = None) -> None:
        if dtype not in DTYPES:
            raise ConfigError(
                f"backend 'jax': 'dtype' must be one of {', '.join(map(repr, DTYPES))} "
                f"(got {dtype!r})"
            )
        if dtype == "float64" and not jax.config.jax_enable_x64:
            raise ConfigError(
                "backend 'jax': dtype 'float64' needs jax_enable_x64, which is off; build the "
                "ops through seqkit.get_backend('jax', dtype='float64'), which turns it on"
            )
        self.dtype = dtype
        self.jax_dtype = jnp.dtype(dtype)
        self.device = jax.devices("cpu")[0] if device is None else device

    def __repr__(self) -> str:
        return f"JaxOps(dtype={self.dtype!r}, device={str(self.device)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JaxOps) and (other.dtype, other.device) == (
            self.dtype,
            self.device,
        )

    def __hash__(self) -> int:
        return hash((JaxOps, self.dtype, self.device))

    # --- conversion and creation ---------------------------------------------------------------
    def asarray(self, a):
        if isinstance(a, jax.core.Tracer):  # inside a transformation: no placement
            return jnp.asarray(a, dtype=self.jax_dtype)
        if isinstance(a, jax.Array):
            if jnp.issubdtype(a.dtype, jnp.complexfloating):
                raise ShapeError(f"expected a real floating array (got dtype {a.dtype})")
            if a.dtype == self.jax_dtype and a.devices() == {self.device}:
                return a
            return jax.device_put(a.astype(self.jax_dtype), self.device)
        if hasattr(a, "detach"):  # a torch tensor
            a = a.detach().cpu().numpy()
        # everything else goes through NumPy, so lists and bad values fail exactly as there
        return jax.device_put(np.asarray(a, dtype=np.dtype(self.dtype)), self.device)

    def to_numpy(self, a):
        return np.array(a)  # a writable copy: NumPy views of jax arrays are read-only

    def int_array(self, a):
        if isinstance(a, jax.Array) and not jnp.issubdtype(a.dtype, jnp.integer):
            raise ShapeError(f"expected an integer array of ids (got dtype {a.dtype})")
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        # int32 whether or not x64 is on: ids and lengths are far below 2**31
        return jax.device_put(np.asarray(a, dtype=np.int32), self.device)

    def empty(self, shape):
        return self.zeros(shape)  # JAX has no uninitialised memory

    def zeros(self, shape):
        return jnp.zeros(shape, dtype=self.jax_dtype, device=self.device)

    def copy(self, a):
        return a  # immutable: a copy and the original can never differ

    def mask(self, lengths, steps):
        return (jnp.arange(steps)[:, None] < jnp.asarray(lengths)[None, :])[:, :, None]

    # --- where jax.numpy differs from NumPy ----------------------------------------------------
    def sigmoid(self, x, *, inplace=False):
        return jax.nn.sigmoid(x)  # one XLA op (logistic), stable for every finite input

    def matmul(self, a, b, out=None):
        return jnp.matmul(a, b)  # ``out`` cannot be written; the result is returned instead

    def add_rows(self, dW, ids, d, *, inplace=False):
        # .at[].add sums repeated ids, like numpy.add.at
        return dW.at[ids.reshape(-1)].add(d.reshape(-1, dW.shape[-1]))
