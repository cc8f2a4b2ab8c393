"""A many-to-one recurrent classifier: read a whole sequence, then predict one class.

As in the seed's sentiment-analysis example: the recurrent stack reads every token, and only its
final hidden state (of the last layer; both directions when bidirectional) feeds a dense head
that predicts the class. The loss has one step per sequence, so its gradient reaches the stack
through the final state alone (``recurrent_backward(..., d_final_state=...)``).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqkit.backend import Backend
from seqkit.checkpoint import Checkpoint
from seqkit.data import pad_batch
from seqkit.distributed import DistributedInfo
from seqkit.layers import DenseStack
from seqkit.losses import get_loss
from seqkit.models._base import Model, input_encoder, prefixed, resolve_backend, unprefixed
from seqkit.models.language_model import _check_texts
from seqkit.recurrent import Recurrent, get_cell
from seqkit.samplers import log_softmax
from seqkit.training import TrainingHistory
from seqkit.vocab import Vocabulary

__all__ = ["SequenceClassifier"]


class SequenceClassifier(Model):
    """Input encoding -> recurrent stack -> final hidden state -> dense head -> class.

    Args:
        vocab: the :class:`~seqkit.Vocabulary` of the input texts.
        num_classes: K >= 2, the number of classes; labels are ints in ``0..K-1``.
        cell: a registered cell name or :class:`~seqkit.Cell` (``"lstm"``, ``"gru"``, ...).
        hidden_size: H of every recurrent layer.
        num_layers: L, stacked recurrent layers.
        bidirectional: D = 2: the head reads the last layer's forward state after the last token
            and its reverse state after the first token, concatenated (D*H features).
        binary: one sigmoid output trained with binary cross-entropy (``"sigmoid_bce"``) instead
            of K softmax outputs trained with softmax cross-entropy. Only for K = 2; the default
            None means ``num_classes == 2``. Both give the same family of models (a 2-way softmax
            depends only on the difference of its two logits); the sigmoid has half the head.
        embedding_size: None for the seed's one-hot input (I = V), else a learned embedding of
            this size.
        head_sizes: hidden sizes of the dense head between the final state and the output
            (none by default: one linear layer).
        backend: backend name or instance; None reads the config.
        dtype: ``"float32"`` or ``"float64"`` when ``backend`` is a name or None.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``, as ``dtype``.
        seed: initialises the parameters.

    The training loss is the cross-entropy averaged over the sequences of a batch. Every text
    needs at least one token: an empty text has no final state to classify.
    """

    kind = "SequenceClassifier"

    def __init__(
        self,
        vocab: Vocabulary,
        num_classes: int,
        *,
        cell: str | Any = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        binary: bool | None = None,
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
        if (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, int | np.integer)
            or num_classes < 2
        ):
            raise ValueError(f"'num_classes' must be an integer >= 2 (got {num_classes!r})")
        num_classes = int(num_classes)
        if binary is None:
            binary = num_classes == 2
        if not isinstance(binary, bool) or (binary and num_classes != 2):
            raise ValueError(
                f"'binary' must be None, False, or True with num_classes == 2 "
                f"(got binary={binary!r}, num_classes={num_classes})"
            )
        self.vocab = vocab
        self.num_classes = num_classes
        self.binary = binary
        self.embedding_size = embedding_size
        self.backend = resolve_backend(backend, dtype, device)
        V = len(vocab)
        self.encoder = input_encoder(V, embedding_size)
        self.rnn = Recurrent(
            get_cell(cell),
            self.encoder.output_size,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
        )
        self.head = DenseStack((self.rnn.output_size, *head_sizes, 1 if binary else num_classes))
        # one step per sequence: "batch_mean" is the mean over the batch's sequences
        name = "sigmoid_bce" if binary else "softmax_cross_entropy"
        self.loss_fn = get_loss(name, reduction="batch_mean")
        self.blocks = {"encoder": self.encoder, "rnn": self.rnn, "head": self.head}
        if _init:
            self._init_params(seed)

    # --- description ---------------------------------------------------------------------------
    def config(self) -> dict:
        return {
            "num_classes": self.num_classes,
            "cell": self.rnn.cell.name,
            "cell_options": self.rnn.cell.options(),
            "hidden_size": self.rnn.hidden_size,
            "num_layers": self.rnn.num_layers,
            "bidirectional": self.rnn.bidirectional,
            "binary": self.binary,
            "embedding_size": self.embedding_size,
            "head_sizes": list(self.head.sizes[1:-1]),
        }

    def _extra(self) -> dict:
        return {"vocab": self.vocab.to_dict()}

    @classmethod
    @classmethod
    def _positional(cls, checkpoint: Checkpoint, config: dict) -> tuple:
        return (Vocabulary.from_dict(checkpoint.extra["vocab"]), config.pop("num_classes"))

    def __repr__(self) -> str:
        c = self.config()
        return (
            f"SequenceClassifier(V={len(self.vocab)}, K={self.num_classes}, cell={c['cell']!r}, "
            f"hidden_size={c['hidden_size']}, num_layers={c['num_layers']}, "
            f"bidirectional={c['bidirectional']}, backend={self.backend.name!r})"
        )

    # --- the network ---------------------------------------------------------------------------
    def _run(self, params: dict, ids: Any, lengths: Any):
        """Logits (B, K), or (B, 1) when binary, for (T, B) ids with (B,) lengths >= 1."""
        ops = self.backend.ops
        x, enc_cache = self.encoder.forward(ops, unprefixed("encoder", params), ids)
        _, final, rnn_cache = self.backend.recurrent_forward(
            self.rnn, unprefixed("rnn", params), x, lengths=lengths
        )
        h_n = final[0] if isinstance(final, tuple) else final  # (L*D, B, H)
        feats = last_layer_state(self.rnn, h_n)  # (B, D*H)
        logits, head_cache = self.head.forward(ops, unprefixed("head", params), feats)
        return logits, (enc_cache, np.shape(ids), rnn_cache, head_cache)

    def _loss_forward(self, params, ids, lengths, targets, n_tokens):
        logits, caches = self._run(params, ids, lengths)
        loss, loss_cache = self.loss_fn.forward(self.backend.ops, logits, targets)
        return loss, (caches, loss_cache)

    def _loss_backward(self, params, cache) -> dict:
        ops = self.backend.ops
        (enc_cache, (T, B), rnn_cache, head_cache), loss_cache = cache
        d_logits = self.loss_fn.backward(ops, loss_cache)  # (B, K)
        d_feats, g_head = self.head.backward(ops, unprefixed("head", params), head_cache, d_logits)
        d_final = last_layer_state_backward(self.rnn, ops, d_feats)
        # no loss reads the per-step outputs: only the final state carries a gradient
        d_out = ops.zeros((T, B, self.rnn.output_size))
        g_rnn = self.backend.recurrent_backward(self.rnn, rnn_cache, d_out, d_final)
        d_x = g_rnn.pop("x")
        for name in self.rnn.state_names:
            g_rnn.pop(f"{name}0")
        _, g_enc = self.encoder.backward(ops, unprefixed("encoder", params), enc_cache, d_x)
        return {**prefixed("encoder", g_enc), **prefixed("rnn", g_rnn), **prefixed("head", g_head)}

    def _batch_tokens(self, batch: tuple) -> int:
        return int(batch[-1])

    def _batch_weight(self, batch: tuple) -> float:
        return float(len(batch[1]))  # the loss is a mean over sequences (batch_mean)

    def _encode_batch(self, texts: Sequence[str], labels: np.ndarray | None = None) -> tuple:
        ids, lengths = encode_texts(self.vocab, texts)
        if labels is None:
            targets = None
        elif self.binary:
            targets = labels.astype(np.float64)[:, None]  # (B, 1): P(class 1)
        else:
            targets = labels.astype(np.int64)  # (B,)
        return ids, lengths, targets, int(lengths.sum())

    # --- training ------------------------------------------------------------------------------
    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
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
        """Train on ``texts`` with one label each, minimising the mean cross-entropy.

        Args:
            texts: B training texts, each with at least one token.
            labels: B ints in ``0..K-1``.
            steps, batch_size, lr, optimizer, clip_norm, clip_value, seed, progress: as in
                :func:`seqkit.training.train`.
            checkpoint, checkpoint_every, resume, distributed: as in
                :meth:`seqkit.Model._fit` (exact resume; data-parallel training).

        Returns:
            the :class:`~seqkit.training.TrainingHistory`.
        """
        texts = _check_texts("texts", texts)
        y = check_labels("labels", labels, len(texts), self.num_classes)
        check_nonempty(self.vocab, texts)  # now, not at a random step
        return self._fit(
            lambda index: self._encode_batch([texts[i] for i in index], y[index]),
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
    def predict_proba(self, texts: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (B, K) float64; every row sums to one.

        A binary model returns both columns, ``[1 - p, p]`` with ``p = sigmoid(logit)``.
        """
        texts = _check_texts("texts", texts)
        rows = []
        for start in range(0, len(texts), batch_size):
            ids, lengths, _, _ = self._encode_batch(texts[start : start + batch_size])
            logits, _ = self._run(self.params, ids, lengths)
            z = np.asarray(self.backend.to_numpy(logits), dtype=np.float64)
            if self.binary:
                # log sigmoid(+-z) = -log(1 + exp(-+z)), computed without overflow
                rows.append(np.exp(-np.logaddexp(0.0, np.concatenate([z, -z], axis=1))))
            else:
                rows.append(np.exp(log_softmax(z)))
        return np.concatenate(rows, axis=0)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable class of every text: (B,) int64."""
        return np.argmax(self.predict_proba(texts), axis=1).astype(np.int64)


# --- helpers shared with the tagger ------------------------------------------------------------
def encode_texts(vocab: Vocabulary, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(T, B) padded ids and (B,) lengths of non-empty texts; an empty one is an error."""
    encoded = [vocab.encode(t) for t in texts]
    for b, e in enumerate(encoded):
        if not e:
            raise _empty_text(b, texts[b])
    return pad_batch(encoded, vocab.pad_id)


