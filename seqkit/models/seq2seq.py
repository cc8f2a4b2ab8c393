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

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from seqkit.blocks import Chain, Context, Seq, prefixed, unprefixed
from seqkit.data import check_texts, lm_batch, mask_from_lengths, pad_batch
from seqkit.losses import get_loss
from seqkit.models._base import Batch, Model, check_vocab
from seqkit.models.language_model import token_log_probs
from seqkit.samplers import log_softmax
from seqkit.training import Examples
from seqkit.vocab import Vocabulary

__all__ = ["Seq2Seq"]


@attrs.frozen
class EncoderDecoder:
    """The glue of an encoder-decoder: ``(source Seq, target Seq)`` -> the decoder's logits.

    The encoder's final state becomes the decoder's initial state; in the backward the
    gradient of the decoder's initial state is the only one the encoder gets (no loss reads the
    encoder's per-step outputs).
    """

    encoder: Chain
    decoder: Chain

    @property
    def _both(self) -> Chain:
        return Chain({"encoder": self.encoder, "decoder": self.decoder})

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """``encoder.*`` and ``decoder.*``."""
        return self._both.param_shapes()

    def init_params(self, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """The encoder's, then the decoder's initialisation."""
        return self._both.init_params(rng)

    def walk(self):
        """The blocks of both chains, with their prefixes."""
        return self._both.walk()

    def encode(self, ops, params: dict, src: Seq, *, ctx: Context) -> tuple[Seq, Any]:
        """The encoder's output; its ``state`` is the final state (h (L, B, H), or (h, c))."""
        return self.encoder.forward(ops, unprefixed("encoder", params), src, ctx=ctx)

    def decode(self, ops, params: dict, tgt: Seq, *, ctx: Context) -> tuple[Seq, Any]:
        """Logits (T, B, V_t) for (T, B) decoder inputs from ``tgt.state``; state: the final."""
        return self.decoder.forward(ops, unprefixed("decoder", params), tgt, ctx=ctx)

    def forward(self, ops, params: dict, x: tuple[Seq, Seq], *, ctx: Context):
        src, tgt = x
        enc, enc_cache = self.encode(ops, params, src, ctx=ctx)
        out, dec_cache = self.decode(ops, params, attrs.evolve(tgt, state=enc.state), ctx=ctx)
        return out, (enc_cache, dec_cache)

    def backward(self, ops, params: dict, cache: Any, dy: Seq) -> tuple[None, dict]:
        enc_cache, dec_cache = cache
        d_tgt, g_dec = self.decoder.backward(ops, unprefixed("decoder", params), dec_cache, dy)
        d_enc = Seq(None, None, d_tgt.state)  # the decoder's initial state is the encoder's final
        _, g_enc = self.encoder.backward(ops, unprefixed("encoder", params), enc_cache, d_enc)
        return None, {**prefixed("encoder", g_enc), **prefixed("decoder", g_dec)}


class Seq2Seq(Model):
    """Encoder stack over the source -> final state -> decoder stack (an LM over the target).

    Args:
        src_vocab: the :class:`~seqkit.Vocabulary` of the sources (V_s).
        tgt_vocab: the :class:`~seqkit.Vocabulary` of the targets (V_t), whose ``<EOS>`` ends
            a translation.
        options: the keyword options of every :class:`~seqkit.Model` (``cell`` for both
            stacks, ``hidden_size`` (default 64) of both (the encoder's state is the
            decoder's), ``num_layers`` of both (decoder layer l starts from encoder layer l's
            final state), ``embedding_size`` on each side, ``head_sizes`` of the decoder's
            head, ``backend``, ``dtype``, ``device``, ``seed``).

    Parameters: ``encoder.input.*``, ``encoder.rnn.*`` (named as ``torch.nn.LSTM`` etc.),
    ``decoder.input.*``, ``decoder.rnn.*``, ``decoder.head.*``. Both stacks are unidirectional:
    the encoder's final state must have the decoder's (L, B, H) shape.

    The training loss is the softmax cross-entropy per target token (``<EOS>`` included),
    averaged over the tokens of a batch.
    """

    kind = "Seq2Seq"
    positional = ("src_vocab", "tgt_vocab")
    data_names = ("sources", "targets")

    def __init__(self, src_vocab: Vocabulary, tgt_vocab: Vocabulary, **options: Any) -> None:
        self.src_vocab = check_vocab("src_vocab", src_vocab)
        self.tgt_vocab = check_vocab("tgt_vocab", tgt_vocab)
        super().__init__(**options)

    def _network(self) -> EncoderDecoder:
        Vs, Vt = len(self.src_vocab), len(self.tgt_vocab)
        encoder = self._chain(Vs, None, input_key="input")
        decoder = self._chain(
            Vt, Vt, start_id=self.tgt_vocab.pad_id, input_key="input", given_state=True
        )
        return EncoderDecoder(encoder, decoder)

    def _loss(self):
        return get_loss("softmax_cross_entropy", reduction="token_mean")

    def _sizes(self) -> str:
        return f"V_src={len(self.src_vocab)}, V_tgt={len(self.tgt_vocab)}"

    def _source(self, sources: Sequence[str]) -> Seq:
        """(S, B) ids of each source followed by ``<EOS>``, with (B,) lengths >= 1."""
        v = self.src_vocab
        return Seq(*pad_batch([v.encode(s) + [v.eos_id] for s in sources], v.pad_id))

    def _examples(self, sources: Sequence[str], targets: Sequence[str]) -> Examples:
        sources, targets = _check_pairs(sources, targets)

        def batch(index: np.ndarray) -> Batch:
            src = self._source([sources[i] for i in index])
            encoded = [self.tgt_vocab.encode(targets[i]) for i in index]
            inputs, tgt, lengths = lm_batch(encoded, self.tgt_vocab)
            mask = mask_from_lengths(lengths, inputs.shape[0])
            n = int(lengths.sum())  # the loss is a mean over target tokens (token_mean)
            return Batch((src, Seq(inputs, lengths)), tgt, mask, n, float(n))

        return Examples(len(sources), batch)

    def evaluate(self, sources: Sequence[str], targets: Sequence[str]) -> dict[str, float]:
        """``loss`` (nats per target token, as in training) and ``exact_match`` of greedy
        :meth:`translate`."""
        per = self.token_log_probs(sources, targets)
        loss = -float(sum(p.sum() for p in per)) / sum(len(p) for p in per)
        hits = [a == b for a, b in zip(self.translate(sources), targets, strict=True)]
        return {"loss": loss, "exact_match": float(np.mean(hits))}

    # --- probabilities -------------------------------------------------------------------------
    def token_log_probs(
        self, sources: Sequence[str], targets: Sequence[str], *, batch_size: int = 256
    ) -> list[np.ndarray]:
        """Per-step ln P of each target's tokens and its final ``<EOS>``, given its source."""
        return token_log_probs(self, self._examples(sources, targets), batch_size)

    def log_prob(self, source: str, target: str) -> float:
        """ln P(tokens of ``target``, <EOS> | ``source``): the chain rule's sum."""
        return float(self.token_log_probs([source], [target])[0].sum())

    # --- decoding ------------------------------------------------------------------------------
    def _step(self, ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """One decoder step from ``state`` on (B,) input ids: (B, V_t) float64 log-probs, state."""
        ops, ctx = self.backend.ops, self._context()
        out, _ = self.network.decode(ops, self.params, Seq(ids[None, :], None, state), ctx=ctx)
        logp = log_softmax(np.asarray(self.backend.to_numpy(out.data[0]), dtype=np.float64))
        return logp, out.state

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
        texts = check_texts("texts", texts)
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
        ops, ctx = self.backend.ops, self._context()
        state = self.network.encode(ops, self.params, self._source(texts), ctx=ctx)[0].state
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
    sources = check_texts("sources", sources)
    targets = check_texts("targets", targets)
    if len(sources) != len(targets):
        raise ValueError(
            f"'targets' must hold one text per source: expected {len(sources)}, got {len(targets)}"
        )
    return sources, targets
