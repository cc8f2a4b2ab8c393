"""Learning-rate schedules: the multiplier of the base learning rate at each update.

A schedule is a function ``k -> multiplier`` of the update index ``k`` (``k = 0`` for the first
update, ``k < steps``); the learning rate of update ``k`` is ``lr * schedule(k)``. With
``warmup_steps = W`` and ``S = steps``, update ``k`` gets::

    W1. warmup, k < W:   (k + 1) / (W + 1)
    M1. "constant":      1
    M2. "linear":        1 - j / (S - W)                      j = k - W, the main schedule's step
    M3. "cosine":        (1 + cos(pi * j / (S - W))) / 2
    M4. a callable f:    f(j)

These are the closed forms of ``torch.optim.lr_scheduler`` schedules, which the tests compare
against an ``SGD`` driven for ``steps`` updates (float64, to 1e-12):

- M1 is ``LambdaLR(opt, lambda j: 1)``, M4 is ``LambdaLR(opt, f)``;
- M2 is ``LinearLR(opt, start_factor=1, end_factor=0, total_iters=S - W)``: it would reach 0 at
  ``k = S``, one past the last update, so the last update still has a small non-zero rate;
- M3 is ``CosineAnnealingLR(opt, T_max=S - W, eta_min=0)``, likewise 0 one past the last update;
- with ``W > 0``: ``SequentialLR(opt, [LinearLR(opt, start_factor=1 / (W + 1), end_factor=1,
  total_iters=W), main], milestones=[W])``. The start factor ``1 / (W + 1)`` makes the warmup a
  straight line from the first update to the main schedule's 1 at ``k = W``; the convention
  ``k / W`` of Hugging Face's ``transformers`` starts at 0, which wastes the first update and
  which ``LinearLR`` refuses (its ``start_factor`` must be > 0).

The main schedule runs over the ``S - W`` updates after the warmup and counts its own steps from
``j = 0``, as ``SequentialLR`` restarts the scheduler after a milestone; a callable therefore
receives ``j``, not ``k``.

Checkpoints store a schedule as :func:`schedule_config`, a JSON-ready dict. A name is restored from
it; a callable is stored as ``"callable"`` and cannot be: resuming such a run needs the same
callable passed again (:func:`get_schedule` says so if given ``"callable"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any

from seqkit.errors import ConfigError, unknown

__all__ = ["get_schedule", "list_schedules", "schedule_config"]

Schedule = Callable[[int], float]


def _constant(j: int, n: int) -> float:
    return 1.0


def _linear(j: int, n: int) -> float:
    return 1.0 - j / n


def _cosine(j: int, n: int) -> float:
    return (1.0 + math.cos(math.pi * j / n)) / 2.0


# name -> multiplier at main-schedule step j of n (0 <= j < n)
_NAMED: dict[str, Callable[[int, int], float]] = {
    "constant": _constant,
    "linear": _linear,
    "cosine": _cosine,
}

_CALLABLE = "callable"  # how schedule_config records a user callable


def list_schedules() -> list[str]:
    """The names :func:`get_schedule` accepts, sorted."""
    return sorted(_NAMED)


def _check_int(name: str, value: object, *, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high)``, or a ConfigError naming ``name``."""
    bound = f">= {low}" if high is None else f"in [{low}, {high})"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"'{name}' must be an int {bound} (got {value!r})")
    if value < low or (high is not None and value >= high):
        raise ConfigError(f"'{name}' must be an int {bound} (got {value!r})")
    return value


def _checked_callable(fn: Callable[[int], object]) -> Callable[[int, int], float]:
    """Wrap a user schedule ``j -> multiplier`` so a bad return names the step."""
    label = getattr(fn, "__qualname__", repr(fn))

    def main(j: int, n: int) -> float:
        value = fn(j)
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ConfigError(
                f"lr_schedule {label} must return a number >= 0 at step {j} "
                f"(got {type(value).__name__} {value!r})"
            )
        value = float(value)
        if not value >= 0.0 or math.isinf(value):  # `not >=` also catches nan
            raise ConfigError(
                f"lr_schedule {label} must return a finite number >= 0 at step {j} (got {value!r})"
            )
        return value

    return main


def _main_schedule(spec: str | Callable[[int], object]) -> Callable[[int, int], float]:
    if callable(spec):
        return _checked_callable(spec)
    if spec == _CALLABLE:
        raise ConfigError(
            "lr_schedule 'callable' cannot be restored from a checkpoint; "
            "pass the same callable again as lr_schedule"
        )
    if not isinstance(spec, str) or spec not in _NAMED:
        raise unknown("lr_schedule", spec, list_schedules())
    return _NAMED[spec]


def get_schedule(
    spec: str | Callable[[int], object], *, steps: int, warmup_steps: int = 0
) -> Schedule:
    """The learning-rate multiplier of each update, as the module docstring defines it.

    Arguments:
        spec: ``"constant"``, ``"linear"``, ``"cosine"`` or a callable ``j -> multiplier`` (a
            number >= 0) for the ``j``-th update after the warmup.
        steps: the number of updates S of the run, an int >= 1.
        warmup_steps: W, the number of linear-warmup updates before the main schedule,
            ``0 <= W < S``.

    Returns:
        ``schedule(k) -> float`` for ``0 <= k < steps``; it raises a ConfigError for any other
        ``k`` and for a callable's return value that is not a finite number >= 0.

    >>> from seqkit.schedules import get_schedule
    >>> schedule = get_schedule("linear", steps=6, warmup_steps=2)
    >>> [round(schedule(k), 4) for k in range(6)]
    [0.3333, 0.6667, 1.0, 0.75, 0.5, 0.25]
    """
    main = _main_schedule(spec)
    steps = _check_int("steps", steps, low=1)
    warmup = _check_int("warmup_steps", warmup_steps, low=0, high=steps)
    n = steps - warmup

    def schedule(k: int) -> float:
        _check_int("k", k, low=0, high=steps)
        if k < warmup:
            return (k + 1) / (warmup + 1)  # W1
        return main(k - warmup, n)

    return schedule


def schedule_config(
    spec: str | Callable[[int], object], *, warmup_steps: int = 0
) -> dict[str, Any]:
    """A JSON-ready description of a schedule for checkpoints.

    ``{"lr_schedule": name, "warmup_steps": W}``; a callable is recorded as ``"callable"``, which
    :func:`get_schedule` refuses with a message asking for the callable again. ``spec`` and
    ``warmup_steps`` are validated as :func:`get_schedule` would.
    """
    _main_schedule(spec)
    warmup = _check_int("warmup_steps", warmup_steps, low=0)
    return {"lr_schedule": _CALLABLE if callable(spec) else spec, "warmup_steps": warmup}
