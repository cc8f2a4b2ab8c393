"""The feed-forward blocks around a recurrent stack: input encodings and the dense head.

A model is a composition: input (:class:`OneHot` or :class:`Embedding`) -> recurrent stack ->
per-step dense head (:class:`Dense`, or :class:`DenseStack` with hidden layers) -> loss. Every
block here is an attrs frozen specification with the same four methods:

* ``param_shapes() -> {name: shape}`` and ``init_params(seed) -> {name: numpy array}``, with
  PyTorch's names, layouts and default initialisation, so weights copy 1:1 to and from
  ``torch.nn.Linear``, ``torch.nn.Sequential`` and ``torch.nn.Embedding``;
* ``forward(ops, params, x, *, ctx=None) -> (y, cache)``, autograd-safe: it modifies neither
  ``x`` nor a parameter, so an autograd backend calls it on tensors that require grad; ``ctx``
  (a :class:`~seqkit.context.Context`) is the block protocol's and these layers ignore it: they
  behave alike in training and evaluation;
* ``backward(ops, params, cache, dy) -> (dx, grads)``, the hand-written gradient the NumPy
  reference uses. ``dx`` is None for integer inputs.

Inputs are time-major ``(T, B, I)`` or one step ``(B, I)``; id inputs are ``(T, B)`` or ``(B,)``.
Id inputs are host data (NumPy arrays or lists; a backend array is copied to the host to check
its range).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np

from seqkit.context import Context
from seqkit.errors import ShapeError
from seqkit.ops import OneHotIds, Ops
from seqkit.shapes import Array

__all__ = ["ACTIVATIONS", "Dense", "DenseStack", "Embedding", "OneHot"]

#: The choices of ``Dense(activation=...)``: None is the identity (logits).
ACTIVATIONS = (None, "tanh", "relu")


def _positive(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{attribute.name!r} must be a positive integer (got {value!r})")


def _activation(instance, attribute, value) -> None:
    if value not in ACTIVATIONS:
        raise ValueError(f"{attribute.name!r} must be one of None, 'tanh', 'relu' (got {value!r})")


def _check_params(block: Any, params: dict) -> None:
    """Every parameter of ``block.param_shapes()`` is present with its shape."""
    for name, shape in block.param_shapes().items():
        if name not in params:
            raise ShapeError(
                f"{type(block).__name__}: params is missing {name!r}; "
                f"needs {', '.join(block.param_shapes())}"
            )
        got = tuple(params[name].shape)
        if got != shape:
            raise ShapeError(
                f"{type(block).__name__}: parameter {name!r} must have shape {shape} (got {got})"
            )


def _check_ids(ops: Ops, block: Any, ids: Any, n: int) -> Array:
    """(T, B) or (B,) host integers in 0..n-1, as the backend's int array."""
    if isinstance(ids, np.ndarray | list | tuple | int):
        a = np.asarray(ids)
    else:  # a backend array: check it on the host
        a = np.asarray(ops.to_numpy(ids))
    name = type(block).__name__
    if a.ndim not in (1, 2):
        raise ShapeError(f"{name}: 'ids' must be (T, B) or (B,) (got shape {a.shape})")
    if a.dtype.kind not in "iu":
        raise ShapeError(f"{name}: 'ids' must be integers (got dtype {a.dtype})")
    if a.size and (a.min() < 0 or a.max() >= n):
        bad = a.min() if a.min() < 0 else a.max()
        raise ValueError(f"{name}: 'ids' must be in 0..{n - 1} (got {bad})")
    return ops.int_array(a)


