"""seqkit train's recurrent options: generated from Recurrent's fields, passed to the model,
checked in one line, kept by --resume."""

import numpy as np
import pytest
from click.testing import CliRunner

import seqkit
from seqkit.cli import cli
from seqkit.recurrent import RECURRENT_OPTIONS

NAMES = ["anna", "anne", "annie", "bob", "bobby", "carl", "carla", "dana", "dan", "eve"] * 6
#: every recurrent option, set away from its default; OPTIONS spells them as train's flags
VALUES = dict(
    proj_size=4,
    recurrent_init="orthogonal",
    forget_bias=1.0,
    recurrent_dropout=0.25,
    input_dropout=0.1,
    zoneout=0.1,
    learn_initial_state=True,
)
OPTIONS = ["--cell", "lstm_ln"]
for _name, _value in VALUES.items():
    _flag = f"--{_name.replace('_', '-')}"
    OPTIONS += [_flag] if _value is True else [_flag, _value]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(NAMES) + "\n")
    return path


def train(corpus, out, *extra, steps=6):
    args = ["train", corpus, "--out", out, "--steps", steps, "--hidden-size", 8]
    args += ["--batch-size", 8, "--no-progress", "--seed", 1, *extra]
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_every_option_is_generated_from_the_recurrent_fields():
    train_command = cli.commands["train"]
    flags = {o.name: o for o in train_command.params}
    for name in RECURRENT_OPTIONS:
        assert name in flags, name
        assert f"--{name.replace('_', '-')}" in flags[name].opts
        assert flags[name].default is None  # the task's default unless given


def test_the_options_reach_the_model_and_its_checkpoint(tmp_path, corpus):
    out = tmp_path / "m.npz"
    result = train(corpus, out, *OPTIONS)
    assert result.exit_code == 0, result.output
    model = seqkit.load(out, backend="numpy", dtype="float64")
    assert model.cell.name == "lstm_ln"
    assert model.recurrent_options == VALUES
    assert model.param_shapes()["rnn.h0"] == (1, 4)  # (L*D, P)


def test_torch_reports_the_generic_path_for_loop_masks(tmp_path, corpus):
    pytest.importorskip("torch")
    plain = train(corpus, tmp_path / "a.npz", "--backend", "torch", steps=2)
    assert plain.exit_code == 0, plain.output
    assert "[torch path: fused]" in plain.stderr
    zoned = train(corpus, tmp_path / "b.npz", "--backend", "torch", "--zoneout", 0.1, steps=2)
    assert zoned.exit_code == 0, zoned.output
    assert "[torch path: generic]" in zoned.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cell", "gru", "--proj-size", 4], "--proj-size needs a cell that allows a projection"),
        (["--cell", "lstm", "--proj-size", 8], "--proj-size must be smaller than --hidden-size 8"),
        (["--zoneout", 1.5], r"--zoneout must be a probability in [0, 1) (got 1.5)"),
        (["--recurrent-dropout", -0.1], "--recurrent-dropout must be a probability"),
        (["--cell", "rnn", "--forget-bias", 1], "--forget-bias needs a cell with a forget gate"),
        (["--recurrent-init", "eye"], "'eye' is not one of 'uniform', 'orthogonal'"),
        (["--zoneout", "x"], "'x' is not a valid float"),
    ],
)
def test_bad_values_are_one_line(tmp_path, corpus, args, message):
    result = train(corpus, tmp_path / "m.npz", *args)
    assert result.exit_code in (1, 2)
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.npz").exists()


def test_resume_with_the_options_equals_one_run(tmp_path, corpus):
    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    options = [*OPTIONS, "--cell", "lstm", "--dropout", 0.2, "--layers", 2]
    assert train(corpus, whole, *options, steps=8).exit_code == 0
    first = train(corpus, part, *options, "--checkpoint-every", 2, steps=4)
    assert first.exit_code == 0, first.output
    resumed = CliRunner().invoke(
        cli, ["train", str(corpus), "--resume", str(part), "--steps", "8", "--no-progress"]
    )
    assert resumed.exit_code == 0, resumed.output
    a = seqkit.load(whole, backend="numpy").numpy_params()
    b = seqkit.load(part, backend="numpy").numpy_params()
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    changed = CliRunner().invoke(
        cli, ["train", "--resume", str(part), "--steps", "9", "--zoneout", "0.3"]
    )
    assert changed.exit_code == 1
    assert "different model shape: --zoneout 0.3 (saved 0.1)" in changed.stderr
