"""Per-step losses of a sequence model: masked, computed stably from logits, with hand-written
gradients.

A loss reads the dense head's logits at every step, ``(T, B, V)`` (or ``(T, B, K)`` for ``K``
independent binary outputs), with targets ``(T, B)`` (class ids) or ``(T, B, K)`` (probabilities)
and a ``(T, B)`` boolean mask, and returns one number. The seed's definition sums the per-step
losses over the sequence; seqkit also sums over the batch (``reduction="sum"``), and offers the
mean over sequences (``"batch_mean"``) and over unmasked steps (``"token_mean"``) for training.

Padded steps (mask false) add nothing to the loss and get a zero gradient. Their targets may hold
anything (a padding id, ``-100``); their logits must be finite, as a recurrent stack's are.

Many-to-one models have one step: a classifier passes logits ``(1, B, V)`` with targets ``(1, B)``,
or, as a shorthand, logits ``(B, V)`` with targets ``(B,)`` and mask ``(B,)`` (the gradient then
comes back as ``(B, V)``).

Every :meth:`Loss.forward` is autograd-safe (nothing is modified in place), so an autograd backend
calls it on tensors that require grad; :meth:`Loss.backward` serves the NumPy reference.
Targets and mask are host data: NumPy arrays (or lists); a backend array is copied to the host to
check its values.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import attrs
import numpy as np

from seqkit.errors import ShapeError
from seqkit.hookspecs import hookimpl
from seqkit.ops import Ops
from seqkit.shapes import Array

__all__ = [
    "REDUCTIONS",
    "Loss",
    "LossCache",
    "SigmoidBCE",
    "SoftmaxCrossEntropy",
    "get_loss",
]

#: The choices of ``Loss(reduction=...)``.
REDUCTIONS = ("sum", "batch_mean", "token_mean")


def _check_reduction(instance, attribute, value) -> None:
    if value not in REDUCTIONS:
        raise ValueError(
            f"{attribute.name!r} must be one of {', '.join(REDUCTIONS)} (got {value!r})"
        )


def _to_host(ops: Ops, a: Any) -> np.ndarray:
    """``a`` as a NumPy array: lists and NumPy arrays as they are, backend arrays copied over."""
    if isinstance(a, np.ndarray | list | tuple | int | float | bool):
        return np.asarray(a)
    return np.asarray(ops.to_numpy(a))


@attrs.define
class LossCache:
    """What :meth:`Loss.backward` needs from :meth:`Loss.forward`."""

    saved: Array  # (T, B, V): log-probabilities (softmax) or logits (sigmoid)
    targets: Array  # (T, B) int ids or (T, B, K) floats, on the backend; 0 at padded steps
    weights: Array  # (T, B): the reduction's factor at unmasked steps, 0 at padded ones
    squeezed: bool  # the logits came as (B, V): return the gradient in that shape


@attrs.frozen
class Loss(abc.ABC):
    """A masked per-step loss, reduced to one number.

    Args:
        reduction: how the per-step losses ``l<t,b>`` of the unmasked steps become one number:

            * ``"sum"``: ``sum_{t,b} l<t,b>``, the seed's loss summed over the batch;
            * ``"batch_mean"``: the same divided by B, the mean of the per-sequence losses;
            * ``"token_mean"``: the same divided by the number of unmasked steps (by 1 when no
              step is unmasked), the mean per step.

    Subclasses set :attr:`name` and implement :meth:`_check_targets`, :meth:`_per_step` and
    :meth:`_per_step_backward`.
    """

    #: Registered name (``"softmax_cross_entropy"``).
    name: ClassVar[str]

    reduction: str = attrs.field(default="sum", kw_only=True, validator=_check_reduction)

    def forward(
        self, ops: Ops, logits: Array, targets: Any, mask: Any = None
    ) -> tuple[Array, LossCache]:
        """The loss of a batch.

        Args:
            ops: the backend's array operations.
            logits: (T, B, V) backend array; (B, V) for one step (many-to-one).
            targets: (T, B) or (T, B, K), as the loss defines; (B,) or (B, K) with 2-D logits.
            mask: None (every step counts) or (T, B) booleans, true where the step counts;
                (B,) with 2-D logits.

        Returns:
            ``(loss, cache)``: a 0-d backend array and what :meth:`backward` needs.
        """
        squeezed = getattr(logits, "ndim", None) == 2
        if squeezed:
            logits = logits[None]  # (1, B, V)
        if getattr(logits, "ndim", None) != 3:
            raise ShapeError(
                f"{self.name}: 'logits' must be (T, B, V) or (B, V) "
                f"(got shape {tuple(getattr(logits, 'shape', ()))})"
            )
        T, B, V = logits.shape
        m = self._check_mask(ops, mask, T, B, squeezed)  # (T, B) host bool
        t = self._check_targets(ops, targets, (T, B, V), m, squeezed)  # host, 0 where padded
        steps = int(m.sum())
        scale = {"sum": 1.0, "batch_mean": 1.0 / B, "token_mean": 1.0 / max(steps, 1)}
        weights = ops.asarray(m * scale[self.reduction])  # (T, B)
        targets_b = ops.int_array(t) if t.dtype.kind == "i" else ops.asarray(t)
        per_step, saved = self._per_step(ops, logits, targets_b)  # (T, B)
        loss = ops.sum(per_step * weights)
        return loss, LossCache(saved, targets_b, weights, squeezed)

    def backward(self, ops: Ops, cache: LossCache, d_loss: Any = 1.0) -> Array:
        """The gradient of the loss with respect to the logits.

        Args:
            cache: what :meth:`forward` returned.
            d_loss: the gradient of the final objective with respect to this loss (a number or a
                0-d array; 1 when the loss is the objective).

        Returns:
            d_logits: (T, B, V), or (B, V) when the logits came as (B, V); zero at padded steps.
        """
        d_logits = self._per_step_backward(ops, cache, cache.weights * d_loss)
        return d_logits[0] if cache.squeezed else d_logits

    # --- what a loss defines -----------------------------------------------------------------
    @abc.abstractmethod
    def _check_targets(
        self, ops: Ops, targets: Any, shape: tuple[int, int, int], mask: np.ndarray, squeezed: bool
    ) -> np.ndarray:
        """Validated host targets, shaped for (T, B, V) logits, with padded steps set to 0."""

    @abc.abstractmethod
    def _per_step(self, ops: Ops, logits: Array, targets: Array) -> tuple[Array, Array]:
        """``(l, saved)``: the (T, B) per-step losses and what the backward needs."""

    @abc.abstractmethod
    def _per_step_backward(self, ops: Ops, cache: LossCache, d_step: Array) -> Array:
        """(T, B, V) gradient of ``sum(d_step * l)`` with respect to the logits."""

    # --- shared validation -------------------------------------------------------------------
    def _check_mask(self, ops: Ops, mask: Any, T: int, B: int, squeezed: bool) -> np.ndarray:
        if mask is None:
            return np.ones((T, B), dtype=bool)
        m = _to_host(ops, mask)
        want = (B,) if squeezed else (T, B)
        if m.shape != want:
            raise ShapeError(
                f"{self.name}: 'mask' must have shape {want} to match the logits (got {m.shape})"
            )
        if m.dtype != bool:
            raise ShapeError(f"{self.name}: 'mask' must be boolean (got dtype {m.dtype})")
        return m.reshape(T, B)

    def _target_shape_error(self, want: tuple, got: tuple) -> ShapeError:
        return ShapeError(
            f"{self.name}: 'targets' must have shape {want} to match the logits (got {got})"
        )


@attrs.frozen
class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy with integer targets: ``l<t> = -log softmax(z<t>)[y<t>]``.

    The seed's loss for softmax outputs (its cross-entropy with a one-hot ``y``), the loss of a
    language model, a tagger, a multi-class classifier and a decoder. ``reduction="sum"`` equals
    ``torch.nn.functional.cross_entropy(z.reshape(-1, V), y.reshape(-1), reduction="sum")`` over
    the unmasked steps.

    Shapes: logits (T, B, V) float, targets (T, B) integers in ``0..V-1`` at unmasked steps.

    Notation (one unmasked step; ``z`` its logits (V,), ``y`` its target, ``w`` its weight: the
    reduction's factor, 0 at padded steps)::

        F1. log p = z - logsumexp(z)          log_softmax: the largest exponent is 0, no overflow
        F2. l = -log p[y]                     per-step loss
        F3. L = sum_{t,b} w<t,b> l<t,b>       the reduction

    Backward::

        B3. dL/dl<t,b> = w<t,b> * d_loss
        B2. dl/dlog p = -onehot(y)
        B1. dl/dz = softmax(z) - onehot(y)    the sum of F1's Jacobian rows: exp(log p) - onehot(y)
    """

    name = "softmax_cross_entropy"

    def _check_targets(self, ops, targets, shape, mask, squeezed):
        T, B, V = shape
        t = _to_host(ops, targets)
        if t.shape != ((B,) if squeezed else (T, B)):
            raise self._target_shape_error((B,) if squeezed else (T, B), t.shape)
        if t.dtype.kind not in "iu":
            raise ShapeError(
                f"{self.name}: 'targets' must be integer class ids (got dtype {t.dtype})"
            )
        t = np.where(mask, t.reshape(T, B), 0).astype(np.int64)
        bad = (t < 0) | (t >= V)
        if bad.any():
            t_, b_ = np.argwhere(bad)[0]
            raise ValueError(
                f"{self.name}: 'targets' must be class ids in 0..{V - 1} at unmasked steps "
                f"(got {t[t_, b_]} at step {t_}, sequence {b_})"
            )
        return t

    def _per_step(self, ops, logits, targets):
        log_p = ops.log_softmax(logits)  # F1, (T, B, V)
        return -ops.take_last(log_p, targets), log_p  # F2, (T, B)

    def _per_step_backward(self, ops, cache, d_step):
        log_p = cache.saved
        V = log_p.shape[-1]
        d_z = ops.exp(log_p) - ops.one_hot(cache.targets, V)  # B1-B2, (T, B, V)
        return d_z * d_step[..., None]  # B3


