"""One fit for every model: options, callbacks, dev data, early stopping, schedules."""

import math

import numpy as np
import pytest
from click.testing import CliRunner

import seqkit
from seqkit.callbacks import Callback
from seqkit.cli import cli
from seqkit.distributed import DistributedInfo
from seqkit.schedules import get_schedule
from seqkit.training import build_optimizer

TEXTS = ["anna", "anne", "bob", "bobby", "carl", "carla", "dana", "dan", "eve", "evelyn"]
DEV = ["annie", "bobo", "carlo"]


def lm(backend="numpy", **kwargs):
    vocab = seqkit.Vocabulary.build(TEXTS + DEV, level="char")
    return seqkit.LanguageModel(
        vocab, cell="gru", hidden_size=5, backend=backend, dtype="float64", seed=0, **kwargs
    )


class Recorder(Callback):
    """Records every hook call, and the parameters at every evaluation."""

    def __init__(self):
        self.calls, self.steps, self.evals, self.params = [], [], [], {}

    def on_begin(self, run):
        self.calls.append("begin")

    def on_step(self, run, step, loss):
        self.steps.append((step, loss))

    def on_eval(self, run, step, metrics):
        self.evals.append((step, metrics))
        self.params[step] = run.model.numpy_params()

    def on_end(self, run):
        self.calls.append("end")


# --- options ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, message",
    [
        ("steps", 0, "'steps' must be a positive integer (got 0)"),
        ("batch_size", 2.5, "'batch_size' must be a positive integer (got 2.5)"),
        ("lr", -1.0, "'lr' must be None or a positive finite number (got -1.0)"),
        ("optimizer", "adamx", "'optimizer' must be one of 'adagrad', 'adam', 'adamw', 'sgd'"),
        ("lr_schedule", "step", "'lr_schedule' must be one of 'constant', 'cosine', 'linear'"),
        ("warmup_steps", -1, "'warmup_steps' must be an integer >= 0 (got -1)"),
        ("clip_norm", math.nan, "'clip_norm' must be None or a positive finite number (got nan)"),
        ("patience", 0, "'patience' must be a positive integer (got 0)"),
        ("restore_best", 1, "'restore_best' must be True or False (got 1)"),
    ],
)
def test_options_are_validated_once_naming_the_field(field, value, message):
    with pytest.raises(ValueError) as info:
        seqkit.TrainingOptions(**{field: value})
    assert message in str(info.value)
    with pytest.raises(ValueError) as info:
        lm().fit(TEXTS, **{field: value})
    assert message in str(info.value)


def test_an_unknown_option_lists_the_options():
    with pytest.raises(TypeError, match=r"unknown training option 'step'; the options are: steps"):
        lm().fit(TEXTS, step=3)


def test_the_command_line_names_its_own_flag():
    result = CliRunner().invoke(
        cli, ["train", "--corpus", "surnames", "--out", "x.npz", "--lr", "-1"]
    )
    assert result.exit_code == 1
    assert "--lr must be None or a positive finite number (got -1.0)" in result.stderr


def test_command_line_options_are_the_fields_of_the_options_class():
    import attrs

    flags = {opt for p in cli.commands["train"].params for opt in p.opts}
    for field in attrs.fields(seqkit.TrainingOptions):
        assert "--" + field.name.replace("_", "-") in flags, field.name


def test_resume_with_a_changed_option_names_it(tmp_path):
    path = tmp_path / "m.npz"
    lm().fit(TEXTS, steps=2, batch_size=4, lr=0.01, seed=0, checkpoint=path)
    model = seqkit.load(path, backend="numpy", dtype="float64")
    with pytest.raises(ValueError, match=r"'lr_schedule': saved 'constant', now 'cosine'"):
        model.fit(TEXTS, steps=4, batch_size=4, lr=0.01, seed=0, lr_schedule="cosine", resume=True)
    with pytest.raises(ValueError, match=r"'optimizer': saved 'adam', now 'sgd'"):
        model.fit(TEXTS, steps=4, batch_size=4, lr=0.01, seed=0, optimizer="sgd", resume=True)


