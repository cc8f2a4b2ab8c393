"""The training options: one frozen attrs class, validated once, stored in checkpoints.

Every model's ``fit`` takes these as keyword arguments (``model.fit(texts, steps=500, lr=1e-3)``)
or as one ``options=TrainingOptions(...)``; the command line builds its ``seqkit train`` options
from the fields (their ``metadata["help"]``), so an option is written here once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from seqkit.optim import Optimizer, list_optimizers
from seqkit.schedules import list_schedules

__all__ = ["SCHEDULES", "TrainingOptions"]

#: The named learning-rate schedules (:mod:`seqkit.schedules`); a callable is the other choice.
SCHEDULES = tuple(list_schedules())


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | np.integer)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)


def _fail(attribute, expected: str, value: Any) -> None:
    raise ValueError(f"{attribute.name!r} must be {expected} (got {value!r})")


#: The largest count (steps, sizes, seeds) an option takes: what a checkpoint can record
#: (:mod:`seqkit.checkpoint`'s schema), so that a run never writes a file it cannot read back.
MAX_COUNT = 1 << 62


def _at_most_max(attribute, value) -> None:
    if value > MAX_COUNT:
        _fail(attribute, f"at most {MAX_COUNT} (2**62)", value)


def _positive_int(instance, attribute, value) -> None:
    if not _is_int(value) or value <= 0:
        _fail(attribute, "a positive integer", value)
    _at_most_max(attribute, value)


def _optional_positive_int(instance, attribute, value) -> None:
    if value is not None:
        _positive_int(instance, attribute, value)


def _non_negative_int(instance, attribute, value) -> None:
    if not _is_int(value) or value < 0:
        _fail(attribute, "an integer >= 0", value)
    _at_most_max(attribute, value)


def _optional_positive(instance, attribute, value) -> None:
    if value is not None and (not _is_number(value) or not math.isfinite(value) or value <= 0):
        _fail(attribute, "None or a positive finite number", value)


def _optional_non_negative(instance, attribute, value) -> None:
    if value is not None and (not _is_number(value) or not math.isfinite(value) or value < 0):
        _fail(attribute, "None or a finite number >= 0", value)


def _seed(instance, attribute, value) -> None:
    if value is not None and (not _is_int(value) or value < 0):
        _fail(attribute, "None or an integer >= 0", value)
    if value is not None:
        _at_most_max(attribute, value)


def _optimizer(instance, attribute, value) -> None:
    if isinstance(value, str):
        if value not in list_optimizers():
            _fail(attribute, f"one of {', '.join(map(repr, list_optimizers()))}", value)
    elif not isinstance(value, Optimizer | dict):
        _fail(attribute, "an optimizer name, a seqkit.Optimizer or its config dict", value)


def _schedule(instance, attribute, value) -> None:
    if not callable(value) and value not in SCHEDULES:
        _fail(attribute, f"one of {', '.join(map(repr, SCHEDULES))} or a callable", value)


def _bool(instance, attribute, value) -> None:
    if not isinstance(value, bool):
        _fail(attribute, "True or False", value)


def _help(text: str, choices: tuple[str, ...] | None = None) -> dict:
    """Field metadata the command line builds its option from."""
    return {"help": text} if choices is None else {"help": text, "choices": choices}


@attrs.frozen(kw_only=True)
class TrainingOptions:
    """How ``fit`` trains: every field is a keyword of ``fit`` and a ``seqkit train`` option.

    Attributes:
        steps: total optimizer steps (a resumed run continues up to this count).
        batch_size: examples per step (the global batch in data-parallel training).
        lr: the peak learning rate; None: an optimizer object's own, else 0.003.
        optimizer: ``"sgd"``, ``"adagrad"``, ``"adam"``, ``"adamw"``, a
            :class:`~seqkit.Optimizer` with its hyperparameters, or its config dict.
        weight_decay: decoupled weight decay (AdamW for Adam); None: the optimizer's own.
        lr_schedule: ``"constant"``, ``"linear"`` (to 0 at ``steps``), ``"cosine"``, or a
            callable ``j -> multiplier of lr`` for the j-th update after the warmup
            (:func:`seqkit.schedules.get_schedule`, equal to ``torch.optim.lr_scheduler``).
        warmup_steps: the multiplier rises linearly over this many first updates
            (fewer than ``steps``).
        clip_norm: rescale gradients whose global norm exceeds this (None: never).
        clip_value: clamp every gradient entry to ``[-clip_value, clip_value]`` (None: never).
        seed: the training random state (minibatch order, dropout masks).
        eval_every: evaluate the dev data every this many steps and at the end; None: 10 times
            per run.
        patience: stop after this many evaluations without a lower dev loss (None: never).
        restore_best: when ``patience`` is set, end with the parameters of the best evaluation.
    """

    steps: int = attrs.field(default=1000, validator=_positive_int, metadata=_help("Total steps."))
    batch_size: int = attrs.field(
        default=32, validator=_positive_int, metadata=_help("Examples per step.")
    )
    lr: float | None = attrs.field(
        default=None,
        validator=_optional_positive,
        metadata=_help("Peak learning rate [default: the optimizer's, else 0.003]."),
    )
    optimizer: str | Any = attrs.field(
        default="adam",
        validator=_optimizer,
        metadata=_help("Optimizer.", tuple(list_optimizers())),
    )
    weight_decay: float | None = attrs.field(
        default=None,
        validator=_optional_non_negative,
        metadata=_help("Decoupled weight decay (AdamW for adam)."),
    )
    lr_schedule: str | Callable[[int], float] = attrs.field(
        default="constant",
        validator=_schedule,
        metadata=_help("Learning-rate multiplier over the run.", SCHEDULES),
    )
    warmup_steps: int = attrs.field(
        default=0, validator=_non_negative_int, metadata=_help("Linear warm-up steps.")
    )
    clip_norm: float | None = attrs.field(
        default=5.0, validator=_optional_positive, metadata=_help("Clip the global grad norm.")
    )
    clip_value: float | None = attrs.field(
        default=None, validator=_optional_positive, metadata=_help("Clip every grad entry.")
    )
    seed: int | None = attrs.field(
        default=None, validator=_seed, metadata=_help("Training random state.")
    )
    eval_every: int | None = attrs.field(
        default=None,
        validator=_optional_positive_int,
        metadata=_help("Steps between dev evaluations [default: steps/10]."),
    )
    patience: int | None = attrs.field(
        default=None,
        validator=_optional_positive_int,
        metadata=_help("Stop after N evaluations without a better dev loss."),
    )
    restore_best: bool = attrs.field(
        default=True, validator=_bool, metadata=_help("End with the best evaluation's weights.")
    )

    def __attrs_post_init__(self) -> None:
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"'warmup_steps' must be less than 'steps' = {self.steps} (got {self.warmup_steps})"
            )

    @classmethod
    def build(cls, options: TrainingOptions | None = None, **overrides: Any) -> TrainingOptions:
        """``options`` (or the defaults) with ``overrides``; an unknown name lists the fields."""
        names = [f.name for f in attrs.fields(cls)]
        bad = [k for k in overrides if k not in names]
        if bad:
            raise TypeError(
                f"unknown training option {bad[0]!r}; the options are: {', '.join(names)}"
            )
        return attrs.evolve(options or cls(), **overrides)

    def to_dict(self) -> dict:
        """The options as JSON-able values (what a checkpoint stores).

        An optimizer object becomes its config dict; a callable schedule ``"callable"``.
        """
        from seqkit.training import optimizer_config

        out = attrs.asdict(self, recurse=False)
        if not isinstance(self.optimizer, str):
            out["optimizer"] = optimizer_config(self.optimizer)
        if callable(self.lr_schedule):  # schedule_config's record: resume needs it again
            out["lr_schedule"] = "callable"
        return out

    def differences(self, saved: dict, *, ignore: tuple[str, ...] = ("steps",)) -> list[str]:
        """``"'name': saved X, now Y"`` for every field whose value differs from ``saved``."""
        now = self.to_dict()
        defaults = TrainingOptions().to_dict()
        return [
            f"{name!r}: saved {saved.get(name, defaults[name])!r}, now {value!r}"
            for name, value in now.items()
            if name not in ignore and saved.get(name, defaults[name]) != value
        ]