@attrs.frozen
class SigmoidBCE(Loss):
    """Per-step sigmoid binary cross-entropy, the seed's formula, from logits.

    ``l<t> = sum_k -y log y^ - (1 - y) log(1 - y^)`` with ``y^ = sigmoid(z)``, summed over the K
    outputs of a step, for multi-label heads and binary classifiers (K = 1). ``log y^`` and
    ``log(1 - y^)`` are computed as ``log_sigmoid(z)`` and ``log_sigmoid(-z)``, never from
    probabilities, so a saturated output gives a large finite loss rather than ``inf``.
    ``reduction="sum"`` equals ``torch.nn.functional.binary_cross_entropy_with_logits(z, y,
    reduction="sum")`` over the unmasked steps; ``"token_mean"`` divides by the number of steps,
    not by the number of entries (K times more) as PyTorch's ``"mean"`` does.

    Shapes: logits (T, B, K) float, targets (T, B, K) floats in [0, 1] at unmasked steps.

    Notation (one unmasked step and output; ``z`` a logit, ``y`` its target, ``w`` the weight)::

        F1. log y^ = log_sigmoid(z);  log(1 - y^) = log_sigmoid(-z)   1 - sigmoid(z) = sigmoid(-z)
        F2. l = sum_k -y log y^ - (1 - y) log(1 - y^)                 per-step loss
        F3. L = sum_{t,b} w<t,b> l<t,b>                               the reduction

    Backward::

        B3. dL/dl<t,b> = w<t,b> * d_loss
        B2-B1. dl/dz = -y (1 - y^) + (1 - y) y^ = y^ - y       as d log_sigmoid(z)/dz = 1 - y^
    """

    name = "sigmoid_bce"

    def _check_targets(self, ops, targets, shape, mask, squeezed):
        T, B, K = shape
        t = _to_host(ops, targets)
        want = (B, K) if squeezed else (T, B, K)
        if t.shape != want:
            raise self._target_shape_error(want, t.shape)
        if t.dtype.kind not in "fiub":
            raise ShapeError(
                f"{self.name}: 'targets' must be numbers in [0, 1] (got dtype {t.dtype})"
            )
        t = np.where(mask[:, :, None], t.reshape(T, B, K), 0.0).astype(np.float64)
        bad = ~((t >= 0) & (t <= 1))  # also catches nan
        if bad.any():
            t_, b_, k_ = np.argwhere(bad)[0]
            raise ValueError(
                f"{self.name}: 'targets' must be in [0, 1] at unmasked steps "
                f"(got {t[t_, b_, k_]} at step {t_}, sequence {b_}, output {k_})"
            )
        return t

    def _per_step(self, ops, logits, targets):
        log_y = ops.log_sigmoid(logits)  # F1
        log_1my = ops.log_sigmoid(-logits)
        per_entry = -(targets * log_y) - (1.0 - targets) * log_1my  # F2, (T, B, K)
        return ops.sum(per_entry, axis=-1), logits

    def _per_step_backward(self, ops, cache, d_step):
        d_z = ops.sigmoid(cache.saved) - cache.targets  # B2-B1, (T, B, K)
        return d_z * d_step[..., None]  # B3


def get_loss(name: str | Loss, **options: Any) -> Loss:
    """A registered loss by name, built with ``options``.

    ``get_loss("softmax_cross_entropy", reduction="token_mean")``; a :class:`Loss` instance is
    returned as it is. Unknown names list the registered ones.
    """
    from seqkit._plugins import build

    return build("loss", Loss, name, options)


@hookimpl
def seqkit_register_losses():
    return [SoftmaxCrossEntropy, SigmoidBCE]
