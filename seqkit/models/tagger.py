"""A many-to-many tagger (T_x = T_y): one tag per input token, as in the seed's NER example.

The recurrent stack reads the text and, at every step, a dense head turns its output into a
softmax over the tags. With ``bidirectional=True`` each step's output holds the forward state
(the tokens up to here) and the reverse state (the tokens from here to the end), so a tag may
depend on the words after it; such a model needs the whole text before it tags anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seqkit.blocks import Chain, Seq
from seqkit.data import check_texts, encode_nonempty, mask_from_lengths, pad_batch
from seqkit.losses import get_loss
from seqkit.models._base import Batch, Model, check_vocab
from seqkit.samplers import log_softmax
from seqkit.training import Examples
from seqkit.vocab import Vocabulary

__all__ = ["SequenceTagger"]


class SequenceTagger(Model):
    """Input encoding -> recurrent stack -> per-step dense head -> softmax over K tags.

    Args:
        vocab: the :class:`~seqkit.Vocabulary` of the input texts.
        tags: the K tag names (distinct, non-empty strings); tag ``tags[k]`` has class id k.
        bidirectional: D = 2; every step's output is (D*H): the forward and reverse states.
        options: the keyword options of every :class:`~seqkit.Model` (``cell``,
            ``hidden_size`` (default 64), ``num_layers``, ``embedding_size``, ``head_sizes``,
            ``backend``, ``dtype``, ``device``, ``seed``).

    The network is the chain ``Encode -> Stack -> PerStep(head)``. The training loss is the
    softmax cross-entropy of every tagged token, averaged over the tokens of a batch (padded
    steps masked out).
    """

    kind = "SequenceTagger"
    positional = ("vocab", "tags")
    data_names = ("texts", "tag_sequences")

    def __init__(
        self, vocab: Vocabulary, tags: Sequence[str], *, bidirectional: bool = False, **options: Any
    ) -> None:
        self.vocab = check_vocab("vocab", vocab)
        self.tags = _check_tags(tags)
        self._tag_index = {t: k for k, t in enumerate(self.tags)}
        self.bidirectional = bidirectional
        super().__init__(**options)

    def _network(self) -> Chain:
        return self._chain(len(self.vocab), len(self.tags), bidirectional=self.bidirectional)

    def _loss(self):
        return get_loss("softmax_cross_entropy", reduction="token_mean")

    def _own_config(self) -> dict:
        return {"bidirectional": self.bidirectional}

    def _sizes(self) -> str:
        return f"V={len(self.vocab)}, K={len(self.tags)}"

    def _examples(self, texts: Sequence[str], tag_sequences: Any = None) -> Examples:
        texts = check_texts("texts", texts)
        encoded = encode_nonempty(self.vocab, texts)  # now, not at a random step
        tag_ids = None if tag_sequences is None else self._tag_ids(texts, tag_sequences)

        def batch(index: np.ndarray) -> Batch:
            ids, lengths = pad_batch([encoded[i] for i in index], self.vocab.pad_id)
            targets = None  # (T, B); padded steps are masked out
            if tag_ids is not None:
                targets, _ = pad_batch([tag_ids[i] for i in index], 0)
            mask = mask_from_lengths(lengths, ids.shape[0])
            n = int(lengths.sum())  # the loss is a mean over tokens (token_mean)
            return Batch(Seq(ids, lengths), targets, mask, n, float(n))

        return Examples(len(texts), batch)

    def evaluate(self, texts: Sequence[str], tag_sequences: Any) -> dict[str, float]:
        """``loss`` (mean cross-entropy per token, as in training) and ``token_accuracy``."""
        texts = check_texts("texts", texts)
        gold = self._tag_ids(texts, tag_sequences)
        probs = self.predict_proba(texts)
        picked = np.concatenate([p[np.arange(len(g)), g] for p, g in zip(probs, gold)])
        right = np.concatenate([p.argmax(axis=1) == g for p, g in zip(probs, gold)])
        with np.errstate(divide="ignore"):
            return {"loss": -float(np.mean(np.log(picked))), "token_accuracy": float(right.mean())}

    def _tag_ids(self, texts: list[str], tag_sequences: Any) -> list[np.ndarray]:
        """Each tag sequence as (T_i,) class ids, checked against its text's token count."""
        if isinstance(tag_sequences, str) or not isinstance(tag_sequences, Sequence):
            got = type(tag_sequences).__name__
            raise TypeError(f"'tag_sequences' must be a sequence of tag lists (got {got})")
        if len(tag_sequences) != len(texts):
            raise ValueError(
                f"'tag_sequences' must hold one tag list per text: expected {len(texts)}, "
                f"got {len(tag_sequences)}"
            )
        out = []
        for i, (text, tags) in enumerate(zip(texts, tag_sequences, strict=True)):
            if isinstance(tags, str) or not isinstance(tags, Sequence):
                raise TypeError(
                    f"'tag_sequences'[{i}] must be a list of tag names (got {type(tags).__name__})"
                )
            n = len(self.vocab.tokenize(text))
            if len(tags) != n:
                raise ValueError(
                    f"'tag_sequences'[{i}] must have one tag per token of 'texts'[{i}]: "
                    f"expected {n}, got {len(tags)}"
                )
            for j, tag in enumerate(tags):
                if not isinstance(tag, str) or tag not in self._tag_index:
                    raise ValueError(
                        f"'tag_sequences'[{i}][{j}] must be one of the tags "
                        f"{', '.join(map(repr, self.tags))} (got {tag!r})"
                    )
            out.append(np.array([self._tag_index[t] for t in tags], dtype=np.int64))
        return out

    # --- prediction ----------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 256) -> list[np.ndarray]:
        """Per-token tag probabilities: one (T_i, K) float64 array per text, rows summing to one.

        An empty text gets a (0, K) array.
        """
        texts = check_texts("texts", texts)
        K = len(self.tags)
        out: list[np.ndarray] = [np.zeros((0, K)) for _ in texts]
        todo = [i for i, t in enumerate(texts) if self.vocab.tokenize(t)]
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            batch = self._examples([texts[i] for i in chunk]).batch(np.arange(len(chunk)))
            logits = self.backend.to_numpy(self._forward(batch.inputs).data)
            probs = np.exp(log_softmax(np.asarray(logits, dtype=np.float64)))
            lengths = batch.inputs.lengths
            for b, i in enumerate(chunk):
                out[i] = probs[: lengths[b], b]  # (T_i, K)
        return out

    def predict(self, texts: Sequence[str]) -> list[list[str]]:
        """The most probable tag of every token: one list of tag names per text."""
        return [[self.tags[k] for k in p.argmax(axis=1)] for p in self.predict_proba(texts)]


def _check_tags(tags: Any) -> tuple[str, ...]:
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise TypeError(f"'tags' must be a list of tag names (got {type(tags).__name__})")
    if not tags:
        raise ValueError("'tags' must hold at least one tag name (got none)")
    seen: dict[str, int] = {}
    for k, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"'tags'[{k}] must be a non-empty string (got {tag!r})")
        if tag in seen:
            raise ValueError(f"'tags' holds {tag!r} twice: at {seen[tag]} and {k}")
        seen[tag] = k
    return tuple(tags)
