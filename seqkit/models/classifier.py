"""A many-to-one recurrent classifier: read a whole sequence, then predict one class.

As in the seed's sentiment-analysis example: the recurrent stack reads every token, and only its
final hidden state (of the last layer; both directions when bidirectional) feeds a dense head
that predicts the class. The loss has one step per sequence, so its gradient reaches the stack
through the final state alone (``recurrent_backward(..., d_final_state=...)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seqkit.blocks import Chain, Seq
from seqkit.data import check_labels, check_texts, encode_nonempty, pad_batch
from seqkit.losses import get_loss
from seqkit.models._base import Batch, Model, check_vocab
from seqkit.samplers import log_softmax
from seqkit.training import Examples
from seqkit.vocab import Vocabulary

__all__ = ["SequenceClassifier"]


class SequenceClassifier(Model):
    """Input encoding -> recurrent stack -> final hidden state -> dense head -> class.

    Args:
        vocab: the :class:`~seqkit.Vocabulary` of the input texts.
        num_classes: K >= 2, the number of classes; labels are ints in ``0..K-1``.
        bidirectional: D = 2: the head reads the last layer's forward state after the last token
            and its reverse state after the first token, concatenated (D*H features).
        binary: one sigmoid output trained with binary cross-entropy (``"sigmoid_bce"``) instead
            of K softmax outputs trained with softmax cross-entropy. Only for K = 2; the default
            None means ``num_classes == 2``. Both give the same family of models (a 2-way softmax
            depends only on the difference of its two logits); the sigmoid has half the head.
        options: the keyword options of every :class:`~seqkit.Model` (``cell``,
            ``hidden_size`` (default 64), ``num_layers``, ``embedding_size``, ``head_sizes``,
            ``backend``, ``dtype``, ``device``, ``seed``).

    The network is the chain ``Encode -> Stack -> LastState -> PerStep(head)``. The training
    loss is the cross-entropy averaged over the sequences of a batch. Every text needs at least
    one token: an empty text has no final state to classify.
    """

    kind = "SequenceClassifier"
    positional = ("vocab", "num_classes")
    data_names = ("texts", "labels")

    def __init__(
        self,
        vocab: Vocabulary,
        num_classes: int,
        *,
        bidirectional: bool = False,
        binary: bool | None = None,
        **options: Any,
    ) -> None:
        self.vocab = check_vocab("vocab", vocab)
        if (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, int | np.integer)
            or num_classes < 2
        ):
            raise ValueError(f"'num_classes' must be an integer >= 2 (got {num_classes!r})")
        self.num_classes = int(num_classes)
        if binary is None:
            binary = self.num_classes == 2
        if not isinstance(binary, bool) or (binary and self.num_classes != 2):
            raise ValueError(
                f"'binary' must be None, False, or True with num_classes == 2 "
                f"(got binary={binary!r}, num_classes={self.num_classes})"
            )
        self.binary, self.bidirectional = binary, bidirectional
        super().__init__(**options)

    def _network(self) -> Chain:
        outputs = 1 if self.binary else self.num_classes
        return self._chain(len(self.vocab), outputs, bidirectional=self.bidirectional, pool=True)

    def _loss(self):
        # one step per sequence: "batch_mean" is the mean over the batch's sequences
        name = "sigmoid_bce" if self.binary else "softmax_cross_entropy"
        return get_loss(name, reduction="batch_mean")

    def _own_config(self) -> dict:
        return {
            "num_classes": self.num_classes,
            "bidirectional": self.bidirectional,
            "binary": self.binary,
        }

    def _sizes(self) -> str:
        return f"V={len(self.vocab)}, K={self.num_classes}"

    def _examples(self, texts: Sequence[str], labels: Sequence[int] | None = None) -> Examples:
        texts = check_texts("texts", texts)
        encoded = encode_nonempty(self.vocab, texts)  # now, not at a random step
        y = None if labels is None else check_labels("labels", labels, len(texts), self.num_classes)

        def batch(index: np.ndarray) -> Batch:
            ids, lengths = pad_batch([encoded[i] for i in index], self.vocab.pad_id)
            targets = None
            if y is not None:  # (B, 1) P(class 1) when binary, else (B,) class ids
                targets = y[index].astype(np.float64)[:, None] if self.binary else y[index]
            # the loss is a mean over sequences (batch_mean)
            return Batch(Seq(ids, lengths), targets, None, int(lengths.sum()), float(len(index)))

        return Examples(len(texts), batch)

    def evaluate(self, texts: Sequence[str], labels: Sequence[int]) -> dict[str, float]:
        """``loss`` (the mean cross-entropy, as in training) and ``accuracy`` of :meth:`predict`."""
        probs = self.predict_proba(texts)
        y = check_labels("labels", labels, len(probs), self.num_classes)
        with np.errstate(divide="ignore"):
            loss = -float(np.mean(np.log(probs[np.arange(len(y)), y])))
        return {"loss": loss, "accuracy": float(np.mean(probs.argmax(axis=1) == y))}

    # --- prediction ----------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (B, K) float64; every row sums to one.

        A binary model returns both columns, ``[1 - p, p]`` with ``p = sigmoid(logit)``.
        """
        examples = self._examples(texts)
        rows = []
        for start in range(0, examples.size, batch_size):
            batch = examples.batch(np.arange(start, min(start + batch_size, examples.size)))
            z = np.asarray(self.backend.to_numpy(self._forward(batch.inputs).data), np.float64)
            if self.binary:
                # log sigmoid(+-z) = -log(1 + exp(-+z)), computed without overflow
                rows.append(np.exp(-np.logaddexp(0.0, np.concatenate([z, -z], axis=1))))
            else:
                rows.append(np.exp(log_softmax(z)))
        return np.concatenate(rows, axis=0)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable class of every text: (B,) int64."""
        return np.argmax(self.predict_proba(texts), axis=1).astype(np.int64)
