"""The training loop shared by every model: minibatches, gradients, clipping, updates, progress.

One step: draw a minibatch (reproducibly, from the seed), ask the backend for the loss and the
gradients (hand-written BPTT on NumPy, autograd on PyTorch), refuse non-finite values (the
seed's exploding gradient: the parameters stay at their last good values), clip by value and/or
by global norm, and let the optimizer update the parameters in place.

Everything that decides the next step lives in one :class:`TrainingState` (step, optimizer
buffers, the random generator, the epoch's example order), so a run saved every N steps and
resumed gives exactly the parameters of a run that was never interrupted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from seqkit.clip import clip_grad_norm, clip_grad_value, global_norm
from seqkit.distributed import DistributedInfo
from seqkit.errors import SeqkitError
from seqkit.optim import Optimizer, get_optimizer

__all__ = ["TrainingDiverged", "TrainingHistory", "TrainingState", "train"]


class TrainingDiverged(SeqkitError, FloatingPointError):
    """The loss or a gradient became non-finite; the model keeps its last good parameters."""


@attrs.define
class TrainingHistory:
    """What :func:`train` saw: one loss per step, and periodic evaluations."""

    losses: list[float] = attrs.field(factory=list)
    grad_norms: list[float] = attrs.field(factory=list)
    evals: list[tuple[int, float]] = attrs.field(factory=list)
    tokens: int = 0
    seconds: float = 0.0


@attrs.define
class TrainingState:
    """Everything the next step depends on besides the parameters; saved in checkpoints.

    Attributes:
        step: optimizer steps completed.
        options: the run's options (batch_size, lr, optimizer, clip_norm, clip_value, seed).
        optimizer_state: the optimizer's buffers (backend arrays) and its step count.
        rng: the minibatch generator's ``bit_generator.state``.
        order: the current epoch's permutation of the examples.
        cursor: how much of ``order`` is used.
        history: losses and evaluations so far.
    """

    step: int
    options: dict
    optimizer_state: dict
    rng: dict[str, Any]
    order: np.ndarray
    cursor: int
    history: TrainingHistory

    def to_checkpoint(self, optimizer: Optimizer, ops) -> tuple[dict, dict[str, np.ndarray]]:
        """``(json_part, arrays)`` for :class:`seqkit.checkpoint.Checkpoint`."""
        arrays = {
            f"optim/{k}": v for k, v in optimizer.state_to_numpy(ops, self.optimizer_state).items()
        }
        arrays["order"] = np.asarray(self.order, dtype=np.int64)
        meta = {
            "step": self.step,
            "options": self.options,
            "rng": _jsonable(self.rng),
            "cursor": self.cursor,
            "losses": self.history.losses,
            "grad_norms": self.history.grad_norms,
            "evals": self.history.evals,
            "tokens": self.history.tokens,
        }
        return meta, arrays

    @classmethod
    def from_checkpoint(cls, meta: dict, arrays: dict[str, np.ndarray], ops) -> TrainingState:
        """Undo :meth:`to_checkpoint` onto ``ops``'s backend."""
        options = meta["options"]
        optimizer = get_optimizer(options["optimizer"], lr=options["lr"])
        optim_arrays = {k[len("optim/") :]: v for k, v in arrays.items() if k.startswith("optim/")}
        history = TrainingHistory(
            list(meta["losses"]),
            list(meta["grad_norms"]),
            [tuple(e) for e in meta["evals"]],
            int(meta["tokens"]),
        )
        return cls(
            step=int(meta["step"]),
            options=dict(options),
            optimizer_state=optimizer.state_from_numpy(ops, optim_arrays),
            rng=meta["rng"],
            order=np.asarray(arrays["order"], dtype=np.int64),
            cursor=int(meta["cursor"]),
            history=history,
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.integer):
        return int(value)
    return value


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name!r} must be a positive integer (got {value!r})")
    return int(value)


