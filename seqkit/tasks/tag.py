"""``tag``: ``tokens<TAB>tags``, one tag per token (many-to-many, T_x = T_y)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqkit.metrics import is_iob, per_tag_scores, span_f1, token_accuracy
from seqkit.models import SequenceTagger
from seqkit.tasks._base import (
    DataError,
    Examples,
    Task,
    TaskDefaults,
    number_lines,
    scores_table,
    word_tokens,
)

__all__ = ["Tagging"]


class Tagging(Task):
    """``tokens<TAB>tags``: one tag per token, the tags separated by spaces.

    At word level the tokens are separated by spaces and must be the words and punctuation marks
    of seqkit's word tokenizer (``"New York-based"`` is the four tokens ``New York - based``); at
    char level every character of the text is a token (a space too). The model's tags are the
    training tags sorted. ``predict`` gives the tags (JSON: the tokens and each tag's
    probability); ``evaluate`` gives ``token_accuracy``, per-tag precision, recall and F1, and
    span F1 when the tags are IOB (``B-X``, ``I-X``, ``O``, or bare ``B`` and ``I``).
    """

    name = "tag"
    description = "many-to-many tagger: tokens<TAB>tags, one tag per token; predict gives tags"
    model_class = SequenceTagger
    fields = ("tokens", "tags")
    headline = "token_accuracy"
    defaults = TaskDefaults(
        level="char",
        model={"cell": "lstm", "hidden_size": 64, "bidirectional": True},
        fit={"steps": 1500, "batch_size": 32, "lr": 0.003},
    )

    def _parse(self, values: list[str], level: str) -> tuple[str, Any]:
        text, tag_field = values
        tags = tuple(tag_field.split())
        if level == "char":
            tokens = list(text)
        else:
            tokens = text.split()
            for token in tokens:
                split = word_tokens(token)
                if split != [token]:
                    raise ValueError(
                        f"token {token!r} is {len(split)} word-level tokens "
                        f"({' '.join(split) or 'none'}); separate them with spaces"
                    )
            text = " ".join(tokens)
        if len(tags) != len(tokens):
            raise ValueError(
                f"{len(tokens)} {level}-level tokens but {len(tags)} tags "
                f"(one tag per token, separated by spaces)"
            )
        return text, tags

    def _model_args(self, train: Examples, build: Any) -> tuple[tuple, dict]:
        tags = sorted({t for tags in train.targets for t in tags})
        return (build(train.inputs), tags), {}

    def fit_data(self, model: Any, examples: Examples) -> tuple:
        self.check_model(model)
        known = set(model.tags)
        for i, tags in enumerate(examples.targets):
            for tag in tags:
                if tag not in known:
                    raise DataError(
                        f"{examples.where(i)}: tag {tag!r} is not one of the model's tags "
                        f"({', '.join(model.tags)})"
                    )
        return list(examples.inputs), [list(t) for t in examples.targets]

    def predict(self, model: Any, inputs: Sequence[str], *, beam_size: int = 1) -> list[dict]:
        self.check_model(model)
        self._no_beam(beam_size)
        records = []
        for text, probs in zip(inputs, model.predict_proba(list(inputs)), strict=True):
            best = probs.argmax(axis=1)  # (T,)
            records.append(
                {
                    "text": text,
                    "tokens": model.vocab.tokenize(text),
                    "tags": [model.tags[k] for k in best],
                    "scores": [float(probs[t, k]) for t, k in enumerate(best)],
                }
            )
        return records

    def format_prediction(self, record: dict) -> str:
        return " ".join(record["tags"])

    def evaluate(self, model: Any, examples: Examples, *, beam_size: int = 1) -> dict:
        self.fit_data(model, examples)  # every tag known to the model, or a DataError
        true = [list(t) for t in examples.targets]
        predicted = [r["tags"] for r in self.predict(model, examples.inputs, beam_size=beam_size)]
        metrics = {
            "examples": len(examples),
            "tokens": sum(len(t) for t in true),
            "token_accuracy": token_accuracy(true, predicted),
            "per_tag": per_tag_scores(true, predicted),
        }
        if is_iob(model.tags):
            metrics["span_f1"] = span_f1(true, predicted)
        return metrics

    def format_metrics(self, metrics: dict) -> str:
        parts = ["\n".join(number_lines(metrics, [("token_accuracy", "token accuracy")]))]
        if "span_f1" in metrics:
            s = metrics["span_f1"]
            parts[0] += (
                f"\nspan F1:        {s['f1']:.4f} (precision {s['precision']:.4f}, "
                f"recall {s['recall']:.4f}, {s['true_spans']} true spans)"
            )
        parts.append(scores_table(metrics["per_tag"], "tag"))
        return "\n\n".join(parts)
