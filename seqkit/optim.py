"""Optimizers: SGD (with momentum), Adagrad and Adam, with PyTorch's update formulas.

Written once against :class:`seqkit.ops.Ops`, so every backend runs the same update. An optimizer
is a frozen specification (its hyperparameters); what changes between steps lives in a separate
state dict, made by :meth:`Optimizer.init_state` and advanced by :meth:`Optimizer.update`::

    opt = get_optimizer("adam", lr=1e-3)
    state = opt.init_state(ops, params)
    for batch in batches:
        grads = ...                                # same names and shapes as params
        opt.update(ops, params, grads, state)      # params and state change in place

The updates are those of ``torch.optim.SGD``, ``torch.optim.Adagrad`` and ``torch.optim.Adam``
with their other options at their defaults (no weight decay, dampening, Nesterov, lr decay or
AMSGrad), operation for operation, so both agree to rounding. An autograd backend calls
:meth:`Optimizer.update` under ``torch.no_grad()``.

The state holds ``"step"`` (updates done so far) and one dict per buffer, named as PyTorch names
it (``"momentum_buffer"``, ``"sum"``, ``"exp_avg"``, ``"exp_avg_sq"``), of arrays keyed by
parameter name. :meth:`Optimizer.state_to_numpy` flattens it to NumPy arrays for a checkpoint and
:meth:`Optimizer.state_from_numpy` restores it on any backend.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import attrs
import numpy as np

from seqkit.errors import ShapeError, unknown
from seqkit.ops import Ops
from seqkit.shapes import Array

__all__ = ["Adagrad", "Adam", "Optimizer", "SGD", "get_optimizer", "list_optimizers"]


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.floating | np.integer)


def _positive(instance, attribute, value) -> None:
    if not _number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{attribute.name!r} must be a positive finite number (got {value!r})")


def _non_negative(instance, attribute, value) -> None:
    if not _number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{attribute.name!r} must be a finite number >= 0 (got {value!r})")


def _unit_interval(instance, attribute, value) -> None:
    if not _number(value) or not 0 <= value < 1:
        raise ValueError(f"{attribute.name!r} must be a number in [0, 1) (got {value!r})")


def _pair(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


def _betas(instance, attribute, value) -> None:
    if not isinstance(value, tuple) or len(value) != 2:
        raise ValueError(f"'betas' must be a pair (beta1, beta2) (got {value!r})")
    for i, beta in enumerate(value):
        if not _number(beta) or not 0 <= beta < 1:
            raise ValueError(f"'betas[{i}]' must be a number in [0, 1) (got {beta!r})")


@attrs.frozen
class Optimizer(abc.ABC):
    """Updates parameters in place from their gradients; hyperparameters only, no state.

    Args:
        lr: the learning rate, > 0.

    Subclasses set :attr:`name`, list their buffers in :meth:`buffers` and implement
    :meth:`_update`.
    """

    #: Registered name (``"adam"``).
    name: ClassVar[str]

    lr: float = attrs.field(validator=_positive)

    def buffers(self) -> tuple[str, ...]:
        """Names of the per-parameter arrays of the state (PyTorch's names)."""
        return ()

    def options(self) -> dict[str, Any]:
        """The hyperparameters as a plain dict (what a checkpoint stores beside the name)."""
        return attrs.asdict(self)

    def init_state(self, ops: Ops, params: dict[str, Array]) -> dict[str, Any]:
        """A fresh state for ``params``: ``step`` 0 and every buffer zero.

        Args:
            ops: the backend's array operations.
            params: name -> backend array; only the names and shapes are read.

        Returns:
            ``{"step": 0, buffer: {name: zeros shaped like params[name]}, ...}``.
        """
        state: dict[str, Any] = {"step": 0}
        for buffer in self.buffers():
            state[buffer] = {name: ops.zeros(tuple(p.shape)) for name, p in params.items()}
        return state

    def update(
        self, ops: Ops, params: dict[str, Array], grads: dict[str, Array], state: dict[str, Any]
    ) -> None:
        """One optimization step: every parameter moves against its gradient, in place.

        Args:
            ops: the backend's array operations.
            params: name -> backend array, updated in place.
            grads: name -> gradient, the same names and shapes as ``params``; not modified.
            state: what :meth:`init_state` returned, advanced in place.
        """
        self._check(params, grads, state)
        state["step"] += 1
        step = state["step"]
        for name, p in params.items():
            buffers = {buffer: state[buffer][name] for buffer in self.buffers()}
            self._update(ops, p, grads[name], buffers, step)

    @abc.abstractmethod
    def _update(self, ops: Ops, p: Array, g: Array, buffers: dict[str, Array], step: int) -> None:
        """Update one parameter ``p`` and its buffers in place; ``step`` counts from 1."""

    def _check(self, params: dict, grads: dict, state: dict) -> None:
        missing = [name for name in params if name not in grads]
        extra = [name for name in grads if name not in params]
        if missing or extra:
            raise ShapeError(
                f"{self.name}: 'grads' must have the names of 'params' (missing: "
                f"{', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'})"
            )
        for name, p in params.items():
            if tuple(grads[name].shape) != tuple(p.shape):
                raise ShapeError(
                    f"{self.name}: gradient {name!r} must have shape {tuple(p.shape)} "
                    f"(got {tuple(grads[name].shape)})"
                )
        for buffer in self.buffers():
            if buffer not in state or set(state[buffer]) != set(params):
                raise ShapeError(
                    f"{self.name}: 'state' does not match 'params' (buffer {buffer!r}); "
                    f"make it with init_state(ops, params)"
                )

    # --- checkpoints -------------------------------------------------------------------------
    def state_to_numpy(self, ops: Ops, state: dict[str, Any]) -> dict[str, np.ndarray]:
        """The state as flat NumPy arrays: ``"step"`` and ``"{buffer}/{parameter name}"``."""
        out = {"step": np.asarray(state["step"], dtype=np.int64)}
        for buffer in self.buffers():
            for name, a in state[buffer].items():
                out[f"{buffer}/{name}"] = np.array(ops.to_numpy(a))
        return out

    def state_from_numpy(self, ops: Ops, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """Undo :meth:`state_to_numpy`, onto ``ops``'s backend."""
        if "step" not in arrays:
            raise ShapeError(f"{self.name}: optimizer state has no 'step' entry")
        state: dict[str, Any] = {"step": int(arrays["step"])}
        for buffer in self.buffers():
            state[buffer] = {}
        for key, a in arrays.items():
            if key == "step":
                continue
            buffer, _, name = key.partition("/")
            if buffer not in state or not name:
                raise ShapeError(
                    f"{self.name}: unexpected optimizer state entry {key!r}; expected 'step' "
                    f"and '<buffer>/<parameter>' with buffer one of "
                    f"{', '.join(self.buffers()) or '(none)'}"
                )
            state[buffer][name] = ops.asarray(a)
        return state


@attrs.frozen
class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum (``torch.optim.SGD``).

    Args:
        lr: the learning rate, > 0.
        momentum: in [0, 1); 0 is plain gradient descent.

    Update, at step s::

        buf = momentum * buf + g     (buf starts at 0, so buf = g at s = 1, as in PyTorch)
        p = p - lr * buf             (buf = g without momentum)
    """

    name = "sgd"

    momentum: float = attrs.field(default=0.0, kw_only=True, validator=_unit_interval)

    def buffers(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum else ()

    def _update(self, ops, p, g, buffers, step):
        if self.momentum:
            buf = buffers["momentum_buffer"]
            buf *= self.momentum
            buf += g
            g = buf
        p -= self.lr * g


@attrs.frozen
class Adagrad(Optimizer):
    """Adagrad: per-entry learning rates from summed squared gradients (``torch.optim.Adagrad``).

    Args:
        lr: the learning rate, > 0.
        eps: >= 0, added to the root for numerical stability.

    Update::

        sum = sum + g * g
        p = p - lr * g / (sqrt(sum) + eps)
    """

    name = "adagrad"

    eps: float = attrs.field(default=1e-10, kw_only=True, validator=_non_negative)

    def buffers(self) -> tuple[str, ...]:
        return ("sum",)

    def _update(self, ops, p, g, buffers, step):
        s = buffers["sum"]
        s += g * g
        p -= self.lr * (g / (ops.sqrt(s) + self.eps))


@attrs.frozen
class Adam(Optimizer):
    """Adam with bias correction (``torch.optim.Adam``).

    Args:
        lr: the learning rate, > 0.
        betas: ``(beta1, beta2)``, each in [0, 1): decay of the first and second moments.
        eps: >= 0, added to the corrected root for numerical stability.

    Update, at step s = 1, 2, ...::

        m = m + (1 - beta1) * (g - m)                 (= beta1 m + (1 - beta1) g, as torch's lerp)
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1**s) * m / (sqrt(v) / sqrt(1 - beta2**s) + eps)
    """

    name = "adam"

    betas: tuple[float, float] = attrs.field(
        default=(0.9, 0.999), kw_only=True, converter=_pair, validator=_betas
    )
    eps: float = attrs.field(default=1e-8, kw_only=True, validator=_non_negative)

    def buffers(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def _update(self, ops, p, g, buffers, step):
        beta1, beta2 = self.betas
        m, v = buffers["exp_avg"], buffers["exp_avg_sq"]
        m += (g - m) * (1 - beta1)
        v *= beta2
        v += (1 - beta2) * (g * g)
        step_size = self.lr / (1 - beta1**step)
        denom = ops.sqrt(v) / (1 - beta2**step) ** 0.5 + self.eps
        p -= step_size * (m / denom)


_OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (SGD, Adagrad, Adam)}


def list_optimizers() -> list[str]:
    """Names of every optimizer, sorted."""
    return sorted(_OPTIMIZERS)


def get_optimizer(name: str | Optimizer, **options: Any) -> Optimizer:
    """An optimizer by name (``"sgd"``, ``"adagrad"``, ``"adam"``), built with ``options``.

    ``get_optimizer("adam", lr=1e-3, betas=(0.9, 0.98))``; an :class:`Optimizer` instance is
    returned as it is. Unknown names and options list the choices.
    """
    if isinstance(name, Optimizer):
        if options:
            raise TypeError(
                f"optimizer options {sorted(options)} given with an optimizer instance {name!r}"
            )
        return name
    if not isinstance(name, str) or name not in _OPTIMIZERS:
        raise unknown("optimizer", name, list_optimizers())
    cls = _OPTIMIZERS[name]
    fields = [f.name for f in attrs.fields(cls)]
    bad = [key for key in options if key not in fields]
    if bad:
        raise TypeError(
            f"optimizer {name!r} got unknown options {', '.join(map(repr, bad))}; "
            f"its options are: {', '.join(fields)}"
        )
    if "lr" not in options:
        raise TypeError(f"optimizer {name!r} needs 'lr' (its options are: {', '.join(fields)})")
    return cls(**options)
