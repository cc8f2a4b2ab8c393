"""Data-parallel training across processes, on an existing engine (``torch.distributed``).

seqkit does not start or connect processes itself: the standard launcher does
(``torchrun --nproc-per-node N -m seqkit train ...``, multi-node through torchrun's rendezvous
arguments), or ``seqkit train --nproc N``, which asks the backend to run that launcher. Each
process finds its place in the environment variables the launcher sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).

Every process holds the same parameters and the same training state (same seed, same global
batch order). At each step, rank r computes the gradient of its shard of the global batch,
``index[r::world_size]``; the backend all-reduces the shards' gradients weighted by their
tokens, so every rank applies the gradient of the whole global batch, exactly as one process
would. Only rank 0 prints and writes checkpoints.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping

import attrs

__all__ = ["DataParallel", "DistributedInfo", "LOST_RANK_EXIT", "from_environment"]

LOST_RANK_EXIT = 75
"""Exit status of a rank that stopped because another rank was gone (a
:class:`~seqkit.errors.LostRankError`): the launcher takes it, like the SIGTERM it sends to the
survivors, as a consequence, and names the rank that failed otherwise."""


class DataParallel(abc.ABC):
    """A backend's data-parallel capability: ``backend.data_parallel``, None where there is none.

    A backend that trains across processes returns one of these; the others need no methods
    that raise. ``fit`` calls :meth:`join` before the first step and :meth:`leave` after the
    last (:meth:`abandon` instead when training fails), the loop :meth:`all_reduce_mean` at
    every step; ``seqkit train --nproc N`` calls :meth:`launch`.
    """

    @abc.abstractmethod
    def join(self, info: DistributedInfo) -> None:
        """Join the process group of a multi-process job."""

    @abc.abstractmethod
    def leave(self) -> None:
        """Leave the process group joined by :meth:`join`, with every other rank."""

    @abc.abstractmethod
    def abandon(self) -> None:
        """Leave the process group without waiting for the other ranks (this rank failed, or
        another is gone), so that the process exits with its own status."""

    @abc.abstractmethod
    def all_reduce_mean(self, loss: float, grads: dict, weight: float) -> tuple[float, dict]:
        """The ``weight``-weighted mean of every rank's loss and gradients, on every rank;
        :class:`~seqkit.errors.LostRankError` when another rank is gone."""

    @abc.abstractmethod
    def launch(self, nproc: int, argv: list[str]) -> int:
        """Run ``python -m seqkit *argv`` in ``nproc`` processes on this machine; exit status."""


@attrs.frozen
class DistributedInfo:
    """This process's place in a data-parallel job."""

    rank: int
    world_size: int
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints and writes checkpoints."""
        return self.rank == 0


def from_environment(environ: Mapping[str, str] | None = None) -> DistributedInfo | None:
    """The job described by torchrun's variables, or None outside a multi-process launch."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    try:
        info = DistributedInfo(
            int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
        )
    except ValueError:
        raise ValueError(
            f"RANK, WORLD_SIZE and LOCAL_RANK must be integers (got {env.get('RANK')!r}, "
            f"{env.get('WORLD_SIZE')!r}, {env.get('LOCAL_RANK')!r})"
        ) from None
    if not 0 <= info.rank < info.world_size:
        raise ValueError(
            f"RANK must lie in 0..WORLD_SIZE-1 (got RANK={info.rank}, WORLD_SIZE={info.world_size})"
        )
    return info
