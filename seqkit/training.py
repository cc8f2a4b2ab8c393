"""The training loop shared by every model: the step, and callbacks around it.

One step: draw a minibatch (reproducibly, from the training random state), ask the backend for
the loss and the gradients (hand-written BPTT on NumPy, autograd on PyTorch), average them over
the processes of a data-parallel job, stop a run that diverged (see below), clip by value and/or
by global norm, and let the optimizer update the parameters with the scheduled learning rate.
Everything else (progress, evaluation on dev data, early stopping, checkpoints, user code) is a
:class:`~seqkit.callbacks.Callback`.

Everything that decides the next step lives in one :class:`TrainingState` (step, optimizer
buffers, the random generator, the epoch's example order, the best evaluation), so a run saved
every N steps and resumed gives exactly the parameters of a run that was never interrupted.

Divergence. Every model trains on a mean cross-entropy (per token or per sequence), which starts
near ``log(V)`` (a fresh model predicts nearly uniformly) and goes down. A run has diverged when
step ``s``'s loss or gradient norm is not finite, or its loss is above
:data:`DIVERGENCE_FACTOR` times the run's first loss (the first loss counted as at least 1 nat,
for a run that starts from a trained model). A loss that far up means logits off by hundreds
against the true token: no schedule that still converges goes there (warm-up, high learning
rates and their spikes stay within a few times the first loss; ``docs/training.rst`` gives the
measured runs), while a run that blew up is there within steps (``lr=1e6``: 10**7 nats). The
parameters that gave step ``s``'s loss are those of step ``s - 1``, so a loss out of bounds
takes the model back to those of step ``s - 2`` (kept as a copy at every step); a non-finite
gradient with a loss in bounds keeps those of step ``s - 1``. :class:`TrainingDiverged` says
which.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

from seqkit.callbacks import Callback
from seqkit.clip import clip_grad_norm, clip_grad_value, global_norm
from seqkit.config import resolve_seed
from seqkit.context import Context
from seqkit.errors import SeqkitError
from seqkit.memory import check_training
from seqkit.optim import Optimizer, get_optimizer
from seqkit.options import TrainingOptions
from seqkit.schedules import get_schedule

__all__ = [
    "DIVERGENCE_FACTOR",
    "Examples",
    "Run",
    "TrainingDiverged",
    "TrainingHistory",
    "TrainingState",
    "train",
]

#: A training loss above this many times the run's first loss (at least 1 nat) is divergence.
DIVERGENCE_FACTOR = 100.0


class TrainingDiverged(SeqkitError, FloatingPointError):
    """Training diverged (see :mod:`seqkit.training`); the model keeps its last good parameters.

    Attributes:
        step: the step whose loss or gradient showed it.
        good_step: the step whose parameters the model holds now (the last good ones).
        history: the run's :class:`TrainingHistory` up to ``step - 1``.

    The message names options as Python spells them (``'lr'``); the command line says its flags.
    """

    def __init__(self, message: str, *, step: int, good_step: int, history=None) -> None:
        super().__init__(message)
        self.step, self.good_step, self.history = step, good_step, history


@attrs.frozen
class Examples:
    """Training or dev data as a model prepared it: ``size`` examples and how any of them,
    by index, become a :class:`~seqkit.models.Batch`."""

    size: int
    batch: Callable[[np.ndarray], Any]


@attrs.define
class TrainingHistory:
    """What training saw: one loss per step, and ``(step, metrics)`` per evaluation."""

    losses: list[float] = attrs.field(factory=list)
    grad_norms: list[float] = attrs.field(factory=list)
    evals: list[tuple[int, dict[str, float]]] = attrs.field(factory=list)
    tokens: int = 0
    seconds: float = 0.0


@attrs.define
class TrainingState:
    """Everything the next step depends on besides the parameters; saved in checkpoints.

    Attributes:
        step: optimizer steps completed.
        options: :meth:`TrainingOptions.to_dict` of the run, plus ``n_items``.
        optimizer_state: the optimizer's buffers (backend arrays) and its step count.
        rng: the minibatch generator's ``bit_generator.state``.
        order: the current epoch's permutation of the examples.
        cursor: how much of ``order`` is used.
        history: losses and evaluations so far.
        dropout_seed: with the step, seeds that step's host generator for dropout masks.
        best: the best evaluation so far, ``{"value", "step", "wait"}`` (early stopping).
        best_params: its parameters (NumPy), kept when ``patience`` and ``restore_best``.
        last_params: the parameters training had reached when early stopping restored the best
            ones at the end (NumPy): a resumed run continues from these.
    """

    step: int
    options: dict
    optimizer_state: dict
    rng: dict[str, Any]
    order: np.ndarray
    cursor: int
    history: TrainingHistory
    dropout_seed: int = 0
    best: dict = attrs.field(factory=dict)
    best_params: dict | None = None
    last_params: dict | None = None

    def to_checkpoint(self, optimizer: Optimizer, ops) -> tuple[dict, dict[str, np.ndarray]]:
        """``(json_part, arrays)`` for :class:`seqkit.checkpoint.Checkpoint`."""
        arrays = {
            f"optim/{k}": v for k, v in optimizer.state_to_numpy(ops, self.optimizer_state).items()
        }
        arrays["order"] = np.asarray(self.order, dtype=np.int64)
        arrays.update({f"best/{k}": v for k, v in (self.best_params or {}).items()})
        arrays.update({f"last/{k}": v for k, v in (self.last_params or {}).items()})
        meta = {
            "step": self.step,
            "options": self.options,
            "rng": _jsonable(self.rng),
            "cursor": self.cursor,
            "losses": self.history.losses,
            "grad_norms": self.history.grad_norms,
            "evals": self.history.evals,
            "tokens": self.history.tokens,
            "dropout_seed": self.dropout_seed,
            "best": self.best,
        }
        return meta, arrays

    @classmethod
    def from_checkpoint(cls, meta: dict, arrays: dict[str, np.ndarray], ops) -> TrainingState:
        """Undo :meth:`to_checkpoint` onto ``ops``'s backend (older checkpoints too)."""
        options = meta["options"]
        optimizer = build_optimizer(
            options["optimizer"], options.get("lr"), options.get("weight_decay")
        )
        optim = {k[len("optim/") :]: v for k, v in arrays.items() if k.startswith("optim/")}
        best = {k[len("best/") :]: v for k, v in arrays.items() if k.startswith("best/")}
        last = {k[len("last/") :]: v for k, v in arrays.items() if k.startswith("last/")}
        order = np.asarray(arrays["order"], dtype=np.int64)
        _check_resumable(meta, options, order)
        history = TrainingHistory(
            list(meta["losses"]),
            list(meta["grad_norms"]),
            [(int(s), m if isinstance(m, dict) else {"loss": m}) for s, m in meta["evals"]],
            int(meta["tokens"]),
        )
        return cls(
            step=int(meta["step"]),
            options=dict(options),
            optimizer_state=optimizer.state_from_numpy(ops, optim),
            rng=meta["rng"],
            order=order,
            cursor=int(meta["cursor"]),
            history=history,
            dropout_seed=int(meta.get("dropout_seed", 0)),
            best=dict(meta.get("best", {})),
            best_params=best or None,
            last_params=last or None,
        )