class NoParams:
    """What every block without parameters says about its parameters: none."""

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{}``: no parameters."""
        return {}

    def init_params(
        self, seed: int | np.random.Generator | None = None, *, dtype: str = "float64"
    ) -> dict[str, np.ndarray]:
        """``{}``: no parameters."""
        return {}


@attrs.frozen
class Dense:
    """A fully connected layer applied at every step: ``y = act(x @ weight.T + bias)``.

    Args:
        in_features: I, the last axis of the input.
        out_features: O, the last axis of the output.
        activation: None (the identity: the output is logits), ``"tanh"`` or ``"relu"``.

    Parameters as ``torch.nn.Linear(I, O)``: ``weight`` (O, I), ``bias`` (O,), both initialised
    U(-1/sqrt(I), 1/sqrt(I)).

    Notation (x (..., I), the leading axes are (T, B) or (B,))::

        F1. z = x @ W^T + b
        F2. y = act(z)                   identity, tanh or relu

    Backward::

        B2. dz = dy * act'(z)            1, 1 - y^2, or [y > 0]
        B1. dW = dz^T x and db = sum dz, summed over every step and sequence;  dx = dz @ W
    """

    in_features: int = attrs.field(validator=_positive)
    out_features: int = attrs.field(validator=_positive)
    activation: str | None = attrs.field(default=None, kw_only=True, validator=_activation)

    @property
    def output_size(self) -> int:
        """O, the last axis of the output."""
        return self.out_features

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{"weight": (O, I), "bias": (O,)}``."""
        return {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}

    def init_params(
        self, seed: int | np.random.Generator | None = None, *, dtype: str = "float64"
    ) -> dict[str, np.ndarray]:
        """PyTorch's default initialisation, U(-1/sqrt(I), 1/sqrt(I)), as NumPy arrays.

        Args:
            seed: an integer or a ``numpy.random.Generator``; the same seed gives the same values.
            dtype: ``"float32"`` or ``"float64"``.
        """
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        return {
            name: rng.uniform(-bound, bound, size=shape).astype(dtype)
            for name, shape in self.param_shapes().items()
        }

    def forward(
        self, ops: Ops, params: dict, x: Array, *, ctx: Context | None = None
    ) -> tuple[Array, Any]:
        """Apply the layer at every step.

        Args:
            params: ``weight`` (O, I) and ``bias`` (O,) backend arrays.
            x: (T, B, I) or (B, I).

        Returns:
            ``(y, cache)``: y (T, B, O) or (B, O), and what :meth:`backward` needs.
        """
        _check_params(self, params)
        if getattr(x, "ndim", None) not in (2, 3) or x.shape[-1] != self.in_features:
            raise ShapeError(
                f"Dense: 'x' must be (T, B, {self.in_features}) or (B, {self.in_features}) "
                f"(got shape {tuple(getattr(x, 'shape', ()))})"
            )
        z = ops.matmul(x, params["weight"].T) + params["bias"]  # F1, (..., O)
        if self.activation == "tanh":  # F2
            y = ops.tanh(z)
        elif self.activation == "relu":
            y = ops.relu(z)
        else:
            y = z
        return y, (x, y)

    def backward(self, ops: Ops, params: dict, cache: Any, dy: Array) -> tuple[Array, dict]:
        """Undo :meth:`forward`.

        Args:
            cache: what :meth:`forward` returned.
            dy: (T, B, O) or (B, O), the gradient of the loss with respect to ``y``.

        Returns:
            ``(dx, grads)``: dx shaped like ``x``; ``grads`` with ``weight`` (O, I), ``bias`` (O,).
        """
        x, y = cache
        I, O = self.in_features, self.out_features
        if self.activation == "tanh":  # B2
            dz = dy * (1.0 - y * y)
        elif self.activation == "relu":
            dz = dy * (y > 0)
        else:
            dz = dy
        dz2 = dz.reshape(-1, O)  # (T*B, O)
        grads = {
            "weight": ops.matmul(dz2.T, x.reshape(-1, I)),  # B1, (O, I)
            "bias": ops.sum_leading(dz),  # (O,)
        }
        dx = ops.matmul(dz, params["weight"])  # (..., I)
        return dx, grads


