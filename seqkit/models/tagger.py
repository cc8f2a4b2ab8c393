"""A many-to-many tagger (T_x = T_y): one tag per input token, as in the seed's NER example.

The recurrent stack reads the text and, at every step, a dense head turns its output into a
softmax over the tags. With ``bidirectional=True`` each step's output holds the forward state
(the tokens up to here) and the reverse state (the tokens from here to the end), so a tag may
depend on the words after it; such a model needs the whole text before it tags anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqkit.backend import Backend
from seqkit.checkpoint import Checkpoint
from seqkit.data import mask_from_lengths, pad_batch
from seqkit.distributed import DistributedInfo
from seqkit.layers import DenseStack
from seqkit.losses import get_loss
from seqkit.models._base import Model, input_encoder, prefixed, resolve_backend, unprefixed
from seqkit.models.classifier import check_nonempty, encode_texts
from seqkit.models.language_model import _check_texts
from seqkit.recurrent import Recurrent, get_cell
from seqkit.samplers import log_softmax
from seqkit.training import TrainingHistory
from seqkit.vocab import Vocabulary

__all__ = ["SequenceTagger"]


class SequenceTagger(Model):
    """Input encoding -> recurrent stack -> per-step dense head -> softmax over K tags.

    Args:
        vocab: the :class:`~seqkit.Vocabulary` of the input texts.
        tags: the K tag names (distinct, non-empty strings); tag ``tags[k]`` has class id k.
        cell: a registered cell name or :class:`~seqkit.Cell` (``"lstm"``, ``"gru"``, ...).
        hidden_size: H of every recurrent layer.
        num_layers: L, stacked recurrent layers.
        bidirectional: D = 2; every step's output is (D*H): the forward and reverse states.
        embedding_size: None for the seed's one-hot input (I = V), else a learned embedding of
            this size.
        head_sizes: hidden sizes of the per-step dense head (none by default: one linear layer).
        backend: backend name or instance; None reads the config.
        dtype: ``"float32"`` or ``"float64"`` when ``backend`` is a name or None.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``, as ``dtype``.
        seed: initialises the parameters.

    The training loss is the softmax cross-entropy of every tagged token, averaged over the
    tokens of a batch (padded steps masked out).
    """

    kind = "SequenceTagger"

    def __init__(
        self,
        vocab: Vocabulary,
        tags: Sequence[str],
        *,
        cell: str | Any = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        embedding_size: int | None = None,
        head_sizes: Sequence[int] = (),
        backend: str | Backend | None = None,
        dtype: str | None = None,
        device: str | None = None,
        seed: int | None = None,
        _init: bool = True,
    ) -> None:
        if not isinstance(vocab, Vocabulary):
            raise TypeError(f"'vocab' must be a seqkit.Vocabulary (got {type(vocab).__name__})")
        self.vocab = vocab
        self.tags = _check_tags(tags)
        self._tag_index = {t: k for k, t in enumerate(self.tags)}
        self.embedding_size = embedding_size
        self.backend = resolve_backend(backend, dtype, device)
        V, K = len(vocab), len(self.tags)
        self.encoder = input_encoder(V, embedding_size)
        self.rnn = Recurrent(
            get_cell(cell),
            self.encoder.output_size,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
        )
        self.head = DenseStack((self.rnn.output_size, *head_sizes, K))
        self.loss_fn = get_loss("softmax_cross_entropy", reduction="token_mean")
        self.blocks = {"encoder": self.encoder, "rnn": self.rnn, "head": self.head}
        if _init:
            self._init_params(seed)

    # --- description ---------------------------------------------------------------------------
    def config(self) -> dict:
        return {
            "cell": self.rnn.cell.name,
            "cell_options": self.rnn.cell.options(),
            "hidden_size": self.rnn.hidden_size,
            "num_layers": self.rnn.num_layers,
            "bidirectional": self.rnn.bidirectional,
            "embedding_size": self.embedding_size,
            "head_sizes": list(self.head.sizes[1:-1]),
        }

    def _extra(self) -> dict:
        return {"vocab": self.vocab.to_dict(), "tags": list(self.tags)}

    @classmethod
    @classmethod
    def _positional(cls, checkpoint: Checkpoint, config: dict) -> tuple:
        return (Vocabulary.from_dict(checkpoint.extra["vocab"]), checkpoint.extra["tags"])

    def __repr__(self) -> str:
        c = self.config()
        return (
            f"SequenceTagger(V={len(self.vocab)}, K={len(self.tags)}, cell={c['cell']!r}, "
            f"hidden_size={c['hidden_size']}, num_layers={c['num_layers']}, "
            f"bidirectional={c['bidirectional']}, backend={self.backend.name!r})"
        )

    # --- the network ---------------------------------------------------------------------------
    def _run(self, params: dict, ids: Any, lengths: Any):
        """Logits (T, B, K) for (T, B) ids with (B,) lengths >= 1."""
        ops = self.backend.ops
        x, enc_cache = self.encoder.forward(ops, unprefixed("encoder", params), ids)
        out, _, rnn_cache = self.backend.recurrent_forward(
            self.rnn, unprefixed("rnn", params), x, lengths=lengths
        )
        logits, head_cache = self.head.forward(ops, unprefixed("head", params), out)
        return logits, (enc_cache, rnn_cache, head_cache)

    def _loss_forward(self, params, ids, lengths, targets, mask, n_tokens):
        logits, caches = self._run(params, ids, lengths)
        loss, loss_cache = self.loss_fn.forward(self.backend.ops, logits, targets, mask)
        return loss, (caches, loss_cache)

    def _loss_backward(self, params, cache) -> dict:
        ops = self.backend.ops
        (enc_cache, rnn_cache, head_cache), loss_cache = cache
        d_logits = self.loss_fn.backward(ops, loss_cache)  # (T, B, K), zero at padded steps
        d_out, g_head = self.head.backward(ops, unprefixed("head", params), head_cache, d_logits)
        g_rnn = self.backend.recurrent_backward(self.rnn, rnn_cache, d_out)
        d_x = g_rnn.pop("x")
        for name in self.rnn.state_names:
            g_rnn.pop(f"{name}0")
        _, g_enc = self.encoder.backward(ops, unprefixed("encoder", params), enc_cache, d_x)
        return {**prefixed("encoder", g_enc), **prefixed("rnn", g_rnn), **prefixed("head", g_head)}

    def _batch_tokens(self, batch: tuple) -> int:
        return int(batch[-1])

    def _batch_weight(self, batch: tuple) -> float:
        return float(batch[-1])  # the loss is a mean over tokens (token_mean)

    def _encode_batch(self, texts: Sequence[str], tag_ids: Sequence[np.ndarray]) -> tuple:
        ids, lengths = encode_texts(self.vocab, texts)
        targets, _ = pad_batch(tag_ids, 0)  # (T, B); padded steps are masked out
        mask = mask_from_lengths(lengths, ids.shape[0])
        return ids, lengths, targets, mask, int(lengths.sum())

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

    # --- training ------------------------------------------------------------------------------
    def fit(
        self,
        texts: Sequence[str],
        tag_sequences: Sequence[Sequence[str]],
        *,
        steps: int = 1000,
        batch_size: int = 32,
        lr: float = 0.003,
        optimizer: str = "adam",
        clip_norm: float | None = 5.0,
        clip_value: float | None = None,
        seed: int | None = None,
        progress: bool = False,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
        distributed: bool | DistributedInfo = False,
    ) -> TrainingHistory:
        """Train on ``texts`` with one tag per token, minimising the mean per-token cross-entropy.

        Args:
            texts: training texts, each with at least one token.
            tag_sequences: one list of tag names per text, as long as the text's token list
                (``vocab.tokenize(text)``).
            steps, batch_size, lr, optimizer, clip_norm, clip_value, seed, progress: as in
                :func:`seqkit.training.train`.
            checkpoint, checkpoint_every, resume, distributed: as in
                :meth:`seqkit.Model._fit` (exact resume; data-parallel training).

        Returns:
            the :class:`~seqkit.training.TrainingHistory`.
        """
        texts = _check_texts("texts", texts)
        tag_ids = self._tag_ids(texts, tag_sequences)
        check_nonempty(self.vocab, texts)  # now, not at a random step

        def make_batch(index: np.ndarray) -> tuple:
            return self._encode_batch([texts[i] for i in index], [tag_ids[i] for i in index])

        return self._fit(
            make_batch,
            len(texts),
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            clip_norm=clip_norm,
            clip_value=clip_value,
            seed=seed,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
            distributed=distributed,
        )

    # --- prediction ----------------------------------------------------------------------------
    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 256) -> list[np.ndarray]:
        """Per-token tag probabilities: one (T_i, K) float64 array per text, rows summing to one.

        An empty text gets a (0, K) array.
        """
        texts = _check_texts("texts", texts)
        K = len(self.tags)
        out: list[np.ndarray] = [np.zeros((0, K)) for _ in texts]
        todo = [i for i, t in enumerate(texts) if self.vocab.tokenize(t)]
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            ids, lengths = encode_texts(self.vocab, [texts[i] for i in chunk])
            logits, _ = self._run(self.params, ids, lengths)
            probs = np.exp(log_softmax(np.asarray(self.backend.to_numpy(logits), dtype=np.float64)))
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
