"""``translate``: ``source<TAB>target`` (an encoder-decoder, T_x != T_y)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqkit.metrics import char_error_rate, exact_match
from seqkit.models import Seq2Seq
from seqkit.tasks._base import Examples, Task, TaskDefaults, number_lines

__all__ = ["Translation"]


class Translation(Task):
    """``source<TAB>target``: the model reads the source and writes the target.

    ``predict`` gives the translation (greedy, or beam search with ``beam_size`` > 1; JSON: its
    log-probability given the source); ``evaluate`` gives ``exact_match`` and
    ``char_error_rate``.
    """

    name = "translate"
    description = "encoder-decoder: source<TAB>target; predict gives the translation"
    model_class = Seq2Seq
    fields = ("source", "target")
    headline = "exact_match"
    defaults = TaskDefaults(
        level="char",
        model={"cell": "gru", "hidden_size": 128},
        fit={"steps": 2000, "batch_size": 64, "lr": 0.003},
    )

    def _parse(self, values: list[str], level: str) -> tuple[str, Any]:
        source, target = values
        return source, target

    def _model_args(self, train: Examples, build: Any) -> tuple[tuple, dict]:
        return (build(train.inputs), build(train.targets)), {}

    def truncate(self, examples: Examples, max_len: int) -> Examples:
        raise ValueError(
            "a translation pair cannot be truncated (the target would no longer match the "
            "source): drop the long pairs instead"
        )

    def fit_data(self, model: Any, examples: Examples) -> tuple:
        self.check_model(model)
        return list(examples.inputs), list(examples.targets)

    def predict(self, model: Any, inputs: Sequence[str], *, beam_size: int = 1) -> list[dict]:
        self.check_model(model)
        sources = list(inputs)
        outputs = model.translate(sources, beam_size=beam_size)
        scores = model.token_log_probs(sources, outputs)
        return [
            {"source": s, "translation": y, "log_prob": float(p.sum())}
            for s, y, p in zip(sources, outputs, scores, strict=True)
        ]

    def format_prediction(self, record: dict) -> str:
        return record["translation"]

    def evaluate(self, model: Any, examples: Examples, *, beam_size: int = 1) -> dict:
        self.check_model(model)
        outputs = model.translate(list(examples.inputs), beam_size=beam_size)
        true = list(examples.targets)
        return {
            "examples": len(examples),
            "exact_match": exact_match(true, outputs),
            "char_error_rate": char_error_rate(true, outputs),
        }

    def format_metrics(self, metrics: dict) -> str:
        keys = [("exact_match", "exact match"), ("char_error_rate", "char error rate")]
        return "\n".join(number_lines(metrics, keys))
