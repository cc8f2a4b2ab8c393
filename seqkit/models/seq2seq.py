"""An encoder-decoder (T_x != T_y), as in the seed's machine-translation example.

The encoder reads the whole source; its final state (h, or h and c, of every layer) becomes
the initial state of the decoder, a language model over the target (:mod:`seqkit.models.
language_model`): it reads a start input (the zero vector, id ``pad_id``) and then each target
token, and predicts the next token or ``<EOS>``. So

    P(y | x) = prod_t P(y<t> | y<1> .. y<t-1>, x),

trained by teacher forcing (``seqkit.data.lm_batch``) and decoded greedily or by beam search.
The gradient of the decoder's initial state flows back into the encoder as the gradient of the
encoder's final state.

The encoder reads the source tokens followed by ``<EOS>``: the marker tells it the source has
ended, and an empty source still has one step to read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqkit.backend import Backend
from seqkit.checkpoint import Checkpoint
from seqkit.data import lm_batch, mask_from_lengths, pad_batch
from seqkit.distributed import DistributedInfo
from seqkit.layers import DenseStack
from seqkit.losses import get_loss
from seqkit.models._base import Model, input_encoder, prefixed, resolve_backend, unprefixed
from seqkit.models.language_model import _check_texts
from seqkit.recurrent import Recurrent, get_cell
from seqkit.samplers import log_softmax
from seqkit.training import TrainingHistory
from seqkit.vocab import Vocabulary

__all__ = ["Seq2Seq"]


class Seq2Seq(Model):
    """Encoder stack over the source -> final state -> decoder stack (an LM over the target).

    Args:
        src_vocab: the :class:`~seqkit.Vocabulary` of the sources (V_s).
        tgt_vocab: the :class:`~seqkit.Vocabulary` of the targets (V_t), whose ``<EOS>`` ends
            a translation.
        cell: a registered cell name or :class:`~seqkit.Cell`, for both stacks.
        hidden_size: H of every layer of both stacks (the encoder's state is the decoder's).
        num_layers: L of both stacks; decoder layer l starts from encoder layer l's final state.
        embedding_size: None for one-hot inputs (I = V_s and V_t), else a learned embedding of
            this size on each side.
        head_sizes: hidden sizes of the decoder's per-step dense head.
        backend: backend name or instance; None reads the config.
        dtype: ``"float32"`` or ``"float64"`` when ``backend`` is a name or None.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``, as ``dtype``.
        seed: initialises the parameters.

    Parameters: ``encoder.input.*``, ``encoder.rnn.*`` (named as ``torch.nn.LSTM`` etc.),
    ``decoder.input.*``, ``decoder.rnn.*``, ``decoder.head.*``. Both stacks are unidirectional:
    the encoder's final state must have the decoder's (L, B, H) shape.

    The training loss is the softmax cross-entropy per target token (``<EOS>`` included),
    averaged over the tokens of a batch.
    """

    kind = "Seq2Seq"

    def __init__(
        self,
        src_vocab: Vocabulary,
        tgt_vocab: Vocabulary,
        *,
        cell: str | Any = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        embedding_size: int | None = None,
        head_sizes: Sequence[int] = (),
        backend: str | Backend | None = None,
        dtype: str | None = None,
        device: str | None = None,
        seed: int | None = None,
        _init: bool = True,
    ) -> None:
        for name, vocab in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab)):
            if not isinstance(vocab, Vocabulary):
                raise TypeError(
                    f"{name!r} must be a seqkit.Vocabulary (got {type(vocab).__name__})"
                )
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.embedding_size = embedding_size
        self.backend = resolve_backend(backend, dtype, device)
        Vs, Vt = len(src_vocab), len(tgt_vocab)
        cell = get_cell(cell)
        self.src_input = input_encoder(Vs, embedding_size)
        self.tgt_input = input_encoder(Vt, embedding_size)
        H, L = hidden_size, num_layers
        self.encoder = Recurrent(cell, self.src_input.output_size, H, num_layers=L)
        self.decoder = Recurrent(cell, self.tgt_input.output_size, H, num_layers=L)
        self.head = DenseStack((hidden_size, *head_sizes, Vt))
        self.loss_fn = get_loss("softmax_cross_entropy", reduction="token_mean")
        self.blocks = {
            "encoder.input": self.src_input,
            "encoder.rnn": self.encoder,
            "decoder.input": self.tgt_input,
            "decoder.rnn": self.decoder,
            "decoder.head": self.head,
        }
        if _init:
            self._init_params(seed)

    # --- description ---------------------------------------------------------------------------
    def config(self) -> dict:
        return {
            "cell": self.encoder.cell.name,
            "cell_options": self.encoder.cell.options(),
            "hidden_size": self.encoder.hidden_size,
            "num_layers": self.encoder.num_layers,
            "embedding_size": self.embedding_size,
            "head_sizes": list(self.head.sizes[1:-1]),
        }

    def _extra(self) -> dict:
        return {"src_vocab": self.src_vocab.to_dict(), "tgt_vocab": self.tgt_vocab.to_dict()}

    @classmethod
    @classmethod
    def _positional(cls, checkpoint: Checkpoint, config: dict) -> tuple:
        return (
            Vocabulary.from_dict(checkpoint.extra["src_vocab"]),
            Vocabulary.from_dict(checkpoint.extra["tgt_vocab"]),
        )

    def __repr__(self) -> str:
        c = self.config()
        return (
            f"Seq2Seq(V_src={len(self.src_vocab)}, V_tgt={len(self.tgt_vocab)}, "
            f"cell={c['cell']!r}, hidden_size={c['hidden_size']}, num_layers={c['num_layers']}, "
            f"backend={self.backend.name!r})"
        )

    # --- the network ---------------------------------------------------------------------------
    def _encode(self, params: dict, src_ids: Any, src_lengths: Any):
        """The encoder's final state (h (L, B, H), or (h, c)) for (S, B) source ids."""
        ops = self.backend.ops
        x, in_cache = self.src_input.forward(ops, unprefixed("encoder.input", params), src_ids)
        _, final, rnn_cache = self.backend.recurrent_forward(
            self.encoder, unprefixed("encoder.rnn", params), x, lengths=src_lengths
        )
        return final, (in_cache, rnn_cache, np.shape(src_ids))

    def _decode(self, params: dict, inputs: Any, lengths: Any, state: Any):
        """Logits (T, B, V_t) and the final state for (T, B) decoder input ids from ``state``."""
        ops = self.backend.ops
        x, in_cache = self.tgt_input.forward(ops, unprefixed("decoder.input", params), inputs)
        # the start input is pad_id, which stands for the zero vector (seqkit.data.lm_batch)
        keep = ops.asarray((np.asarray(inputs) != self.tgt_vocab.pad_id)[..., None])  # (T, B, 1)
        x = x * keep
        out, final, rnn_cache = self.backend.recurrent_forward(
            self.decoder, unprefixed("decoder.rnn", params), x, initial_state=state, lengths=lengths
        )
        logits, head_cache = self.head.forward(ops, unprefixed("decoder.head", params), out)
        return logits, final, (in_cache, keep, rnn_cache, head_cache)

    def _loss_forward(self, params, src_ids, src_lengths, inputs, targets, lengths, mask, n_tokens):
        state, enc_cache = self._encode(params, src_ids, src_lengths)
        logits, _, dec_cache = self._decode(params, inputs, lengths, state)
        loss, loss_cache = self.loss_fn.forward(self.backend.ops, logits, targets, mask)
        return loss, (enc_cache, dec_cache, loss_cache)

    def _loss_backward(self, params, cache) -> dict:
        ops = self.backend.ops
        (src_in_cache, enc_cache, (S, B)), dec_cache, loss_cache = cache
        tgt_in_cache, keep, dec_rnn_cache, head_cache = dec_cache
        # the decoder, as in the language model
        d_logits = self.loss_fn.backward(ops, loss_cache)  # (T, B, V_t)
        p_head = unprefixed("decoder.head", params)
        d_out, g_head = self.head.backward(ops, p_head, head_cache, d_logits)
        g_dec = self.backend.recurrent_backward(self.decoder, dec_rnn_cache, d_out)
        d_x = g_dec.pop("x") * keep
        _, g_tgt_in = self.tgt_input.backward(
            ops, unprefixed("decoder.input", params), tgt_in_cache, d_x
        )
        # the decoder's initial state is the encoder's final state: its gradient is the only
        # one the encoder gets (no loss reads the encoder's per-step outputs)
        d_state = tuple(g_dec.pop(f"{name}0") for name in self.decoder.state_names)
        d_final = d_state[0] if len(d_state) == 1 else d_state
        d_enc_out = ops.zeros((S, B, self.encoder.output_size))
        g_enc = self.backend.recurrent_backward(self.encoder, enc_cache, d_enc_out, d_final)
        d_xs = g_enc.pop("x")
        for name in self.encoder.state_names:
            g_enc.pop(f"{name}0")
        _, g_src_in = self.src_input.backward(
            ops, unprefixed("encoder.input", params), src_in_cache, d_xs
        )
        return {
            **prefixed("encoder.input", g_src_in),
            **prefixed("encoder.rnn", g_enc),
            **prefixed("decoder.input", g_tgt_in),
            **prefixed("decoder.rnn", g_dec),
            **prefixed("decoder.head", g_head),
        }

    def _batch_tokens(self, batch: tuple) -> int:
        return int(batch[-1])

    def _batch_weight(self, batch: tuple) -> float:
        return float(batch[-1])  # the loss is a mean over target tokens (token_mean)

    def _source_batch(self, sources: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(S, B) ids of each source followed by ``<EOS>``, and (B,) lengths >= 1."""
        v = self.src_vocab
        return pad_batch([v.encode(s) + [v.eos_id] for s in sources], v.pad_id)

    def _encode_batch(self, sources: Sequence[str], targets: Sequence[str]) -> tuple:
        src_ids, src_lengths = self._source_batch(sources)
        inputs, tgt, lengths = lm_batch([self.tgt_vocab.encode(t) for t in targets], self.tgt_vocab)
        mask = mask_from_lengths(lengths, inputs.shape[0])
        return src_ids, src_lengths, inputs, tgt, lengths, mask, int(lengths.sum())

    # --- training ------------------------------------------------------------------------------
    def fit(
        self,
        sources: Sequence[str],
        targets: Sequence[str],
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
        """Train by teacher forcing on (source, target) pairs, minimising nats per target token.

        Args:
            sources: source texts.
            targets: one target text per source (``<EOS>`` is appended as the last target).
            steps, batch_size, lr, optimizer, clip_norm, clip_value, seed, progress: as in
                :func:`seqkit.training.train`.
            checkpoint, checkpoint_every, resume, distributed: as in
                :meth:`seqkit.Model._fit` (exact resume; data-parallel training).

        Returns:
            the :class:`~seqkit.training.TrainingHistory`.
        """
        sources, targets = _check_pairs(sources, targets)

        def make_batch(index: np.ndarray) -> tuple:
            return self._encode_batch([sources[i] for i in index], [targets[i] for i in index])

        return self._fit(
            make_batch,
            len(sources),
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

    # --- probabilities -------------------------------------------------------------------------
    def token_log_probs(
        self, sources: Sequence[str], targets: Sequence[str], *, batch_size: int = 256
    ) -> list[np.ndarray]:
        """Per-step ln P of each target's tokens and its final ``<EOS>``, given its source."""
        sources, targets = _check_pairs(sources, targets)
        out: list[np.ndarray] = []
        for start in range(0, len(sources), batch_size):
            stop = start + batch_size
            src_ids, src_lengths, inputs, tgt, lengths, _, _ = self._encode_batch(
                sources[start:stop], targets[start:stop]
            )
            state, _ = self._encode(self.params, src_ids, src_lengths)
            logits, _, _ = self._decode(self.params, inputs, lengths, state)
            logp = log_softmax(np.asarray(self.backend.to_numpy(logits), dtype=np.float64))
            picked = np.take_along_axis(logp, tgt[..., None], axis=-1)[..., 0]  # (T, B)
            out.extend(picked[: lengths[b], b] for b in range(len(lengths)))
        return out

    def log_prob(self, source: str, target: str) -> float:
        """ln P(tokens of ``target``, <EOS> | ``source``): the chain rule's sum."""
        return float(self.token_log_probs([source], [target])[0].sum())

    # --- decoding ------------------------------------------------------------------------------
    def _step(self, ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """One decoder step from ``state`` on (B,) input ids: (B, V_t) float64 log-probs, state."""
        logits, state, _ = self._decode(self.params, ids[None, :], None, state)
        return log_softmax(np.asarray(self.backend.to_numpy(logits[0]), dtype=np.float64)), state

    def translate(
        self,
        texts: Sequence[str],
        *,
        beam_size: int = 1,
        max_len: int = 50,
        length_penalty: float = 0.0,
    ) -> list[str]:
        """Decode a target for every source text.

        Args:
            texts: source texts.
            beam_size: 1 for greedy decoding (the most probable token at every step); more for
                beam search with that many hypotheses kept per step.
            max_len: the most target tokens; a hypothesis that reaches it is ended there, and
                scored with the probability of ``<EOS>`` after it, like every other.
            length_penalty: beam search ranks finished hypotheses by ``ln P(y, <EOS> | x) /
                (len(y) + 1) ** length_penalty``. 0 (default) ranks by ``ln P`` itself, which
                favours short outputs; 1 ranks by the mean log-probability per token.

        Returns:
            one decoded target text per source.

        Beam search keeps, at every step, the ``beam_size`` most probable unfinished prefixes;
        every prefix also proposes itself followed by ``<EOS>`` as a finished hypothesis. With
        ``length_penalty == 0`` the search stops once the best finished hypothesis beats every
        unfinished one (extending a prefix only lowers its log-probability). Plain beam search
        can return a worse sequence than greedy decoding (the greedy prefix may fall out of the
        beam), so the greedy result is added as a finished hypothesis: the returned score is never
        below greedy's. ``<PAD>`` is never proposed.
        """
        texts = _check_texts("texts", texts)
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
            raise ValueError(f"'beam_size' must be a positive integer (got {beam_size!r})")
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"'max_len' must be a positive integer (got {max_len!r})")
        if (
            isinstance(length_penalty, bool)
            or not isinstance(length_penalty, int | float)
            or not length_penalty >= 0
        ):
            raise ValueError(f"'length_penalty' must be a number >= 0 (got {length_penalty!r})")
        src_ids, src_lengths = self._source_batch(texts)
        state, _ = self._encode(self.params, src_ids, src_lengths)
        greedy = self._greedy(state, len(texts), max_len)
        if beam_size > 1:
            result = []
            for b, (tokens, score) in enumerate(greedy):
                one = _take(state, np.array([b]), self.backend.ops)
                result.append(self._beam(one, beam_size, max_len, length_penalty, (tokens, score)))
            greedy = result
        return [self.tgt_vocab.decode(tokens) for tokens, _ in greedy]

    def _greedy(self, state: Any, B: int, max_len: int) -> list[tuple[list[int], float]]:
        """The argmax token at every step for B sources at once: (tokens, ln P(tokens, <EOS>))."""
        pad, eos = self.tgt_vocab.pad_id, self.tgt_vocab.eos_id
        ids = np.full(B, pad, dtype=np.int64)  # the start input
        tokens: list[list[int]] = [[] for _ in range(B)]
        scores = np.zeros(B)
        alive = np.ones(B, dtype=bool)
        for t in range(max_len + 1):
            logp, state = self._step(ids, state)
            if t == max_len:  # out of room: end every unfinished sequence here
                scores[alive] += logp[alive, eos]
                break
            masked = logp.copy()
            masked[:, pad] = -np.inf
            ids = masked.argmax(axis=1)
            for b in np.flatnonzero(alive):
                scores[b] += logp[b, ids[b]]
                if ids[b] == eos:
                    alive[b] = False
                else:
                    tokens[b].append(int(ids[b]))
            if not alive.any():
                break
        return list(zip(tokens, scores.tolist(), strict=True))

    def _beam(
        self, state: Any, k: int, max_len: int, alpha: float, greedy: tuple[list[int], float]
    ) -> tuple[list[int], float]:
        """Beam search for one source from its encoder state (batch of 1)."""
        pad, eos = self.tgt_vocab.pad_id, self.tgt_vocab.eos_id
        ops = self.backend.ops

        def rank(item: tuple[list[int], float]) -> float:
            return item[1] / (len(item[0]) + 1) ** alpha

        finished = [greedy]
        prefixes: list[list[int]] = [[]]
        scores = np.zeros(1)  # ln P of each unfinished prefix
        ids = np.array([pad], dtype=np.int64)
        for t in range(max_len + 1):
            logp, state = self._step(ids, state)  # (n, V_t)
            total = scores[:, None] + logp  # (n, V_t): ln P of every one-token extension
            finished.extend((p, float(s)) for p, s in zip(prefixes, total[:, eos], strict=True))
            if t == max_len:
                break
            total[:, eos] = -np.inf  # ended above
            total[:, pad] = -np.inf
            flat = np.argsort(-total, axis=None, kind="stable")[:k]
            flat = flat[np.isfinite(total.ravel()[flat])]
            if flat.size == 0:
                break
            rows, ids = np.divmod(flat, total.shape[1])
            prefixes = [prefixes[r] + [int(i)] for r, i in zip(rows, ids, strict=True)]
            scores = total[rows, ids]
            state = _take(state, rows, ops)
            if alpha == 0 and max(s for _, s in finished) >= scores.max():
                break  # no extension of an unfinished prefix can beat the best finished one
        return max(finished, key=rank)


def _take(state: Any, rows: np.ndarray, ops: Any) -> Any:
    """The state of the sequences ``rows`` (B',) of a batch: h (L, B, H) -> (L, B', H)."""
    index = ops.int_array(rows)
    if isinstance(state, tuple):
        return tuple(s[:, index] for s in state)
    return state[:, index]


def _check_pairs(sources: Any, targets: Any) -> tuple[list[str], list[str]]:
    sources = _check_texts("sources", sources)
    targets = _check_texts("targets", targets)
    if len(sources) != len(targets):
        raise ValueError(
            f"'targets' must hold one text per source: expected {len(sources)}, got {len(targets)}"
        )
    return sources, targets