def _check_resumable(meta: dict, options: dict, order: np.ndarray) -> None:
    """What the checkpoint schema cannot say about a saved training state: its epoch's order is
    a permutation of the examples, its losses finite, its best evaluation from a step it has
    run. Raises ValueError naming the field (a crafted or damaged file)."""
    n = options.get("n_items", len(order))
    if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
        raise ValueError(
            f"state/order must be a permutation of the run's {n} training examples "
            f"(got an array of shape {order.shape})"
        )
    if not all(loss is not None and math.isfinite(loss) for loss in meta["losses"]):
        raise ValueError("extra.training.losses must be finite numbers (a diverged run's?)")
    best_step = meta.get("best", {}).get("step")
    if best_step is not None and best_step > meta["step"]:
        raise ValueError(
            f"extra.training.best.step must be at most the run's step {meta['step']} "
            f"(got {best_step})"
        )


@attrs.define(eq=False)
class Run:
    """One call of :func:`train`, as callbacks see it."""

    model: Any
    options: TrainingOptions
    state: TrainingState
    optimizer: Optimizer
    schedule: Callable[[int], float]
    callbacks: list[Callback]
    main: bool = True
    stop: bool = False
    #: a copy of the parameters before the last update: what a diverged run goes back to
    previous: dict | None = None

    @property
    def history(self) -> TrainingHistory:
        """``state.history``."""
        return self.state.history

    def dispatch(self, hook: str, *args: Any) -> None:
        """Call ``hook`` on every callback that runs in this process."""
        for callback in self.callbacks:
            if self.main or callback.all_ranks:
                getattr(callback, hook)(self, *args)