def train(
    model,
    make_batch: Callable[[np.ndarray], tuple],
    n_items: int,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    optimizer: str = "adam",
    clip_norm: float | None = None,
    clip_value: float | None = None,
    seed: int | None = None,
    progress: bool = False,
    eval_every: int | None = None,
    evaluate: Callable[[], float] | None = None,
    on_eval: Callable[[int, float], None] | None = None,
    resume: TrainingState | None = None,
    checkpoint_every: int | None = None,
    on_checkpoint: Callable[[TrainingState], None] | None = None,
    distributed: DistributedInfo | None = None,
) -> TrainingHistory:
    """Train ``model`` in place with minibatch gradient descent.

    Args:
        model: a :class:`seqkit.models.Model`.
        make_batch: turns an index array into the model's batch arguments.
        n_items: how many training examples ``make_batch`` indexes.
        steps: total optimizer steps (a resumed run continues up to this count).
        batch_size: examples per step.
        lr: learning rate.
        optimizer: ``"sgd"``, ``"adagrad"`` or ``"adam"``.
        clip_norm: rescale gradients whose global norm exceeds this.
        clip_value: clamp every gradient entry to ``[-clip_value, clip_value]``.
        seed: seeds the minibatch order; the same seed on the same backend repeats the run.
        progress: show a progress bar (tqdm) with the loss and tokens/s.
        eval_every: call ``evaluate()`` every this many steps and at the end.
        evaluate: returns a held-out loss; recorded in ``history.evals``.
        on_eval: called with ``(step, value)`` after each evaluation.
        resume: a :class:`TrainingState` to continue from (``model.training_state`` after
            :func:`seqkit.load`); its options must equal this call's.
        checkpoint_every: call ``on_checkpoint(state)`` every this many steps and at the end.
        on_checkpoint: receives the current :class:`TrainingState` (the model's ``fit`` saves it).
        distributed: this process's place in a data-parallel job (``seqkit.distributed``): each
            rank computes its shard ``index[rank::world_size]`` of every global batch and the
            backend averages the gradients; progress, ``on_eval`` and ``on_checkpoint`` run on
            rank 0 only. The parameters equal a one-process run with the same global batch.

    Raises:
        TrainingDiverged: the loss or a gradient became non-finite; parameters are unchanged
            from the step before.
    """
    steps = _positive_int("steps", steps)
    batch_size = _positive_int("batch_size", batch_size)
    if n_items <= 0:
        raise ValueError(f"training data must hold at least one example (got {n_items})")
    world = distributed.world_size if distributed is not None else 1
    main = distributed is None or distributed.is_main
    if batch_size < world:
        raise ValueError(
            f"'batch_size' must be at least the number of processes, {world} (got {batch_size})"
        )
    backend = model.backend
    ops = backend.ops
    opt = get_optimizer(optimizer, lr=lr)
    options = {
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": opt.name,
        "clip_norm": clip_norm,
        "clip_value": clip_value,
        "seed": seed,
        "n_items": n_items,
    }
    if resume is None:
        rng = np.random.default_rng(seed)
        state = TrainingState(
            0,
            options,
            opt.init_state(ops, model.params),
            dict(rng.bit_generator.state),
            rng.permutation(n_items),
            0,
            TrainingHistory(),
        )
    else:
        state = resume
        changed = {
            k: (state.options.get(k), v) for k, v in options.items() if state.options.get(k) != v
        }
        if changed:
            detail = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in changed.items())
            raise ValueError(f"cannot resume with different training options ({detail})")
        rng = np.random.default_rng()
        rng.bit_generator.state = state.rng
    model.training_state = state
    history = state.history
    bar = None
    if progress and main:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=state.step, unit="step", dynamic_ncols=True, leave=True)
    start = time.perf_counter()
    tokens_before = history.tokens
    try:
        while state.step < steps:
            step = state.step + 1
            if state.cursor + batch_size > n_items:  # a new epoch: reshuffle
                state.order = rng.permutation(n_items)
                state.cursor = 0
            index = state.order[state.cursor : state.cursor + batch_size]
            if distributed is not None and world > 1:
                index = index[distributed.rank :: world]  # this rank's shard of the global batch
            args = make_batch(index)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                # overflow is detected below and reported as one clear error, not as warnings
                loss, grads = backend.loss_and_grads(
                    model._loss_forward, model._loss_backward, model.params, *args
                )
                if world > 1:
                    loss, grads = backend.all_reduce_mean(loss, grads, model._batch_weight(args))
                norm = global_norm(grads)
            if not (math.isfinite(loss) and math.isfinite(norm)):
                raise TrainingDiverged(
                    f"step {step}: the {'loss' if not math.isfinite(loss) else 'gradient norm'} "
                    f"is {loss if not math.isfinite(loss) else norm}: training stopped, the model "
                    f"keeps its parameters from step {step - 1}; lower 'lr' or set 'clip_norm'"
                )
            if clip_value is not None:
                grads = clip_grad_value(grads, clip_value)
            if clip_norm is not None:
                grads, _ = clip_grad_norm(grads, clip_norm)
            opt.update(ops, model.params, grads, state.optimizer_state)
            state.cursor += batch_size
            state.step = step
            state.rng = dict(rng.bit_generator.state)
            history.losses.append(loss)
            history.grad_norms.append(norm)
            history.tokens += model._batch_tokens(args) * world
            if bar is not None:
                elapsed = time.perf_counter() - start
                rate = (history.tokens - tokens_before) / max(elapsed, 1e-9)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:.0f}")
                bar.update(1)
            if not main:
                continue
            if evaluate is not None and eval_every and (step % eval_every == 0 or step == steps):
                value = float(evaluate())
                history.evals.append((step, value))
                if on_eval is not None:
                    on_eval(step, value)
            if (
                on_checkpoint is not None
                and checkpoint_every
                and (step % checkpoint_every == 0 or step == steps)
            ):
                on_checkpoint(state)
    finally:
        if bar is not None:
            bar.close()
        history.seconds = time.perf_counter() - start
    return history
