"""Blocks: the pieces a model is a composition of, each with its own forward and backward.

A block has ``param_shapes()``, ``init_params(rng)`` and the named pair

* ``forward(ops, params, x, *, ctx) -> (y, cache)``, autograd-safe (it modifies neither ``x``
  nor a parameter, so an autograd backend differentiates it);
* ``backward(ops, params, cache, dy) -> (dx, grads)``, the hand-written gradient the NumPy
  reference uses; ``grads`` holds the block's parameters only.

``ctx`` is the :class:`~seqkit.context.Context` of the call: training or not, and the host
random generator dropout masks are drawn from (``Context()`` everywhere but ``fit``'s step).

What flows between the blocks of a recurrent model is a :class:`Seq`: per-step data with the
sequences' lengths and a recurrent state, so that the state reaches the block that reads it
(many-to-one pooling, an encoder-decoder) without a model unpacking caches. :class:`Chain`
composes blocks as thinc's ``chain`` does: its forward collects every block's cache, its
backward runs the blocks' backwards in reverse.

Every array-level layer of :mod:`seqkit.layers` (``OneHot``, ``Embedding``, ``DenseStack``) and
any other with the same pair (:class:`~seqkit.dropout.Dropout`) becomes a block over a
:class:`Seq` through :class:`Encode` (the input, with the zero start input) or :class:`PerStep`
(dropout, the head).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np

from seqkit.context import Context
from seqkit.dropout import stack_backward, stack_forward
from seqkit.layers import NoParams
from seqkit.recurrent import Recurrent

__all__ = ["Chain", "Encode", "LastState", "PerStep", "Seq", "Stack"]


@attrs.frozen
class Seq:
    """Per-step data of a batch of sequences, with their lengths and a recurrent state.

    Attributes:
        data: (T, B) ids, (T, B, F) features, or (B, F) for a pooled sequence; None in a
            gradient when no block read the data.
        lengths: (B,) host integers, or None (every sequence has T steps).
        state: None (zeros), h (L*D, B, H) or ``(h, c)``: the initial state going into a
            recurrent stack, the final state coming out; in a gradient, their gradients.
    """

    data: Any
    lengths: np.ndarray | None = None
    state: Any = None


def prefixed(prefix: str, values: dict) -> dict:
    """``{"w": 1} -> {"prefix.w": 1}``."""
    return {f"{prefix}.{name}": value for name, value in values.items()}


def unprefixed(prefix: str, values: dict) -> dict:
    """The entries of ``values`` under ``prefix.``, with the prefix removed."""
    start = prefix + "."
    return {name[len(start) :]: value for name, value in values.items() if name.startswith(start)}


@attrs.frozen
class Chain:
    """Blocks applied one after the other; parameter names are ``"{key}.{name}"``.

    Args:
        blocks: ``{key: block}`` in order; keys are the parameter prefixes (a block without
            parameters still needs one).
    """

    blocks: dict[str, Any]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name and shape, first block first."""
        return {
            name: shape
            for key, block in self.blocks.items()
            for name, shape in prefixed(key, block.param_shapes()).items()
        }

    def init_params(self, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """Each block's default initialisation, in order, from one generator."""
        rng = np.random.default_rng(rng)
        values: dict[str, np.ndarray] = {}
        for key, block in self.blocks.items():
            values.update(prefixed(key, block.init_params(rng)))
        return values

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """``(parameter prefix, block)`` of every block that is not a chain, nested ones too."""
        for key, block in self.blocks.items():
            if isinstance(block, Chain):
                yield from block.walk(prefix + key + ".")
            else:
                yield prefix + key, block

    def forward(self, ops, params: dict, x: Any, *, ctx: Context) -> tuple[Any, list]:
        """Every block's forward in order; the cache holds each block's cache."""
        caches = []
        for key, block in self.blocks.items():
            x, cache = block.forward(ops, unprefixed(key, params), x, ctx=ctx)
            caches.append(cache)
        return x, caches

    def backward(self, ops, params: dict, cache: list, dy: Any) -> tuple[Any, dict]:
        """Every block's backward, last block first; gradients keyed as :meth:`param_shapes`."""
        grads: dict = {}
        for (key, block), c in reversed(list(zip(self.blocks.items(), cache, strict=True))):
            dy, g = block.backward(ops, unprefixed(key, params), c, dy)
            grads.update(prefixed(key, g))
        return dy, grads


@attrs.frozen
class PerStep:
    """An array layer applied to a :class:`Seq`'s data at every step; lengths and state pass.

    The layer's ``forward(ops, params, x, *, ctx)`` and ``backward(ops, params, cache, dy)``
    (a dense head, :class:`~seqkit.dropout.Dropout`).
    """

    layer: Any

    @property
    def output_size(self) -> int:
        """The layer's output size."""
        return self.layer.output_size

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The layer's parameters."""
        return self.layer.param_shapes()

    def init_params(self, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """The layer's default initialisation."""
        return self.layer.init_params(rng)

    def forward(self, ops, params: dict, x: Seq, *, ctx: Context) -> tuple[Seq, Any]:
        y, cache = self.layer.forward(ops, params, x.data, ctx=ctx)
        return Seq(y, x.lengths, x.state), cache

    def backward(self, ops, params: dict, cache: Any, dy: Seq) -> tuple[Seq, dict]:
        dx, grads = self.layer.backward(ops, params, cache, dy.data)
        return Seq(dx, dy.lengths, dy.state), grads


@attrs.frozen
class Encode(PerStep):
    """The input encoding of ids: ``Seq((T, B) ids) -> Seq((T, B, I))``, state passed through.

    Args:
        layer: :class:`~seqkit.OneHot` or :class:`~seqkit.Embedding` (or any layer of ids).
        start_id: the id that stands for the zero vector (the start input of a language model
            or a decoder, ``seqkit.data.lm_batch``); None when every id is encoded.

    Notation::

        F1. x<t, b> = layer(ids<t, b>) * [ids<t, b> != start_id]
        B1. the layer's backward of dx * [ids != start_id]: the start input has no gradient
    """

    start_id: int | None = None

    def forward(self, ops, params: dict, x: Seq, *, ctx: Context) -> tuple[Seq, Any]:
        y, cache = self.layer.forward(ops, params, x.data, ctx=ctx)  # F1
        keep = None
        if self.start_id is not None:
            keep = ops.asarray((np.asarray(x.data) != self.start_id)[..., None])  # (T, B, 1)
            y = y * keep
        return Seq(y, x.lengths, x.state), (cache, keep)

    def backward(self, ops, params: dict, cache: Any, dy: Seq) -> tuple[Seq, dict]:
        layer_cache, keep = cache
        d = dy.data if keep is None or dy.data is None else dy.data * keep  # B1 (None: ids)
        _, grads = self.layer.backward(ops, params, layer_cache, d)
        return Seq(None, dy.lengths, dy.state), grads


@attrs.frozen
class Stack:
    """A recurrent stack on a backend: ``Seq(x (T, B, I), lengths, state0)`` ->
    ``Seq(out (T, B, D*H), lengths, final state)``.

    Runs :func:`~seqkit.dropout.stack_forward` (one backend call of the whole stack, or one per
    layer with masks on the layers' inputs when training). The backward takes the gradients of
    ``out`` (None: no block read it) and of the final state (None: zeros) and returns those of
    ``x`` and of the initial state in the :class:`Seq`, the parameters' apart.

    With ``layer.learn_initial_state`` the stack also holds ``h0`` (and ``c0``), (L*D, H) each
    (:meth:`~seqkit.Recurrent.initial_state_shapes`), starting at 0; a ``Seq`` without a state
    starts from them broadcast over the batch::

        F1. s0 = zeros((L*D, B, H)) + h0[:, None, :]     (and c0)
        B1. d h0 = sum over the batch of d s0            (the Seq's state gradient is then None)

    A ``Seq`` that brings its own state (a decoder, sampling) leaves them unused (zero gradient).

    Args:
        layer: the :class:`~seqkit.Recurrent` specification (with its ``dropout``).
        backend: the :class:`~seqkit.Backend` whose kernels run it.
    """

    layer: Recurrent
    backend: Any = attrs.field(eq=False, repr=False)

    @property
    def output_size(self) -> int:
        """D*H, the features per step of the output."""
        return self.layer.output_size

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The stack's parameters, named as in ``torch.nn.LSTM``, then ``h0`` (and ``c0``)
        when the initial state is learned."""
        return {**self.layer.param_shapes(), **self.layer.initial_state_shapes()}

    def init_params(self, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """PyTorch's default initialisation (a learned initial state starts at 0 and draws
        nothing, so the weights are those of the same stack without it)."""
        values = self.layer.init_params(rng)
        values.update({n: np.zeros(s) for n, s in self.layer.initial_state_shapes().items()})
        return values

    def forward(self, ops, params: dict, x: Seq, *, ctx: Context) -> tuple[Seq, Any]:
        T, B = x.data.shape[0], x.data.shape[1]
        learned = self.layer.initial_state_shapes()
        state = x.state
        if state is None and learned:
            parts = [ops.zeros((s[0], B, s[1])) + params[n][:, None, :] for n, s in learned.items()]
            state = parts[0] if len(parts) == 1 else tuple(parts)  # F1
        weights = {name: params[name] for name in self.layer.param_shapes()}
        out, final, cache = stack_forward(
            self.backend, self.layer, weights, x.data, state, x.lengths, ctx=ctx
        )
        return Seq(out, x.lengths, final), (cache, T, B, x.state is None)

    def backward(self, ops, params: dict, cache: Any, dy: Seq) -> tuple[Seq, dict]:
        stack_cache, T, B, from_learned = cache
        d_out = dy.data if dy.data is not None else ops.zeros((T, B, self.layer.output_size))
        d_x, d_state, grads = stack_backward(self.backend, stack_cache, d_out, dy.state)
        learned = self.layer.initial_state_shapes()
        if learned:
            parts = d_state if isinstance(d_state, tuple) else (d_state,)
            for (name, shape), d in zip(learned.items(), parts):
                grads[name] = d.sum(axis=1) if from_learned else ops.zeros(shape)  # B1
            if from_learned:
                d_state = None
        return Seq(d_x, dy.lengths, d_state), grads


@attrs.frozen
class LastState(NoParams):
    """Many-to-one pooling: the last layer's final h of every direction side by side.

    ``Seq(out, lengths, final)`` -> ``Seq((B, D*H))``: rows ``-D:`` of h (L*D, B, H) are the last
    layer (forward, then reverse), as in PyTorch; direction d's H features go to columns
    ``d*H .. (d+1)*H - 1``. The backward puts the gradient back into h (zero below the last
    layer, zero for c: nothing reads it) and gives no gradient to the per-step outputs.
    """

    layer: Recurrent

    @property
    def output_size(self) -> int:
        """D*H."""
        return self.layer.output_size

    def forward(self, ops, params: dict, x: Seq, *, ctx: Context) -> tuple[Seq, Any]:
        D, H = self.layer.num_directions, self.layer.state_sizes[0]  # P under a projection
        h_n = x.state[0] if isinstance(x.state, tuple) else x.state  # (L*D, B, H)
        B = h_n.shape[1]
        return Seq(h_n[-D:].swapaxes(0, 1).reshape(B, D * H)), x.lengths

    def backward(self, ops, params: dict, cache: Any, dy: Seq) -> tuple[Seq, dict]:
        L, D = self.layer.num_layers, self.layer.num_directions
        H, *others = self.layer.state_sizes  # h's features (P under a projection), then c's
        B = dy.data.shape[0]
        d_h = ops.zeros((L * D, B, H))
        d_h[-D:] = dy.data.reshape(B, D, H).swapaxes(0, 1)  # a fresh array: the backward may write
        if not others:
            return Seq(None, cache, d_h), {}
        rest = tuple(ops.zeros((L * D, B, n)) for n in others)
        return Seq(None, cache, (d_h, *rest)), {}