def train(
    model,
    examples: Examples,
    options: TrainingOptions,
    *,
    callbacks: Sequence[Callback] = (),
    resume: TrainingState | None = None,
    distributed=None,
) -> TrainingHistory:
    """Train ``model`` in place: ``options.steps`` steps, ``callbacks`` around each.

    Args:
        model: a :class:`seqkit.models.Model`.
        examples: the training data, made by the model.
        options: the :class:`~seqkit.TrainingOptions`.
        callbacks: :class:`~seqkit.Callback` objects, called in order.
        resume: a :class:`TrainingState` to continue from (``model.training_state`` after
            :func:`seqkit.load`); its options must equal these but for ``steps``.
        distributed: this process's :class:`~seqkit.distributed.DistributedInfo` in a
            data-parallel job: rank r computes the shard ``index[r::world_size]`` of every global
            batch and the backend's ``data_parallel`` averages the gradients, so the parameters
            equal a one-process run with the same global batch.

    Raises:
        TrainingDiverged: the run diverged (the rule is in the module's docstring); the model
            holds the parameters of ``good_step``. When that is an earlier step than the one
            the training state reached, :attr:`Model.training_state` is cleared (there is
            nothing consistent to resume: the same options would diverge again).
    """
    world = distributed.world_size if distributed is not None else 1
    if options.batch_size < world:
        raise ValueError(
            f"'batch_size' must be at least the number of processes, {world} "
            f"(got {options.batch_size})"
        )
    optimizer = build_optimizer(options.optimizer, options.lr, options.weight_decay)
    # the optimizer's buffers (unless resumed: loaded already) and the last good parameters
    copies = 1 + (len(optimizer.buffers()) if resume is None else 0)
    check_training(model, examples, options.batch_size, copies)
    if resume is None:
        saved = {**options.to_dict(), "n_items": examples.size}
        state = _fresh_state(model, optimizer, saved, options.seed, examples.size)
    else:
        state = _resumed(model, resume, options, examples.size)
    rng = np.random.default_rng()
    rng.bit_generator.state = state.rng
    schedule = get_schedule(
        options.lr_schedule, steps=options.steps, warmup_steps=options.warmup_steps
    )
    main = distributed is None or distributed.is_main
    run = Run(model, options, state, optimizer, schedule, list(callbacks), main)
    model.training_state = state
    shard = slice(distributed.rank, None, world) if world > 1 else slice(None)
    start = time.perf_counter()
    try:
        run.dispatch("on_begin")
        while state.step < options.steps and not run.stop:
            loss = _step(run, examples, rng, shard, world)
            run.dispatch("on_step", state.step, loss)
        run.dispatch("on_end")
    finally:
        state.history.seconds = time.perf_counter() - start
    return state.history


def _resumed(model, state: TrainingState, options: TrainingOptions, n_items: int):
    """``state`` if ``options`` and the data size equal the saved ones (all but ``steps``)."""
    changed = options.differences(state.options)
    if state.options.get("n_items", n_items) != n_items:
        changed.append(f"training examples: saved {state.options['n_items']!r}, now {n_items!r}")
    if changed:
        raise ValueError(f"cannot resume with different training options ({'; '.join(changed)})")
    if state.last_params is not None:  # the best were restored at the end: go on from here
        model._set_params(state.last_params)
        state.last_params = None
    return state


def _fresh_state(model, optimizer, saved: dict, seed, n_items: int) -> TrainingState:
    seed = resolve_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_items)
    dropout_seed = int(np.random.SeedSequence(seed).entropy)
    return TrainingState(
        0,
        saved,
        optimizer.init_state(model.backend.ops, model.params),
        dict(rng.bit_generator.state),
        order,
        0,
        TrainingHistory(),
        dropout_seed=dropout_seed,
    )


def _step(run: Run, examples: Examples, rng: np.random.Generator, shard: slice, world: int):
    """One update: batch -> loss and gradients -> all-reduce -> checks -> clip -> update."""
    model, state, opts = run.model, run.state, run.options
    step = state.step + 1
    if state.cursor + opts.batch_size > examples.size:  # a new epoch: reshuffle
        state.order, state.cursor = rng.permutation(examples.size), 0
    index = state.order[state.cursor : state.cursor + opts.batch_size]
    batch = examples.batch(index[shard])
    ctx = _context(state, step, shard, world, len(index))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        # overflow is detected below and reported as one clear error, not as warnings
        loss, grads = model.loss_and_grads(batch, ctx=ctx)
        if world > 1:
            loss, grads = model.backend.data_parallel.all_reduce_mean(loss, grads, batch.weight)
        norm = global_norm(grads)
    _check_divergence(run, step, loss, norm)
    ops = model.backend.ops
    run.previous = {name: ops.copy(value) for name, value in model.params.items()}
    if opts.clip_value is not None:
        grads = clip_grad_value(grads, opts.clip_value)
    if opts.clip_norm is not None:
        grads, _ = clip_grad_norm(grads, opts.clip_norm)
    lr = run.optimizer.lr * run.schedule(step - 1)
    with np.errstate(over="ignore", invalid="ignore"):  # reported below as one clear error
        params, optimizer_state = run.optimizer.update(
            model.backend.ops, model.params, grads, state.optimizer_state, lr=lr
        )
    _check_update(run, step, params)
    model.params, state.optimizer_state = params, optimizer_state
    state.cursor += opts.batch_size
    state.step = step
    state.rng = dict(rng.bit_generator.state)
    state.history.losses.append(loss)
    state.history.grad_norms.append(norm)
    state.history.tokens += batch.n_tokens * world
    return loss


