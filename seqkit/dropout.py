"""Inverted dropout with masks drawn on the host, as a block and between stacked recurrent layers.

In training each feature is zeroed with probability p and the survivors are scaled by
``1/(1-p)``, so that a unit's expected value is the same in training and evaluation; in
evaluation dropout is the identity. Masks come from the training random state on the host
(:class:`~seqkit.context.Context`), never from a backend's generator, so NumPy and torch draw
the same masks from the same seed, a resumed run draws what the uninterrupted one would, and N
data-parallel processes draw what one process would.

Notation (x (..., B, F); a mask m has the shape of x)::

    F1. m = draw_mask(rng, shape, p)      0 with probability p, else 1/(1-p)
    F2. y = x * m

Backward::

    B2. dx = dy * m                       the same mask: dropout is linear in x

p = 0 draws nothing (the generator does not advance) and returns the input itself, so a model
with ``dropout=0`` trains bit for bit as one without dropout.

A recurrent stack's own masks (:func:`stack_masks`, drawn in this order for each layer l and,
within a layer, each direction d; a probability of 0 draws nothing):

=========================  ==================  ===============================================
option of ``Recurrent``    mask, per call      what it multiplies
=========================  ==================  ===============================================
``dropout`` (l > 0)        (T, B, D*H)         the output of layer l-1 (inverted dropout)
``input_dropout``          (B, I_l)            layer l's input, the same at every step
``recurrent_dropout``      (B, H) per d        h<t-1> in the recurrent product, every step
``zoneout``                (T, B, F) per d     0/1: 1 keeps a unit's previous value (h, then c)
=========================  ==================  ===============================================

(P for H under a projection.) The first two act between the backend's calls:
:func:`stack_forward` then runs the stack one layer at a time through the backend's public
``recurrent_forward`` (on torch each layer is one single-layer call of the fused kernel) with the
masks in between; without them, or in evaluation, it makes the one whole-stack call. The last two
act inside the time loop (:mod:`seqkit.bptt`, F2r and F3z) and reach it as :class:`LoopMasks`;
in evaluation recurrent dropout is the identity and zoneout's mask is its expectation p.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from seqkit.context import Context
from seqkit.errors import ShapeError
from seqkit.layers import NoParams
from seqkit.ops import Ops
from seqkit.shapes import Array

__all__ = [
    "Dropout",
    "LoopMasks",
    "StackCache",
    "StackMasks",
    "check_probability",
    "draw_keep",
    "draw_mask",
    "dropout_mask",
    "probability",
    "stack_backward",
    "stack_forward",
    "stack_masks",
    "zoneout_mask",
]


def check_probability(name: str, value: Any) -> None:
    """Raise ValueError unless ``value`` is a number in [0, 1); ``name`` is the argument."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not 0.0 <= float(value) < 1.0
    ):
        raise ValueError(f"{name!r} must be a probability in [0, 1) (got {value!r})")


def probability(instance, attribute, value) -> None:
    """An attrs validator: the field is a probability in [0, 1) (``Recurrent.dropout``)."""
    check_probability(attribute.name, value)


def draw_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float) -> np.ndarray:
    """An inverted-dropout mask: 0 with probability ``p``, else ``1/(1-p)``, float64 on the host.

    Args:
        rng: the generator to draw from; it advances by one float per entry (not at all for
            ``p = 0``, which returns ones).
        shape: the mask's shape; in data-parallel training the *global* batch's, so that every
            process draws the same numbers and then keeps its own rows
            (``mask[..., rank::world_size, :]``, see :func:`dropout_mask`).
        p: the drop probability, in [0, 1).

    Returns:
        (shape) float64 array.
    """
    check_probability("p", p)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"'rng' must be a numpy.random.Generator (got {type(rng).__name__}); "
            "build one with numpy.random.default_rng(seed)"
        )
    if p == 0:
        return np.ones(shape)
    keep = rng.random(shape) >= p  # each entry kept with probability 1 - p
    return keep * (1.0 / (1.0 - p))