def check_nonempty(vocab: Vocabulary, texts: Sequence[str]) -> None:
    """Every text has at least one token (a recurrent stack reads at least one step)."""
    for b, text in enumerate(texts):
        if not vocab.tokenize(text):
            raise _empty_text(b, text)


def _empty_text(b: int, text: str) -> ValueError:
    return ValueError(f"'texts'[{b}] has no tokens (got {text!r}); every text needs at least one")


def last_layer_state(rnn: Recurrent, h_n: Any) -> Any:
    """The last layer's final h of every direction side by side: (L*D, B, H) -> (B, D*H).

    Rows ``-D:`` of ``h_n`` are the last layer (forward, then reverse), as in PyTorch; the
    swap and reshape put direction d's H features at columns ``d*H .. (d+1)*H - 1``.
    """
    D, H = rnn.num_directions, rnn.hidden_size
    B = h_n.shape[1]
    return h_n[-D:].swapaxes(0, 1).reshape(B, D * H)


def last_layer_state_backward(rnn: Recurrent, ops: Any, d_feats: Any) -> Any:
    """Undo :func:`last_layer_state`: (B, D*H) -> the gradient of the whole final state.

    Returns h's gradient (L*D, B, H) (zero below the last layer), or ``(dh, dc)`` with a zero
    ``dc`` for a cell with a memory state: the head never reads c.
    """
    L, D, H = rnn.num_layers, rnn.num_directions, rnn.hidden_size
    B = d_feats.shape[0]
    d_h = ops.zeros((L * D, B, H))
    d_h[-D:] = d_feats.reshape(B, D, H).swapaxes(0, 1)  # a fresh array: the backward may write
    if len(rnn.state_names) == 1:
        return d_h
    return (d_h, *(ops.zeros((L * D, B, H)) for _ in rnn.state_names[1:]))


def check_labels(name: str, labels: Any, n: int, num_classes: int) -> np.ndarray:
    """``labels`` as a (n,) int64 array of class ids in ``0..num_classes-1``."""
    if isinstance(labels, str) or not isinstance(labels, Sequence | np.ndarray):
        raise TypeError(f"{name!r} must be a sequence of ints (got {type(labels).__name__})")
    if len(labels) != n:
        raise ValueError(f"{name!r} must hold one label per text: expected {n}, got {len(labels)}")
    out = np.empty(n, dtype=np.int64)
    for i, label in enumerate(labels):
        try:
            if isinstance(label, bool | np.bool_):
                raise TypeError
            out[i] = operator.index(label)
        except TypeError:
            raise TypeError(
                f"{name!r}[{i}] must be an integer class id in 0..{num_classes - 1} "
                f"(got {type(label).__name__}: {label!r})"
            ) from None
        if not 0 <= out[i] < num_classes:
            raise ValueError(
                f"{name!r}[{i}] must be a class id in 0..{num_classes - 1} (got {label!r})"
            )
    return out
