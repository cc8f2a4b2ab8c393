"""Evaluation metrics of the tasks: classification, tagging, translation and language modelling.

Every function takes the true values first and the predicted ones second (scikit-learn's
``y_true, y_pred`` order), checks that both hold the same number of items, and returns plain
Python floats, dicts and lists, so that a result goes to ``json.dumps`` as it is.

Conventions:

* A label (class or tag) is any hashable value; label lists are sorted unless given.
* Precision with no predictions of a label, recall with no true items of it, and F1 when both
  precision and recall are 0 are 0.0 (scikit-learn's ``zero_division=0``).
* Span F1 reads IOB tags as conlleval and seqeval's default mode do: a span of type ``X`` starts
  at ``B-X``, or at ``I-X`` after a tag that is not ``B-X`` or ``I-X`` (so IOB1 and IOB2 both
  work), and goes on over ``I-X``. Bare ``B`` and ``I`` are spans without a type.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import attrs
import numpy as np

__all__ = [
    "ConfusionMatrix",
    "accuracy",
    "char_error_rate",
    "confusion_matrix",
    "exact_match",
    "is_iob",
    "levenshtein",
    "macro_f1",
    "nats_per_token",
    "perplexity",
    "per_label_scores",
    "per_tag_scores",
    "span_f1",
    "spans",
    "token_accuracy",
]


def _pairs(name: str, y_true: Any, y_pred: Any) -> tuple[list, list]:
    """Both sides as lists of one length >= 1."""
    for side, values in (("y_true", y_true), ("y_pred", y_pred)):
        if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
            raise TypeError(f"{name}: {side!r} must be a sequence (got {type(values).__name__})")
    if len(y_true) != len(y_pred):
        raise ValueError(
            f"{name}: 'y_true' and 'y_pred' must have one length (got {len(y_true)} and "
            f"{len(y_pred)})"
        )
    if len(y_true) == 0:
        raise ValueError(f"{name}: needs at least one item (got none)")
    return list(y_true), list(y_pred)


def _flat(name: str, y_true: Any, y_pred: Any) -> tuple[list, list]:
    """Sequences of tags flattened, each predicted sequence as long as its true one."""
    y_true, y_pred = _pairs(name, y_true, y_pred)
    flat_true: list = []
    flat_pred: list = []
    for i, (t, p) in enumerate(zip(y_true, y_pred, strict=True)):
        if len(t) != len(p):
            raise ValueError(
                f"{name}: sequence {i} has {len(t)} true tags and {len(p)} predicted ones"
            )
        flat_true.extend(t)
        flat_pred.extend(p)
    if not flat_true:
        raise ValueError(f"{name}: needs at least one tag (got only empty sequences)")
    return flat_true, flat_pred


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


# --- classification ---------------------------------------------------------------------------


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """The share of items whose predicted label equals the true one."""
    y_true, y_pred = _pairs("accuracy", y_true, y_pred)
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


def per_label_scores(
    y_true: Sequence[Hashable],
    y_pred: Sequence[Hashable],
    *,
    labels: Sequence[Hashable] | None = None,
) -> dict[Any, dict[str, float]]:
    """Precision, recall, F1 and support of every label.

    Args:
        y_true, y_pred: one label per item (N each).
        labels: the labels to score, in order; default: every label of either side, sorted.

    Returns:
        ``{label: {"precision", "recall", "f1", "support"}}``; support counts the true items.
    """
    y_true, y_pred = _pairs("per_label_scores", y_true, y_pred)
    if labels is None:
        labels = sorted(set(y_true) | set(y_pred))
    true_count, pred_count = Counter(y_true), Counter(y_pred)
    hits = Counter(t for t, p in zip(y_true, y_pred, strict=True) if t == p)
    out = {}
    for label in labels:
        precision = hits[label] / pred_count[label] if pred_count[label] else 0.0
        recall = hits[label] / true_count[label] if true_count[label] else 0.0
        out[label] = {
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
            "support": true_count[label],
        }
    return out


def macro_f1(
    y_true: Sequence[Hashable],
    y_pred: Sequence[Hashable],
    *,
    labels: Sequence[Hashable] | None = None,
) -> float:
    """The unweighted mean of the labels' F1 (default labels: those of either side)."""
    scores = per_label_scores(y_true, y_pred, labels=labels)
    if not scores:
        raise ValueError("macro_f1: 'labels' must name at least one label (got none)")
    return sum(s["f1"] for s in scores.values()) / len(scores)


