"""The training loop shared by every model: minibatches, gradients, clipping, updates, progress.

One step: draw a minibatch (reproducibly, from the seed), ask the backend for the loss and the
gradients (hand-written BPTT on NumPy, autograd on PyTorch), refuse non-finite values (the
seed's exploding gradient: the parameters stay at their last good values), clip by value and/or
by global norm, and let the optimizer update the parameters in place.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from seqkit.clip import clip_grad_norm, clip_grad_value, global_norm
from seqkit.errors import SeqkitError
from seqkit.optim import get_optimizer

__all__ = ["TrainingDiverged", "TrainingHistory", "train"]


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
) -> TrainingHistory:
    """Train ``model`` in place with minibatch gradient descent.

    Args:
        model: a :class:`seqkit.models.Model`.
        make_batch: turns an index array into the model's batch arguments (a tuple whose last
            entry may be a token count, see ``model._batch_tokens``).
        n_items: how many training examples ``make_batch`` indexes.
        steps: optimizer steps.
        batch_size: examples per step (at most ``n_items`` are used).
        lr: learning rate.
        optimizer: ``"sgd"``, ``"adagrad"`` or ``"adam"``.
        clip_norm: rescale gradients whose global norm exceeds this.
        clip_value: clamp every gradient entry to ``[-clip_value, clip_value]``.
        seed: seeds the minibatch order; the same seed on the same backend repeats the run.
        progress: show a progress bar (tqdm) with the loss and tokens/s.
        eval_every: call ``evaluate()`` every this many steps and at the end.
        evaluate: returns a held-out loss; recorded in ``history.evals``.
        on_eval: called with ``(step, value)`` after each evaluation.

    Raises:
        TrainingDiverged: the loss or a gradient became non-finite; parameters are unchanged
            from the step before.
    """
    steps = _positive_int("steps", steps)
    batch_size = _positive_int("batch_size", batch_size)
    if n_items <= 0:
        raise ValueError(f"training data must hold at least one example (got {n_items})")
    backend = model.backend
    opt = get_optimizer(optimizer, lr=lr)
    state = opt.init_state(backend.ops, model.params)
    rng = np.random.default_rng(seed)
    history = TrainingHistory()
    order = rng.permutation(n_items)
    cursor = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, unit="step", dynamic_ncols=True, leave=True)
    start = time.perf_counter()
    try:
        for step in range(1, steps + 1):
            if cursor + batch_size > n_items:  # a new epoch: reshuffle
                order = rng.permutation(n_items)
                cursor = 0
            index = order[cursor : cursor + batch_size]
            cursor += batch_size
            args = make_batch(index)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                # overflow is detected below and reported as one clear error, not as warnings
                loss, grads = backend.loss_and_grads(
                    model._loss_forward, model._loss_backward, model.params, *args
                )
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
            opt.update(backend.ops, model.params, grads, state)
            history.losses.append(loss)
            history.grad_norms.append(norm)
            history.tokens += model._batch_tokens(args)
            if bar is not None:
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{history.tokens / max(elapsed, 1e-9):.0f}")
                bar.update(1)
            if evaluate is not None and eval_every and (step % eval_every == 0 or step == steps):
                value = float(evaluate())
                history.evals.append((step, value))
                if on_eval is not None:
                    on_eval(step, value)
    finally:
        if bar is not None:
            bar.close()
        history.seconds = time.perf_counter() - start
    return history
