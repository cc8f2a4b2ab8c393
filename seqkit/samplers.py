"""Samplers: turn one step's logits into the next token ids, on the host, in float64.

A language model generates one token per step: the step's output ``logits (B, V)`` become a
distribution over the vocabulary, and a sampler picks one id per row. The seed's method is
``random``: draw from the softmax, so that a token of probability 0.1 comes out one time in ten.
``greedy`` takes the argmax. ``random`` also takes the usual shaping options, applied in this
order (see :func:`filtered_probs`):

1. ``temperature`` divides the logits (below 1 sharpens, above 1 flattens; towards 0 it becomes
   greedy);
2. ``top_k`` keeps the k most likely tokens;
3. ``top_p`` (nucleus) keeps the smallest set of most likely tokens whose probability reaches p.

Sampling always happens on the host in NumPy float64, whatever backend computed the logits: a
backend converts them with ``ops.to_numpy`` first. So the same seed gives the same tokens on every
backend (up to the logits themselves differing in their last bits).

Samplers register through the ``seqkit_register_samplers`` hook, like a third-party sampler would;
:func:`get_sampler` builds one by name. Beam search, which needs the model, lives elsewhere.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import attrs
import numpy as np

from seqkit._plugins import build
from seqkit.errors import ShapeError
from seqkit.hookspecs import hookimpl

__all__ = [
    "Sampler",
    "RandomSampler",
    "GreedySampler",
    "get_sampler",
    "filtered_probs",
    "softmax",
    "log_softmax",
]


# --- stable host softmax --------------------------------------------------------------------------


def log_softmax(x: Any, *, axis: int = -1) -> np.ndarray:
    """``log(softmax(x))`` in float64, stable for large logits (log-sum-exp).

    Args:
        x: logits, any shape, e.g. (B, V); ``-inf`` entries get ``-inf`` (probability 0).
        axis: the axis to normalise over (V).

    Returns:
        float64 array of the shape of ``x``.
    """
    x = np.asarray(x, dtype=np.float64)
    # subtracting the max makes every exponent <= 0, so exp never overflows
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # an all -inf row: -inf - 0 stays -inf, not NaN
    shifted = x - m
    with np.errstate(divide="ignore"):  # log(0) = -inf for an all -inf row is the right answer
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(x: Any, *, axis: int = -1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` in float64, stable for large logits.

    Args:
        x: logits, any shape, e.g. (B, V); ``-inf`` entries get probability 0.
        axis: the axis to normalise over (V).

    Returns:
        float64 array of the shape of ``x``, non-negative, summing to one along ``axis`` (a slice
        that is all ``-inf`` has no distribution: NaN).
    """
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


# --- option checks --------------------------------------------------------------------------------


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _check_temperature(value: Any) -> float:
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"'temperature' must be a finite number > 0 (got {value!r})")
    return float(value)


def _check_top_k(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"'top_k' must be an integer >= 1 or None (got {value!r})")
    return int(value)


def _check_top_p(value: Any) -> float | None:
    if value is None:
        return None
    if not _is_real(value) or not 0 < value <= 1:
        raise ValueError(f"'top_p' must be a number in (0, 1] or None (got {value!r})")
    return float(value)


def _check_logits(logits: Any) -> np.ndarray:
    """``logits`` as a float64 (B, V) array with a finite maximum in every row."""
    if hasattr(logits, "detach"):  # a CPU tensor from an autograd backend
        logits = logits.detach().cpu().numpy()
    x = np.asarray(logits)
    if x.ndim != 2 or x.shape[1] == 0 or x.dtype.kind not in "fiu":
        raise ShapeError(
            f"logits must be a (B, V) real array with V >= 1 (got shape {x.shape}, dtype {x.dtype})"
        )
    x = x.astype(np.float64)
    # -inf is a legitimate "never this token"; NaN and +inf are bugs upstream
    if np.isnan(x).any() or np.isposinf(x).any():
        raise ValueError("logits must not contain NaN or +inf")
    if x.shape[0] and not np.isfinite(x).any(axis=1).all():
        rows = np.flatnonzero(~np.isfinite(x).any(axis=1)).tolist()
        raise ValueError(f"logits rows {rows} are all -inf: no token can be chosen")
    return x


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (got {type(rng).__name__}); create one with "
            "numpy.random.default_rng(seed) once and pass it to every step"
        )
    return rng


# --- the distribution a sampler draws from --------------------------------------------------------


