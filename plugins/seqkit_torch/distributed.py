"""torch.distributed for seqkit: the process group, the gradient all-reduce, and the launcher.

gloo on the CPU, NCCL on CUDA. The launcher is torchrun's own (``torch.distributed.launcher``),
with no restarts: when one rank dies the agent stops the others, and the failure is reported as
one line naming the rank. A rank whose all-reduce fails because another is gone exits with
:data:`seqkit.distributed.LOST_RANK_EXIT`, so that the line names the rank that died, not one that
noticed.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid

from seqkit.distributed import LOST_RANK_EXIT, DataParallel
from seqkit.errors import LostRankError


class TorchDataParallel(DataParallel):
    """``TorchBackend.data_parallel``: torch.distributed on the backend's device and dtype."""

    def __init__(self, backend) -> None:
        self.backend = backend

    def join(self, info) -> None:
        init_process_group(self.backend._torch, info, self.backend.ops.device)

    def leave(self) -> None:
        leave_process_group(self.backend._torch)

    def abandon(self) -> None:
        abandon_process_group(self.backend._torch)

    def all_reduce_mean(self, loss: float, grads: dict, weight: float) -> tuple[float, dict]:
        ops = self.backend.ops
        return all_reduce_mean(
            self.backend._torch, loss, grads, weight, ops.device, ops.torch_dtype
        )

    def launch(self, nproc: int, argv: list[str]) -> int:
        return launch(nproc, argv)


def init_process_group(torch, info, device) -> None:
    """Join the job of ``info`` once (env:// rendezvous from torchrun's variables)."""
    dist = torch.distributed
    if dist.is_initialized():
        return
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # ranks on one machine share its cores: without this each takes them all, and the
        # oversubscribed job ran 5x slower than one process (2 ranks, 2 cores)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def leave_process_group(torch) -> None:
    """Leave the job's process group once every rank has reached this point.

    A process that exits without it can die of SIGABRT ("terminate called without an active
    exception"): gloo's worker threads are still alive while the interpreter shuts down.
    """
    dist = torch.distributed
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def abandon_process_group(torch) -> None:
    """Leave the job's process group now, without the barrier of :func:`leave_process_group`.

    Destroying the group stops gloo's threads, so a failing rank exits with its own status
    instead of SIGABRT; an error while destroying a group whose peers are gone is ignored.
    """
    dist = torch.distributed
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - the rank is failing already; its own error is reported
            pass


def all_reduce_mean(torch, loss: float, grads: dict, weight: float, device, dtype):
    """Every rank's ``(loss, grads)`` averaged with weights ``weight``, in one all-reduce."""
    names = list(grads)
    flat = torch.cat(
        [grads[n].reshape(-1) * weight for n in names]
        + [torch.tensor([loss * weight, weight], dtype=dtype, device=device)]
    )
    try:
        torch.distributed.all_reduce(flat)  # sum over ranks
    except RuntimeError as exc:  # gloo and NCCL raise RuntimeError (or DistError, a subclass)
        raise LostRankError(
            f"the gradient all-reduce with the other ranks failed; another rank has probably "
            f"died ({_first_sentence(exc)})"
        ) from None
    total = flat[-1]
    mean = flat / total
    out, start = {}, 0
    for n in names:
        size = grads[n].numel()
        out[n] = mean[start : start + size].view_as(grads[n])
        start += size
    return float(mean[-2]), out


def _first_sentence(exc: BaseException) -> str:
    """gloo's ``[file.cc:537] Read error [addr]: Connection reset by peer. This is ...``, cut to
    ``Read error [addr]: Connection reset by peer``."""
    text = " ".join(str(exc).split())
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(". ", 1)[0].rstrip(".") or type(exc).__name__


def launch(nproc: int, argv: list[str]) -> int:
    """``python -m seqkit *argv`` in ``nproc`` local processes under torchrun's agent."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"seqkit-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "seqkit", *argv)
    except SignalException as exc:
        # Ctrl-C (or SIGTERM) to the launcher: the agent has passed it on to the ranks, and rank
        # 0 has said what its checkpoint holds; exit as a process stopped by that signal does
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        # the first rank to fail is the cause; the agent then stops the others with SIGTERM,
        # and a rank whose all-reduce found a peer gone exits with LOST_RANK_EXIT. Both are
        # consequences, never the cause: timestamps have one-second resolution, and a rank that
        # noticed a death is often recorded in the same second as the rank that died.
        rank, failure = min(
            exc.failures.items(),
            key=lambda item: (
                item[1].exitcode in (-signal.SIGTERM, LOST_RANK_EXIT),
                item[1].timestamp,
                item[0],
            ),
        )
        code = failure.exitcode
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        print(
            f"seqkit: error: rank {rank} of {nproc} died ({how}); the whole job was stopped",
            file=sys.stderr,
        )
        return 1
    return 0
