"""Tests for seqkit.data: padding, masks, one-hot, language-model pairs and minibatches."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqkit.data import iterate_minibatches, lm_batch, mask_from_lengths, one_hot, pad_batch
from seqkit.errors import ShapeError
from seqkit.vocab import Vocabulary

FAST = settings(max_examples=30, deadline=None)

id_lists = st.lists(st.lists(st.integers(3, 9), max_size=6), min_size=1, max_size=5)
VOCAB = Vocabulary.build(["abcdefg"])  # V = 10: specials 0..2, then a..g as 3..9


# --- pad_batch and masks --------------------------------------------------------------------------


def test_pad_batch_is_time_major():
    ids, lengths = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.dtype == np.int64 and lengths.dtype == np.int64
    np.testing.assert_array_equal(ids, [[5, 8], [6, 0], [7, 0]])  # (T, B) = (3, 2)
    np.testing.assert_array_equal(lengths, [3, 1])


@FAST
@given(id_lists, st.integers(0, 2))
def test_pad_batch_keeps_every_sequence_and_pads_after(seqs, pad_id):
    ids, lengths = pad_batch(seqs, pad_id)
    T, B = ids.shape
    assert B == len(seqs) and T == max(len(s) for s in seqs)
    mask = mask_from_lengths(lengths, T)
    for b, s in enumerate(seqs):
        assert lengths[b] == len(s)
        assert ids[: len(s), b].tolist() == s
        assert np.all(ids[len(s) :, b] == pad_id)
    assert np.all(ids[~mask] == pad_id)


@FAST
@given(id_lists, st.integers(1, 8))
def test_pad_batch_max_len_truncates_and_pads_to_exactly_max_len(seqs, max_len):
    ids, lengths = pad_batch(seqs, 0, max_len=max_len)
    assert ids.shape == (max_len, len(seqs))
    for b, s in enumerate(seqs):
        assert lengths[b] == min(len(s), max_len)
        assert ids[: lengths[b], b].tolist() == s[:max_len]


def test_pad_batch_accepts_arrays_and_empty_sequences():
    ids, lengths = pad_batch([np.array([4, 5], dtype=np.int32), []], 0)
    np.testing.assert_array_equal(ids, [[4, 0], [5, 0]])
    np.testing.assert_array_equal(lengths, [2, 0])
    ids, lengths = pad_batch([[], []], 0)
    assert ids.shape == (0, 2)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (([], 0), {}, ValueError, r"at least one sequence \(got an empty batch, B = 0\)"),
        (("abc", 0), {}, TypeError, r"list of id sequences \(got str\)"),
        ((["abc"], 0), {}, TypeError, r"sequences\[0\] is a str; encode texts first"),
        (([[1.5, 2.0]], 0), {}, ShapeError, r"sequences\[0\] must be a 1-D sequence of integer"),
        (([[[1, 2]]], 0), {}, ShapeError, r"got shape \(1, 2\)"),
        (([[1]], -1), {}, ValueError, r"'pad_id' must be an integer >= 0 \(got -1\)"),
        (([[1]], 0), {"max_len": 0}, ValueError, r"'max_len' must be an integer >= 1 \(got 0\)"),
        (([[1]], 0), {"max_len": 2.0}, TypeError, r"'max_len' must be an integer"),
    ],
)
def test_pad_batch_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        pad_batch(*args, **kwargs)


def test_mask_from_lengths():
    mask = mask_from_lengths(np.array([3, 1, 0]), 3)
    assert mask.dtype == bool and mask.shape == (3, 3)
    np.testing.assert_array_equal(mask, [[1, 1, 0], [1, 0, 0], [1, 0, 0]])


@pytest.mark.parametrize(
    ("lengths", "T", "error", "match"),
    [
        ([1, 4], 3, ValueError, r"lengths must lie in 0\.\.T = 0\.\.3 \(got min 1, max 4\)"),
        ([-1], 3, ValueError, "got min -1"),
        ([[1]], 3, ShapeError, r"\(B,\) integer array \(got shape \(1, 1\)"),
        ([1.5], 3, ShapeError, "dtype float64"),
        ([1], -1, ValueError, r"'T' must be an integer >= 0"),
    ],
)
def test_mask_from_lengths_errors(lengths, T, error, match):
    with pytest.raises(error, match=match):
        mask_from_lengths(lengths, T)


# --- one_hot --------------------------------------------------------------------------------------


@FAST
@given(id_lists)
def test_one_hot_has_one_one_per_id(seqs):
    ids, _ = pad_batch(seqs, 0)
    x = one_hot(ids, 10)
    assert x.shape == (*ids.shape, 10) and x.dtype == np.float32
    np.testing.assert_array_equal(x.sum(axis=-1), 1.0)
    np.testing.assert_array_equal(np.argmax(x, axis=-1), ids)


def test_one_hot_zero_id_and_dtype():
    x = one_hot(np.array([[0, 3], [2, 0]]), 4, dtype="float64", zero_id=0)
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x[0, 0], 0.0)
    np.testing.assert_array_equal(x[1, 1], 0.0)
    np.testing.assert_array_equal(x[0, 1], [0, 0, 0, 1])
    np.testing.assert_array_equal(x[1, 0], [0, 0, 1, 0])


@pytest.mark.parametrize(
    ("ids", "V", "kwargs", "error", "match"),
    [
        ([[0, 4]], 4, {}, ValueError, r"ids must lie in 0\.\.V-1 = 0\.\.3 \(got \[4\]\)"),
        ([[-1, 0]], 4, {}, ValueError, r"\(got \[-1\]\)"),
        ([[0.0]], 4, {}, ShapeError, "integer array"),
        ([[0]], 0, {}, ValueError, r"'V' must be an integer >= 1"),
        ([[0]], 4, {"dtype": "floaty"}, TypeError, "dtype must be a NumPy dtype name"),
    ],
)
def test_one_hot_errors(ids, V, kwargs, error, match):
    with pytest.raises(error, match=match):
        one_hot(ids, V, **kwargs)


# --- lm_batch -------------------------------------------------------------------------------------


def test_lm_batch_follows_the_seed_teacher_forcing():
    v = Vocabulary.build(["Cats average 15 hours of sleep a day."], level="word")
    cats = v.encode("Cats average 15 hours of sleep a day.")  # 9 tokens
    short = v.encode("a day")
    inputs, targets, lengths = lm_batch([cats, short], v)
    assert inputs.shape == targets.shape == (10, 2)
    np.testing.assert_array_equal(lengths, [10, 3])
    # step 1 reads the start input, step t reads y<t-1>; targets end with <EOS>
    assert inputs[:, 0].tolist() == [v.pad_id, *cats]
    assert targets[:, 0].tolist() == [*cats, v.eos_id]
    assert inputs[:3, 1].tolist() == [v.pad_id, *short]
    assert targets[:3, 1].tolist() == [*short, v.eos_id]
    assert np.all(inputs[3:, 1] == v.pad_id) and np.all(targets[3:, 1] == v.pad_id)
    # the start input one-hot encodes as the seed's zero vector
    x = one_hot(inputs, len(v), zero_id=v.pad_id)
    np.testing.assert_array_equal(x[0], 0.0)
    np.testing.assert_array_equal(x[1:10, 0].argmax(axis=-1), cats)


@FAST
@given(id_lists)
def test_lm_batch_inputs_are_targets_shifted_by_one(seqs):
    inputs, targets, lengths = lm_batch(seqs, VOCAB)
    T, B = inputs.shape
    assert targets.shape == (T, B) and lengths.tolist() == [len(s) + 1 for s in seqs]
    mask = mask_from_lengths(lengths, T)
    assert np.all(inputs[0] == VOCAB.pad_id)
    np.testing.assert_array_equal(inputs[1:][mask[1:]], targets[:-1][mask[1:]])
    assert np.all(targets[lengths - 1, np.arange(B)] == VOCAB.eos_id)
    assert np.all(targets[mask] != VOCAB.pad_id)  # real targets are never padding
    assert np.all(inputs[1:][mask[1:]] != VOCAB.eos_id)  # <EOS> is only ever a target


def test_lm_batch_empty_sentence_predicts_eos_first():
    inputs, targets, lengths = lm_batch([[]], VOCAB)
    assert inputs.tolist() == [[VOCAB.pad_id]] and targets.tolist() == [[VOCAB.eos_id]]
    assert lengths.tolist() == [1]


def test_lm_batch_max_len_cuts():
    inputs, targets, lengths = lm_batch([[3, 4, 5, 6]], VOCAB, max_len=3)
    assert inputs[:, 0].tolist() == [0, 3, 4] and targets[:, 0].tolist() == [3, 4, 5]
    assert lengths.tolist() == [3]


def test_lm_batch_errors():
    with pytest.raises(ValueError, match=r"sequences\[1\] holds ids outside 0\.\.V-1 = 0\.\.9"):
        lm_batch([[3], [10]], VOCAB)
    with pytest.raises(TypeError, match=r"sequences\[0\] is a str; encode texts first"):
        lm_batch(["abc"], VOCAB)
    with pytest.raises(TypeError, match=r"vocab must be a seqkit Vocabulary \(got dict\)"):
        lm_batch([[3]], {})  # type: ignore[arg-type]


# --- iterate_minibatches --------------------------------------------------------------------------


@FAST
@given(st.integers(0, 40), st.integers(1, 12), st.integers(0, 2**32 - 1), st.booleans())
def test_minibatches_cover_every_item_once(n, batch_size, seed, shuffle):
    batches = list(iterate_minibatches(n, batch_size, seed=seed, shuffle=shuffle))
    assert all(b.dtype == np.int64 and 0 < len(b) <= batch_size for b in batches)
    assert all(len(b) == batch_size for b in batches[:-1])
    flat = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    assert sorted(flat.tolist()) == list(range(n))
    if not shuffle:
        assert flat.tolist() == list(range(n))


def test_minibatches_are_reproducible_from_the_seed():
    def run(seed):
        return [b.tolist() for b in iterate_minibatches(50, 8, seed=seed)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    from_generator = [b.tolist() for b in iterate_minibatches(50, 8, seed=np.random.default_rng(7))]
    assert from_generator == run(7)


def test_minibatches_drop_last():
    batches = list(iterate_minibatches(10, 4, seed=0, shuffle=False, drop_last=True))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((10, 0), {"seed": 0}, ValueError, r"'batch_size' must be an integer >= 1 \(got 0\)"),
        ((-1, 2), {"seed": 0}, ValueError, r"'n_items' must be an integer >= 0 \(got -1\)"),
        ((10, 2), {"seed": "x"}, TypeError, r"'seed' must be an integer >= 0 \(got 'x'\)"),
        ((10, 2), {"seed": -5}, ValueError, r"'seed' must be an integer >= 0"),
    ],
)
def test_minibatch_errors_come_at_the_call(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        iterate_minibatches(*args, **kwargs)  # not iterated: the check is eager