# --- callbacks ----------------------------------------------------------------------------------
def test_a_user_callback_sees_every_step_and_evaluation():
    rec = Recorder()
    history = lm().fit(
        TEXTS, dev=DEV, steps=7, batch_size=3, lr=0.01, seed=1, eval_every=3, callbacks=[rec]
    )
    assert rec.calls == ["begin", "end"]
    assert [s for s, _ in rec.steps] == list(range(1, 8))
    assert [loss for _, loss in rec.steps] == history.losses
    assert [s for s, _ in rec.evals] == [3, 6, 7]
    assert rec.evals == history.evals


def test_a_callback_can_stop_training():
    class StopAt(Callback):
        def on_step(self, run, step, loss):
            run.stop = step == 4

    history = lm().fit(TEXTS, steps=10, batch_size=3, seed=0, callbacks=[StopAt()])
    assert len(history.losses) == 4


# --- dev data and early stopping ----------------------------------------------------------------
def _overfitting_run(**kwargs):
    """A language model trained on one text, evaluated on others: dev loss falls, then rises."""
    rec = Recorder()
    model = lm()
    history = model.fit(
        ["bobby"] * 4,
        dev=DEV,
        steps=60,
        batch_size=4,
        lr=0.05,
        seed=0,
        eval_every=2,
        callbacks=[rec],
        **kwargs,
    )
    return model, history, rec


def test_early_stopping_restores_the_best_evaluation(tmp_path):
    path = tmp_path / "best.npz"
    model, history, rec = _overfitting_run(patience=3, checkpoint=path)
    devs = [m["nats_per_token"] for _, m in history.evals]
    best = int(np.argmin(devs))
    best_step = history.evals[best][0]
    assert best_step < history.evals[-1][0], "the dev loss never rose: the test shows nothing"
    assert len(history.evals) == best + 1 + 3  # stopped after 3 evaluations without progress
    assert len(history.losses) == history.evals[-1][0]
    for name, value in rec.params[best_step].items():
        np.testing.assert_array_equal(model.numpy_params()[name], value, err_msg=name)
    saved = seqkit.load(path, backend="numpy", dtype="float64")
    for name, value in rec.params[best_step].items():
        np.testing.assert_array_equal(saved.numpy_params()[name], value, err_msg=name)
    assert model.evaluate(DEV)["nats_per_token"] == pytest.approx(devs[best], rel=1e-12)


def test_without_restore_best_the_last_parameters_stay():
    model, history, rec = _overfitting_run(patience=3, restore_best=False)
    last = history.evals[-1][0]
    for name, value in rec.params[last].items():
        np.testing.assert_array_equal(model.numpy_params()[name], value, err_msg=name)


def test_early_stopping_resumes_exactly(tmp_path):
    whole, history, _ = _overfitting_run(patience=3)
    path = tmp_path / "part.npz"
    first = lm()
    options = dict(batch_size=4, lr=0.05, seed=0, eval_every=2, patience=3)
    first.fit(["bobby"] * 4, dev=DEV, steps=6, checkpoint=path, **options)
    resumed = seqkit.load(path, backend="numpy", dtype="float64")
    again = resumed.fit(["bobby"] * 4, dev=DEV, steps=60, resume=True, **options)
    assert again.evals == history.evals
    for name, value in whole.numpy_params().items():
        np.testing.assert_array_equal(resumed.numpy_params()[name], value, err_msg=name)


def test_dev_data_must_have_the_training_form():
    vocab = seqkit.Vocabulary.build(TEXTS, level="char")
    clf = seqkit.SequenceClassifier(vocab, 2, hidden_size=3, backend="numpy", seed=0)
    with pytest.raises(ValueError, match="'labels' must hold one label per text: expected 2"):
        clf.fit(TEXTS, [0, 1] * 5, dev=(TEXTS[:2], [0]), steps=1)
    with pytest.raises(TypeError, match="'texts' must be a sequence of strings"):
        lm().fit(TEXTS, dev="annie", steps=1)
    with pytest.raises(ValueError, match="'patience' needs dev data"):
        lm().fit(TEXTS, patience=2, steps=1)


