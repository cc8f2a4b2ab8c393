"""``classify``: ``text<TAB>label``, one string label per text (many-to-one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seqkit.metrics import (
    ConfusionMatrix,
    accuracy,
    confusion_matrix,
    macro_f1,
    per_label_scores,
)
from seqkit.models import SequenceClassifier
from seqkit.tasks._base import (
    DataError,
    Examples,
    Task,
    TaskDefaults,
    number_lines,
    scores_table,
)

__all__ = ["Classification", "labels_of"]


def labels_of(model: Any) -> list[str]:
    """The label names of a classifier: ``metadata["task"]["labels"]`` (class k is
    ``labels[k]``), or ``"0" .. "K-1"`` for a model built without them (from Python)."""
    K = model.num_classes
    labels = model.metadata.get("task", {}).get("labels")
    if labels is None:
        return [str(k) for k in range(K)]
    if (
        not isinstance(labels, list)
        or len(labels) != K
        or not all(isinstance(label, str) and label for label in labels)
        or len(set(labels)) != K
    ):
        raise ValueError(
            f"the model's metadata 'task.labels' must be {K} distinct non-empty strings, one per "
            f"class (got {labels!r})"
        )
    return labels


class Classification(Task):
    """``text<TAB>label``: the model reads the text and predicts its label.

    Labels are strings; the model's classes are the training labels sorted (class k is the k-th),
    kept in the checkpoint's metadata. ``predict`` gives the label (JSON: every label's
    probability); ``evaluate`` gives ``accuracy``, ``macro_f1``, per-label precision, recall
    and F1, and the confusion matrix.
    """

    name = "classify"
    description = "many-to-one classifier: text<TAB>label; predict gives the label"
    model_class = SequenceClassifier
    fields = ("text", "label")
    headline = "accuracy"
    defaults = TaskDefaults(
        level="char",
        model={"cell": "lstm", "hidden_size": 64, "embedding_size": 16},
        fit={"steps": 1500, "batch_size": 32, "lr": 0.005},
    )

    def _parse(self, values: list[str], level: str) -> tuple[str, Any]:
        text, label = values
        return text, label

    def _model_args(self, train: Examples, build: Any) -> tuple[tuple, dict]:
        labels = sorted(set(train.targets))
        if len(labels) < 2:
            raise DataError(
                f"{train.source}: classify needs at least 2 distinct labels to learn "
                f"(got only {labels[0]!r} in {len(train)} training examples)"
            )
        vocab = build(train.inputs)
        return (vocab, len(labels)), {"labels": labels}

    def fit_data(self, model: Any, examples: Examples) -> tuple:
        self.check_model(model)
        index = {label: k for k, label in enumerate(labels_of(model))}
        ids = []
        for i, label in enumerate(examples.targets):
            if label not in index:
                raise DataError(
                    f"{examples.where(i)}: label {label!r} is not one of the model's labels "
                    f"({', '.join(index)})"
                )
            ids.append(index[label])
        return list(examples.inputs), ids

    def predict(self, model: Any, inputs: Sequence[str], *, beam_size: int = 1) -> list[dict]:
        self.check_model(model)
        self._no_beam(beam_size)
        labels = labels_of(model)
        probs = model.predict_proba(list(inputs))  # (B, K)
        return [
            {
                "text": text,
                "label": labels[int(row.argmax())],
                "probabilities": dict(zip(labels, map(float, row), strict=True)),
            }
            for text, row in zip(inputs, probs, strict=True)
        ]

    def format_prediction(self, record: dict) -> str:
        return record["label"]

    def evaluate(self, model: Any, examples: Examples, *, beam_size: int = 1) -> dict:
        self.fit_data(model, examples)  # every label known to the model, or a DataError
        labels = labels_of(model)
        predicted = [r["label"] for r in self.predict(model, examples.inputs, beam_size=beam_size)]
        true = list(examples.targets)
        return {
            "examples": len(examples),
            "accuracy": accuracy(true, predicted),
            "macro_f1": macro_f1(true, predicted, labels=labels),
            "per_label": per_label_scores(true, predicted, labels=labels),
            "confusion_matrix": confusion_matrix(true, predicted, labels=labels).to_dict(),
        }

    def format_metrics(self, metrics: dict) -> str:
        cm = metrics["confusion_matrix"]
        matrix = ConfusionMatrix(tuple(cm["labels"]), np.array(cm["matrix"], dtype=np.int64))
        return "\n\n".join(
            [
                "\n".join(
                    number_lines(metrics, [("accuracy", "accuracy"), ("macro_f1", "macro F1")])
                ),
                scores_table(metrics["per_label"], "label"),
                matrix.to_text(),
            ]
        )
