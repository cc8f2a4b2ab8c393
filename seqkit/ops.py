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
        """A new array with the values of ``a``."""

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