# --- learning-rate schedules --------------------------------------------------------------------
@pytest.mark.parametrize(
    "schedule, warmup", [("linear", 0), ("cosine", 2), (lambda k: 1.0 / (k + 1), 0)]
)
def test_the_scheduled_lr_reaches_every_update(schedule, warmup):
    """SGD with a full batch, against the update written out by hand."""
    steps, lr = 5, 0.1
    model = lm()
    model.fit(
        TEXTS,
        steps=steps,
        batch_size=len(TEXTS),
        lr=lr,
        optimizer="sgd",
        clip_norm=None,
        lr_schedule=schedule,
        warmup_steps=warmup,
        seed=0,
    )
    manual = lm()
    multiplier = get_schedule(schedule, steps=steps, warmup_steps=warmup)
    batch = manual.batch(TEXTS)
    for k in range(steps):
        _, grads = manual.loss_and_grads(batch)
        for name, g in grads.items():
            manual.params[name] -= lr * multiplier(k) * g
    for name, value in manual.numpy_params().items():
        np.testing.assert_allclose(model.numpy_params()[name], value, rtol=1e-10, atol=1e-13)


def test_an_optimizer_object_with_weight_decay_trains_and_is_restored(tmp_path):
    """fit(optimizer=seqkit.Adam(...), weight_decay=w) is the functional AdamW update by hand,
    and the checkpoint brings back the same optimizer."""
    steps, opt = 4, seqkit.Adam(lr=0.02, betas=(0.8, 0.95), eps=1e-7)
    path = tmp_path / "adam.npz"
    model = lm()
    model.fit(
        TEXTS,
        steps=steps,
        batch_size=len(TEXTS),
        optimizer=opt,
        weight_decay=0.1,
        clip_norm=None,
        seed=0,
        checkpoint=path,
    )
    manual = lm()
    decayed = seqkit.Adam(lr=0.02, betas=(0.8, 0.95), eps=1e-7, weight_decay=0.1)
    ops, batch = manual.backend.ops, manual.batch(TEXTS)
    state = decayed.init_state(ops, manual.params)
    for _ in range(steps):
        _, grads = manual.loss_and_grads(batch)
        manual.params, state = decayed.update(ops, manual.params, grads, state)
    for name, value in manual.numpy_params().items():
        np.testing.assert_allclose(model.numpy_params()[name], value, rtol=1e-12, atol=1e-14)
    saved = seqkit.load(path).training_state.options
    assert seqkit.get_optimizer(saved["optimizer"]) == opt
    assert build_optimizer(saved["optimizer"], saved["lr"], saved["weight_decay"]) == decayed


# --- backends and processes ---------------------------------------------------------------------
def test_a_backend_without_data_parallel_training_says_so():
    model = lm()
    assert model.backend.data_parallel is None
    with pytest.raises(ValueError, match="backend 'numpy' does not train across processes"):
        model.fit(TEXTS, steps=1, batch_size=2, distributed=DistributedInfo(0, 2))


def test_dev_evaluation_and_early_stopping_agree_on_torch():
    pytest.importorskip("torch")
    runs = {}
    for name in ("numpy", "torch"):
        model = lm(name)
        history = model.fit(
            TEXTS, dev=DEV, steps=12, batch_size=4, lr=0.05, seed=0, eval_every=3, patience=2
        )
        runs[name] = (model.numpy_params(), history)
    (p, h), (q, g) = runs["numpy"], runs["torch"]
    assert [s for s, _ in h.evals] == [s for s, _ in g.evals]
    for (_, a), (_, b) in zip(h.evals, g.evals, strict=True):
        assert a["nats_per_token"] == pytest.approx(b["nats_per_token"], rel=1e-10)
    for name in p:
        np.testing.assert_allclose(q[name], p[name], rtol=1e-8, atol=1e-11, err_msg=name)