def _int_tuple(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


@attrs.frozen
class DenseStack:
    """A per-step head of dense layers: hidden layers with ``activation``, then linear logits.

    Args:
        sizes: ``(I, H_1, ..., H_n, O)``: the input size, the hidden sizes (none for a single
            layer) and the output size O; at least two entries.
        activation: of the hidden layers, ``"tanh"`` (default), ``"relu"`` or None. The last layer
            has none: it returns logits for a loss.

    Parameters are named as in ``torch.nn.Sequential(Linear, Tanh, Linear, ...)``'s
    ``state_dict``: ``"{k}.weight"`` and ``"{k}.bias"`` with k the module's index, counting the
    activation modules (``0``, ``2``, ``4`` ... with an activation; ``0``, ``1`` ... without), so
    weights copy 1:1 to and from that Sequential.
    """

    sizes: tuple[int, ...] = attrs.field(converter=_int_tuple)
    activation: str | None = attrs.field(default="tanh", kw_only=True, validator=_activation)

    @sizes.validator
    def _check_sizes(self, attribute, value) -> None:
        if len(value) < 2:
            raise ValueError(f"'sizes' must have at least 2 entries, (I, O) (got {value!r})")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0:
                raise ValueError(f"'sizes' must be positive integers (got {value!r})")

    @property
    def layers(self) -> tuple[Dense, ...]:
        """The :class:`Dense` layers, input first."""
        n = len(self.sizes) - 1
        return tuple(
            Dense(i, o, activation=self.activation if k < n - 1 else None)
            for k, (i, o) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True))
        )

    @property
    def in_features(self) -> int:
        """I, the last axis of the input."""
        return self.sizes[0]

    @property
    def out_features(self) -> int:
        """O, the last axis of the output."""
        return self.sizes[-1]

    @property
    def output_size(self) -> int:
        """O, the last axis of the output."""
        return self.sizes[-1]

    def prefixes(self) -> tuple[str, ...]:
        """Each layer's parameter prefix, ``"0."``, ``"2."`` ... (torch.nn.Sequential's index)."""
        stride = 1 if self.activation is None else 2
        return tuple(f"{stride * k}." for k in range(len(self.sizes) - 1))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name and shape, input layer first."""
        return {
            prefix + name: shape
            for prefix, layer in zip(self.prefixes(), self.layers, strict=True)
            for name, shape in layer.param_shapes().items()
        }

    def init_params(
        self, seed: int | np.random.Generator | None = None, *, dtype: str = "float64"
    ) -> dict[str, np.ndarray]:
        """Each layer's PyTorch default initialisation, input layer first, from one generator."""
        rng = np.random.default_rng(seed)
        return {
            prefix + name: value
            for prefix, layer in zip(self.prefixes(), self.layers, strict=True)
            for name, value in layer.init_params(rng, dtype=dtype).items()
        }

    def _split(self, params: dict) -> list[dict]:
        return [
            {name: params[prefix + name] for name in ("weight", "bias")}
            for prefix in self.prefixes()
        ]

    def forward(
        self, ops: Ops, params: dict, x: Array, *, ctx: Context | None = None
    ) -> tuple[Array, Any]:
        """Apply every layer at every step.

        Args:
            params: every parameter of :meth:`param_shapes`.
            x: (T, B, I) or (B, I).

        Returns:
            ``(y, cache)``: logits (T, B, O) or (B, O), and what :meth:`backward` needs.
        """
        _check_params(self, params)
        caches = []
        for layer, p in zip(self.layers, self._split(params), strict=True):
            x, cache = layer.forward(ops, p, x)
            caches.append(cache)
        return x, caches

    def backward(self, ops: Ops, params: dict, cache: Any, dy: Array) -> tuple[Array, dict]:
        """Undo :meth:`forward`, last layer first.

        Returns:
            ``(dx, grads)``: dx (T, B, I) or (B, I); grads keyed as :meth:`param_shapes`.
        """
        grads = {}
        parts = zip(self.prefixes(), self.layers, self._split(params), cache, strict=True)
        for prefix, layer, p, c in reversed(list(parts)):
            dy, g = layer.backward(ops, p, c, dy)
            grads.update({prefix + name: value for name, value in g.items()})
        return dy, {name: grads[name] for name in self.param_shapes()}


