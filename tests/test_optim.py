"""seqkit.optim: SGD, Adagrad and Adam step for step against torch.optim, state, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from seqkit_numpy import NumpyOps

from seqkit.errors import ShapeError, UnknownNameError
from seqkit.optim import SGD, Adagrad, Adam, AdamW, Optimizer, get_optimizer, list_optimizers

torch = pytest.importorskip("torch")
from seqkit_torch.ops import TorchOps  # noqa: E402

ops = NumpyOps("float64")


# (seqkit name, options, torch class, torch options)
CASES = [
    ("sgd", {"lr": 0.1}, torch.optim.SGD, {"lr": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    (
        "sgd",
        {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1},
        torch.optim.SGD,
        {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1},
    ),
    ("sgd", {"lr": 0.1, "weight_decay": 0.3}, torch.optim.SGD, {"lr": 0.1, "weight_decay": 0.3}),
    ("adagrad", {"lr": 0.3}, torch.optim.Adagrad, {"lr": 0.3}),
    ("adagrad", {"lr": 0.1, "eps": 1e-3}, torch.optim.Adagrad, {"lr": 0.1, "eps": 1e-3}),
    (
        "adagrad",
        {"lr": 0.1, "weight_decay": 0.2},
        torch.optim.Adagrad,
        {"lr": 0.1, "weight_decay": 0.2},
    ),
    ("adam", {"lr": 1e-2}, torch.optim.Adam, {"lr": 1e-2}),
    (
        "adam",
        {"lr": 0.5, "betas": (0.5, 0.75), "eps": 1e-4},
        torch.optim.Adam,
        {"lr": 0.5, "betas": (0.5, 0.75), "eps": 1e-4},
    ),
    # seqkit's Adam decays decoupled: torch's AdamW, never torch's Adam with L2
    (
        "adam",
        {"lr": 0.05, "weight_decay": 0.3},
        torch.optim.AdamW,
        {"lr": 0.05, "weight_decay": 0.3},
    ),
    ("adamw", {"lr": 0.05}, torch.optim.AdamW, {"lr": 0.05}),  # both default weight_decay 0.01
    (
        "adamw",
        {"lr": 0.2, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.5},
        torch.optim.AdamW,
        {"lr": 0.2, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.5},
    ),
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


def make_problem(seed=0, steps=24):
    rng = np.random.default_rng(seed)
    params = {"weight": rng.normal(size=(3, 4)), "head.0.bias": rng.normal(size=(4,))}
    grads = [{k: rng.normal(size=v.shape) * 10 ** rng.uniform(-3, 1) for k, v in params.items()}]
    for _ in range(steps - 1):
        grads.append({k: rng.normal(size=v.shape) for k, v in params.items()})
    grads[2]["weight"][0, 0] = 0.0  # a zero gradient entry
    return params, grads


def run_torch(torch_cls, torch_options, params, grads, lrs=None):
    """torch.optim on the same parameters and gradients: the parameters after every step.

    ``lrs[k]``, when given, is the learning rate of step k (set on the group, as schedulers do).
    """
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch_cls(list(tensors.values()), foreach=False, **torch_options)
    history = []
    for k, step_grads in enumerate(grads):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[k]
        for name, t in tensors.items():
            t.grad = torch.tensor(step_grads[name])
        opt.step()
        history.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    return history


@pytest.mark.parametrize(("name", "options", "torch_cls", "torch_options"), CASES, ids=IDS)
def test_matches_torch_step_for_step(name, options, torch_cls, torch_options):
    params, grads = make_problem()
    want = run_torch(torch_cls, torch_options, params, grads)
    opt = get_optimizer(name, **options)
    state = opt.init_state(ops, params)
    for step, step_grads in enumerate(grads):
        before = {k: g.copy() for k, g in step_grads.items()}
        arrays = dict(params)
        new_params, new_state = opt.update(ops, params, step_grads, state)
        # NumPy updates in place: the same dicts and arrays come back
        assert new_params is params and new_state is state
        assert all(params[k] is arrays[k] for k in params)
        assert state["step"] == step + 1
        for k in params:
            np.testing.assert_allclose(params[k], want[step][k], rtol=1e-12, atol=1e-14)
            np.testing.assert_array_equal(step_grads[k], before[k])  # grads untouched


@pytest.mark.parametrize(("name", "options", "torch_cls", "torch_options"), CASES, ids=IDS)
def test_runs_on_torch_tensors_under_no_grad(name, options, torch_cls, torch_options):
    tops = TorchOps("float64")
    params, grads = make_problem(1)
    want = run_torch(torch_cls, torch_options, params, grads)
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = get_optimizer(name, **options)
    state = opt.init_state(tops, leaves)
    originals = dict(leaves)
    with torch.no_grad():
        for step_grads in grads:
            g = {k: torch.tensor(v) for k, v in step_grads.items()}
            leaves, state = opt.update(tops, leaves, g, state)
    for k, leaf in leaves.items():
        assert leaf is originals[k]  # in place: views into a fused buffer stay views
        assert leaf.requires_grad and leaf.is_leaf
        np.testing.assert_allclose(leaf.detach().numpy(), want[-1][k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("name", "options", "torch_cls", "torch_options"), CASES, ids=IDS)
def test_state_round_trips_through_numpy(name, options, torch_cls, torch_options):
    params, grads = make_problem(2)
    opt = get_optimizer(name, **options)
    state = opt.init_state(ops, params)
    for g in grads[:3]:
        opt.update(ops, params, g, state)
    exported = opt.state_to_numpy(ops, state)
    assert all(isinstance(v, np.ndarray) for v in exported.values())
    assert int(exported["step"]) == 3
    assert sorted(exported) == sorted(
        ["step"] + [f"{b}/{k}" for b in opt.buffers() for k in params]
    )
    # a copy of the run, restored from the export, continues exactly as the original
    params2 = {k: v.copy() for k, v in params.items()}
    state2 = opt.state_from_numpy(ops, exported)
    for g in grads[3:]:
        opt.update(ops, params, g, state)
        opt.update(ops, params2, g, state2)
    for k in params:
        np.testing.assert_array_equal(params[k], params2[k])
    with pytest.raises(ShapeError, match="unexpected optimizer state entry 'bogus'"):
        opt.state_from_numpy(ops, {**exported, "bogus": np.zeros(1)})


def test_buffers_use_torchs_names():
    assert SGD(0.1).buffers() == ()
    assert SGD(0.1, momentum=0.5).buffers() == ("momentum_buffer",)
    assert Adagrad(0.1).buffers() == ("sum",)
    assert Adam(0.1).buffers() == ("exp_avg", "exp_avg_sq")
    assert AdamW(0.1).buffers() == ("exp_avg", "exp_avg_sq")


def test_get_optimizer():
    assert list_optimizers() == ["adagrad", "adam", "adamw", "sgd"]
    assert get_optimizer("adam", lr=1e-3, betas=[0.8, 0.9]) == Adam(1e-3, betas=(0.8, 0.9))
    opt = SGD(0.1)
    assert get_optimizer(opt) is opt and isinstance(opt, Optimizer)
    with pytest.raises(
        UnknownNameError, match="unknown optimizer 'rmsprop'; available: adagrad, adam, adamw, sgd"
    ):
        get_optimizer("rmsprop", lr=0.1)
    with pytest.raises(
        TypeError, match="unknown options 'momentum'; its options are: lr, weight_decay, eps"
    ):
        get_optimizer("adagrad", lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="needs 'lr'"):
        get_optimizer("sgd")
    assert get_optimizer(opt, lr=0.2) == SGD(0.2)  # an override replaces one hyperparameter
    with pytest.raises(TypeError, match="an optimizer config needs a 'name'"):
        get_optimizer({"lr": 0.1})


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SGD(0), "'lr' must be a positive finite number \\(got 0\\)"),
        (lambda: SGD(-0.1), "'lr' must be a positive finite number \\(got -0.1\\)"),
        (lambda: Adam(float("nan")), "'lr' must be a positive finite number \\(got nan\\)"),
        (lambda: SGD("0.1"), "'lr' must be a positive finite number \\(got '0.1'\\)"),
        (lambda: SGD(0.1, momentum=1.0), "'momentum' must be a number in \\[0, 1\\) \\(got 1.0\\)"),
        (lambda: Adagrad(0.1, eps=-1.0), "'eps' must be a finite number >= 0 \\(got -1.0\\)"),
        (lambda: Adam(0.1, betas=(0.9, 1.0)), "'betas\\[1\\]' must be a number in \\[0, 1\\)"),
        (lambda: Adam(0.1, betas=0.9), "'betas' must be a pair \\(beta1, beta2\\) \\(got 0.9\\)"),
    ],
)
def test_bad_hyperparameters_name_the_argument(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        SGD(0.1, 0.9)


def test_update_rejects_mismatched_grads():
    params, grads = make_problem()
    opt = Adam(0.1)
    state = opt.init_state(ops, params)
    with pytest.raises(ShapeError, match="missing: head.0.bias; unexpected: bias"):
        opt.update(ops, params, {"weight": grads[0]["weight"], "bias": np.zeros(4)}, state)
    with pytest.raises(
        ShapeError, match="gradient 'weight' must have shape \\(3, 4\\) \\(got \\(4, 3\\)\\)"
    ):
        opt.update(ops, params, {**grads[0], "weight": np.zeros((4, 3))}, state)
    with pytest.raises(ShapeError, match="make it with init_state"):
        opt.update(ops, params, grads[0], SGD(0.1).init_state(ops, params))
    assert state["step"] == 0  # nothing happened


@pytest.mark.parametrize(("name", "options", "torch_cls", "torch_options"), CASES, ids=IDS)
def test_scheduled_lr_matches_torch_and_leaves_opt_lr_alone(
    name, options, torch_cls, torch_options
):
    params, grads = make_problem(3)
    lrs = [options["lr"] * (0.5 + 0.5 * np.cos(k)) + 1e-3 for k in range(len(grads))]
    want = run_torch(torch_cls, torch_options, params, grads, lrs)
    opt = get_optimizer(name, **options)
    state = opt.init_state(ops, params)
    for k, step_grads in enumerate(grads):
        params, state = opt.update(ops, params, step_grads, state, lr=lrs[k])
    assert opt.lr == options["lr"]
    for k in params:
        np.testing.assert_allclose(params[k], want[-1][k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("name", "options", "torch_cls", "torch_options"), CASES, ids=IDS)
def test_config_round_trips_through_json(name, options, torch_cls, torch_options):
    opt = get_optimizer(name, **options)
    config = json.loads(json.dumps(opt.to_config()))
    assert config["name"] == name
    assert get_optimizer(config) == opt
    assert get_optimizer(config, lr=0.25) == get_optimizer(name, **{**options, "lr": 0.25})


def test_adamw_is_adam_with_torchs_default_decay():
    import inspect

    torch_default = inspect.signature(torch.optim.AdamW).parameters["weight_decay"].default
    assert AdamW(0.1).weight_decay == torch_default == 0.01
    assert Adam(0.1).weight_decay == 0.0
    assert isinstance(AdamW(0.1), Adam)


def test_update_rejects_a_bad_lr():
    params, grads = make_problem()
    opt = SGD(0.1)
    state = opt.init_state(ops, params)
    with pytest.raises(
        ValueError, match="sgd: 'lr' must be a positive finite number \\(got -1.0\\)"
    ):
        opt.update(ops, params, grads[0], state, lr=-1.0)


@pytest.mark.parametrize(
    "step", [np.int64(-3), np.float64(2.0), np.array([1, 2]), np.array(np.iinfo(np.int64).min)]
)
@pytest.mark.parametrize("opt", [SGD(lr=0.1), Adam(lr=0.1), Adagrad(lr=0.1)])
def test_a_crafted_step_count_is_refused(opt, step):
    """Was: a negative step made Adam's bias correction complex (a cast error deep inside)."""
    with pytest.raises(ShapeError, match=r"optimizer state 'step' must be one integer >= 0"):
        opt.state_from_numpy(ops, {"step": np.asarray(step)})