def draw_keep(rng: np.random.Generator, shape: tuple[int, ...], p: float) -> np.ndarray:
    """A zoneout mask: 1 (keep the previous value) with probability ``p``, else 0; float64.

    The same draw as :func:`draw_mask` (``keep = 1 - (draw_mask != 0)`` for one generator
    state), not scaled: zoneout mixes two states rather than dropping one.
    """
    return (draw_mask(rng, shape, p) == 0).astype(np.float64)


def zoneout_mask(ctx: Context, shape: tuple[int, ...], p: float) -> np.ndarray | None:
    """:func:`dropout_mask`'s rules (None in evaluation and for p = 0, a child generator, the
    global batch's rows) for a zoneout mask of 0 and 1 (:func:`draw_keep`)."""
    return _host_mask(ctx, shape, p, draw_keep)


def dropout_mask(ctx: Context, shape: tuple[int, ...], p: float) -> np.ndarray | None:
    """The mask a block applies to an array of ``shape`` under ``ctx``, or None for the identity.

    None in evaluation and for ``p = 0`` (nothing is drawn). Otherwise the mask of this
    process's rows: ``shape`` is ``(..., B, F)`` with B the local batch; with
    ``ctx.global_batch`` set, the mask of the global batch is drawn and rows
    ``rank::world_size`` of its second-to-last axis are kept.

    Args:
        ctx: the forward's :class:`~seqkit.context.Context`.
        shape: ``(..., B, F)``: (T, B, F) for a sequence, (B, F) for one step or one mask per
            sequence.
        p: the drop probability, in [0, 1).

    Returns:
        None, or a (shape) float64 host array of 0 and ``1/(1-p)``.
    """
    return _host_mask(ctx, shape, p, draw_mask)


def _host_mask(ctx: Context, shape: tuple[int, ...], p: float, draw) -> np.ndarray | None:
    if not isinstance(ctx, Context):
        raise TypeError(f"'ctx' must be a seqkit.context.Context (got {type(ctx).__name__})")
    check_probability("p", p)
    if not ctx.training or p == 0:
        return None
    if ctx.rng is None:
        raise ValueError(
            f"dropout with p={p} in training needs ctx.rng, a numpy.random.Generator (got None)"
        )
    shape = tuple(shape)
    if len(shape) < 2:
        raise ShapeError(f"a dropout mask needs a (..., B, F) shape (got {shape})")
    rows = ctx.rows(shape[-2])
    # Each mask comes from a child generator seeded by one draw of ctx.rng, so ctx.rng advances by
    # the same amount whatever the shape: data-parallel ranks pad their shards to their own
    # longest sequence (a different T), and the leading axis of a C-order draw keeps the values of
    # every valid step equal to those of one process's mask.
    child = np.random.default_rng(ctx.rng.integers(2**63))
    if ctx.global_batch is None:
        return draw(child, shape, p)
    full = draw(child, (*shape[:-2], ctx.global_batch, shape[-1]), p)
    return full[..., rows, :]


@attrs.frozen
class Dropout(NoParams):
    """Inverted dropout of every feature at every step, in training only.

    Args:
        p: the probability that a feature is zeroed, in [0, 1); survivors are scaled by
            ``1/(1-p)``. ``p = 0`` is the identity and draws nothing.

    No parameters. A model puts it after its input encoding and before its head.
    """

    p: float = attrs.field(validator=probability)

    def forward(self, ops: Ops, params: dict | None, x: Array, *, ctx: Context) -> tuple[Any, Any]:
        """Drop features of ``x``, drawing the mask from ``ctx.rng`` in training.

        Args:
            params: ignored (``{}`` or None).
            x: (T, B, F) or (B, F) backend array.
            ctx: the forward's :class:`~seqkit.context.Context`.

        Returns:
            ``(y, cache)``: y shaped like x (``x`` itself in evaluation or for ``p = 0``), and
            the mask as a backend array (None when nothing was drawn) for :meth:`backward`.
        """
        if getattr(x, "ndim", None) not in (2, 3):
            raise ShapeError(
                f"Dropout: 'x' must be (T, B, F) or (B, F) (got shape "
                f"{tuple(getattr(x, 'shape', ()))})"
            )
        mask = dropout_mask(ctx, tuple(x.shape), self.p)  # F1
        if mask is None:
            return x, None
        mask = ops.asarray(mask)
        return x * mask, mask  # F2

    def backward(self, ops: Ops, params: dict | None, cache: Any, dy: Array) -> tuple[Array, dict]:
        """Undo :meth:`forward`: ``(dx, {})`` with dx shaped like ``dy`` (None for None: the
        gradient of one-hot ids)."""
        if cache is None or dy is None:
            return dy, {}
        return dy * cache, {}  # B2


