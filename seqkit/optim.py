"""Optimizers: SGD (with momentum), Adagrad, Adam and AdamW, with PyTorch's update formulas.

Written once against :class:`seqkit.ops.Ops`, so every backend runs the same update. An optimizer
is a frozen object holding its hyperparameters (``seqkit.Adam(1e-3, betas=(0.9, 0.98))``); what
changes between steps lives in a separate state dict, made by :meth:`Optimizer.init_state` and
advanced by :meth:`Optimizer.update`, which is functional::

    opt = seqkit.Adam(1e-3, weight_decay=0.01)
    state = opt.init_state(ops, params)
    for step, batch in enumerate(batches):
        grads = ...                                          # same names and shapes as params
        params, state = opt.update(ops, params, grads, state, lr=schedule(step) * opt.lr)

``update`` returns the new parameters and state. NumPy and torch compute them in place (torch
models keep their parameters as views into one cuDNN buffer) and return the same dicts holding
the same arrays; a backend with immutable arrays (JAX) returns new arrays, so a caller always uses
the return value. ``lr=None`` means ``opt.lr``; a training loop passes the scheduled rate.

The updates are those of ``torch.optim.SGD``, ``torch.optim.Adagrad`` and ``torch.optim.AdamW``,
operation for operation, so both agree to rounding. ``weight_decay`` is torch's: an L2 term added
to the gradient for SGD and Adagrad (coupled), and *decoupled* for Adam: ``seqkit.Adam(...,
weight_decay=w)`` is ``torch.optim.AdamW(..., weight_decay=w)``, not ``torch.optim.Adam``'s L2.
:class:`AdamW` is Adam with torch's AdamW default ``weight_decay=0.01``. An autograd backend calls
:meth:`Optimizer.update` under ``torch.no_grad()``.

The state holds ``"step"`` (updates done so far) and one dict per buffer, named as PyTorch names
it (``"momentum_buffer"``, ``"sum"``, ``"exp_avg"``, ``"exp_avg_sq"``), of arrays keyed by
parameter name. :meth:`Optimizer.state_to_numpy` flattens it to NumPy arrays for a checkpoint and
:meth:`Optimizer.state_from_numpy` restores it on any backend; :meth:`Optimizer.to_config` and
:func:`get_optimizer` do the same for the optimizer itself.
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

__all__ = ["Adagrad", "Adam", "AdamW", "Optimizer", "SGD", "get_optimizer", "list_optimizers"]


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
    """Updates parameters from their gradients; hyperparameters only, no state.

    Args:
        lr: the learning rate, > 0 (the base rate a schedule multiplies).
        weight_decay: >= 0; how each optimizer applies it is in its docstring (torch's way).

    Subclasses set :attr:`name`, list their buffers in :meth:`buffers` and implement
    :meth:`_update`.
    """

    #: Registered name (``"adam"``).
    name: ClassVar[str]

    lr: float = attrs.field(validator=_positive)
    weight_decay: float = attrs.field(default=0.0, kw_only=True, validator=_non_negative)

    def buffers(self) -> tuple[str, ...]:
        """Names of the per-parameter arrays of the state (PyTorch's names)."""
        return ()

    def to_config(self) -> dict[str, Any]:
        """The optimizer as a JSON-able dict, ``{"name": ..., <hyperparameters>}``.

        :func:`get_optimizer` turns it back into an equal optimizer (what a checkpoint stores).
        """
        config: dict[str, Any] = {"name": self.name}
        for key, value in attrs.asdict(self).items():
            config[key] = list(value) if isinstance(value, tuple) else value
        return config

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
        self,
        ops: Ops,
        params: dict[str, Array],
        grads: dict[str, Array],
        state: dict[str, Any],
        *,
        lr: float | None = None,
    ) -> tuple[dict[str, Array], dict[str, Any]]:
        """One optimization step: every parameter moves against its gradient.

        Args:
            ops: the backend's array operations.
            params: name -> backend array.
            grads: name -> gradient, the same names and shapes as ``params``; not modified.
            state: what :meth:`init_state` (or the previous update) returned.
            lr: this step's learning rate, > 0; None means :attr:`lr`.

        Returns:
            ``(params, state)`` after the step. On NumPy and torch the arrays are updated in
            place and the same dicts come back (with the same arrays in them); on an
            immutable-array backend the dicts hold new arrays. Use the return value.
        """
        self._check(params, grads, state)
        if lr is None:
            lr = self.lr
        elif not _number(lr) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"{self.name}: 'lr' must be a positive finite number (got {lr!r})")
        step = state["step"] + 1
        for name, p in params.items():
            buffers = {buffer: state[buffer][name] for buffer in self.buffers()}
            params[name], new_buffers = self._update(ops, p, grads[name], buffers, step, lr)
            for buffer, value in new_buffers.items():
                state[buffer][name] = value
        state["step"] = step
        return params, state

    @abc.abstractmethod
    def _update(
        self, ops: Ops, p: Array, g: Array, buffers: dict[str, Array], step: int, lr: float
    ) -> tuple[Array, dict[str, Array]]:
        """One parameter's new value and new buffers (in place where ``ops`` allows); ``step``
        counts from 1. ``g`` belongs to the caller: never in place."""

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
        step = np.asarray(arrays["step"])
        if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
            raise ShapeError(
                f"{self.name}: optimizer state 'step' must be one integer >= 0 "
                f"(got {step.dtype} of shape {step.shape}"
                + (f", value {step.item()!r})" if step.size == 1 else ")")
            )
        state: dict[str, Any] = {"step": int(step)}
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
        weight_decay: >= 0, L2 added to the gradient (coupled, as in torch).

    Update, at step s::

        g = g + weight_decay * p
        buf = momentum * buf + g     (buf starts at 0, so buf = g at s = 1, as in PyTorch)
        p = p - lr * buf             (buf = g without momentum)
    """

    name = "sgd"

    momentum: float = attrs.field(default=0.0, kw_only=True, validator=_unit_interval)

    def buffers(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum else ()

    def _update(self, ops, p, g, buffers, step, lr):
        if self.weight_decay:
            g = g + self.weight_decay * p
        new = {}
        if self.momentum:
            g = new["momentum_buffer"] = ops.add(
                ops.mul(buffers["momentum_buffer"], self.momentum, inplace=True), g, inplace=True
            )
        return ops.sub(p, lr * g, inplace=True), new


@attrs.frozen
class Adagrad(Optimizer):
    """Adagrad: per-entry learning rates from summed squared gradients (``torch.optim.Adagrad``).

    Args:
        lr: the learning rate, > 0.
        eps: >= 0, added to the root for numerical stability.
        weight_decay: >= 0, L2 added to the gradient (coupled, as in torch).

    Update::

        g = g + weight_decay * p
        sum = sum + g * g
        p = p - lr * g / (sqrt(sum) + eps)
    """

    name = "adagrad"

    eps: float = attrs.field(default=1e-10, kw_only=True, validator=_non_negative)

    def buffers(self) -> tuple[str, ...]:
        return ("sum",)

    def _update(self, ops, p, g, buffers, step, lr):
        if self.weight_decay:
            g = g + self.weight_decay * p
        s = ops.add(buffers["sum"], g * g, inplace=True)
        return ops.sub(p, lr * (g / (ops.sqrt(s) + self.eps)), inplace=True), {"sum": s}


@attrs.frozen
class Adam(Optimizer):
    """Adam with bias correction and decoupled weight decay (``torch.optim.AdamW``).

    Args:
        lr: the learning rate, > 0.
        betas: ``(beta1, beta2)``, each in [0, 1): decay of the first and second moments.
        eps: >= 0, added to the corrected root for numerical stability.
        weight_decay: >= 0, decoupled: ``p`` shrinks by ``lr * weight_decay * p`` before the
            step, as ``torch.optim.AdamW`` does (not ``torch.optim.Adam``'s L2 on the gradient).

    Update, at step s = 1, 2, ...::

        p = p * (1 - lr * weight_decay)
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

    def _update(self, ops, p, g, buffers, step, lr):
        beta1, beta2 = self.betas
        if self.weight_decay:
            p = ops.mul(p, 1 - lr * self.weight_decay, inplace=True)
        m = ops.add(buffers["exp_avg"], (g - buffers["exp_avg"]) * (1 - beta1), inplace=True)
        v = ops.add(
            ops.mul(buffers["exp_avg_sq"], beta2, inplace=True), (1 - beta2) * (g * g), inplace=True
        )
        step_size = lr / (1 - beta1**step)
        denom = ops.sqrt(v) / (1 - beta2**step) ** 0.5 + self.eps
        return ops.sub(p, step_size * (m / denom), inplace=True), {"exp_avg": m, "exp_avg_sq": v}


@attrs.frozen
class AdamW(Adam):
    """:class:`Adam` with torch's ``AdamW`` default ``weight_decay=0.01``; the same update."""

    name = "adamw"

    weight_decay: float = attrs.field(default=0.01, kw_only=True, validator=_non_negative)


_OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (SGD, Adagrad, Adam, AdamW)}


def list_optimizers() -> list[str]:
    """Names of every optimizer, sorted."""
    return sorted(_OPTIMIZERS)


def get_optimizer(spec: str | Optimizer | dict[str, Any], **overrides: Any) -> Optimizer:
    """An optimizer from a name, an optimizer or a :meth:`~Optimizer.to_config` dict.

    ``get_optimizer("adam", lr=1e-3, betas=(0.9, 0.98))`` builds one by name;
    ``get_optimizer(opt, lr=0.1)`` is ``opt`` with ``lr`` replaced; ``get_optimizer(config)``
    restores what :meth:`~Optimizer.to_config` wrote, and ``overrides`` replace its entries.
    Unknown names and options list the choices.
    """
    if isinstance(spec, Optimizer):
        if not overrides:
            return spec
        options = {**attrs.asdict(spec), **overrides}
        name = spec.name
    elif isinstance(spec, dict):
        if "name" not in spec:
            raise TypeError(
                f"an optimizer config needs a 'name' (one of {', '.join(list_optimizers())}); "
                f"got keys {sorted(spec)}"
            )
        name = spec["name"]
        options = {k: v for k, v in spec.items() if k != "name"} | overrides
    else:
        name, options = spec, overrides
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
