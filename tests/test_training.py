"""One fit for every model: options, callbacks, dev data, early stopping, schedules."""

import math

import numpy as np
import pytest
from click.testing import CliRunner

import seqkit
from seqkit import optim
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
    assert "--lr must be a positive finite number (got -1.0)" in result.stderr


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


# --- divergence ------------------------------------------------------------------------------


def spike_at(model, step, factor, *, grads=False):
    """Make training step ``step``'s loss (or its gradients) ``factor`` times larger."""
    calls = {"n": 0}
    real = model.loss_and_grads

    def loss_and_grads(batch, *, ctx=None):
        loss, g = real(batch, ctx=ctx)
        if ctx is not None and ctx.training:  # not the memory check's measurement
            calls["n"] += 1
            if calls["n"] == step:
                if grads:
                    g = {k: v * factor for k, v in g.items()}
                else:
                    loss = loss * factor
        return loss, g

    model.loss_and_grads = loss_and_grads


def params_after(steps, **options):
    """The parameters of an uninterrupted run of ``steps`` steps (the initial ones for 0)."""
    model = lm()
    if steps:
        model.fit(TEXTS, steps=steps, batch_size=4, seed=0, **options)
    return model.numpy_params()


def assert_params_equal(a, b):
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_huge_lr_diverges_and_keeps_the_last_good_parameters():
    model = lm()
    with pytest.raises(seqkit.TrainingDiverged) as info:
        model.fit(TEXTS, steps=30, batch_size=4, seed=0, lr=1e6)
    exc = info.value
    assert exc.good_step == exc.step - 2 >= 0
    assert f"step {exc.step}: the training loss" in str(exc) and "over 100 times" in str(exc)
    # "last good": exactly the parameters of a run stopped at that step
    assert_params_equal(model.numpy_params(), params_after(exc.good_step, lr=1e6))
    assert model.training_state is None  # no consistent state to resume from


@pytest.mark.parametrize(
    ("factor", "diverges"),
    [(99.0, False), (101.0, True), (math.inf, True), (math.nan, True)],
)
def test_the_divergence_rule_is_100_times_the_first_loss(factor, diverges):
    """A loss spike just under the bound passes (and the run goes on); just over, or
    non-finite, stops the run at that step with the parameters of two steps before."""
    model = lm()
    first = lm()
    first.fit(TEXTS, steps=1, batch_size=4, seed=0)
    ratio = factor * max(first.training_state.history.losses[0], 1.0)
    spike_at(model, 5, ratio / model_loss_at(5))
    if not diverges:
        model.fit(TEXTS, steps=8, batch_size=4, seed=0)
        return
    with pytest.raises(seqkit.TrainingDiverged, match="step 5: the training loss") as info:
        model.fit(TEXTS, steps=8, batch_size=4, seed=0)
    assert (info.value.step, info.value.good_step) == (5, 3)
    assert_params_equal(model.numpy_params(), params_after(3))


def model_loss_at(step):
    """The loss of an undisturbed run at ``step``."""
    model = lm()
    model.fit(TEXTS, steps=step, batch_size=4, seed=0)
    return model.training_state.history.losses[step - 1]


def test_a_non_finite_gradient_keeps_the_parameters_of_the_step_before():
    model = lm()
    spike_at(model, 4, math.inf, grads=True)
    with pytest.raises(
        seqkit.TrainingDiverged, match=r"step 4: the gradient norm is (inf|nan)"
    ) as info:
        model.fit(TEXTS, steps=8, batch_size=4, seed=0)
    assert info.value.good_step == 3
    assert_params_equal(model.numpy_params(), params_after(3))
    assert model.training_state.step == 3  # consistent with the parameters: resumable


@pytest.mark.parametrize(
    ("clip", "advice"),
    [(5.0, "lower 'lr' ('clip_norm' is 5)"), (None, "lower 'lr' or set 'clip_norm'")],
)
def test_divergence_advice_is_true(clip, advice):
    model = lm()
    spike_at(model, 3, math.nan)
    with pytest.raises(seqkit.TrainingDiverged) as info:
        model.fit(TEXTS, steps=5, batch_size=4, seed=0, clip_norm=clip)
    assert str(info.value).endswith(advice)


def test_runs_with_high_learning_rates_that_converge_never_trip_the_rule():
    """Warm-up, a cosine schedule and high rates for Adam and SGD: no false divergence, and
    the largest loss stays far under the bound (measured ratios: docs/training.rst)."""
    for options in (
        {"optimizer": "adam", "lr": 0.1, "warmup_steps": 20, "lr_schedule": "cosine"},
        {"optimizer": "sgd", "lr": 3.0, "warmup_steps": 10},
        {"optimizer": "adam", "lr": 0.3},
    ):
        model = lm()
        history = model.fit(TEXTS, steps=80, batch_size=4, seed=0, **options)
        assert max(history.losses) < 10 * max(history.losses[0], 1.0), options


def test_divergence_restores_the_last_good_parameters_on_torch():
    pytest.importorskip("torch")
    model, ref = lm("torch"), lm("torch")
    spike_at(model, 6, 1e6)
    with pytest.raises(seqkit.TrainingDiverged) as info:
        model.fit(TEXTS, steps=9, batch_size=4, seed=0)
    assert (info.value.step, info.value.good_step) == (6, 4)
    ref.fit(TEXTS, steps=4, batch_size=4, seed=0)
    assert_params_equal(model.numpy_params(), ref.numpy_params())


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_an_update_that_makes_a_parameter_non_finite_is_never_kept(
    tmp_path, monkeypatch, backend, bad
):
    """A finite loss and gradient whose update overflows (a huge lr, a crafted optimizer state)
    stops the run at that step; the model, every evaluation and every checkpoint keep the
    parameters from before it."""
    if backend == "torch":
        pytest.importorskip("torch")
    real = optim.Adam.update

    def update(self, ops, params, grads, state, **kwargs):
        params, state = real(self, ops, params, grads, state, **kwargs)
        if state["step"] == 3:
            poisoned = ops.to_numpy(params["head.0.bias"]).copy()
            poisoned[1] = bad
            params = {**params, "head.0.bias": ops.asarray(poisoned)}
        return params, state

    monkeypatch.setattr(optim.Adam, "update", update)
    model, seen = lm(backend), Recorder()
    path = tmp_path / "m.npz"
    with pytest.raises(seqkit.TrainingDiverged) as info:
        model.fit(
            TEXTS, dev=DEV, steps=6, batch_size=4, seed=0, eval_every=1, callbacks=[seen],
            checkpoint=path, checkpoint_every=1,
        )  # fmt: skip
    exc = info.value
    assert (exc.step, exc.good_step) == (3, 2)
    assert "step 3: the update made 'head.0.bias' NaN or infinite" in str(exc)
    assert sorted(seen.params) == [1, 2]  # evaluated after steps 1 and 2, never after 3
    assert all(np.isfinite(p).all() for params in seen.params.values() for p in params.values())
    assert_params_equal(model.numpy_params(), seen.params[2])
    saved = seqkit.load(path, seqkit.get_backend("numpy", dtype="float64"))
    assert_params_equal(saved.numpy_params(), seen.params[2])  # step 2's checkpoint