def _check_divergence(run: Run, step: int, loss: float, norm: float) -> None:
    """Raise :class:`TrainingDiverged` (after restoring the last good parameters) when step
    ``step``'s ``loss`` or gradient ``norm`` says the run diverged (the module's rule)."""
    losses = run.history.losses
    first = losses[0] if losses else loss
    bound = DIVERGENCE_FACTOR * max(first, 1.0)
    if math.isfinite(loss) and loss <= bound and math.isfinite(norm):
        return
    if not math.isfinite(loss):
        what = f"the training loss is {loss}"
    elif loss > bound:
        what = (
            f"the training loss {loss:.4g} is over {DIVERGENCE_FACTOR:g} times the run's first "
            f"({first:.4g})"
        )
    else:
        what = f"the gradient norm is {norm}"
    good = step - 1
    if (not math.isfinite(loss) or loss > bound) and run.previous is not None:
        # these parameters gave the bad loss: go back to the ones before the last update
        run.model._set_params({k: run.model.backend.to_numpy(v) for k, v in run.previous.items()})
        run.model.training_state = None
        good = step - 2
    clip = run.options.clip_norm
    advice = f"lower 'lr' ('clip_norm' is {clip:g})" if clip else "lower 'lr' or set 'clip_norm'"
    if step == 1:  # no update was made: neither lr nor clipping is the cause
        advice = "the initial parameters give it: check them and the data"
    kept = "its initial parameters" if good == 0 else f"its parameters from step {good}"
    raise TrainingDiverged(
        f"step {step}: {what}: training diverged and stopped; the model keeps {kept}; {advice}",
        step=step,
        good_step=good,
        history=run.history,
    )


def _check_update(run: Run, step: int, params: dict) -> None:
    """Raise :class:`TrainingDiverged` when step ``step``'s update made a parameter NaN or
    infinite (a finite loss and gradient, an overflowing update: a huge learning rate, or an
    optimizer state a resumed checkpoint crafted). The model keeps the parameters before the
    update, so nothing after it (an evaluation, a checkpoint) ever sees or saves the others;
    like a divergence of the loss, it leaves no training state to resume from."""
    xp = run.model.backend.ops.xp
    finite = [xp.isfinite(value).all() for value in params.values()]
    if bool(xp.stack(finite).all()):  # one read of a flag (one device sync on a GPU)
        return
    bad = [name for name, ok in zip(params, finite, strict=True) if not bool(ok)]
    # an optimizer may update its arrays in place: back to the copy taken before the update,
    # and no training state (its buffers moved too) to resume from
    run.model._set_params({k: run.model.backend.to_numpy(v) for k, v in run.previous.items()})
    run.model.training_state = None
    clip = run.options.clip_norm
    advice = f"lower 'lr' ('clip_norm' is {clip:g})" if clip else "lower 'lr' or set 'clip_norm'"
    kept = "its initial parameters" if step == 1 else f"its parameters from step {step - 1}"
    raise TrainingDiverged(
        f"step {step}: the update made {_names_of(bad)} NaN or infinite: training diverged and "
        f"stopped; the model keeps {kept}; {advice}",
        step=step,
        good_step=step - 1,
        history=run.history,
    )


def _names_of(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _context(state: TrainingState, step: int, shard: slice, world: int, global_batch: int):
    """The step's training :class:`~seqkit.context.Context`: its dropout masks come from a
    host generator seeded by ``(state.dropout_seed, step)``: the same on every backend, in
    every process of a data-parallel job (each keeps its rows), and after a resume."""
    rng = np.random.default_rng([state.dropout_seed, step])
    if world == 1:
        return Context(training=True, rng=rng)
    return Context(
        training=True, rng=rng, rank=shard.start, world_size=world, global_batch=global_batch
    )


# --- optimizers and schedules ------------------------------------------------------------------
def build_optimizer(spec: Any, lr: float | None, weight_decay: float | None) -> Optimizer:
    """The optimizer of the options: a name, an object or a config dict, with the options'
    ``lr`` and ``weight_decay`` when they are set (a name without ``lr`` gets 0.003)."""
    overrides: dict[str, Any] = {}
    if lr is not None:
        overrides["lr"] = lr
    elif isinstance(spec, str):
        overrides["lr"] = 0.003
    if weight_decay is not None:
        overrides["weight_decay"] = weight_decay
    return get_optimizer(spec, **overrides)


def optimizer_config(optimizer: Optimizer) -> dict:
    """``optimizer.to_config()``: ``{"name": ..., hyperparameters}``, JSON-able."""
    return optimizer.to_config()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.integer):
        return int(value)
    return value