# --- the masks of a recurrent stack ------------------------------------------------------------
@attrs.frozen
class LoopMasks:
    """The masks the time loop applies (:mod:`seqkit.bptt` F2r and F3z), per layer and
    direction, entry ``k = l*D + d``.

    Attributes:
        hidden: per k, a (B, H) backend array ((B, P) under a projection) that multiplies
            h<t-1> in the recurrent product (inverted dropout, ``recurrent_dropout``), or None.
        zoneout: per k, one entry per state part (h, then c): a (T, B, F) backend array of 0
            and 1 in training (1: the unit keeps its previous value; indexed by the direction's
            processing step), or the float p in evaluation; or None for no zoneout.
    """

    hidden: tuple
    zoneout: tuple

    @classmethod
    def evaluation(cls, layer) -> LoopMasks | None:
        """The masks of an evaluation pass: zoneout's expectation p, no dropout; None when
        ``layer.zoneout`` is 0."""
        if not layer.zoneout:
            return None
        LD = layer.num_layers * layer.num_directions
        p = float(layer.zoneout)
        return cls((None,) * LD, ((p,) * len(layer.state_names),) * LD)

    def layer(self, k: int, directions: int) -> LoopMasks:
        """The entries of layer k, for a one-layer stack of it."""
        rows = slice(k * directions, (k + 1) * directions)
        return LoopMasks(self.hidden[rows], self.zoneout[rows])

    def check(self, layer, steps: int, batch: int) -> None:
        """Raise ShapeError unless these masks fit ``layer`` on a (T, B) batch."""
        LD = layer.num_layers * layer.num_directions
        if len(self.hidden) != LD or len(self.zoneout) != LD:
            raise ShapeError(
                f"masks must have L*D = {LD} entries per kind (got {len(self.hidden)} hidden, "
                f"{len(self.zoneout)} zoneout)"
            )
        h = layer.state_sizes[0]
        for m in self.hidden:
            if m is not None and tuple(m.shape) != (batch, h):
                raise ShapeError(
                    f"a recurrent-dropout mask must have shape (B, H) = {(batch, h)} "
                    f"(got {tuple(m.shape)})"
                )
        for parts in self.zoneout:
            if parts is None:
                continue
            if len(parts) != len(layer.state_names):
                raise ShapeError(
                    f"zoneout needs one mask per state part {layer.state_names} (got {len(parts)})"
                )
            for z, n in zip(parts, layer.state_sizes):
                if not isinstance(z, float) and tuple(z.shape) != (steps, batch, n):
                    raise ShapeError(
                        f"a zoneout mask must be a float or have shape (T, B, F) = "
                        f"{(steps, batch, n)} (got {tuple(z.shape)})"
                    )


@attrs.frozen
class StackMasks:
    """What :func:`stack_masks` drew for one training call of a stack (host float64 arrays).

    Attributes:
        inputs: per layer, the mask of its input: (T, B, F) (``dropout`` of the layer below,
            times ``input_dropout``'s), (1, B, F) (``input_dropout`` alone), or None.
        loop: the :class:`LoopMasks` of ``recurrent_dropout`` and ``zoneout`` (host arrays),
            or None when the layer has neither.
    """

    inputs: list
    loop: LoopMasks | None


