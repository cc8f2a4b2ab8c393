"""The array operations a cell and the BPTT driver are written against.

A backend supplies one :class:`Ops` object. ``ops.xp`` is its array module (``numpy``, ``torch``);
arithmetic operators and slicing work on its arrays directly. The methods below are the few
places where array modules differ. Functions ending in ``_`` work in place and return their
argument, so a hot loop allocates nothing it does not keep.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from seqkit.shapes import Array

__all__ = ["Ops"]


class Ops(abc.ABC):
    """Array namespace plus stable activations for one backend, device and dtype."""

    #: The array module (``numpy`` or ``torch``).
    xp: Any
    #: The floating dtype every array is created with, as a string (``"float32"``, ``"float64"``).
    dtype: str

    # --- conversion -----------------------------------------------------------------------
    @abc.abstractmethod
    def asarray(self, a: Any) -> Array:
        """``a`` (NumPy array, list, or this backend's array) as this backend's float array."""

    @abc.abstractmethod
    def to_numpy(self, a: Array) -> np.ndarray:
        """A NumPy array with the values of ``a`` (a copy where the backend needs one)."""

    # --- creation --------------------------------------------------------------------------
    @abc.abstractmethod
    def empty(self, shape: tuple[int, ...]) -> Array:
        """An uninitialised float array."""

    @abc.abstractmethod
    def copy(self, a: Array) -> Array:
        """A new array with the values and the memory layout of ``a``."""

    def empty_like(self, a: Array) -> Array:
        """An uninitialised float array with the shape and the memory layout of ``a``.

        Cells allocate their per-step results with it, so that they keep the feature-major
        layout the BPTT driver gives every per-step array. The default ignores the layout.
        """
        return self.empty(tuple(a.shape))

    @abc.abstractmethod
    def zeros(self, shape: tuple[int, ...]) -> Array:
        """A float array of zeros."""

    @abc.abstractmethod
    def mask(self, lengths: np.ndarray, steps: int) -> Array:
        """``(T, B, 1)`` boolean array: true where ``t < lengths[b]``."""

    # --- linear algebra and indexing -----------------------------------------------------------
    @abc.abstractmethod
    def matmul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        """``a @ b``, written into ``out`` when given."""

    @abc.abstractmethod
    def take_time(self, x: Array, index: np.ndarray) -> Array:
        """``x[index[t, b], b]`` for ``x`` of shape ``(T, B, ...)`` and ``index`` ``(T, B)``."""

    @abc.abstractmethod
    def where(self, cond: Array, a: Array, b: Array) -> Array:
        """Elementwise ``a`` where ``cond`` else ``b`` (``cond`` broadcasts)."""

    @abc.abstractmethod
    def sum_leading(self, a: Array) -> Array:
        """Sum over every axis but the last: ``(..., N) -> (N,)``."""

    # --- activations ---------------------------------------------------------------------------
    @abc.abstractmethod
    def sigmoid_(self, x: Array) -> Array:
        """Logistic sigmoid in place, without overflow for any finite input."""

    @abc.abstractmethod
    def tanh_(self, x: Array) -> Array:
        """Hyperbolic tangent in place."""

    @abc.abstractmethod
    def relu_(self, x: Array) -> Array:
        """``max(x, 0)`` in place."""

    def tanh(self, x: Array) -> Array:
        """Hyperbolic tangent into a new array."""
        return self.tanh_(self.copy(x))

    def sigmoid(self, x: Array) -> Array:
        """Logistic sigmoid into a new array."""
        return self.sigmoid_(self.copy(x))

    def relu(self, x: Array) -> Array:
        """``max(x, 0)`` into a new array."""
        return self.relu_(self.copy(x))

    # --- losses, layers and optimizers (seqkit.losses, seqkit.layers, seqkit.optim) -------------
    # Not abstract, so that a backend written before them keeps working until it needs them.
    # Every one returns a new array and leaves its arguments alone (autograd-safe), except
    # ``add_rows_``, which is only used by hand-written backward code.

    def _missing(self, name: str) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__} does not implement {name}")

    def int_array(self, a: Any) -> Array:
        """``a`` (NumPy array, list, or this backend's array) as this backend's int64 array."""
        raise self._missing("int_array")

    def exp(self, x: Array) -> Array:
        """Elementwise ``e**x``."""
        raise self._missing("exp")

    def log(self, x: Array) -> Array:
        """Elementwise natural logarithm."""
        raise self._missing("log")

    def sqrt(self, x: Array) -> Array:
        """Elementwise square root."""
        raise self._missing("sqrt")

    def sum(self, x: Array, axis: int | None = None, keepdims: bool = False) -> Array:
        """Sum over ``axis`` (every axis when None, giving a 0-d array, not a Python scalar)."""
        raise self._missing("sum")

    def logsumexp(self, x: Array, keepdims: bool = False) -> Array:
        """``log(sum(exp(x)))`` over the last axis, without overflow: ``(..., N) -> (...)``."""
        raise self._missing("logsumexp")

    def log_softmax(self, x: Array) -> Array:
        """``x - logsumexp(x)`` over the last axis, without overflow: ``(..., N) -> (..., N)``."""
        raise self._missing("log_softmax")

    def softmax(self, x: Array) -> Array:
        """``exp(x) / sum(exp(x))`` over the last axis, without overflow: ``(..., N)``."""
        raise self._missing("softmax")

    def log_sigmoid(self, x: Array) -> Array:
        """``log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|))``: finite for every finite ``x``."""
        raise self._missing("log_sigmoid")

    def take_last(self, x: Array, ids: Array) -> Array:
        """``x[..., ids[...]]``: one entry of the last axis per position.

        ``x`` is ``(..., N)`` float, ``ids`` ``(...)`` int (from :meth:`int_array`); the result
        is ``(...)``.
        """
        raise self._missing("take_last")

    def one_hot(self, ids: Array, n: int) -> Array:
        """``(...)`` int ids in ``0..n-1`` as ``(..., n)`` float rows of zeros with a single 1."""
        raise self._missing("one_hot")

    def rows(self, W: Array, ids: Array) -> Array:
        """Embedding lookup ``W[ids]``: ``W`` ``(V, E)``, ``ids`` ``(...)`` int -> ``(..., E)``."""
        raise self._missing("rows")

    def add_rows_(self, dW: Array, ids: Array, d: Array) -> Array:
        """Scatter-add, in place: ``dW[ids[j]] += d[j]`` for every position ``j``; returns ``dW``.

        ``dW`` is ``(V, E)``, ``ids`` ``(...)`` int, ``d`` ``(..., E)``. Repeated ids accumulate
        (``numpy.add.at``, not ``dW[ids] += d``): the embedding backward.
        """
        raise self._missing("add_rows_")
