import numpy as np
import pytest

import seqkit
from seqkit.models import SequenceClassifier, load
from seqkit.vocab import Vocabulary
from tests.helpers import numeric_grad

TEXTS = ["abcab", "bca", "c", "cabbac", "a"]  # variable lengths: padded steps in every batch
LABELS = [0, 1, 1, 1, 0]


def small(num_classes=2, cell="gru", **kwargs):
    vocab = Vocabulary.build(TEXTS, level="char")
    kwargs.setdefault("hidden_size", 3)
    return SequenceClassifier(
        vocab, num_classes, cell=cell, backend="numpy", dtype="float64", seed=0, **kwargs
    )


def grads_and_batch(model, labels=LABELS):
    batch = model.batch(TEXTS, labels)
    _, grads = model.loss_and_grads(batch)
    return grads, batch


@pytest.mark.parametrize(
    "cell, K, binary, layers, bidirectional, embedding, head",
    [
        ("lstm", 3, None, 1, False, None, ()),
        ("gru", 3, None, 2, True, None, ()),
        ("lstm", 2, None, 2, True, 2, (3,)),  # binary: sigmoid BCE
        ("rnn", 2, False, 2, False, 2, ()),  # two classes through a softmax
        ("gru_simple", 2, None, 1, True, None, ()),
    ],
)
def test_whole_model_gradients_match_finite_differences(
    cell, K, binary, layers, bidirectional, embedding, head
):
    model = small(
        K,
        cell,
        binary=binary,
        num_layers=layers,
        bidirectional=bidirectional,
        embedding_size=embedding,
        head_sizes=head,
    )
    labels = [label % K for label in [0, 2, 1, 2, 0]]
    grads, batch = grads_and_batch(model, labels)
    assert set(grads) == set(model.params)
    for name, arr in model.params.items():
        expected = numeric_grad(lambda: model.loss(batch), arr)
        np.testing.assert_allclose(grads[name], expected, rtol=1e-5, atol=1e-8, err_msg=name)
    # the loss reaches the first layer only through the final state
    assert np.abs(grads["rnn.weight_ih_l0"]).max() > 1e-6


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_does_not_change_a_prediction(bidirectional):
    # the head must read each text's own final state: the forward state after its last token,
    # the reverse state after its first, whatever the longer texts of the batch
    model = small(3, "lstm", num_layers=2, bidirectional=bidirectional)
    batch = model.predict_proba(TEXTS)
    alone = np.concatenate([model.predict_proba([t]) for t in TEXTS])
    np.testing.assert_allclose(batch, alone, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("K", [2, 3])
def test_probabilities_sum_to_one_and_predict_is_their_argmax(K):
    model = small(K)
    probs = model.predict_proba(TEXTS)
    assert probs.shape == (len(TEXTS), K)
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0)
    assert model.predict(TEXTS).dtype == np.int64
    np.testing.assert_array_equal(model.predict(TEXTS), probs.argmax(axis=1))


def test_binary_rule():
    assert small(2).binary and small(2).param_shapes()["head.0.bias"] == (1,)
    assert not small(2, binary=False).binary and small(2, binary=False).param_shapes()[
        "head.0.bias"
    ] == (2,)
    assert not small(3).binary and small(3).param_shapes()["head.0.bias"] == (3,)
    assert small(2).loss_fn.name == "sigmoid_bce"
    assert small(3).loss_fn.name == "softmax_cross_entropy"