def stack_masks(ctx: Context, layer, steps: int, batch: int) -> StackMasks:
    """Every mask a training call of ``layer`` on a (T, B) batch uses, drawn in the documented
    order (this module's table); in evaluation only zoneout's constants (no draw)."""
    T, B, D = steps, batch, layer.num_directions
    inputs: list = []
    hidden: list = []
    zoneout: list = []
    for k in range(layer.num_layers):
        between = dropout_mask(ctx, (T, B, layer.output_size), layer.dropout) if k else None
        own = dropout_mask(ctx, (B, layer.layer_input_size(k)), layer.input_dropout)
        if own is not None:
            own = own[None]  # (1, B, F): the same at every step
            between = own if between is None else between * own
        inputs.append(between)
        for _ in range(D):
            hidden.append(dropout_mask(ctx, (B, layer.state_sizes[0]), layer.recurrent_dropout))
            parts = [zoneout_mask(ctx, (T, B, n), layer.zoneout) for n in layer.state_sizes]
            zoneout.append(None if parts[0] is None else tuple(parts))
    loop = None
    if ctx.training and layer.loop_options:
        loop = LoopMasks(tuple(hidden), tuple(zoneout))
    return StackMasks(inputs, loop)


def _on(backend, masks: LoopMasks | None) -> LoopMasks | None:
    """``masks`` with every array on ``backend``."""
    if masks is None:
        return None

    def put(m):
        return m if m is None or isinstance(m, float) else backend.asarray(m)

    zone = tuple(None if z is None else tuple(put(m) for m in z) for z in masks.zoneout)
    return LoopMasks(tuple(put(m) for m in masks.hidden), zone)


@attrs.define
class StackCache:
    """What :func:`stack_backward` needs from :func:`stack_forward`.

    Attributes:
        layer: the whole stack's :class:`~seqkit.Recurrent`.
        layers: the specification of each backend call: the stack itself for one whole-stack
            call, else one single-layer specification per layer (input size I for layer 0,
            D*H above).
        caches: the backend's cache of each call, in the same order.
        masks: for a call per layer, the mask each layer's input was multiplied by (backend
            arrays, None where none; :class:`StackMasks` ``.inputs``); empty for a whole-stack
            call.
    """

    layer: Any
    layers: list
    caches: list
    masks: list


def _layer_params(layer, params: dict, k: int) -> dict:
    """Layer k's parameters under the names of a one-layer stack (``_l{k}`` -> ``_l0``)."""
    return {
        short + layer.suffix(0, d): params[short + layer.suffix(k, d)]
        for d in range(layer.num_directions)
        for short in layer.direction_shapes(k)
    }


def _split_state(layer, state: tuple, k: int) -> tuple:
    """Layer k's rows ``k*D .. k*D+D-1`` of each (L*D, B, H) part."""
    D = layer.num_directions
    return tuple(part[k * D : (k + 1) * D] for part in state)


def _pack(layer, parts) -> Any:
    return parts[0] if len(layer.state_names) == 1 else tuple(parts)


def _unpack(state) -> tuple:
    return tuple(state) if isinstance(state, tuple | list) else (state,)


def _concat_states(ops: Ops, per_layer: list) -> tuple:
    """Per-layer tuples of (D, B, H) parts as one tuple of (L*D, B, H) parts."""
    return tuple(ops.xp.concatenate(parts, axis=0) for parts in zip(*per_layer))