@attrs.frozen
class Embedding:
    """A learned embedding of ids: ``y<t, b> = weight[ids<t, b>]``.

    Args:
        num_embeddings: V, the number of ids (the vocabulary size).
        embedding_dim: E, the size of each embedding vector.

    Parameters as ``torch.nn.Embedding(V, E)``: ``weight`` (V, E), initialised N(0, 1).

    Notation::

        F1. y<t, b> = W[ids<t, b>]

    Backward::

        B1. dW[v] = sum of dy<t, b> over every position with ids<t, b> = v (a scatter-add: an id
            that appears twice gets both gradients); the ids get none.
    """

    num_embeddings: int = attrs.field(validator=_positive)
    embedding_dim: int = attrs.field(validator=_positive)

    @property
    def output_size(self) -> int:
        """E, the last axis of the output."""
        return self.embedding_dim

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{"weight": (V, E)}``."""
        return {"weight": (self.num_embeddings, self.embedding_dim)}

    def init_params(
        self, seed: int | np.random.Generator | None = None, *, dtype: str = "float64"
    ) -> dict[str, np.ndarray]:
        """PyTorch's default initialisation, N(0, 1), as a NumPy array."""
        rng = np.random.default_rng(seed)
        shape = (self.num_embeddings, self.embedding_dim)
        return {"weight": rng.standard_normal(shape).astype(dtype)}

    def forward(
        self, ops: Ops, params: dict, ids: Any, *, ctx: Context | None = None
    ) -> tuple[Array, Any]:
        """Look up every id.

        Args:
            params: ``weight`` (V, E).
            ids: (T, B) or (B,) integers in 0..V-1.

        Returns:
            ``(y, cache)``: y (T, B, E) or (B, E), and what :meth:`backward` needs.
        """
        _check_params(self, params)
        ids = _check_ids(ops, self, ids, self.num_embeddings)
        return ops.rows(params["weight"], ids), ids  # F1

    def backward(self, ops: Ops, params: dict, cache: Any, dy: Array) -> tuple[None, dict]:
        """Undo :meth:`forward`.

        Args:
            dy: (T, B, E) or (B, E).

        Returns:
            ``(None, {"weight": (V, E)})``: ids have no gradient.
        """
        dW = ops.zeros((self.num_embeddings, self.embedding_dim))
        return None, {"weight": ops.add_rows(dW, cache, dy, inplace=True)}  # B1


@attrs.frozen
class OneHot(NoParams):
    """The seed's input encoding: each id becomes a row of zeros with a 1 at the id.

    Args:
        num_classes: V, the number of ids (the vocabulary size) and the output size.

    The rows are not built: :meth:`forward` returns a :class:`~seqkit.ops.OneHotIds`, which a
    recurrent stack projects by a gather of ``weight_ih``'s columns on every backend (its
    gradient a scatter-add), equal to the product with the (T, B, V) matrix and without its
    memory; ``.dense()`` builds the matrix where one is wanted.

    No parameters; the backward returns no gradient (ids are not differentiable).
    """

    num_classes: int = attrs.field(validator=_positive)

    @property
    def output_size(self) -> int:
        """V, the last axis of the output."""
        return self.num_classes

    def forward(
        self, ops: Ops, params: dict | None, ids: Any, *, ctx: Context | None = None
    ) -> tuple[OneHotIds, Any]:
        """Encode every id.

        Args:
            params: ignored (``{}`` or None).
            ids: (T, B) or (B,) integers in 0..V-1.

        Returns:
            ``(y, None)``: y a :class:`~seqkit.ops.OneHotIds` standing for the (T, B, V) or
            (B, V) float rows, one 1 per row (``y.dense()`` is that array).
        """
        ids = _check_ids(ops, self, ids, self.num_classes)
        return OneHotIds(ops, ids, self.num_classes), None

    def backward(self, ops: Ops, params: dict | None, cache: Any, dy: Array) -> tuple[None, dict]:
        """``(None, {})``: neither the ids nor any parameter has a gradient."""
        return None, {}
