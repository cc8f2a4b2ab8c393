"""Whole architectures agree across backends: losses, gradients, probabilities, samples, checkpoints.

The NumPy reference (hand-written BPTT and heads) against the PyTorch backend (autograd, fused
kernels where a cell has one), in float64, for every architecture, cell and shape Hypothesis
draws; a model saved on one backend gives the same numbers on the other.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqkit
from seqkit.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger

pytest.importorskip("torch")

TEXTS = ["abcab", "bca", "cabbac", "a", "bb"]
LABELS = [0, 1, 2, 1, 0]
TAGS = [["x" if c == "a" else "y" for c in t] for t in TEXTS]
TARGETS = ["xy", "yyx", "x", "", "yxy"]
CELLS = ["rnn", "gru", "gru_simple", "lstm"]


def build(kind, cell, layers, bidirectional, embedding, head, backend="numpy"):
    vocab = seqkit.Vocabulary.build(TEXTS, level="char")
    common = dict(
        cell=cell,
        hidden_size=3,
        num_layers=layers,
        embedding_size=embedding,
        head_sizes=head,
        backend=backend,
        dtype="float64",
        seed=1,
    )
    if kind == "lm":
        return LanguageModel(vocab, **common), (TEXTS,)
    if kind == "classifier":
        return SequenceClassifier(vocab, 3, bidirectional=bidirectional, **common), (
            TEXTS,
            np.array(LABELS),
        )
    if kind == "binary":
        return SequenceClassifier(vocab, 2, bidirectional=bidirectional, **common), (
            TEXTS,
            np.array(LABELS) % 2,
        )
    if kind == "tagger":
        return SequenceTagger(vocab, ["x", "y"], bidirectional=bidirectional, **common), (
            TEXTS,
            TAGS,
        )
    tgt = seqkit.Vocabulary.build(TARGETS, level="char")
    return Seq2Seq(vocab, tgt, **common), (TEXTS, TARGETS)


def on_torch(model, tmp_path):
    path = tmp_path / "model.npz"
    model.save(path)
    return seqkit.load(path, backend="torch", dtype="float64")


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(["lm", "classifier", "binary", "tagger", "seq2seq"]),
    cell=st.sampled_from(CELLS),
    layers=st.integers(1, 2),
    bidirectional=st.booleans(),
    embedding=st.sampled_from([None, 2]),
    head=st.sampled_from([(), (4,)]),
)
def test_loss_and_every_gradient_agree(
    tmp_path_factory, kind, cell, layers, bidirectional, embedding, head
):
    model, data = build(kind, cell, layers, bidirectional, embedding, head)
    twin = on_torch(model, tmp_path_factory.mktemp("m"))
    batch = model.batch(*data)
    loss, grads = model.loss_and_grads(batch)
    t_loss, t_grads = twin.loss_and_grads(batch)
    assert t_loss == pytest.approx(loss, rel=1e-10)
    assert set(grads) == set(t_grads) == set(model.params)
    for name in grads:
        np.testing.assert_allclose(
            twin.backend.to_numpy(t_grads[name]), grads[name], rtol=1e-8, atol=1e-11, err_msg=name
        )


@pytest.mark.parametrize("cell", CELLS)
def test_language_model_probabilities_and_samples_agree(tmp_path, cell):
    model, _ = build("lm", cell, 2, False, None, ())
    model.fit(TEXTS * 4, steps=20, batch_size=5, lr=0.05, seed=0)
    twin = on_torch(model, tmp_path)
    for prefix in ["", "a", "ca"]:
        p, q = model.next_token_probs(prefix), twin.next_token_probs(prefix)
        np.testing.assert_allclose(q, p, rtol=1e-10, atol=1e-14)
        assert np.all(p >= 0) and p.sum() == pytest.approx(1.0, abs=1e-12)
    assert twin.log_prob("cab") == pytest.approx(model.log_prob("cab"), rel=1e-10)
    assert twin.perplexity(TEXTS) == pytest.approx(model.perplexity(TEXTS), rel=1e-10)
    # sampling happens on the host from the same distribution: the same seed, the same names
    assert twin.sample(6, seed=4, temperature=0.8, top_k=3) == model.sample(
        6, seed=4, temperature=0.8, top_k=3
    )


def test_predictions_agree_for_the_other_architectures(tmp_path):
    clf, _ = build("classifier", "lstm", 1, True, None, ())
    np.testing.assert_allclose(
        on_torch(clf, tmp_path).predict_proba(TEXTS), clf.predict_proba(TEXTS), rtol=1e-10
    )
    tagger, _ = build("tagger", "gru", 2, True, 2, ())
    for a, b in zip(on_torch(tagger, tmp_path).predict_proba(TEXTS), tagger.predict_proba(TEXTS)):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    s2s, _ = build("seq2seq", "gru", 1, False, None, ())
    assert on_torch(s2s, tmp_path).translate(TEXTS, beam_size=3) == s2s.translate(
        TEXTS, beam_size=3
    )


def test_trained_on_torch_scored_on_numpy(tmp_path):
    model, _ = build("lm", "lstm", 1, False, None, (), backend="torch")
    model.fit(TEXTS * 4, steps=15, batch_size=5, lr=0.05, seed=0)
    path = tmp_path / "lm.npz"
    model.save(path)
    back = seqkit.load(path, backend="numpy", dtype="float64")
    assert back.log_prob("abc") == pytest.approx(model.log_prob("abc"), rel=1e-10)