def stack_forward(
    backend,
    layer,
    params: dict,
    x: Any,
    initial_state: Any = None,
    lengths: Any = None,
    *,
    ctx: Context,
) -> tuple[Array, Any, StackCache]:
    """Run a recurrent stack with its masks (this module's table) in training.

    The masks come from :func:`stack_masks`. Without masks on layer inputs (no ``dropout``
    between layers, no ``input_dropout``, or evaluation) this is the single call
    ``backend.recurrent_forward(layer, ..., masks=loop masks)``. Otherwise layer k runs as a
    one-layer stack through the same public method, its input multiplied by its mask; on torch
    each layer is then one call of the fused kernel unless the loop needs masks too.

    Args:
        backend: any :class:`~seqkit.Backend`.
        layer: the :class:`~seqkit.Recurrent` stack, with its ``dropout`` and the other masks'
            probabilities.
        params: every parameter of ``layer.param_shapes()`` (PyTorch's names).
        x: (T, B, I).
        initial_state: None (zeros), h0 (L*D, B, H), or ``(h0, c0)``.
        lengths: None, or (B,) integers in 1..T; padded steps output zeros and change nothing,
            with or without masks.
        ctx: the forward's :class:`~seqkit.context.Context`.

    Returns:
        ``(out, final, cache)`` as ``backend.recurrent_forward`` returns them: out (T, B, D*H),
        final h_n (L*D, B, H) or ``(h_n, c_n)``, and a :class:`StackCache` for
        :func:`stack_backward`.
    """
    x = backend._check_x(layer, x)
    T, B, _ = x.shape
    drawn = stack_masks(ctx, layer, T, B)
    loop = _on(backend, drawn.loop)
    if all(m is None for m in drawn.inputs):
        out, final, cache = backend.recurrent_forward(
            layer, params, x, initial_state, lengths, masks=loop
        )
        return out, final, StackCache(layer, [layer], [cache], [])
    # the whole stack's validation, once: each call below then sees well-formed arguments
    params = backend._check_params(layer, params)
    state0 = backend._check_state(layer, initial_state, B, "initial_state")
    first = attrs.evolve(
        layer, num_layers=1, dropout=0.0, input_dropout=0.0, learn_initial_state=False
    )
    above = attrs.evolve(first, input_size=layer.output_size)
    cache = StackCache(layer, [], [], [])
    finals = []
    inp = x
    for k in range(layer.num_layers):
        spec = first if k == 0 else above
        mask = drawn.inputs[k]
        if mask is not None:
            mask = backend.asarray(mask)
            inp = inp * mask  # padded steps are zeros and stay zeros (and a cell never sees x)
        cache.masks.append(mask)
        s0 = _pack(layer, _split_state(layer, state0, k))
        masks = None if loop is None else loop.layer(k, layer.num_directions)
        out, final, c = backend.recurrent_forward(
            spec, _layer_params(layer, params, k), inp, s0, lengths, masks=masks
        )
        cache.layers.append(spec)
        cache.caches.append(c)
        finals.append(_unpack(final))
        inp = out
    return out, _pack(layer, _concat_states(backend.ops, finals)), cache


def stack_backward(
    backend, cache: StackCache, d_out: Any, d_final_state: Any = None
) -> tuple[Array, Any, dict]:
    """Gradients of a scalar loss through the stack that produced ``cache``.

    Args:
        backend: the backend that ran :func:`stack_forward`.
        cache: the third value :func:`stack_forward` returned.
        d_out: (T, B, D*H) gradient of the loss with respect to ``out``.
        d_final_state: None (zeros), or the gradient of the final state in its form.

    Returns:
        ``(d_x, d_initial_state, grads)``: d_x (T, B, I); the gradient of the initial state in
        its form, h0 (L*D, B, H) or ``(h0, c0)``; ``grads`` with one entry per parameter of
        ``layer.param_shapes()``, in that order.
    """
    if not isinstance(cache, StackCache):
        raise TypeError("cache must be the third value returned by stack_forward")
    layer = cache.layer
    names = layer.state_names
    if len(cache.caches) == 1 and not cache.masks:  # one whole-stack call
        g = backend.recurrent_backward(layer, cache.caches[0], d_out, d_final_state)
        d_state = _pack(layer, [g[f"{n}0"] for n in names])
        return g["x"], d_state, {name: g[name] for name in layer.param_shapes()}
    d = backend.asarray(d_out)
    B = d.shape[1]
    d_final = None
    if d_final_state is not None:
        d_final = backend._check_state(layer, d_final_state, B, "d_final_state")
    grads: dict = {}
    d_states = []
    for k in reversed(range(layer.num_layers)):
        d_fin = None if d_final is None else _pack(layer, _split_state(layer, d_final, k))
        g = backend.recurrent_backward(cache.layers[k], cache.caches[k], d, d_fin)
        for short in layer.direction_shapes(k):
            for direction in range(layer.num_directions):
                grads[short + layer.suffix(k, direction)] = g[short + layer.suffix(0, direction)]
        d_states.append(tuple(g[f"{n}0"] for n in names))
        d = g["x"]
        if d is not None and cache.masks[k] is not None:  # one-hot ids have no gradient
            d = d * cache.masks[k]  # B2 of the mask on layer k's input
    d_state = _pack(layer, _concat_states(backend.ops, d_states[::-1]))
    return d, d_state, {name: grads[name] for name in layer.param_shapes()}
