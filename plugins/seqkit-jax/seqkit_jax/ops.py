"""JAX arrays on one device and dtype behind :class:`seqkit.ops.Ops`.

JAX arrays are immutable, so every method returns a new array and nothing is done in place:
the in-place spellings of the contract (``sigmoid_``, ``add_rows_``, ``matmul(..., out=...)``,
``inplace=True``) compute the same values into a new array, which the caller must use. Under
``jax.jit`` XLA reuses the buffers anyway. Every method is traceable, so a cell's ``step`` runs
inside ``jax.lax.scan`` and is differentiated by ``jax.vjp``.

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

    # --- conversion -----------------------------------------------------------------------
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

    # --- creation (no uninitialised memory in JAX: empty is zeros) -----------------------------
    def empty(self, shape):
        return self.zeros(shape)

    def copy(self, a):
        return a  # immutable: a copy and the original can never differ

    def empty_like(self, a):
        return jnp.zeros_like(a)

    def zeros(self, shape):
        return jnp.zeros(shape, dtype=self.jax_dtype, device=self.device)

    def mask(self, lengths, steps):
        return (jnp.arange(steps)[:, None] < jnp.asarray(lengths)[None, :])[:, :, None]

    # --- linear algebra and indexing -----------------------------------------------------------
    def matmul(self, a, b, out=None):
        return jnp.matmul(a, b)  # ``out`` cannot be written; the result is returned instead

    def take_time(self, x, index):
        return x[jnp.asarray(index), jnp.arange(x.shape[1])[None, :]]

    def where(self, cond, a, b):
        return jnp.where(cond, a, b)

    def sum_leading(self, a):
        return a.reshape(-1, a.shape[-1]).sum(axis=0)

    # --- activations: ``inplace`` is accepted and ignored (immutable arrays) -------------------
    def sigmoid(self, x, *, inplace=False):
        return jax.nn.sigmoid(x)

    def tanh(self, x, *, inplace=False):
        return jnp.tanh(x)

    def relu(self, x, *, inplace=False):
        return jax.nn.relu(x)

    def sigmoid_(self, x):
        return jax.nn.sigmoid(x)

    def tanh_(self, x):
        return jnp.tanh(x)

    def relu_(self, x):
        return jax.nn.relu(x)

    # --- losses, layers and optimizers --------------------------------------------------------
    def int_array(self, a):
        if isinstance(a, jax.Array) and not jnp.issubdtype(a.dtype, jnp.integer):
            raise ShapeError(f"expected an integer array of ids (got dtype {a.dtype})")
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        # int32 whether or not x64 is on: ids index a vocabulary, far below 2**31
        return jax.device_put(np.asarray(a, dtype=np.int32), self.device)

    def exp(self, x):
        return jnp.exp(x)

    def log(self, x):
        return jnp.log(x)

    def sqrt(self, x):
        return jnp.sqrt(x)

    def sum(self, x, axis=None, keepdims=False):
        return jnp.sum(x, axis=axis, keepdims=keepdims)

    def logsumexp(self, x, keepdims=False):
        return jax.nn.logsumexp(x, axis=-1, keepdims=keepdims)

    def log_softmax(self, x):
        return jax.nn.log_softmax(x, axis=-1)

    def softmax(self, x):
        return jax.nn.softmax(x, axis=-1)

    def log_sigmoid(self, x):
        return jax.nn.log_sigmoid(x)

    def take_last(self, x, ids):
        return jnp.take_along_axis(x, ids[..., None], axis=-1)[..., 0]

    def one_hot(self, ids, n):
        return jax.nn.one_hot(ids, n, dtype=self.jax_dtype)

    def rows(self, W, ids):
        return jnp.take(W, ids, axis=0)

    def add_rows_(self, dW, ids, d):
        # a new array (immutable dW); .at[].add sums repeated ids, like numpy.add.at
        return dW.at[ids.reshape(-1)].add(d.reshape(-1, dW.shape[-1]))
