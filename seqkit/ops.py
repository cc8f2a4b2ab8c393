"""The array operations a cell, a layer, a loss and an optimizer are written against.

A backend supplies one :class:`Ops` object. ``ops.xp`` is its array module (``numpy``,
``torch``, ``jax.numpy``); arithmetic operators and reading slices work on its arrays directly.

The contract is functional: every operation returns its result, and a caller uses that return
value and never relies on an argument having changed. In-place work is an *option* of an
operation, thinc's way: ``ops.sigmoid(x, inplace=True)`` allows the backend to write the result
into ``x`` and return it (NumPy and torch do, so a hot loop allocates nothing it does not keep);
a backend with immutable arrays ignores the flag and returns a new array. A caller passes
``inplace=True`` only for an array nobody reads afterwards, and must not read ``x`` after the
call (it holds the old values on one backend and the new ones on another).

The defaults below call ``self.xp`` with NumPy's API (``axis=``, ``keepdims=``), which NumPy,
CuPy and ``jax.numpy`` share, and honour no in-place request except through the augmented
operators (``a += b``, which rebinds ``a`` on an immutable backend). A backend overrides only
what its array module does differently (torch: ``dim=`` names, devices) or faster.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from seqkit.shapes import Array

__all__ = ["OneHotIds", "Ops"]


class Ops(abc.ABC):
    """Array namespace plus stable activations for one backend, device and dtype."""

    #: The array module (``numpy``, ``torch``, ``jax.numpy``).
    xp: Any
    #: The floating dtype every array is created with, as a string (``"float32"``, ``"float64"``).
    dtype: str

    # --- conversion and creation: dtype and device handling differs per backend -------------------
    @abc.abstractmethod
    def asarray(self, a: Any) -> Array:
        """``a`` (NumPy array, list, or this backend's array) as this backend's float array."""

    @abc.abstractmethod
    def to_numpy(self, a: Array) -> np.ndarray:
        """A NumPy array with the values of ``a`` (a copy where the backend needs one)."""

    @abc.abstractmethod
    def empty(self, shape: tuple[int, ...]) -> Array:
        """An uninitialised float array (a backend without them may return zeros)."""

    @abc.abstractmethod
    def zeros(self, shape: tuple[int, ...]) -> Array:
        """A float array of zeros."""

    @abc.abstractmethod
    def copy(self, a: Array) -> Array:
        """A new array with the values and the memory layout of ``a``."""

    @abc.abstractmethod
    def mask(self, lengths: np.ndarray, steps: int) -> Array:
        """``(T, B, 1)`` boolean array: true where ``t < lengths[b]``."""

    def int_array(self, a: Any) -> Array:
        """``a`` (NumPy array, list, or this backend's array) as this backend's int64 array."""
        return self.xp.asarray(a, dtype="int64")

    def empty_like(self, a: Array) -> Array:
        """An uninitialised float array with the shape and the memory layout of ``a``."""
        return self.xp.empty_like(a)

    # --- elementwise arithmetic -------------------------------------------------------------------
    def add(self, a: Array, b: Array | float, *, inplace: bool = False) -> Array:
        """``a + b``; with ``inplace`` the result may go into ``a`` (of the result's shape)."""
        if inplace:
            a += b  # in place on NumPy and torch; a new array on an immutable backend
            return a
        return a + b

    def sub(self, a: Array, b: Array | float, *, inplace: bool = False) -> Array:
        """``a - b``; with ``inplace`` the result may go into ``a`` (of the result's shape)."""
        if inplace:
            a -= b
            return a
        return a - b

    def mul(self, a: Array, b: Array | float, *, inplace: bool = False) -> Array:
        """``a * b``; with ``inplace`` the result may go into ``a`` (of the result's shape)."""
        if inplace:
            a *= b
            return a
        return a * b

    def exp(self, x: Array) -> Array:
        """Elementwise ``e**x``."""
        return self.xp.exp(x)

    def log(self, x: Array) -> Array:
        """Elementwise natural logarithm."""
        return self.xp.log(x)

    def sqrt(self, x: Array) -> Array:
        """Elementwise square root."""
        return self.xp.sqrt(x)

    def where(self, cond: Array, a: Array | float, b: Array | float) -> Array:
        """Elementwise ``a`` where ``cond`` else ``b`` (``cond`` broadcasts)."""
        return self.xp.where(cond, a, b)

    # --- activations ------------------------------------------------------------------------------
    def sigmoid(self, x: Array, *, inplace: bool = False) -> Array:
        """Logistic sigmoid, finite for every finite input; ``inplace`` as for :meth:`add`."""
        return self.xp.exp(-self.xp.logaddexp(0.0, -x))  # exp(-log(1 + e^-x)): no overflow

    def tanh(self, x: Array, *, inplace: bool = False) -> Array:
        """Hyperbolic tangent; ``inplace`` as for :meth:`add`."""
        return self.xp.tanh(x)

    def relu(self, x: Array, *, inplace: bool = False) -> Array:
        """``max(x, 0)``; ``inplace`` as for :meth:`add`."""
        return self.xp.where(x > 0, x, 0.0)

    # --- blocks, linear algebra and indexing ------------------------------------------------------
    def concat(self, blocks: Sequence[Array], *, inplace: bool = False) -> Array:
        """The blocks side by side on the last axis: ``(..., N_k)`` each -> ``(..., sum N_k)``.

        How a cell builds a gate array from per-gate results. With ``inplace`` the result may
        share memory with the blocks: NumPy then returns, without a copy, the array the blocks
        are adjacent views of (the gate blocks a cell computed in place in one array).
        """
        return self.xp.concatenate(list(blocks), axis=-1)

    def matmul(self, a: Array, b: Array, out: Array | None = None) -> Array:
        """``a @ b``, written into ``out`` when given (only the BPTT driver passes ``out``)."""
        return self.xp.matmul(a, b) if out is None else self.xp.matmul(a, b, out=out)

    def project(self, x: Array | OneHotIds, weight: Array, out: Array | None = None) -> Array:
        """``x @ weight^T``: ``(..., I)`` and ``(N, I)`` -> ``(..., N)``, into ``out`` if given.

        For :class:`OneHotIds` this is a gather of ``weight``'s columns, ``weight[:, ids]^T``
        times the rows' scale, equal to the product with the one-hot matrix, which is never built.
        """
        if not isinstance(x, OneHotIds):
            return self.matmul(x, weight.T, out)
        y = self.rows(weight.T, x.ids)  # (..., N)
        if x.scale is not None:
            y = y * x.scale
        if out is None:
            return y
        out[...] = y
        return out

    def project_grad(self, x: Array | OneHotIds, d: Array, acc: Array | None = None) -> Array:
        """``acc + d^T x`` summed over the leading axes: the gradient of ``weight`` in
        :meth:`project`. ``x`` ``(..., I)``, ``d`` ``(..., N)``, ``acc`` None (zeros) or ``(N, I)``
        (added into in place where the backend allows).

        For :class:`OneHotIds` a scatter-add of the rows of ``d`` into the columns of the ids
        (repeated ids accumulate), with no ``(rows, V)`` matrix.
        """
        N = d.shape[-1]
        d = d.reshape(-1, N)
        if not isinstance(x, OneHotIds):
            g = self.matmul(d.T, x.reshape(-1, x.shape[-1]))  # (N, I)
            return g if acc is None else self.add(acc, g, inplace=True)
        if x.scale is not None:
            d = d * x.scale.reshape(-1, 1)
        if acc is None:
            acc = self.zeros((N, x.num_classes))
        # rows of acc^T (V, N) are the columns of acc: the transpose is a view on NumPy and torch
        return self.add_rows(acc.T, x.ids.reshape(-1), d, inplace=True).T

    def take_time(self, x: Array, index: np.ndarray) -> Array:
        """``x[index[t, b], b]`` for ``x`` of shape ``(T, B, ...)`` and ``index`` ``(T, B)``."""
        return x[self.xp.asarray(index), self.xp.arange(x.shape[1])[None, :]]

    def sum_leading(self, a: Array) -> Array:
        """Sum over every axis but the last: ``(..., N) -> (N,)``."""
        return self.xp.sum(a.reshape(-1, a.shape[-1]), 0)

    # --- reductions and losses --------------------------------------------------------------------
    def sum(self, x: Array, axis: int | None = None, keepdims: bool = False) -> Array:
        """Sum over ``axis`` (every axis when None, giving a 0-d array, not a Python scalar)."""
        return self.xp.asarray(self.xp.sum(x, axis=axis, keepdims=keepdims))

    def logsumexp(self, x: Array, keepdims: bool = False) -> Array:
        """``log(sum(exp(x)))`` over the last axis, without overflow: ``(..., N) -> (...)``."""
        # shift by the row maximum so that exp never overflows; the largest term is exp(0) = 1
        xp = self.xp
        m = xp.max(x, axis=-1, keepdims=True)
        out = xp.log(xp.sum(xp.exp(x - m), axis=-1, keepdims=True)) + m
        return out if keepdims else out[..., 0]

    def log_softmax(self, x: Array) -> Array:
        """``x - logsumexp(x)`` over the last axis, without overflow: ``(..., N) -> (..., N)``."""
        return x - self.logsumexp(x, keepdims=True)

    def softmax(self, x: Array) -> Array:
        """``exp(x) / sum(exp(x))`` over the last axis, without overflow: ``(..., N)``."""
        e = self.xp.exp(x - self.xp.max(x, axis=-1, keepdims=True))
        return e / self.xp.sum(e, axis=-1, keepdims=True)

    def log_sigmoid(self, x: Array) -> Array:
        """``log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|))``: finite for every finite ``x``."""
        xp = self.xp
        return xp.minimum(x, 0.0) - xp.log1p(xp.exp(-xp.abs(x)))  # exp(-|x|) <= 1

    def take_last(self, x: Array, ids: Array) -> Array:
        """``x[..., ids[...]]``: one entry of the last axis per position.

        ``x`` is ``(..., N)`` float, ``ids`` ``(...)`` int (from :meth:`int_array`); the result
        is ``(...)``.
        """
        return self.xp.take_along_axis(x, ids[..., None], axis=-1)[..., 0]

    def one_hot(self, ids: Array, n: int) -> Array:
        """``(...)`` int ids in ``0..n-1`` as ``(..., n)`` float rows of zeros with a single 1."""
        return self.xp.asarray(ids[..., None] == self.xp.arange(n), dtype=self.dtype)

    # --- embeddings -------------------------------------------------------------------------------
    def rows(self, W: Array, ids: Array) -> Array:
        """Embedding lookup ``W[ids]``: ``W`` ``(V, E)``, ``ids`` ``(...)`` int -> ``(..., E)``."""
        return W[ids]

    def add_rows(self, dW: Array, ids: Array, d: Array, *, inplace: bool = False) -> Array:
        """Scatter-add: ``dW`` with ``d[j]`` added to row ``ids[j]`` for every position ``j``.

        ``dW`` is ``(V, E)``, ``ids`` ``(...)`` int, ``d`` ``(..., E)``. Repeated ids accumulate
        (``numpy.add.at``, not ``dW[ids] += d``): the embedding backward. ``inplace`` as for
        :meth:`add`.
        """
        out = dW if inplace else self.copy(dW)
        self.xp.add.at(out, ids.reshape(-1), d.reshape(-1, dW.shape[-1]))
        return out


@attrs.frozen(eq=False)
class OneHotIds:
    """One-hot rows ``(..., V)`` kept as their ids: row ``j`` is ``scale[j]`` times the unit
    vector of ``ids[j]``.

    What :class:`seqkit.OneHot` gives the recurrent stack it feeds. Layer 0 projects it with
    :meth:`Ops.project` (a gather of ``weight_ih``'s columns) and takes ``d weight_ih`` with
    :meth:`Ops.project_grad` (a scatter-add), so a large vocabulary never becomes a (T, B, V)
    matrix, nor its gradient; the results equal the matrix product. It has no gradient of its
    own: a backend returns None for it.

    Attributes:
        ops: the :class:`Ops` whose arrays ``ids`` and ``scale`` are.
        ids: (...) int array in ``0..V-1`` (:meth:`Ops.int_array`).
        num_classes: V.
        scale: None (every row's one is 1), or a (..., 1) float array: the start input's 0 of
            :class:`seqkit.blocks.Encode`, a dropout mask's entry, padding's 0.
    """

    ops: Ops = attrs.field(repr=False)
    ids: Array
    num_classes: int
    scale: Array | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """``(..., V)``: the shape of the one-hot matrix it stands for."""
        return (*tuple(self.ids.shape), self.num_classes)

    @property
    def ndim(self) -> int:
        """The number of axes of the one-hot matrix."""
        return self.ids.ndim + 1

    def __getitem__(self, index: Any) -> OneHotIds:
        """The rows of the leading axes ``index`` selects (``x[t]``, ``x[a:b]``)."""
        scale = None if self.scale is None else self.scale[index]
        return OneHotIds(self.ops, self.ids[index], self.num_classes, scale)

    def __mul__(self, other: Any) -> OneHotIds:
        """The rows scaled by ``other``: a number, a (..., 1) array, or a (..., V) array of which
        only the entries at the ids count (a dropout mask)."""
        factor = self.ops.asarray(other)
        if factor.ndim == self.ndim and factor.shape[-1] == self.num_classes:
            # a mask shared over time, (1, B, V), is read at every step's ids
            full = self.ops.xp.broadcast_to(factor, (*self.ids.shape, self.num_classes))
            factor = self.ops.take_last(full, self.ids)[..., None]  # (..., 1)
        scale = factor if self.scale is None else self.scale * factor
        return OneHotIds(self.ops, self.ids, self.num_classes, scale)

    __rmul__ = __mul__

    def take_time(self, index: np.ndarray) -> OneHotIds:
        """:meth:`Ops.take_time` of the rows: ``x[index[t, b], b]``."""
        take = self.ops.take_time
        scale = None if self.scale is None else take(self.scale, index)
        return OneHotIds(self.ops, take(self.ids, index), self.num_classes, scale)

    def dense(self) -> Array:
        """The ``(..., V)`` float matrix itself (what the ids avoid building)."""
        y = self.ops.one_hot(self.ids, self.num_classes)
        return y if self.scale is None else y * self.scale
