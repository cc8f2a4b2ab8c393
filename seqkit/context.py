"""The context of a forward pass: training or evaluation, and the host random state.

Every block's ``forward`` takes ``ctx``, a :class:`Context`. Blocks that behave differently in
training (dropout; later recurrent dropout and zoneout) read ``ctx.training`` and draw their
random numbers from ``ctx.rng``, a ``numpy.random.Generator`` on the host. Drawing on the host
rather than on the backend's device is what makes training reproducible across backends and
processes:

* the same seed gives the same masks on NumPy and on torch (CPU or GPU), so the two agree in
  float64 to rounding error;
* the generator's state is part of the training state, so a resumed run draws exactly the masks
  the uninterrupted run would have drawn;
* in data-parallel training every process holds the same generator and draws the masks of the
  *global* batch, then keeps the rows of its own shard (``rank``, ``world_size``,
  ``global_batch``), so N processes use the masks one process would.
"""

from __future__ import annotations

import attrs
import numpy as np

__all__ = ["Context"]


def _optional_generator(instance, attribute, value) -> None:
    if value is not None and not isinstance(value, np.random.Generator):
        raise TypeError(
            f"{attribute.name!r} must be a numpy.random.Generator or None "
            f"(got {type(value).__name__}); build one with numpy.random.default_rng(seed)"
        )


def _optional_positive(instance, attribute, value) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0
    ):
        raise ValueError(f"{attribute.name!r} must be a positive integer or None (got {value!r})")


def _positive(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{attribute.name!r} must be a positive integer (got {value!r})")


@attrs.frozen(kw_only=True)
class Context:
    """Whether a forward pass trains, and where its random numbers come from.

    Args:
        training: True in a training step; False (the default) in evaluation, prediction,
            scoring and sampling, where every random block is the identity.
        rng: the training random state, a ``numpy.random.Generator``; needed only when a block
            draws (training with a dropout probability above 0). Blocks advance it in the
            order they run.
        rank: this process's index in a data-parallel job, 0..world_size-1.
        world_size: the number of processes; each holds the rows ``rank::world_size`` of the
            global batch (:mod:`seqkit.distributed`).
        global_batch: B of the global batch, needed when ``world_size > 1``: every process
            draws masks for all of its rows, so that the generator advances alike everywhere.

    ``Context()`` is evaluation. A one-process training step is ``Context(training=True,
    rng=rng)``.
    """

    training: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    rng: np.random.Generator | None = attrs.field(default=None, validator=_optional_generator)
    rank: int = attrs.field(default=0)
    world_size: int = attrs.field(default=1, validator=_positive)
    global_batch: int | None = attrs.field(default=None, validator=_optional_positive)

    @rank.validator
    def _check_rank(self, attribute, value) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"'rank' must be a non-negative integer (got {value!r})")

    def __attrs_post_init__(self) -> None:
        if self.rank >= self.world_size:
            raise ValueError(
                f"'rank' must lie in 0..world_size-1 = 0..{self.world_size - 1} "
                f"(got rank={self.rank})"
            )
        if self.world_size > 1 and self.global_batch is None:
            raise ValueError(
                f"'global_batch' is needed with world_size={self.world_size}: every process "
                "draws the masks of the whole global batch and keeps its own rows"
            )

    def rows(self, batch: int) -> slice:
        """This process's rows of the global batch, given its own batch size B.

        Raises ValueError when B is not the size of the shard ``rank::world_size`` of
        ``global_batch`` (a batch split some other way would draw masks no other run draws).
        """
        if self.global_batch is None:
            return slice(None)
        expected = len(range(self.rank, self.global_batch, self.world_size))
        if batch != expected:
            raise ValueError(
                f"a batch of B={batch} rows is not rank {self.rank}'s shard of a global batch of "
                f"{self.global_batch} over {self.world_size} process(es), which has {expected} "
                "rows (rows rank::world_size)"
            )
        return slice(self.rank, None, self.world_size)