@attrs.frozen
class ConfusionMatrix:
    """Counts of (true, predicted) label pairs.

    Attributes:
        labels: the K labels, in row and column order.
        matrix: (K, K) int64; ``matrix[i, j]`` counts items of true label ``labels[i]``
            predicted as ``labels[j]``.
    """

    labels: tuple[Any, ...]
    matrix: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=np.array_equal))

    def to_dict(self) -> dict[str, Any]:
        """``{"labels": [...], "matrix": [[...], ...]}`` (rows true, columns predicted)."""
        return {"labels": [str(label) for label in self.labels], "matrix": self.matrix.tolist()}

    def to_text(self) -> str:
        """A table: one row per true label, one column per predicted label.

        >>> from seqkit.metrics import confusion_matrix
        >>> print(confusion_matrix(["a", "a", "b"], ["a", "b", "b"]).to_text())
        true \\ predicted  a  b
        a                 1  1
        b                 0  1
        """
        corner = "true \\ predicted"
        names = [str(label) for label in self.labels]
        first = max(len(corner), *map(len, names))
        widths = [
            max(len(n), *(len(str(v)) for v in self.matrix[:, j])) for j, n in enumerate(names)
        ]
        head = corner.ljust(first) + "".join(f"  {n:>{w}}" for n, w in zip(names, widths))
        rows = [
            name.ljust(first) + "".join(f"  {v:>{w}}" for v, w in zip(row.tolist(), widths))
            for name, row in zip(names, self.matrix)
        ]
        return "\n".join([head, *rows])


def confusion_matrix(
    y_true: Sequence[Hashable],
    y_pred: Sequence[Hashable],
    *,
    labels: Sequence[Hashable] | None = None,
) -> ConfusionMatrix:
    """The :class:`ConfusionMatrix` of the items (labels default: those of either side, sorted).

    A label outside ``labels`` is an error: its items would be silently dropped.
    """
    y_true, y_pred = _pairs("confusion_matrix", y_true, y_pred)
    labels = tuple(sorted(set(y_true) | set(y_pred)) if labels is None else labels)
    index = {label: k for k, label in enumerate(labels)}
    missing = sorted(map(str, (set(y_true) | set(y_pred)) - set(index)))
    if missing:
        raise ValueError(
            f"confusion_matrix: labels {missing} occur in the items but not in 'labels' "
            f"({', '.join(map(str, labels))})"
        )
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        matrix[index[t], index[p]] += 1
    return ConfusionMatrix(labels, matrix)


# --- tagging ----------------------------------------------------------------------------------


def token_accuracy(
    y_true: Sequence[Sequence[Hashable]], y_pred: Sequence[Sequence[Hashable]]
) -> float:
    """The share of tokens, over all sequences, whose predicted tag is the true one."""
    return accuracy(*_flat("token_accuracy", y_true, y_pred))


def per_tag_scores(
    y_true: Sequence[Sequence[Hashable]], y_pred: Sequence[Sequence[Hashable]]
) -> dict[Any, dict[str, float]]:
    """:func:`per_label_scores` of the tokens of every sequence, each tag on its own."""
    return per_label_scores(*_flat("per_tag_scores", y_true, y_pred))


