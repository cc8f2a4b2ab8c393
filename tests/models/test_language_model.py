import numpy as np
import pytest

import seqkit
from seqkit.models import LanguageModel, load
from seqkit.vocab import Vocabulary
from tests.helpers import numeric_grad

TEXTS = ["abcab", "bca", "", "cabbac", "a"]


def small(cell="gru", embedding_size=None, **kwargs):
    vocab = Vocabulary.build(TEXTS, level="char")
    return LanguageModel(
        vocab,
        cell=cell,
        hidden_size=4,
        embedding_size=embedding_size,
        backend="numpy",
        dtype="float64",
        seed=0,
        **kwargs,
    )


@pytest.mark.parametrize(
    "cell, embedding_size, head",
    [("gru", None, ()), ("lstm", 3, (5,)), ("gru_simple", None, ()), ("rnn", 3, ())],
)
def test_whole_model_gradients_match_finite_differences(cell, embedding_size, head):
    model = small(cell, embedding_size, head_sizes=head, num_layers=2)
    batch = model.batch(TEXTS)
    loss, grads = model.loss_and_grads(batch)
    assert set(grads) == set(model.params)
    for name, arr in model.params.items():
        expected = numeric_grad(lambda: model.loss(batch), arr)
        np.testing.assert_allclose(grads[name], expected, rtol=1e-5, atol=1e-8, err_msg=name)


def test_log_prob_is_the_chain_rule():
    model = small()
    text = "cab"
    total = 0.0
    for k in range(len(text) + 1):
        probs = model.next_token_probs(text[:k])
        assert probs.shape == (len(model.vocab),)
        assert np.all(probs >= 0) and np.isclose(probs.sum(), 1.0)
        nxt = model.vocab.eos_id if k == len(text) else model.vocab.token_to_id(text[k])
        total += np.log(probs[nxt])
    assert model.log_prob(text) == pytest.approx(total, rel=1e-12)
    per = model.token_log_probs([text])[0]
    assert len(per) == len(text) + 1 and per.sum() == pytest.approx(total, rel=1e-12)


def test_perplexity_definition():
    model = small()
    n_tokens = sum(len(t) + 1 for t in TEXTS)
    nats = -sum(model.log_prob(t) for t in TEXTS) / n_tokens
    assert model.perplexity(TEXTS) == pytest.approx(np.exp(nats), rel=1e-12)


def test_learns_a_task_that_needs_memory():
    # the last character repeats the first, across a run of filler that carries no information
    rng = np.random.default_rng(0)
    texts = []
    for _ in range(200):
        first = "ab"[rng.integers(2)]
        texts.append(first + "x" * int(rng.integers(3, 8)) + first)
    vocab = Vocabulary.build(texts, level="char")
    model = LanguageModel(
        vocab, cell="gru", hidden_size=16, backend="numpy", dtype="float64", seed=1
    )
    model.fit(texts, steps=300, batch_size=32, lr=0.02, seed=0)
    for first in "ab":
        probs = model.next_token_probs(first + "xxxxx")
        other = "ba"["ab".index(first)]
        x = vocab.token_to_id("x")
        # after the filler, the first character (not the other one) must carry the end-probability mass
        assert probs[vocab.token_to_id(first)] > 0.2 + probs[vocab.token_to_id(other)], probs[[x]]


def test_sampling_is_reproducible_and_greedy_is_temperature_zero():
    model = small()
    model.fit(TEXTS * 10, steps=30, batch_size=8, lr=0.05, seed=0)
    assert model.sample(4, seed=3) == model.sample(4, seed=3)
    greedy = model.sample(2, sampler="greedy", max_len=6)
    cold = model.sample(2, temperature=1e-6, max_len=6, seed=9)
    assert greedy == cold
    assert all(s.startswith("ab") for s in model.sample(3, prefix="ab", seed=1))


def test_save_and_load_round_trip(tmp_path):
    model = small("lstm", 3)
    path = tmp_path / "lm.npz"
    model.save(path)
    back = load(path, backend="numpy", dtype="float64")
    assert isinstance(back, LanguageModel) and back.vocab == model.vocab
    assert back.log_prob("abc") == model.log_prob("abc")


def test_non_finite_training_stops_and_keeps_last_good_parameters():
    model = small()
    model.params["head.0.bias"][0] = np.inf  # the seed's exploding case: an overflowed value
    before = model.numpy_params()
    with pytest.raises(
        seqkit.TrainingDiverged,
        match=r"step 1: the (training loss|gradient norm) is (nan|inf).*keeps its initial parameters",
    ):
        model.fit(TEXTS, steps=3, batch_size=2, lr=0.1, seed=0)
    after = model.numpy_params()
    assert all(np.array_equal(before[k], after[k]) for k in before)
