"""The recurrent stack's options in every model: passed to the stack, p=0 bit for bit, outside
training only zoneout's expectation, gradients with the masks fixed and a learned initial state
equal finite differences, NumPy equals torch, checkpoints and exact resume."""

import attrs
import numpy as np
import pytest

import seqkit
from seqkit.blocks import Stack
from seqkit.checkpoint import Checkpoint, CheckpointError, read_checkpoint, save_checkpoint
from seqkit.context import Context
from seqkit.models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger
from seqkit.recurrent import RECURRENT_OPTIONS
from tests.helpers import check_model_gradients
from tests.models.test_dropout import (
    KINDS,
    assert_params_equal,
    outputs,
)
from tests.models.test_dropout import build as dropout_model

#: every option on at once (an LSTM takes all of them)
ALL = dict(
    proj_size=2,
    recurrent_init="orthogonal",
    forget_bias=1.0,
    recurrent_dropout=0.3,
    input_dropout=0.2,
    zoneout=0.2,
    learn_initial_state=True,
)


def build(kind, backend="numpy", **options):
    """test_dropout's small two-layer LSTM model with these options."""
    return dropout_model(kind, options.pop("dropout", None), backend, **options)


def stacks(model):
    return [block.layer for _, block in model.network.walk() if isinstance(block, Stack)]


FIT = dict(steps=3, batch_size=4, lr=0.05, seed=2)


@pytest.mark.parametrize("kind", KINDS)
def test_every_model_passes_its_options_to_its_stacks(kind):
    model, _ = build(kind, **ALL)
    layers = stacks(model)
    assert len(layers) == (2 if kind == "seq2seq" else 1)
    for layer in layers:
        for name, value in ALL.items():
            if name != "learn_initial_state":
                assert getattr(layer, name) == value, name
    # a decoder always starts from the encoder's state: only the encoder learns one
    assert [layer.learn_initial_state for layer in layers] == [True] + [False] * (len(layers) - 1)
    assert "rnn.h0" in model.params or "encoder.rnn.h0" in model.params
    assert {k: model.config()[k] for k in RECURRENT_OPTIONS} == ALL


def test_the_options_are_keywords_of_every_model_signature():
    import inspect

    for cls in (LanguageModel, SequenceClassifier, SequenceTagger, Seq2Seq):
        names = inspect.signature(cls).parameters
        assert all(names[n].kind is inspect.Parameter.KEYWORD_ONLY for n in RECURRENT_OPTIONS)
    with pytest.raises(TypeError, match="unexpected keyword argument 'zonout'.*zoneout"):
        build("lm", zonout=0.1)
    with pytest.raises(ValueError, match="'proj_size' needs a cell that allows a projection"):
        build("lm", proj_size=2, cell="gru")
    with pytest.raises(ValueError, match=r"'recurrent_dropout' must be a probability"):
        build("tagger", recurrent_dropout=-0.1)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_probabilities_train_bit_for_bit_as_no_option(kind):
    zero, data = build(kind, recurrent_dropout=0.0, input_dropout=0.0, zoneout=0.0, dropout=0.2)
    default, _ = build(kind, dropout=0.2)
    for model in (zero, default):
        model.fit(*data, **FIT)
    assert_params_equal(zero, default)
    assert zero.training_state.history.losses == default.training_state.history.losses


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_and_input_dropout_change_nothing_outside_training(kind):
    masked, data = build(kind, recurrent_dropout=0.5, input_dropout=0.5)
    plain, _ = build(kind)
    masked.fit(*data, **FIT)
    plain._set_params(masked.numpy_params())
    assert outputs(kind, masked, data) == outputs(kind, plain, data)
    batch = masked.batch(*data)
    ctx = Context(training=True, rng=np.random.default_rng(0))
    assert masked.loss_and_grads(batch, ctx=ctx)[0] != masked.loss(batch)


