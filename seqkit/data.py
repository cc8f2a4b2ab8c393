"""Batching: id sequences -> padded time-major arrays, masks, one-hot inputs and LM pairs.

Everything here is NumPy on the host; a backend moves the arrays to its device. Arrays are
time-major like the rest of seqkit: ids ``(T, B)``, one-hot ``(T, B, V)``, with T the longest
sequence of the batch. Padded steps hold ``pad_id`` and lie outside ``lengths``; the mask from
:func:`mask_from_lengths` says which steps are real.

Language-model batches (:func:`lm_batch`) follow the seed's teacher forcing: the input at step
1 is the zero vector, the input at step t is the true token ``y<t-1>``, and the targets are the
sentence's tokens followed by ``<EOS>``::

    tokens   Cats  average  15  ...  day   .
    inputs   0     Cats     average  ...   day   .         (step 1 is the start input)
    targets  Cats  average  15  ...  .     <EOS>

**The start input is the id** ``vocab.pad_id`` (0). ``<PAD>`` is never a real token, so a model
encodes id ``pad_id`` as the zero vector: ``one_hot(inputs, V, zero_id=vocab.pad_id)`` (or an
embedding with ``padding_idx=pad_id``). That gives the seed's ``x<1> = 0`` exactly, and padded
steps, which are masked anyway, are zero too. Generation starts the same way: feed ``pad_id``,
sample ``y<1>``, feed it back, and stop at ``<EOS>``.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from seqkit.errors import ShapeError
from seqkit.vocab import Vocabulary

__all__ = [
    "check_labels",
    "check_texts",
    "encode_nonempty",
    "iterate_minibatches",
    "lm_batch",
    "mask_from_lengths",
    "one_hot",
    "pad_batch",
]


def _check_int(name: str, value: Any, *, low: int) -> int:
    """``value`` as an int >= ``low``; ints and NumPy integers, never bools or floats."""
    try:
        if isinstance(value, bool):
            raise TypeError
        out = operator.index(value)
    except TypeError:
        raise TypeError(f"{name!r} must be an integer >= {low} (got {value!r})") from None
    if out < low:
        raise ValueError(f"{name!r} must be an integer >= {low} (got {value!r})")
    return out


def _as_id_list(name: str, seq: Any) -> np.ndarray:
    """One sequence of ids as a 1-D int64 array."""
    if isinstance(seq, str | bytes):
        raise TypeError(f"{name} is a {type(seq).__name__}; encode texts first (vocab.encode)")
    arr = np.asarray(seq)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ShapeError(
            f"{name} must be a 1-D sequence of integer ids (got shape {arr.shape}, "
            f"dtype {arr.dtype})"
        )
    return arr.astype(np.int64)


def _check_sequences(sequences: Any) -> list[np.ndarray]:
    if isinstance(sequences, str | bytes) or not isinstance(sequences, Sequence | np.ndarray):
        raise TypeError(
            f"sequences must be a list of id sequences (got {type(sequences).__name__})"
        )
    if len(sequences) == 0:
        raise ValueError("sequences must hold at least one sequence (got an empty batch, B = 0)")
    return [_as_id_list(f"sequences[{b}]", s) for b, s in enumerate(sequences)]


def pad_batch(
    sequences: Sequence[Sequence[int] | np.ndarray], pad_id: int, *, max_len: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stack id sequences of different lengths into one time-major padded array.

    Args:
        sequences: B sequences of ids (lists or 1-D integer arrays); empty ones are allowed.
        pad_id: the id written after each sequence's end (``vocab.pad_id``).
        max_len: when given, T is exactly ``max_len``: longer sequences are cut to their first
            ``max_len`` ids (and their lengths to ``max_len``), shorter ones padded.

    Returns:
        ``(ids, lengths)``: ids (T, B) int64 with ``ids[t, b] = sequences[b][t]`` for
        ``t < lengths[b]`` and ``pad_id`` after; lengths (B,) int64. T is the longest length
        (or ``max_len``).
    """
    seqs = _check_sequences(sequences)
    pad_id = _check_int("pad_id", pad_id, low=0)
    if max_len is not None:
        max_len = _check_int("max_len", max_len, low=1)
        seqs = [s[:max_len] for s in seqs]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)  # (B,)
    T = max_len if max_len is not None else int(lengths.max())
    B = len(seqs)
    ids = np.full((T, B), pad_id, dtype=np.int64)
    for b, s in enumerate(seqs):
        ids[: len(s), b] = s
    return ids, lengths


def mask_from_lengths(lengths: Any, T: int) -> np.ndarray:
    """Which steps of a padded batch are real.

    Args:
        lengths: (B,) integer lengths in ``0..T``.
        T: the number of time steps.

    Returns:
        (T, B) bool, true where ``t < lengths[b]``.
    """
    T = _check_int("T", T, low=0)
    arr = np.asarray(lengths)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ShapeError(
            f"lengths must be a (B,) integer array (got shape {arr.shape}, dtype {arr.dtype})"
        )
    if arr.size and (arr.min() < 0 or arr.max() > T):
        raise ValueError(
            f"lengths must lie in 0..T = 0..{T} (got min {arr.min()}, max {arr.max()})"
        )
    return np.arange(T)[:, None] < arr[None, :].astype(np.int64)  # (T, 1) < (1, B) -> (T, B)


