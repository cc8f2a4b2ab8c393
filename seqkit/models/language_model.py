"""A recurrent language model: P(y<1>, ..., y<n>, <EOS>) by the chain rule, and sampling from it.

As in the seed: the model reads a start input (the zero vector) and then each token y<t-1>, and
at every step predicts a softmax over the vocabulary for y<t>. Training is teacher forcing
(``seqkit.data.lm_batch``); generation feeds each sampled token back in (one-to-many).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqkit.blocks import Chain, Seq
from seqkit.config import resolve_seed
from seqkit.data import check_texts, lm_batch
from seqkit.losses import get_loss
from seqkit.models._base import Batch, Model, check_vocab
from seqkit.samplers import get_sampler, log_softmax
from seqkit.training import Examples
from seqkit.vocab import Vocabulary

__all__ = ["LanguageModel"]


class LanguageModel(Model):
    """Input encoding -> recurrent stack -> per-step dense head -> softmax over the vocabulary.

    Args:
        vocab: the :class:`~seqkit.Vocabulary` (char or word level).
        options: the keyword options of every :class:`~seqkit.Model` (``cell``,
            ``hidden_size`` (default 128), ``num_layers``, ``embedding_size``, ``head_sizes``,
            ``backend``, ``dtype``, ``device``, ``seed``).

    Parameters: ``encoder.*`` (an embedding's ``weight``), ``rnn.*`` (named as
    ``torch.nn.LSTM`` etc.), ``head.*`` (as ``torch.nn.Sequential``). The network is the chain
    ``Encode -> Stack -> PerStep(head)``; the start input (id ``pad_id``) encodes as the zero
    vector. ``fit(texts, dev=dev_texts)`` minimises nats per token by teacher forcing.
    """

    kind = "LanguageModel"
    positional = ("vocab",)
    data_names = ("texts",)
    monitor = "nats_per_token"
    default_hidden_size = 128

    def __init__(self, vocab: Vocabulary, **options: Any) -> None:
        self.vocab = check_vocab("vocab", vocab)
        super().__init__(**options)

    def _network(self) -> Chain:
        return self._chain(len(self.vocab), len(self.vocab), start_id=self.vocab.pad_id)

    def _loss(self):
        return get_loss("softmax_cross_entropy", reduction="token_mean")

    def _examples(self, texts: Sequence[str]) -> Examples:
        texts = check_texts("texts", texts)
        encoded = [self.vocab.encode(t) for t in texts]

        def batch(index: np.ndarray) -> Batch:
            inputs, targets, lengths = lm_batch([encoded[i] for i in index], self.vocab)
            mask = np.arange(inputs.shape[0])[:, None] < lengths[None, :]
            n = int(lengths.sum())  # the loss is a mean over tokens (token_mean)
            return Batch(Seq(inputs, lengths), targets, mask, n, float(n))

        return Examples(len(texts), batch)

    def evaluate(self, texts: Sequence[str]) -> dict[str, float]:
        """``nats_per_token`` (``<EOS>`` counted) and ``perplexity`` (inf when it overflows)."""
        nats = self.nats_per_token(texts)
        return {"nats_per_token": nats, "perplexity": _exp(nats)}

    # --- probabilities -------------------------------------------------------------------------
    def token_log_probs(self, texts: Sequence[str], *, batch_size: int = 256) -> list[np.ndarray]:
        """Per-step natural-log probabilities of each text's tokens and its final ``<EOS>``."""
        examples = self._examples(texts)
        return token_log_probs(self, examples, batch_size)

    def log_prob(self, text: str) -> float:
        """ln P(tokens of ``text``, <EOS>): the chain rule's sum of per-step log-probabilities."""
        return float(self.token_log_probs([text])[0].sum())

    def nats_per_token(self, texts: Sequence[str]) -> float:
        """Mean negative log-probability per token, ``<EOS>`` counted."""
        per = self.token_log_probs(texts)
        return -float(sum(p.sum() for p in per)) / sum(len(p) for p in per)

    def perplexity(self, texts: Sequence[str]) -> float:
        """exp(nats per token): the model is as unsure as a uniform choice among this many."""
        return _exp(self.nats_per_token(texts))

    def next_token_probs(self, prefix: str = "") -> np.ndarray:
        """(V,) probabilities of the token after ``prefix`` (``<EOS>`` included); sums to one."""
        logits, _ = self._prefix_logits([prefix])
        return np.exp(log_softmax(logits[0]))

    def _prefix_logits(self, prefixes: Sequence[str]):
        """Last-step logits (B, V) float64 and the state after reading start + each prefix."""
        encoded = [self.vocab.encode(p) for p in prefixes]
        if len({len(e) for e in encoded}) != 1:
            raise ValueError("prefixes of one call must have the same number of tokens")
        ids = np.array([[self.vocab.pad_id] + e for e in encoded], dtype=np.int64).T  # (T, B)
        out = self._forward(Seq(ids))
        return np.asarray(self.backend.to_numpy(out.data[-1]), dtype=np.float64), out.state

    # --- generation ----------------------------------------------------------------------------
    def sample(
        self,
        n: int = 1,
        *,
        sampler: str = "random",
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        prefix: str = "",
        max_len: int = 100,
        seed: int | None = None,
        allow_unk: bool = False,
    ) -> list[str]:
        """Generate ``n`` sequences token by token until ``<EOS>`` or ``max_len`` tokens.

        Each step's distribution is the softmax of the logits over every token but ``<PAD>``
        (and ``<UNK>``, unless ``allow_unk``: a generated "unknown token" is seldom wanted),
        reshaped by ``temperature``, ``top_k`` and ``top_p``; ``sampler="random"`` draws from it
        (the seed's method), ``"greedy"`` takes the most likely token. The returned texts include
        ``prefix``.
        The same seed gives the same samples on the same backend.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"'n' must be a positive integer (got {n!r})")
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"'max_len' must be a positive integer (got {max_len!r})")
        options = (
            {}
            if sampler == "greedy"
            else {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        )
        chooser = get_sampler(sampler, **options)
        rng = np.random.default_rng(resolve_seed(seed))
        logits, state = self._prefix_logits([prefix] * n)
        generated: list[list[int]] = [[] for _ in range(n)]
        alive = np.ones(n, dtype=bool)
        for _ in range(max_len):
            logits[:, self.vocab.pad_id] = -np.inf
            if not allow_unk:
                logits[:, self.vocab.unk_id] = -np.inf
            ids = np.asarray(chooser.choose(logits, rng))
            for b in np.flatnonzero(alive):
                if ids[b] == self.vocab.eos_id:
                    alive[b] = False
                else:
                    generated[b].append(int(ids[b]))
            if not alive.any():
                break
            out = self._forward(Seq(ids[None, :], None, state))
            logits, state = (
                np.asarray(self.backend.to_numpy(out.data[0]), dtype=np.float64),
                out.state,
            )
        joiner = self.vocab.decode
        return [joiner(self.vocab.encode(prefix) + g) for g in generated]


def _exp(nats: float) -> float:
    """exp(nats), inf when it overflows."""
    return math.exp(nats) if nats < 709.0 else math.inf


def token_log_probs(model: Model, examples: Examples, batch_size: int) -> list[np.ndarray]:
    """Per-step ln P of every example's targets: one (T_i,) float64 array per example."""
    out: list[np.ndarray] = []
    for start in range(0, examples.size, batch_size):
        batch = examples.batch(np.arange(start, min(start + batch_size, examples.size)))
        logits = model._forward(batch.inputs).data
        logp = log_softmax(np.asarray(model.backend.to_numpy(logits), dtype=np.float64))
        picked = np.take_along_axis(logp, batch.targets[..., None], axis=-1)[..., 0]  # (T, B)
        out.extend(picked[:n, b] for b, n in enumerate(batch.mask.sum(axis=0)))
    return out