def filtered_probs(
    logits: Any,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> np.ndarray:
    """The distribution :class:`RandomSampler` draws from: tempered, then top-k, then top-p.

    Args:
        logits: (B, V) unnormalised log-probabilities; ``-inf`` marks a forbidden token.
        temperature: > 0; logits are divided by it before the softmax.
        top_k: keep only the ``k`` largest logits of each row (all when ``k >= V``). Ties at the
            boundary are broken towards the lower id, so exactly ``min(k, V)`` tokens survive.
        top_p: in (0, 1]; keep the smallest set of most likely tokens (after top-k) whose total
            probability is at least ``top_p``; ``1`` keeps them all.

    Returns:
        (B, V) float64 probabilities: non-negative, each row summing to one, zero outside the
        kept tokens.
    """
    temperature = _check_temperature(temperature)
    top_k = _check_top_k(top_k)
    top_p = _check_top_p(top_p)
    x = _check_logits(logits)
    B, V = x.shape

    # 1. temperature: shift first so that a tiny temperature sends logits to -inf, not to +inf
    with np.errstate(over="ignore"):
        x = (x - x.max(axis=1, keepdims=True)) / temperature
    # a stable descending order (ties: lower id first) serves both top-k and top-p
    order = np.argsort(-x, axis=1, kind="stable")  # (B, V)
    rows = np.arange(B)[:, None]

    # 2. top-k: forbid every token ranked k or later
    if top_k is not None and top_k < V:
        x[rows, order[:, top_k:]] = -np.inf
    probs = softmax(x, axis=1)

    # 3. top-p: keep a token while the mass ranked above it is still below p
    if top_p is not None and top_p < 1.0:
        sorted_probs = np.take_along_axis(probs, order, axis=1)  # (B, V) descending
        mass_before = np.cumsum(sorted_probs, axis=1) - sorted_probs
        drop = mass_before >= top_p
        drop[:, 0] = False  # the most likely token always stays, whatever rounding does
        sorted_probs[drop] = 0.0
        probs = np.zeros_like(probs)
        np.put_along_axis(probs, order, sorted_probs, axis=1)
        probs /= probs.sum(axis=1, keepdims=True)
    return probs


def _draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One id per row of ``probs (B, V)`` by inverse CDF: one uniform per row, in row order."""
    B, V = probs.shape
    cdf = np.cumsum(probs, axis=1)  # (B, V)
    r = rng.random(B) * cdf[:, -1]  # (B,) in [0, total)
    # first index whose cdf exceeds r; a zero-probability token never exceeds its predecessor
    ids = np.sum(cdf <= r[:, None], axis=1)
    # u * total can round up to total; fall back to the last token that has any probability
    last_nonzero = V - 1 - np.argmax(probs[:, ::-1] > 0, axis=1)
    return np.minimum(ids, last_nonzero).astype(np.int64)


# --- samplers -------------------------------------------------------------------------------------


class Sampler(abc.ABC):
    """Picks the next token of every sequence in a batch from one step's logits.

    Subclasses are frozen attrs classes whose fields are their options, and set ``name``.
    """

    #: Registered name (``"random"``).
    name: ClassVar[str]

    @abc.abstractmethod
    def probs(self, logits: Any) -> np.ndarray:
        """The distribution :meth:`choose` draws from.

        Args:
            logits: (B, V) float array on the host.

        Returns:
            (B, V) float64 probabilities, each row summing to one.
        """

    @abc.abstractmethod
    def choose(self, logits: Any, rng: np.random.Generator) -> np.ndarray:
        """One token id per row.

        Args:
            logits: (B, V) float array on the host (``ops.to_numpy`` a backend's output first).
            rng: the generator to draw from; reuse one across steps for a reproducible sequence.

        Returns:
            (B,) int64 ids.
        """


@attrs.frozen(kw_only=True)
class RandomSampler(Sampler):
    """Draw from the softmax (the seed's method), shaped by temperature, top-k and top-p.

    Args:
        temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
        top_k: keep only the k most likely tokens, or ``None`` for all.
        top_p: keep the smallest set of most likely tokens whose probability reaches ``top_p``,
            in (0, 1], or ``None`` for all.

    Each call to :meth:`choose` draws exactly ``B`` uniforms from ``rng``.
    """

    name: ClassVar[str] = "random"

    temperature: float = attrs.field(default=1.0, converter=_check_temperature)
    top_k: int | None = attrs.field(default=None, converter=_check_top_k)
    top_p: float | None = attrs.field(default=None, converter=_check_top_p)

    def probs(self, logits: Any) -> np.ndarray:
        """(B, V) float64: :func:`filtered_probs` with this sampler's options."""
        return filtered_probs(
            logits, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p
        )

    def choose(self, logits: Any, rng: np.random.Generator) -> np.ndarray:
        """(B,) int64 ids drawn from :meth:`probs` of ``logits (B, V)`` with ``rng``."""
        rng = _check_rng(rng)
        return _draw(self.probs(logits), rng)


@attrs.frozen(kw_only=True)
class GreedySampler(Sampler):
    """The most likely token of each row (the lowest id among ties); uses no randomness."""

    name: ClassVar[str] = "greedy"

    def probs(self, logits: Any) -> np.ndarray:
        """(B, V) float64 one-hot rows at the argmax of ``logits (B, V)``."""
        x = _check_logits(logits)
        out = np.zeros_like(x)
        out[np.arange(x.shape[0]), np.argmax(x, axis=1)] = 1.0
        return out

    def choose(self, logits: Any, rng: np.random.Generator | None = None) -> np.ndarray:
        """(B,) int64 argmax ids of ``logits (B, V)``; ``rng`` is accepted and left untouched."""
        return np.argmax(_check_logits(logits), axis=1).astype(np.int64)


def get_sampler(name: str | Sampler, **options: Any) -> Sampler:
    """A registered sampler by name, built with ``options``.

    Args:
        name: a registered name (``seqkit.list_samplers()``: ``"greedy"``, ``"random"``, ...) or
            a :class:`Sampler` instance, returned as it is.
        **options: the sampler's options (``temperature=0.8, top_k=40``).

    Returns:
        the :class:`Sampler`.

    Raises:
        UnknownNameError: no sampler has that name; the message lists the available ones.
        TypeError: an option the sampler does not take; the message lists the ones it does.
        ValueError: an option value out of range.
    """
    return build("sampler", Sampler, name, options)


@hookimpl
def seqkit_register_samplers():
    return [RandomSampler, GreedySampler]
