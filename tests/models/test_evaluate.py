"""Every model's ``evaluate`` against the same metrics computed by hand."""

import math

import numpy as np
import pytest

import seqkit

TEXTS = ["ab", "ba", "aab", "bba", "abab", "b"]
COMMON = dict(cell="gru", hidden_size=4, backend="numpy", dtype="float64", seed=3)


def vocab(texts=TEXTS):
    return seqkit.Vocabulary.build(texts, level="char")


def test_language_model_nats_per_token_and_perplexity():
    model = seqkit.LanguageModel(vocab(), **COMMON)
    per = model.token_log_probs(TEXTS)
    nats = -sum(float(p.sum()) for p in per) / sum(len(t) + 1 for t in TEXTS)
    metrics = model.evaluate(TEXTS)
    assert metrics["nats_per_token"] == pytest.approx(nats, rel=1e-12)
    assert metrics["perplexity"] == pytest.approx(math.exp(nats), rel=1e-12)
    # the training loss of the same batch is the same mean
    assert model.loss(model.batch(TEXTS)) == pytest.approx(nats, rel=1e-12)


def test_a_perplexity_that_overflows_is_inf():
    model = seqkit.LanguageModel(vocab(), **COMMON)
    model.params["head.0.bias"][model.vocab.token_to_id("a")] = 1e4  # every other token: ~1e-4343
    metrics = model.evaluate(["bbb"])
    assert metrics["nats_per_token"] > 1000 and metrics["perplexity"] == math.inf
    assert model.perplexity(["bbb"]) == math.inf


@pytest.mark.parametrize("num_classes", [2, 3])
def test_classifier_loss_and_accuracy(num_classes):
    labels = [i % num_classes for i in range(len(TEXTS))]
    model = seqkit.SequenceClassifier(vocab(), num_classes, bidirectional=True, **COMMON)
    probs = model.predict_proba(TEXTS)
    loss = -np.mean([math.log(probs[i, y]) for i, y in enumerate(labels)])
    accuracy = np.mean([int(np.argmax(probs[i])) == y for i, y in enumerate(labels)])
    metrics = model.evaluate(TEXTS, labels)
    assert metrics == {"loss": pytest.approx(loss, rel=1e-12), "accuracy": accuracy}
    assert model.loss(model.batch(TEXTS, labels)) == pytest.approx(loss, rel=1e-10)
    assert accuracy == np.mean(model.predict(TEXTS) == np.array(labels))


def test_tagger_loss_and_token_accuracy():
    tags = [["x" if c == "a" else "y" for c in t] for t in TEXTS]
    tags[0] = ["y", "y"]  # not learnable from the letters: accuracy below 1 is possible
    model = seqkit.SequenceTagger(vocab(), ["x", "y"], **COMMON)
    model.fit(TEXTS, tags, steps=5, batch_size=3, lr=0.05, seed=0)
    probs = model.predict_proba(TEXTS)
    picked = [p[j, ["x", "y"].index(tag)] for p, ts in zip(probs, tags) for j, tag in enumerate(ts)]
    predicted = [tag for ts in model.predict(TEXTS) for tag in ts]
    gold = [tag for ts in tags for tag in ts]
    metrics = model.evaluate(TEXTS, tags)
    assert metrics["loss"] == pytest.approx(-np.mean(np.log(picked)), rel=1e-12)
    assert metrics["token_accuracy"] == np.mean([a == b for a, b in zip(predicted, gold)])
    assert model.loss(model.batch(TEXTS, tags)) == pytest.approx(metrics["loss"], rel=1e-10)


def test_seq2seq_loss_and_exact_match():
    targets = [t[::-1] for t in TEXTS]
    model = seqkit.Seq2Seq(vocab(), vocab(targets), **COMMON)
    model.fit(TEXTS, targets, steps=30, batch_size=6, lr=0.05, seed=0)
    per = model.token_log_probs(TEXTS, targets)
    loss = -sum(float(p.sum()) for p in per) / sum(len(t) + 1 for t in targets)
    hits = np.mean([a == b for a, b in zip(model.translate(TEXTS), targets)])
    metrics = model.evaluate(TEXTS, targets)
    assert metrics == {"loss": pytest.approx(loss, rel=1e-12), "exact_match": hits}
    assert model.loss(model.batch(TEXTS, targets)) == pytest.approx(loss, rel=1e-10)


