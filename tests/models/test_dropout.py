"""Dropout in every model: off outside training, p=0 bit for bit, the gradient with the masks
fixed equals finite differences, and NumPy equals torch with the same seed."""

import numpy as np
import pytest

import seqkit
from seqkit.context import Context
from seqkit.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger
from tests.helpers import check_model_gradients

TEXTS = ["abcab", "bca", "cabbac", "ab", "bb", "cab"]
LABELS = np.array([0, 1, 2, 1, 0, 2])
TAGS = [["x" if c == "a" else "y" for c in t] for t in TEXTS]
TARGETS = ["xy", "yyx", "x", "", "yxy", "y"]
KINDS = ["lm", "classifier", "tagger", "seq2seq"]


def build(kind, dropout, backend="numpy", **options):
    """A small two-layer model; ``dropout=None`` leaves the keyword out; ``options`` are more
    model keywords."""
    vocab = seqkit.Vocabulary.build(TEXTS, level="char")
    common = dict(
        cell="lstm",
        hidden_size=3,
        num_layers=2,
        embedding_size=2,
        head_sizes=(4,),
        backend=backend,
        dtype="float64",
        seed=1,
    )
    if dropout is not None:
        common["dropout"] = dropout
    common.update(options)
    if kind == "lm":
        return LanguageModel(vocab, **common), (TEXTS,)
    if kind == "classifier":
        return SequenceClassifier(vocab, 3, bidirectional=True, **common), (TEXTS, LABELS)
    if kind == "tagger":
        return SequenceTagger(vocab, ["x", "y"], bidirectional=True, **common), (TEXTS, TAGS)
    tgt = seqkit.Vocabulary.build(TARGETS, level="char")
    return Seq2Seq(vocab, tgt, **common), (TEXTS, TARGETS)


def outputs(kind, model, data):
    """Everything a trained model computes outside training."""
    out = {"evaluate": model.evaluate(*data)}
    if kind == "lm":
        out["log_prob"] = model.log_prob("abc")
        out["sample"] = model.sample(3, seed=0, max_len=5)
    elif kind == "classifier":
        out["predict_proba"] = model.predict_proba(TEXTS).tolist()
    elif kind == "tagger":
        out["predict"] = model.predict(TEXTS)
    else:
        out["log_prob"] = model.log_prob("abc", "xy")
        out["translate"] = model.translate(TEXTS, beam_size=2, max_len=4)
    return out


def assert_params_equal(a, b, **tolerance):
    assert set(a.numpy_params()) == set(b.numpy_params())
    for name, value in a.numpy_params().items():
        if tolerance:
            np.testing.assert_allclose(b.numpy_params()[name], value, err_msg=name, **tolerance)
        else:
            np.testing.assert_array_equal(b.numpy_params()[name], value, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_zero_trains_bit_for_bit_as_no_dropout(kind):
    zero, data = build(kind, 0.0)
    default, _ = build(kind, None)  # built without the keyword
    for model in (zero, default):
        model.fit(*data, steps=3, batch_size=4, lr=0.05, seed=2)
    assert_params_equal(zero, default)
    assert zero.training_state.history.losses == default.training_state.history.losses


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_never_changes_what_a_model_computes_outside_training(kind):
    with_dropout, data = build(kind, 0.5)
    without, _ = build(kind, 0.0)
    with_dropout.fit(*data, steps=2, batch_size=4, lr=0.05, seed=3)
    without._set_params(with_dropout.numpy_params())
    assert outputs(kind, with_dropout, data) == outputs(kind, without, data)
    # and training does see the masks: the training loss differs from the evaluation loss
    batch = with_dropout.batch(*data)
    ctx = Context(training=True, rng=np.random.default_rng(0))
    assert with_dropout.loss_and_grads(batch, ctx=ctx)[0] != with_dropout.loss(batch)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_with_the_masks_fixed_equal_finite_differences(kind):
    model, data = build(kind, 0.4)
    batch = model.batch(*data)

    def ctx():
        return Context(training=True, rng=np.random.default_rng(11))  # the same masks each call

    check_model_gradients(model, batch, ctx, np.random.default_rng(0))


@pytest.mark.parametrize("kind", KINDS)
def test_numpy_equals_torch_with_dropout_and_the_same_seed(kind, tmp_path):
    pytest.importorskip("torch")
    reference, data = build(kind, 0.3)
    path = tmp_path / "start.npz"
    reference.save(path)
    twin = seqkit.load(path, backend="torch", dtype="float64")
    assert twin.dropout == 0.3
    options = dict(steps=4, batch_size=4, lr=0.05, seed=5, weight_decay=0.01)
    reference.fit(*data, **options)
    twin.fit(*data, **options)
    np.testing.assert_allclose(
        twin.training_state.history.losses, reference.training_state.history.losses, rtol=1e-10
    )
    assert_params_equal(reference, twin, rtol=1e-10, atol=1e-12)


def test_dropout_is_validated_naming_the_argument():
    with pytest.raises(
        ValueError, match=r"'dropout' must be a probability in \[0, 1\) \(got 1\.0\)"
    ):
        build("lm", 1.0)
