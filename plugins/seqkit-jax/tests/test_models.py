"""Whole models on JAX: training equals the NumPy reference (dropout on), and checkpoints move
between numpy, torch and jax with the same probabilities."""

import numpy as np
import pytest

pytest.importorskip("jax")

import seqkit  # noqa: E402

TEXTS = ["anna", "bob", "carla", "dave", "eve", "frank", "gina", "hal"]


def _fit(backend):
    vocab = seqkit.Vocabulary.build(TEXTS, level="char")
    lm = seqkit.LanguageModel(
        vocab,
        cell="lstm",
        hidden_size=6,
        num_layers=2,
        dropout=0.3,
        backend=backend,
        dtype="float64",
        seed=0,
    )
    lm.fit(TEXTS, dev=TEXTS[:3], steps=6, batch_size=4, lr=0.01, weight_decay=0.01, seed=1)
    return lm


def test_a_language_model_trains_on_jax_as_on_numpy():
    ref, jx = _fit("numpy"), _fit("jax")
    p_ref, p_jx = ref.numpy_params(), jx.numpy_params()
    assert set(p_ref) == set(p_jx)
    for name in p_ref:
        np.testing.assert_allclose(p_jx[name], p_ref[name], rtol=1e-9, atol=1e-11, err_msg=name)
    assert jx.evaluate(TEXTS)["nats_per_token"] == pytest.approx(
        ref.evaluate(TEXTS)["nats_per_token"], rel=1e-10
    )


@pytest.mark.parametrize("source", ["numpy", "jax"])
def test_checkpoints_move_between_backends_with_the_same_probabilities(tmp_path, source):
    lm = _fit(source)
    path = tmp_path / "lm.npz"
    lm.save(path)
    targets = ["numpy", "jax"]
    try:
        import torch  # noqa: F401

        targets.append("torch")
    except ImportError:
        pass
    expected = lm.log_prob("anna")
    for target in targets:
        other = seqkit.load(path, backend=target, dtype="float64")
        assert other.log_prob("anna") == pytest.approx(expected, rel=1e-10), target