def one_hot(ids: Any, V: int, *, dtype: str = "float32", zero_id: int | None = None) -> np.ndarray:
    """The seed's one-hot encoding: id ``i`` becomes a V-vector with a 1 at position ``i``.

    Args:
        ids: integer ids in ``0..V-1``, any shape; usually (T, B).
        V: vocabulary size.
        dtype: the float dtype of the result (``"float32"``, ``"float64"``).
        zero_id: an id encoded as the all-zero vector instead; pass ``vocab.pad_id`` for
            language-model inputs, whose start input is the zero vector (see :func:`lm_batch`).

    Returns:
        ``ids.shape + (V,)``, e.g. (T, B, V), of ``dtype``.
    """
    V = _check_int("V", V, low=1)
    arr = np.asarray(ids)
    if arr.size and arr.dtype.kind not in "iu":
        raise ShapeError(f"ids must be an integer array (got dtype {arr.dtype})")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= V):
        bad = arr[(arr < 0) | (arr >= V)]
        raise ValueError(f"ids must lie in 0..V-1 = 0..{V - 1} (got {bad.ravel()[:5].tolist()})")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"dtype must be a NumPy dtype name such as 'float32' (got {dtype!r})"
        ) from None
    out = np.zeros(arr.shape + (V,), dtype=dt)
    np.put_along_axis(out, arr[..., None], 1, axis=-1)
    if zero_id is not None:
        zero_id = _check_int("zero_id", zero_id, low=0)
        out[arr == zero_id] = 0
    return out


def lm_batch(
    sequences: Sequence[Sequence[int]], vocab: Vocabulary, *, max_len: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher-forcing pairs for a language model, as the seed trains one.

    For a sentence ``y<1> .. y<n>`` the model reads ``start, y<1>, .., y<n>`` and must predict
    ``y<1>, .., y<n>, <EOS>``: n + 1 steps. The start input is ``vocab.pad_id``, which the model
    encodes as the zero vector (module docstring).

    Args:
        sequences: B encoded sentences (``vocab.encode(text)``), without ``<EOS>``; empty ones
            are allowed and train the model to emit ``<EOS>`` first.
        vocab: the vocabulary the ids come from (for ``pad_id`` and ``eos_id``).
        max_len: when given, T is exactly ``max_len``; longer pairs are cut (a cut sentence
            loses its ``<EOS>`` target).

    Returns:
        ``(inputs, targets, lengths)``: inputs (T, B) int64, targets (T, B) int64, lengths (B,)
        int64 = sentence length + 1 (at least 1). Steps past a length hold ``pad_id`` in both.
    """
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"vocab must be a seqkit Vocabulary (got {type(vocab).__name__})")
    seqs = _check_sequences(sequences)
    V = len(vocab)
    for b, s in enumerate(seqs):
        if s.size and (s.min() < 0 or s.max() >= V):
            raise ValueError(
                f"sequences[{b}] holds ids outside 0..V-1 = 0..{V - 1} "
                f"(got min {s.min()}, max {s.max()})"
            )
    start = np.array([vocab.pad_id], dtype=np.int64)
    eos = np.array([vocab.eos_id], dtype=np.int64)
    inputs, lengths = pad_batch(
        [np.concatenate([start, s]) for s in seqs], vocab.pad_id, max_len=max_len
    )
    targets, _ = pad_batch([np.concatenate([s, eos]) for s in seqs], vocab.pad_id, max_len=max_len)
    return inputs, targets, lengths


def iterate_minibatches(
    n_items: int,
    batch_size: int,
    *,
    seed: int | np.random.Generator | None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[np.ndarray]:
    """Index arrays that cover ``range(n_items)`` once, in batches.

    Args:
        n_items: how many items the data set holds.
        batch_size: items per batch; the last batch may be smaller unless ``drop_last``.
        seed: an int or a ``numpy.random.Generator`` for the shuffle. The same int gives the
            same order; ``None`` draws fresh entropy (not reproducible).
        shuffle: visit the items in a random order; ``False`` keeps ``0..n_items-1``.
        drop_last: leave out a last batch smaller than ``batch_size``.

    Returns:
        an iterator of (b,) int64 arrays of item indices, ``b <= batch_size``. Arguments are
        checked at the call, before the first batch.
    """
    n_items = _check_int("n_items", n_items, low=0)
    batch_size = _check_int("batch_size", batch_size, low=1)
    if seed is not None and not isinstance(seed, np.random.Generator):
        _check_int("seed", seed, low=0)
    order = np.arange(n_items, dtype=np.int64)
    if shuffle:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        order = rng.permutation(order)
    stop = n_items - n_items % batch_size if drop_last else n_items
    # a generator of its own, so that bad arguments fail at the call, not at the first next()
    return (order[start : start + batch_size] for start in range(0, stop, batch_size))


# --- checks of a model's data, shared by every model --------------------------------------------
def check_texts(name: str, texts: Any) -> list[str]:
    """``texts`` as a non-empty list of strings."""
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


def encode_nonempty(vocab: Vocabulary, texts: Sequence[str]) -> list[list[int]]:
    """Each text's ids; a text without tokens is an error (a recurrent stack reads one step)."""
    encoded = [vocab.encode(t) for t in texts]
    for b, e in enumerate(encoded):
        if not e:
            raise ValueError(
                f"'texts'[{b}] has no tokens (got {texts[b]!r}); every text needs at least one"
            )
    return encoded


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
