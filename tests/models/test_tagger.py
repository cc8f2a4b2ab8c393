import numpy as np
import pytest

from seqkit.models import SequenceTagger, load
from seqkit.vocab import Vocabulary
from tests.helpers import numeric_grad

TEXTS = ["abcab", "bca", "c", "cabbac", "a"]  # variable lengths: padded steps in every batch
TAGS = ["V", "C", "O"]
# a vowel, a consonant, or "other" for c: something for every token
TAG_SEQS = [["V" if ch == "a" else "C" if ch == "b" else "O" for ch in t] for t in TEXTS]


def small(cell="gru", **kwargs):
    vocab = Vocabulary.build(TEXTS, level="char")
    kwargs.setdefault("hidden_size", 3)
    return SequenceTagger(
        vocab, TAGS, cell=cell, backend="numpy", dtype="float64", seed=0, **kwargs
    )


def grads_and_batch(model):
    batch = model.batch(TEXTS, TAG_SEQS)
    _, grads = model.loss_and_grads(batch)
    return grads, batch


@pytest.mark.parametrize(
    "cell, layers, bidirectional, embedding, head",
    [
        ("lstm", 1, False, None, ()),
        ("gru", 2, True, None, ()),
        ("lstm", 2, True, 2, (3,)),
        ("gru_simple", 2, False, 2, ()),
    ],
)
def test_whole_model_gradients_match_finite_differences(
    cell, layers, bidirectional, embedding, head
):
    model = small(
        cell,
        num_layers=layers,
        bidirectional=bidirectional,
        embedding_size=embedding,
        head_sizes=head,
    )
    grads, batch = grads_and_batch(model)
    assert set(grads) == set(model.params)
    for name, arr in model.params.items():
        expected = numeric_grad(lambda: model.loss(batch), arr)
        np.testing.assert_allclose(grads[name], expected, rtol=1e-5, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_probabilities_per_token_and_padding_changes_nothing(bidirectional):
    model = small("lstm", num_layers=2, bidirectional=bidirectional)
    texts = [*TEXTS, ""]
    probs = model.predict_proba(texts)
    assert [p.shape for p in probs] == [(len(t), len(TAGS)) for t in texts]
    for p in probs:
        assert np.all(p >= 0) and np.allclose(p.sum(axis=1), 1.0)
    for text, p in zip(texts, probs, strict=True):
        np.testing.assert_allclose(model.predict_proba([text])[0], p, rtol=1e-12, atol=1e-14)
    predicted = model.predict(texts)
    assert predicted[-1] == []
    assert predicted == [[TAGS[k] for k in p.argmax(axis=1)] for p in probs]


def test_a_forward_model_tags_from_the_past_only():
    # changing the last token must leave the tags of the earlier tokens as they were
    model = small("gru", num_layers=2)
    a, b = model.predict_proba(["abca", "abcb"])
    np.testing.assert_allclose(a[:3], b[:3], rtol=1e-12)
    assert not np.allclose(a[3], b[3])
    bi = small("gru", num_layers=2, bidirectional=True)
    a, b = bi.predict_proba(["abca", "abcb"])
    assert not np.allclose(a[0], b[0])  # the reverse direction carries the future back


def _data(rng, n=200):
    return ["".join(rng.choice(list("abc"), size=int(rng.integers(3, 9)))) for _ in range(n)]


def test_learns_the_token_two_steps_earlier():
    rng = np.random.default_rng(0)
    texts = _data(rng)
    tags = [(["-", "-"] + list(t))[: len(t)] for t in texts]
    vocab = Vocabulary.build(texts, level="char")
    model = SequenceTagger(
        vocab,
        ["-", "a", "b", "c"],
        cell="gru",
        hidden_size=16,
        backend="numpy",
        dtype="float64",
        seed=0,
    )
    model.fit(texts, tags, steps=150, batch_size=32, lr=0.03, seed=0)
    test = _data(np.random.default_rng(1), 20)
    want = [(["-", "-"] + list(t))[: len(t)] for t in test]
    assert model.predict(test) == want


def test_a_bidirectional_model_learns_the_next_token():
    rng = np.random.default_rng(0)
    texts = _data(rng)
    tags = [[*t[1:], "-"] for t in texts]
    vocab = Vocabulary.build(texts, level="char")
    model = SequenceTagger(
        vocab,
        ["-", "a", "b", "c"],
        cell="gru",
        hidden_size=8,
        bidirectional=True,
        backend="numpy",
        dtype="float64",
        seed=0,
    )
    model.fit(texts, tags, steps=100, batch_size=32, lr=0.03, seed=0)
    test = _data(np.random.default_rng(1), 20)
    assert model.predict(test) == [[*t[1:], "-"] for t in test]


def test_word_level_tags_follow_the_tokenizer():
    texts = ["the cat sat", "a dog ran away"]
    vocab = Vocabulary.build(texts, level="word")
    model = SequenceTagger(
        vocab, ["DET", "N", "V", "ADV"], hidden_size=4, backend="numpy", dtype="float64", seed=0
    )
    model.fit(texts, [["DET", "N", "V"], ["DET", "N", "V", "ADV"]], steps=2, batch_size=2)
    assert [len(p) for p in model.predict(texts)] == [3, 4]


def test_save_and_load_round_trip(tmp_path):
    model = small("lstm", num_layers=2, bidirectional=True, embedding_size=2, head_sizes=(4,))
    path = tmp_path / "tagger.npz"
    model.save(path)
    back = load(path, backend="numpy", dtype="float64")
    assert isinstance(back, SequenceTagger) and back.vocab == model.vocab
    assert back.tags == model.tags and back.config() == model.config()
    for a, b in zip(back.predict_proba(TEXTS), model.predict_proba(TEXTS), strict=True):
        np.testing.assert_array_equal(a, b)


def test_torch_autograd_agrees_with_the_hand_written_backward(tmp_path):
    pytest.importorskip("torch")
    model = small("lstm", num_layers=2, bidirectional=True, embedding_size=2)
    grads, batch = grads_and_batch(model)
    path = tmp_path / "tagger.npz"
    model.save(path)
    torch_model = load(path, backend="torch", dtype="float64")
    be = torch_model.backend
    _, t_grads = torch_model.loss_and_grads(batch)
    for name in grads:
        np.testing.assert_allclose(
            be.to_numpy(t_grads[name]), grads[name], rtol=1e-9, atol=1e-12, err_msg=name
        )
    assert torch_model.predict(TEXTS) == model.predict(TEXTS)


@pytest.mark.parametrize(
    "tag_seqs, error, match",
    [
        (
            TAG_SEQS[:2],
            ValueError,
            r"'tag_sequences' must hold one tag list per text: expected 5, got 2",
        ),
        (
            [*TAG_SEQS[:3], ["V"] * 5, TAG_SEQS[4]],
            ValueError,
            r"'tag_sequences'\[3\] must have one tag per token of 'texts'\[3\]: expected 6, got 5",
        ),
        (
            [*TAG_SEQS[:4], ["X"]],
            ValueError,
            r"'tag_sequences'\[4\]\[0\] must be one of the tags 'V', 'C', 'O' \(got 'X'\)",
        ),
        (
            [*TAG_SEQS[:4], "V"],
            TypeError,
            r"'tag_sequences'\[4\] must be a list of tag names \(got str\)",
        ),
    ],
)
def test_bad_tag_sequences_are_named(tag_seqs, error, match):
    with pytest.raises(error, match=match):
        small().fit(TEXTS, tag_seqs, steps=1)


def test_bad_arguments_are_named():
    vocab = Vocabulary.build(TEXTS)
    with pytest.raises(ValueError, match=r"'tags' holds 'A' twice: at 0 and 2"):
        SequenceTagger(vocab, ["A", "B", "A"])
    with pytest.raises(ValueError, match=r"'tags' must hold at least one tag name"):
        SequenceTagger(vocab, [])
    with pytest.raises(TypeError, match=r"'tags' must be a list of tag names \(got str\)"):
        SequenceTagger(vocab, "ABC")
    with pytest.raises(ValueError, match=r"'texts'\[1\] has no tokens"):
        small().fit(["ab", ""], [["V", "C"], []], steps=1)
