"""``lm``: a language model over one text per line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqkit.metrics import nats_per_token, perplexity
from seqkit.models import LanguageModel
from seqkit.tasks._base import Examples, Task, TaskDefaults, number_lines

__all__ = ["LanguageModelling"]


class LanguageModelling(Task):
    """One text per line; the model scores and samples texts.

    ``predict`` gives each line's log-probability (natural log, its ``<EOS>`` included);
    ``evaluate`` gives ``nats_per_token`` and ``perplexity``.
    """

    name = "lm"
    description = "language model: one text per line; predict gives each line's log-probability"
    model_class = LanguageModel
    fields = ("text",)
    headline = "nats_per_token"
    higher_is_better = False
    commands = ("train", "predict", "evaluate", "sample", "score")
    defaults = TaskDefaults(
        level="char",
        model={"cell": "gru", "hidden_size": 128},
        fit={"steps": 1500, "batch_size": 64, "lr": 0.003},
    )

    def _parse(self, values: list[str], level: str) -> tuple[str, Any]:
        return values[0], None

    def _model_args(self, train: Examples, build: Any) -> tuple[tuple, dict]:
        return (build(train.inputs),), {}

    def fit_data(self, model: Any, examples: Examples) -> tuple:
        self.check_model(model)
        return (list(examples.inputs),)

    def predict(self, model: Any, inputs: Sequence[str], *, beam_size: int = 1) -> list[dict]:
        self.check_model(model)
        self._no_beam(beam_size)
        per_token = model.token_log_probs(list(inputs))
        return [
            {"text": text, "log_prob": float(p.sum()), "tokens": len(p)}
            for text, p in zip(inputs, per_token, strict=True)
        ]

    def format_prediction(self, record: dict) -> str:
        return f"{record['log_prob']:.4f}"

    def evaluate(self, model: Any, examples: Examples, *, beam_size: int = 1) -> dict:
        self.check_model(model)
        self._no_beam(beam_size)
        per_token = model.token_log_probs(list(examples.inputs))
        nats = nats_per_token(per_token)
        return {
            "examples": len(examples),
            "tokens": sum(len(p) for p in per_token),
            "nats_per_token": nats,
            "perplexity": perplexity(nats),
        }

    def format_metrics(self, metrics: dict) -> str:
        keys = [("nats_per_token", "nats/token"), ("perplexity", "perplexity")]
        return "\n".join(number_lines(metrics, keys))
