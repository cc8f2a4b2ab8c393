"""A recurrent language model: P(y<1>, ..., y<n>, <EOS>) by the chain rule, and sampling from it.

As in the seed: the model reads a start input (the zero vector) and then each token y<t-1>, and
at every step predicts a softmax over the vocabulary for y<t>. Training is teacher forcing
(``seqkit.data.lm_batch``); generation feeds each sampled token back in (one-to-many).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqkit.backend import Backend
from seqkit.checkpoint import Checkpoint
from seqkit.data import lm_batch
from seqkit.distributed import DistributedInfo
from seqkit.layers import DenseStack
from seqkit.losses import get_loss
from seqkit.models._base import Model, input_encoder, prefixed, resolve_backend, unprefixed
from seqkit.recurrent import Recurrent, get_cell
from seqkit.samplers import get_sampler, log_softmax
from seqkit.training import TrainingHistory
from seqkit.vocab import Vocabulary

__all__ = ["LanguageModel"]


class LanguageModel(Model):
    """Input encoding -> recurrent stack -> per-step dense head -> softmax over the vocabulary.

    Args:
        vocab: the :class:`~seqkit.Vocabulary` (char or word level).
        cell: a registered cell name or :class:`~seqkit.Cell` (``"lstm"``, ``"gru"``, ...).
        hidden_size: H of every recurrent layer.
        num_layers: L, stacked recurrent layers.
        embedding_size: None for the seed's one-hot input (I = V), else a learned embedding of
            this size.
        head_sizes: hidden sizes of the dense head between the recurrent stack and the softmax
            (none by default: one linear layer).
        backend: backend name or instance; None reads the config.
        dtype: ``"float32"`` or ``"float64"`` when ``backend`` is a name or None.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``, as ``dtype``.
        seed: initialises the parameters.
    """

    kind = "LanguageModel"

    def __init__(
        self,
        vocab: Vocabulary,
        *,
        cell: str | Any = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        embedding_size: int | None = None,
        head_sizes: Sequence[int] = (),
        backend: str | Backend | None = None,
        dtype: str | None = None,
        device: str | None = None,
        seed: int | None = None,
        _init: bool = True,
    ) -> None:
        if not isinstance(vocab, Vocabulary):
            raise TypeError(f"vocab must be a seqkit.Vocabulary (got {type(vocab).__name__})")
        self.vocab = vocab
        self.backend = resolve_backend(backend, dtype, device)
        V = len(vocab)
        self.embedding_size = embedding_size
        self.encoder = input_encoder(V, embedding_size)
        self.rnn = Recurrent(
            get_cell(cell), self.encoder.output_size, hidden_size, num_layers=num_layers
        )
        self.head = DenseStack((hidden_size, *head_sizes, V))
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
            "embedding_size": self.embedding_size,
            "head_sizes": list(self.head.sizes[1:-1]),
        }

    def _extra(self) -> dict:
        return {"vocab": self.vocab.to_dict()}

    @classmethod
    @classmethod
    def _positional(cls, checkpoint: Checkpoint, config: dict) -> tuple:
        return (Vocabulary.from_dict(checkpoint.extra["vocab"]),)

    def __repr__(self) -> str:
        c = self.config()
        return (
            f"LanguageModel(V={len(self.vocab)}, cell={c['cell']!r}, "
            f"hidden_size={c['hidden_size']}, "
            f"num_layers={c['num_layers']}, backend={self.backend.name!r})"
        )

    # --- the network ---------------------------------------------------------------------------
    def _run(self, params: dict, inputs: Any, lengths: Any, state: Any = None):
        """Logits (T, B, V) for (T, B) input ids; the start id encodes as the zero vector."""
        ops = self.backend.ops
        p_enc = unprefixed("encoder", params)
        x, enc_cache = self.encoder.forward(ops, p_enc, inputs)
        keep = ops.asarray((np.asarray(inputs) != self.vocab.pad_id)[..., None])  # (T, B, 1)
        x = x * keep
        out, final, rnn_cache = self.backend.recurrent_forward(
            self.rnn, unprefixed("rnn", params), x, initial_state=state, lengths=lengths
        )
        logits, head_cache = self.head.forward(ops, unprefixed("head", params), out)
        return logits, final, (enc_cache, keep, rnn_cache, head_cache)

    def _loss_forward(self, params, inputs, targets, lengths, mask, n_tokens, loss_fn=None):
        logits, _, caches = self._run(params, inputs, lengths)
        loss, loss_cache = (loss_fn or self.loss_fn).forward(
            self.backend.ops, logits, targets, mask
        )
        return loss, (caches, loss_cache, loss_fn or self.loss_fn)

    def _loss_backward(self, params, cache) -> dict:
        ops = self.backend.ops
        (enc_cache, keep, rnn_cache, head_cache), loss_cache, loss_fn = cache
        d_logits = loss_fn.backward(ops, loss_cache)
        d_out, g_head = self.head.backward(ops, unprefixed("head", params), head_cache, d_logits)
        g_rnn = self.backend.recurrent_backward(self.rnn, rnn_cache, d_out)
        d_x = g_rnn.pop("x") * keep
        for name in self.rnn.state_names:
            g_rnn.pop(f"{name}0")
        _, g_enc = self.encoder.backward(ops, unprefixed("encoder", params), enc_cache, d_x)
        return {**prefixed("encoder", g_enc), **prefixed("rnn", g_rnn), **prefixed("head", g_head)}

    def _batch_tokens(self, batch: tuple) -> int:
        return int(batch[-1])

    def _batch_weight(self, batch: tuple) -> float:
        return float(batch[-1])  # the training loss is a mean over tokens (token_mean)

    def _encode_batch(self, texts: Sequence[str]) -> tuple:
        inputs, targets, lengths = lm_batch([self.vocab.encode(t) for t in texts], self.vocab)
        mask = np.arange(inputs.shape[0])[:, None] < lengths[None, :]
        return inputs, targets, lengths, mask, int(lengths.sum())

    # --- training ------------------------------------------------------------------------------
    def fit(
        self,
        texts: Sequence[str],
        *,
        steps: int = 1000,
        batch_size: int = 32,
        lr: float = 0.003,
        optimizer: str = "adam",
        clip_norm: float | None = 5.0,
        clip_value: float | None = None,
        seed: int | None = None,
        progress: bool = False,
        dev_texts: Sequence[str] | None = None,
        eval_every: int | None = None,
        on_eval=None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
        distributed: bool | DistributedInfo = False,
    ) -> TrainingHistory:
        """Train by teacher forcing on ``texts`` (one sequence each), minimising nats per token.

        Args:
            texts: training sequences.
            steps, batch_size, lr, optimizer, clip_norm, clip_value, seed, progress: as in
                :func:`seqkit.training.train`.
            dev_texts: held-out sequences; their nats per token are evaluated every
                ``eval_every`` steps (default: 10 times per run) and at the end.
            on_eval: called with ``(step, dev_nats_per_token)``.
            checkpoint: write the model and its training state here (atomically) every
                ``checkpoint_every`` steps and at the end.
            resume: continue from :attr:`training_state` (set by :func:`seqkit.load` for a
                checkpoint written during training) with the same data and options; ``steps``
                is the total to reach. The result equals an uninterrupted run.
            distributed: True to train data-parallel in a job started by torchrun or
                ``seqkit train --nproc`` (read from the environment), or a
                :class:`~seqkit.distributed.DistributedInfo`; needs backend 'torch'. Rank 0 writes
                ``checkpoint``; every rank ends with the same parameters.

        Returns:
            the :class:`~seqkit.training.TrainingHistory`.
        """
        texts = _check_texts("texts", texts)
        evaluate = None
        if dev_texts is not None:
            dev = _check_texts("dev_texts", dev_texts)
            evaluate = lambda: self.nats_per_token(dev)  # noqa: E731
            eval_every = eval_every or max(1, steps // 10)
        return self._fit(
            lambda index: self._encode_batch([texts[i] for i in index]),
            len(texts),
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            clip_norm=clip_norm,
            clip_value=clip_value,
            seed=seed,
            progress=progress,
            eval_every=eval_every,
            evaluate=evaluate,
            on_eval=on_eval,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=resume,
            distributed=distributed,
        )

    # --- probabilities -------------------------------------------------------------------------
    def token_log_probs(self, texts: Sequence[str], *, batch_size: int = 256) -> list[np.ndarray]:
        """Per-step natural-log probabilities of each text's tokens and its final ``<EOS>``."""
        texts = _check_texts("texts", texts)
        out: list[np.ndarray] = []
        for start in range(0, len(texts), batch_size):
            inputs, targets, lengths, _, _ = self._encode_batch(texts[start : start + batch_size])
            logits, _, _ = self._run(self.params, inputs, lengths)
            logp = log_softmax(np.asarray(self.backend.to_numpy(logits), dtype=np.float64))
            picked = np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # (T, B)
            out.extend(picked[: lengths[b], b] for b in range(len(lengths)))
        return out

    def log_prob(self, text: str) -> float:
        """ln P(tokens of ``text``, <EOS>): the chain rule's sum of per-step log-probabilities."""
        return float(self.token_log_probs([text])[0].sum())

    def nats_per_token(self, texts: Sequence[str]) -> float:
        """Mean negative log-probability per token, ``<EOS>`` counted."""
        per = self.token_log_probs(texts)
        return -float(sum(p.sum() for p in per)) / sum(len(p) for p in per)

    def perplexity(self, texts: Sequence[str]) -> float:
        """exp(nats per token): the model is as unsure as a uniform choice among this many."""
        return math.exp(self.nats_per_token(texts))

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
        logits, final, _ = self._run(self.params, ids, None)
        return np.asarray(self.backend.to_numpy(logits[-1]), dtype=np.float64), final

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
        rng = np.random.default_rng(seed)
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
            step_logits, state, _ = self._run(self.params, ids[None, :], None, state)
            logits = np.asarray(self.backend.to_numpy(step_logits[0]), dtype=np.float64)
        joiner = self.vocab.decode
        return [joiner(self.vocab.encode(prefix) + g) for g in generated]


def _check_texts(name: str, texts: Any) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name!r} must be a sequence of strings (got {type(texts).__name__})")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(
            f"{name!r} must hold strings only (item {bad[0]} is {type(texts[bad[0]]).__name__})"
        )
    if not texts:
        raise ValueError(f"{name!r} must hold at least one sequence (got none)")
    return list(texts)
