"""Callbacks: everything around the training step (progress, evaluation, checkpoints, early
stopping, and whatever a user adds).

The loop (:func:`seqkit.training.train`) calls, on every callback in order, ``on_begin(run)``
once, ``on_step(run, step, loss)`` after every update, ``on_eval(run, step, metrics)`` after
every evaluation of the dev data, and ``on_end(run)`` once when training ends (also after early
stopping, not after an error). ``run`` is the :class:`~seqkit.training.Run` of the call: the
model, the options, the :class:`~seqkit.training.TrainingState`; a callback may set
``run.stop = True`` to end training after this step.

In data-parallel training a callback runs on rank 0 only, unless its ``all_ranks`` is True
(evaluation and early stopping run on every rank, so that every rank stops at the same step).
"""

from __future__ import annotations

import os
import time
from typing import Any

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "Evaluate", "Progress"]


class Callback:
    """Base class of training callbacks: override the hooks you need (each does nothing)."""

    #: Also run on ranks other than 0 in data-parallel training.
    all_ranks: bool = False

    def on_begin(self, run: Any) -> None:
        """Training starts (or resumes) at ``run.state.step``."""

    def on_step(self, run: Any, step: int, loss: float) -> None:
        """Update ``step`` (1 first) is done; ``loss`` is its batch's training loss."""

    def on_eval(self, run: Any, step: int, metrics: dict[str, float]) -> None:
        """The dev data was evaluated after ``step``: ``model.evaluate(*dev)``'s dict."""

    def on_end(self, run: Any) -> None:
        """Training ended (all steps done, or a callback stopped it)."""


class Progress(Callback):
    """A tqdm progress bar with the loss and the tokens per second of this run."""

    def on_begin(self, run: Any) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=run.options.steps, initial=run.state.step, unit="step", dynamic_ncols=True
        )
        self._start, self._tokens = time.perf_counter(), run.history.tokens

    def on_step(self, run: Any, step: int, loss: float) -> None:
        rate = (run.history.tokens - self._tokens) / max(time.perf_counter() - self._start, 1e-9)
        self._bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:.0f}")
        self._bar.update(1)

    def on_end(self, run: Any) -> None:
        self._bar.close()


class Evaluate(Callback):
    """``model.evaluate(*dev)`` every ``every`` steps and at the last, recorded as
    ``(step, metrics)`` in ``history.evals`` and passed to every callback's ``on_eval``."""

    all_ranks = True

    def __init__(self, dev: tuple, every: int) -> None:
        self.dev, self.every = dev, every

    def on_step(self, run: Any, step: int, loss: float) -> None:
        if step % self.every == 0 or step == run.options.steps:
            metrics = run.model.evaluate(*self.dev)
            run.history.evals.append((step, metrics))
            run.dispatch("on_eval", step, metrics)


class EarlyStopping(Callback):
    """Stop after ``patience`` evaluations without a lower ``monitor`` (the model's dev loss);
    with ``restore_best``, end with the parameters of the best evaluation.

    The best value, its step, the evaluations since and the best parameters live in the
    training state (``run.state.best``), so a resumed run stops where the whole run would.
    """

    all_ranks = True

    def __init__(self, monitor: str, patience: int | None, restore_best: bool = True) -> None:
        self.monitor, self.patience, self.restore_best = monitor, patience, restore_best

    def on_eval(self, run: Any, step: int, metrics: dict[str, float]) -> None:
        best, value = run.state.best, float(metrics[self.monitor])
        if best.get("value") is None or value < best["value"]:
            best.update(value=value, step=step, wait=0)
            if self.patience is not None and self.restore_best:
                run.state.best_params = run.model.numpy_params()
        else:
            best["wait"] = best.get("wait", 0) + 1
        if self.patience is not None and best["wait"] >= self.patience:
            run.stop = True

    def on_end(self, run: Any) -> None:
        saved = run.state.best_params
        if self.patience is not None and self.restore_best and saved is not None:
            run.state.last_params = run.model.numpy_params()  # where a resumed run goes on
            run.model._set_params(saved)


class Checkpoint(Callback):
    """Save the model with its training state to ``path`` every ``every`` steps and at the end
    (after :class:`EarlyStopping` restored the best parameters: the file holds the best model).
    """

    def __init__(self, path: str | os.PathLike, every: int | None) -> None:
        self.path, self.every = path, every

    def on_step(self, run: Any, step: int, loss: float) -> None:
        if self.every and step % self.every == 0 and step != run.options.steps:
            run.model.save(self.path)

    def on_end(self, run: Any) -> None:
        run.model.save(self.path)