@pytest.mark.parametrize("kind", ["classifier", "tagger", "seq2seq"])
def test_every_model_takes_dev_data_and_early_stopping(kind):
    v = vocab()
    if kind == "classifier":
        model = seqkit.SequenceClassifier(v, 2, **COMMON)
        data = (TEXTS, [len(t) % 2 for t in TEXTS])
    elif kind == "tagger":
        model = seqkit.SequenceTagger(v, ["x", "y"], **COMMON)
        data = (TEXTS, [["x" if c == "a" else "y" for c in t] for t in TEXTS])
    else:
        model = seqkit.Seq2Seq(v, v, **COMMON)
        data = (TEXTS, [t[::-1] for t in TEXTS])
    history = model.fit(*data, dev=data, steps=6, batch_size=3, seed=0, eval_every=2, patience=5)
    assert [s for s, _ in history.evals] == [2, 4, 6]
    best = min(metrics[model.monitor] for _, metrics in history.evals)
    assert model.evaluate(*data)[model.monitor] == pytest.approx(best, rel=1e-12)


# --- against values computed by hand: every parameter zero but the output bias -------------------
# With zero weights the recurrent state stays 0 (h = 0 for every cell here), so every step's
# logits are the output bias b and every probability is softmax(b): the metrics follow from
# counting tokens, with no model code involved.
def constant(model, bias_name, bias):
    params = {name: np.zeros_like(value) for name, value in model.numpy_params().items()}
    params[bias_name] = np.asarray(bias, dtype=np.float64)
    model._set_params(params)
    return model


def log_softmax(b):
    b = np.asarray(b, dtype=np.float64)
    return b - np.log(np.exp(b).sum())


def test_language_model_metrics_by_hand():
    v = vocab()
    bias = np.linspace(-1.0, 1.5, len(v))
    model = constant(seqkit.LanguageModel(v, **COMMON), "head.0.bias", bias)
    ids = [i for t in TEXTS for i in v.encode(t) + [v.eos_id]]
    nats = -float(np.mean(log_softmax(bias)[ids]))
    metrics = model.evaluate(TEXTS)
    assert metrics["nats_per_token"] == pytest.approx(nats, rel=1e-12)
    assert metrics["perplexity"] == pytest.approx(math.exp(nats), rel=1e-12)


def test_classifier_metrics_by_hand():
    labels = [0, 2, 2, 1, 2, 0]
    bias = [0.3, -0.2, 0.9]  # class 2 is predicted for every text
    model = seqkit.SequenceClassifier(vocab(), 3, **COMMON)
    constant(model, "head.0.bias", bias)
    loss = -np.mean(log_softmax(bias)[labels])
    assert model.evaluate(TEXTS, labels) == {
        "loss": pytest.approx(loss, rel=1e-12),
        "accuracy": 0.5,
    }
    binary = constant(seqkit.SequenceClassifier(vocab(), 2, **COMMON), "head.0.bias", [-0.4])
    p1 = 1 / (1 + math.exp(0.4))  # P(class 1) = sigmoid(-0.4) < 1/2: class 0 everywhere
    y = [0, 1, 1, 0, 0, 1]
    loss = -np.mean([math.log(p1 if label else 1 - p1) for label in y])
    assert binary.evaluate(TEXTS, y) == {"loss": pytest.approx(loss, rel=1e-12), "accuracy": 0.5}


def test_tagger_metrics_by_hand():
    tags = [["x" if c == "a" else "y" for c in t] for t in TEXTS]
    bias = [0.25, -0.5]  # "x" everywhere
    model = constant(seqkit.SequenceTagger(vocab(), ["x", "y"], **COMMON), "head.0.bias", bias)
    gold = [["x", "y"].index(tag) for ts in tags for tag in ts]
    metrics = model.evaluate(TEXTS, tags)
    assert metrics["loss"] == pytest.approx(-np.mean(log_softmax(bias)[gold]), rel=1e-12)
    assert metrics["token_accuracy"] == pytest.approx(gold.count(0) / len(gold), rel=1e-15)


def test_seq2seq_metrics_by_hand():
    targets = ["", "ba", "", "b", "ab", ""]
    tv = vocab(["ab"])
    bias = np.full(len(tv), -1.0)
    bias[tv.eos_id] = 2.0  # greedy decoding ends at once: "" for every source
    bias[tv.pad_id] = 3.0  # the most likely token, but never proposed by decoding
    model = seqkit.Seq2Seq(vocab(), tv, **COMMON)
    constant(model, "decoder.head.0.bias", bias)
    ids = [i for t in targets for i in tv.encode(t) + [tv.eos_id]]
    metrics = model.evaluate(TEXTS, targets)
    assert metrics["loss"] == pytest.approx(-np.mean(log_softmax(bias)[ids]), rel=1e-12)
    assert metrics["exact_match"] == 0.5