@pytest.mark.parametrize("K", [2, 3])
def test_learns_the_first_token_across_a_long_filler(K):
    # the label is the first character; 8 to 15 random filler characters follow it
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for _ in range(200):
        k = int(rng.integers(K))
        texts.append("abc"[k] + "".join(rng.choice(list("xy"), size=int(rng.integers(8, 16)))))
        labels.append(k)
    vocab = Vocabulary.build(texts, level="char")
    model = SequenceClassifier(
        vocab, K, cell="gru", hidden_size=12, backend="numpy", dtype="float64", seed=0
    )
    model.fit(texts, labels, steps=150, batch_size=32, lr=0.03, seed=0)
    test = ["abc"[k] + filler for k in range(K) for filler in ("xyxyxxyyxy", "yyyyyyyyyyyyyy")]
    want = [k for k in range(K) for _ in range(2)]
    np.testing.assert_array_equal(model.predict(test), want)
    assert model.predict_proba(test)[np.arange(len(test)), want].min() > 0.9


def test_save_and_load_round_trip(tmp_path):
    model = small(3, "lstm", num_layers=2, bidirectional=True, embedding_size=2, head_sizes=(4,))
    path = tmp_path / "clf.npz"
    model.save(path)
    back = load(path, backend="numpy", dtype="float64")
    assert isinstance(back, SequenceClassifier) and back.vocab == model.vocab
    assert back.config() == model.config()
    np.testing.assert_array_equal(back.predict_proba(TEXTS), model.predict_proba(TEXTS))


def test_torch_autograd_agrees_with_the_hand_written_backward(tmp_path):
    pytest.importorskip("torch")
    model = small(2, "lstm", num_layers=2, bidirectional=True, embedding_size=2)
    grads, batch = grads_and_batch(model)
    path = tmp_path / "clf.npz"
    model.save(path)
    torch_model = load(path, backend="torch", dtype="float64")
    be = torch_model.backend
    _, t_grads = torch_model.loss_and_grads(batch)
    for name in grads:
        np.testing.assert_allclose(
            be.to_numpy(t_grads[name]), grads[name], rtol=1e-9, atol=1e-12, err_msg=name
        )
    np.testing.assert_allclose(
        torch_model.predict_proba(TEXTS), model.predict_proba(TEXTS), rtol=1e-9
    )


@pytest.mark.parametrize(
    "labels, error, match",
    [
        ([0, 1, 1], ValueError, r"'labels' must hold one label per text: expected 5, got 3"),
        ([0, 1, 2, 1, 0], ValueError, r"'labels'\[2\] must be a class id in 0\.\.1 \(got 2\)"),
        ([0, 1, -1, 1, 0], ValueError, r"'labels'\[2\] must be a class id in 0\.\.1 \(got -1\)"),
        ([0, 1, 1.0, 1, 0], TypeError, r"'labels'\[2\] must be an integer class id .*float"),
        ([0, 1, True, 1, 0], TypeError, r"'labels'\[2\] must be an integer class id .*bool"),
        ([0, 1, [1], 1, 0], TypeError, r"'labels'\[2\] must be an integer class id .*list"),
        ("01110", TypeError, r"'labels' must be a sequence of ints \(got str\)"),
    ],
)
def test_bad_labels_are_named(labels, error, match):
    with pytest.raises(error, match=match):
        small(2).fit(TEXTS, labels, steps=1)


def test_bad_arguments_are_named():
    vocab = Vocabulary.build(TEXTS)
    with pytest.raises(ValueError, match=r"'num_classes' must be an integer >= 2 \(got 1\)"):
        SequenceClassifier(vocab, 1)
    with pytest.raises(ValueError, match=r"'binary' must be .* \(got binary=True, num_classes=3\)"):
        SequenceClassifier(vocab, 3, binary=True)
    with pytest.raises(ValueError, match=r"'texts'\[1\] has no tokens \(got ''\)"):
        small().fit(["ab", ""], [0, 1], steps=1)
    with pytest.raises(ValueError, match=r"'texts'\[0\] has no tokens"):
        small().predict([""])
    with pytest.raises(TypeError, match=r"'texts' must be a sequence of strings \(got str\)"):
        small().predict("abc")


def test_is_exported_and_registered():
    assert seqkit.models.SequenceClassifier is SequenceClassifier
    assert "SequenceClassifier" in seqkit.models.__all__
