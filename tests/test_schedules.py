"""seqkit.schedules: every schedule against torch.optim.lr_scheduler driving an SGD, and errors."""

from __future__ import annotations

import json
import math

import pytest

from seqkit.errors import ConfigError, UnknownNameError
from seqkit.schedules import get_schedule, list_schedules, schedule_config

BASE_LR = 0.3
# (steps, warmup_steps): a one-update run, warmup of all but one update, short and long runs
SIZES = [(1, 0), (2, 1), (7, 0), (7, 3), (50, 0), (50, 10), (400, 0), (400, 37)]


def user_schedule(j):
    """A callable schedule that is neither monotone nor 1 at j = 0."""
    return 0.5 + 0.4 * math.sin(0.3 * j) + 0.01 * j


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _torch_main(torch, spec, opt, n):
    sched = torch.optim.lr_scheduler
    if spec == "constant":
        return sched.LambdaLR(opt, lambda j: 1.0)
    if spec == "linear":
        return sched.LinearLR(opt, start_factor=1.0, end_factor=0.0, total_iters=n)
    if spec == "cosine":
        return sched.CosineAnnealingLR(opt, T_max=n, eta_min=0.0)
    return sched.LambdaLR(opt, spec)


def torch_multipliers(torch, spec, *, steps, warmup_steps):
    """lr / base lr of each of ``steps`` SGD updates under the matching torch scheduler."""
    sched = torch.optim.lr_scheduler
    w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 3, dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=BASE_LR)
    if warmup_steps:
        warmup = sched.LinearLR(
            opt, start_factor=1.0 / (warmup_steps + 1), end_factor=1.0, total_iters=warmup_steps
        )
        main = _torch_main(torch, spec, opt, steps - warmup_steps)
        scheduler = sched.SequentialLR(opt, [warmup, main], milestones=[warmup_steps])
    else:
        scheduler = _torch_main(torch, spec, opt, steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"] / BASE_LR)
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()
        scheduler.step()
    return out


@pytest.mark.parametrize(("steps", "warmup_steps"), SIZES)
@pytest.mark.parametrize("spec", [*list_schedules(), user_schedule])
def test_equals_torch_scheduler(torch, spec, steps, warmup_steps):
    expected = torch_multipliers(torch, spec, steps=steps, warmup_steps=warmup_steps)
    schedule = get_schedule(spec, steps=steps, warmup_steps=warmup_steps)
    for k, want in enumerate(expected):
        got = schedule(k)
        assert isinstance(got, float)
        assert math.isclose(got, want, rel_tol=0.0, abs_tol=1e-12), (
            f"{spec} steps={steps} warmup={warmup_steps}: update {k}: seqkit {got!r}, "
            f"torch {want!r}"
        )


def test_closed_forms_by_hand():
    assert [get_schedule("linear", steps=4)(k) for k in range(4)] == [1.0, 0.75, 0.5, 0.25]
    cosine = get_schedule("cosine", steps=4)
    assert [cosine(k) for k in range(4)] == pytest.approx(
        [1.0, (1 + 0.5**0.5) / 2, 0.5, (1 - 0.5**0.5) / 2], rel=0.0, abs=1e-15
    )
    # warmup (k + 1) / (W + 1), then the main schedule over the remaining S - W updates from 1
    lin = get_schedule("linear", steps=6, warmup_steps=2)
    assert [lin(k) for k in range(6)] == pytest.approx(
        [1 / 3, 2 / 3, 1.0, 0.75, 0.5, 0.25], rel=0.0, abs=1e-15
    )


def test_callable_gets_the_step_after_warmup():
    seen = []
    schedule = get_schedule(lambda j: seen.append(j) or 2.0, steps=5, warmup_steps=2)
    assert [schedule(k) for k in range(5)] == [1 / 3, 2 / 3, 2.0, 2.0, 2.0]
    assert seen == [0, 1, 2]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("0.5", r"must return a number >= 0 at step 3 \(got str '0.5'\)"),
        (None, r"must return a number >= 0 at step 3 \(got NoneType None\)"),
        (True, r"must return a number >= 0 at step 3 \(got bool True\)"),
        (-0.1, r"must return a finite number >= 0 at step 3 \(got -0.1\)"),
        (float("nan"), r"must return a finite number >= 0 at step 3 \(got nan\)"),
        (float("inf"), r"must return a finite number >= 0 at step 3 \(got inf\)"),
    ],
)
def test_bad_callable_return_names_the_step(value, match):
    def bad(j):
        return value if j == 3 else 1.0

    schedule = get_schedule(bad, steps=10)
    assert [schedule(k) for k in range(3)] == [1.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match=rf"lr_schedule .*bad {match}"):
        schedule(3)


def test_unknown_name_lists_the_choices():
    with pytest.raises(UnknownNameError) as err:
        get_schedule("cosin", steps=10)
    assert str(err.value) == "unknown lr_schedule 'cosin'; available: constant, cosine, linear"
    with pytest.raises(UnknownNameError, match=r"unknown lr_schedule 3; available: constant"):
        get_schedule(3, steps=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "'steps' must be an int >= 1 (got 0)"),
        ({"steps": 2.0}, "'steps' must be an int >= 1 (got 2.0)"),
        ({"steps": True}, "'steps' must be an int >= 1 (got True)"),
        ({"steps": 5, "warmup_steps": 5}, "'warmup_steps' must be an int in [0, 5) (got 5)"),
        ({"steps": 5, "warmup_steps": -1}, "'warmup_steps' must be an int in [0, 5) (got -1)"),
        ({"steps": 5, "warmup_steps": 1.5}, "'warmup_steps' must be an int in [0, 5) (got 1.5)"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError) as err:
        get_schedule("linear", **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("k", [-1, 5, 2.0])
def test_update_index_outside_the_run(k):
    schedule = get_schedule("constant", steps=5)
    with pytest.raises(ConfigError) as err:
        schedule(k)
    assert str(err.value) == f"'k' must be an int in [0, 5) (got {k!r})"


@pytest.mark.parametrize("name", list_schedules())
def test_config_of_a_name_round_trips_through_json(name):
    config = json.loads(json.dumps(schedule_config(name, warmup_steps=3)))
    assert config == {"lr_schedule": name, "warmup_steps": 3}
    restored = get_schedule(config["lr_schedule"], steps=20, warmup_steps=config["warmup_steps"])
    original = get_schedule(name, steps=20, warmup_steps=3)
    assert [restored(k) for k in range(20)] == [original(k) for k in range(20)]


def test_config_of_a_callable_asks_for_it_again_on_resume():
    config = json.loads(json.dumps(schedule_config(user_schedule, warmup_steps=2)))
    assert config == {"lr_schedule": "callable", "warmup_steps": 2}
    with pytest.raises(ConfigError) as err:
        get_schedule(config["lr_schedule"], steps=10, warmup_steps=config["warmup_steps"])
    assert str(err.value) == (
        "lr_schedule 'callable' cannot be restored from a checkpoint; "
        "pass the same callable again as lr_schedule"
    )


def test_config_validates_like_get_schedule():
    with pytest.raises(UnknownNameError, match="unknown lr_schedule 'cosin'"):
        schedule_config("cosin")
    with pytest.raises(ConfigError, match=r"'warmup_steps' must be an int >= 0 \(got -2\)"):
        schedule_config("linear", warmup_steps=-2)