def test_zoneout_outside_training_is_its_expectation_in_the_model():
    """Evaluation of a zoneout model is the p-mixture, not the plain recursion."""
    zoned, data = build("lm", zoneout=0.3)
    plain, _ = build("lm")
    assert zoned.log_prob("abc") != plain.log_prob("abc")
    layer = stacks(zoned)[0]
    assert layer.zoneout == 0.3 and layer.loop_options


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_with_the_masks_fixed_equal_finite_differences(kind):
    model, data = build(kind, **ALL)
    # a learned initial state away from zero, so that its gradient path is exercised
    values = model.numpy_params()
    rng = np.random.default_rng(3)
    for name in values:
        if name.endswith(("rnn.h0", "rnn.c0")):
            values[name] = rng.normal(size=values[name].shape) * 0.5
    model._set_params(values)
    batch = model.batch(*data)

    def ctx():
        return Context(training=True, rng=np.random.default_rng(11))  # the same masks each call

    check_model_gradients(model, batch, ctx, rng)


@pytest.mark.parametrize("kind", KINDS)
def test_numpy_equals_torch_in_training_with_the_same_seed(kind, tmp_path):
    pytest.importorskip("torch")
    reference, data = build(kind, **ALL)
    path = tmp_path / "start.npz"
    reference.save(path)
    twin = seqkit.load(path, backend="torch", dtype="float64")
    assert twin.recurrent_options == reference.recurrent_options
    options = dict(steps=4, batch_size=4, lr=0.05, seed=5)
    reference.fit(*data, **options)
    twin.fit(*data, **options)
    np.testing.assert_allclose(
        twin.training_state.history.losses, reference.training_state.history.losses, rtol=1e-10
    )
    assert_params_equal(reference, twin, rtol=1e-10, atol=1e-10)


def test_jax_trains_with_every_option_as_numpy_does(tmp_path):
    pytest.importorskip("jax")
    reference, data = build("lm", **ALL)
    path = tmp_path / "start.npz"
    reference.save(path)
    twin = seqkit.load(path, backend="jax", dtype="float64")
    options = dict(steps=3, batch_size=4, lr=0.05, seed=5)
    reference.fit(*data, **options)
    twin.fit(*data, **options)
    assert_params_equal(reference, twin, rtol=1e-9, atol=1e-9)


def test_learned_initial_state_trains_and_round_trips_a_checkpoint(tmp_path):
    model, data = build("lm", learn_initial_state=True)
    assert model.param_shapes()["rnn.h0"] == (2, 3) and model.param_shapes()["rnn.c0"] == (2, 3)
    assert not model.numpy_params()["rnn.h0"].any()  # starts at zero ...
    plain, _ = build("lm")
    for name, value in plain.numpy_params().items():  # ... and draws nothing
        np.testing.assert_array_equal(model.numpy_params()[name], value)
    model.fit(*data, **FIT)
    assert model.numpy_params()["rnn.h0"].any()  # it learned
    path = tmp_path / "m.npz"
    model.save(path)
    back = seqkit.load(path, backend="numpy", dtype="float64")
    assert_params_equal(model, back)
    assert back.log_prob("abc") == model.log_prob("abc")
    assert back.sample(2, seed=1) == model.sample(2, seed=1)
    # the reader checks the members against the config's shapes: without the option, h0 is
    # a parameter the config does not have
    saved = read_checkpoint(path)
    config = dict(saved.config, learn_initial_state=False)
    bad = tmp_path / "bad.npz"
    save_checkpoint(bad, attrs.evolve(saved, config=config))
    with pytest.raises(CheckpointError, match=r"rnn\.c0"):
        seqkit.load(bad, backend="numpy")
    wrong = dict(saved.params, **{"rnn.h0": np.zeros((2, 4))})
    save_checkpoint(bad, Checkpoint(saved.kind, saved.config, wrong, saved.extra))
    with pytest.raises(CheckpointError, match=r"rnn\.h0"):
        seqkit.load(bad, backend="numpy")


@pytest.mark.parametrize("kind", ["lm", "classifier"])
def test_resume_with_every_option_on_is_exact(kind, tmp_path):
    options = dict(batch_size=4, lr=0.05, seed=7)
    whole, data = build(kind, dropout=0.2, **ALL)
    whole.fit(*data, steps=8, **options)
    first, _ = build(kind, dropout=0.2, **ALL)
    path = tmp_path / "ckpt.npz"
    first.fit(*data, steps=4, checkpoint=path, checkpoint_every=2, **options)
    resumed = seqkit.load(path, backend="numpy", dtype="float64")
    assert resumed.training_state.step == 4
    resumed.fit(*data, steps=8, resume=True, **options)
    assert_params_equal(whole, resumed)
    assert resumed.training_state.history.losses == whole.training_state.history.losses