def _split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"B"`` -> ``("B", "")``; ``"O"`` -> ``("O", "")``."""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def is_iob(tags: Sequence[str]) -> bool:
    """Whether every tag is ``O``, ``B``, ``I``, ``B-X`` or ``I-X``, and one is B or I."""
    parts = [_split_tag(t) if isinstance(t, str) else ("?", "") for t in tags]
    ok = all(p == "O" and not k or p in ("B", "I") for p, k in parts)
    return ok and any(p in ("B", "I") for p, _ in parts)


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The spans of one IOB tag sequence: ``(type, start, stop)`` with ``stop`` exclusive.

    >>> from seqkit.metrics import spans
    >>> spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "B"])
    [('PER', 0, 2), ('LOC', 3, 4), ('LOC', 4, 5), ('', 5, 6)]
    """
    out: list[tuple[str, int, int]] = []
    start: int | None = None
    kind = ""
    for i, tag in enumerate(tags):
        prefix, this = _split_tag(tag)
        if prefix not in ("O", "B", "I") or (prefix == "O" and this):
            raise ValueError(f"spans: tag {i} must be O, B, I, B-TYPE or I-TYPE (got {tag!r})")
        continues = prefix == "I" and start is not None and this == kind
        if start is not None and not continues:
            out.append((kind, start, i))
            start = None
        if prefix in ("B", "I") and start is None:
            start, kind = i, this
    if start is not None:
        out.append((kind, start, len(tags)))
    return out


def span_f1(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged precision, recall and F1 of exactly matching spans (type and bounds).

    Returns:
        ``{"precision", "recall", "f1", "true_spans", "predicted_spans"}``.
    """
    _flat("span_f1", y_true, y_pred)  # the length checks
    true_spans = {(i, s) for i, tags in enumerate(y_true) for s in spans(tags)}
    pred_spans = {(i, s) for i, tags in enumerate(y_pred) for s in spans(tags)}
    hits = len(true_spans & pred_spans)
    precision = hits / len(pred_spans) if pred_spans else 0.0
    recall = hits / len(true_spans) if true_spans else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "true_spans": len(true_spans),
        "predicted_spans": len(pred_spans),
    }


# --- translation ------------------------------------------------------------------------------


def exact_match(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """The share of outputs equal to their reference, character for character."""
    return accuracy(y_true, y_pred)


def levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """The fewest insertions, deletions and substitutions that turn ``a`` into ``b``."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))  # the distances from a[:0] to every prefix of b
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def char_error_rate(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Corpus character error rate: the sum of edit distances over the references' length.

    ``sum(levenshtein(ref, out)) / sum(len(ref))``; 0.0 when both sums are 0 and ``inf`` when
    only the references are empty.
    """
    y_true, y_pred = _pairs("char_error_rate", y_true, y_pred)
    edits = sum(levenshtein(t, p) for t, p in zip(y_true, y_pred, strict=True))
    length = sum(len(t) for t in y_true)
    if length == 0:
        return 0.0 if edits == 0 else math.inf
    return edits / length


# --- language modelling -----------------------------------------------------------------------


def nats_per_token(token_log_probs: Sequence[Sequence[float]]) -> float:
    """Mean negative natural-log probability per token over all sequences.

    Args:
        token_log_probs: one (T_i,) array of per-token ln P per sequence (as
            ``LanguageModel.token_log_probs`` returns, ``<EOS>`` included).
    """
    if isinstance(token_log_probs, str) or not isinstance(token_log_probs, Sequence):
        raise TypeError(
            f"nats_per_token: 'token_log_probs' must be a sequence of arrays "
            f"(got {type(token_log_probs).__name__})"
        )
    n = sum(len(p) for p in token_log_probs)
    if n == 0:
        raise ValueError("nats_per_token: needs at least one token (got none)")
    return -float(sum(float(np.sum(p)) for p in token_log_probs)) / n


def perplexity(nats: float) -> float:
    """``exp(nats per token)``; ``inf`` where the exponential overflows."""
    try:
        return math.exp(nats)
    except OverflowError:
        return math.inf
