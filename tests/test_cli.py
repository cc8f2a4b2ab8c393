"""The command line, driven as a user would: exit codes, one-line errors, files on disk."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from seqkit.cli import cli

NAMES = ["anna", "anne", "annie", "bob", "bobby", "carl", "carla", "dana", "dan", "eve"] * 6


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(NAMES) + "\n")
    return path


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def train_small(corpus, out, *extra):
    return run(
        "train",
        corpus,
        "--out",
        out,
        "--steps",
        30,
        "--hidden-size",
        8,
        "--batch-size",
        8,
        "--no-progress",
        "--lr",
        0.02,
        *extra,
    )


def test_train_sample_score(tmp_path, corpus):
    out = tmp_path / "m.npz"
    result = train_small(corpus, out)
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert "dev:" in result.stdout and "nats/token" in result.stdout
    a = run("sample", out, "-n", 5, "--seed", 3)
    b = run("sample", out, "-n", 5, "--seed", 3)
    assert a.exit_code == 0 and a.stdout == b.stdout and len(a.stdout.splitlines()) == 5
    scored = run("score", out, corpus, "--json")
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    assert report["lines"] == len(NAMES)
    assert report["tokens"] == sum(len(n) + 1 for n in NAMES)
    assert report["perplexity"] == pytest.approx(np.exp(report["nats_per_token"]))
    assert report["nats_per_token"] == pytest.approx(-sum(report["per_line"]) / report["tokens"])


def test_plugins_json_lists_builtins():
    result = run("plugins", "--json")
    assert result.exit_code == 0
    by_name = {p["name"]: p for p in json.loads(result.stdout)}
    assert by_name["cells"]["distribution"] == "seqkit"
    assert "lstm" in by_name["cells"]["registered"]["cell"]
    assert "surnames" in by_name["corpora"]["registered"]["corpus"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_damaged_checkpoints_give_one_line_and_non_zero_exit(tmp_path, corpus, damage):
    out = tmp_path / "m.npz"
    train_small(corpus, out)
    if damage == "truncate":
        out.write_bytes(out.read_bytes()[:200])
    elif damage == "garbage":
        out.write_bytes(os.urandom(500))
    else:
        np.savez(out, weights=np.ones(3))
    result = run("sample", out)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert str(out) in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["train", "--corpus", "klingon", "--out", "x.npz"],
            "unknown corpus 'klingon'; available: dates, first-names, name-sex, surname-split, surnames",
        ),
        (
            ["train", "--corpus", "surnames", "--cell", "lstn", "--out", "x.npz", "--steps", "1"],
            "unknown cell 'lstn'; available: gru, gru_ln, gru_simple, lstm",
        ),
        (
            ["train", "--corpus", "surnames", "--backend", "jaxx", "--out", "x.npz"],
            "unknown backend 'jaxx'; available:",
        ),
        (
            ["train", "--corpus", "surnames", "--hidden-size", "0", "--out", "x.npz"],
            "0 is not in the range x>=1",
        ),
        (["train", "--out", "x.npz"], "give exactly one of FILE or --corpus NAME"),
        (["train", "no-such-file.txt", "--out", "x.npz"], "no-such-file.txt: no such file"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    os.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    result = run("train", empty, "--out", tmp_path / "m.npz")
    assert result.exit_code == 1 and "holds no examples (every line is empty)" in result.stderr


def test_unknown_characters_score_as_unk(tmp_path, corpus):
    out = tmp_path / "m.npz"
    train_small(corpus, out)
    odd = tmp_path / "odd.txt"
    odd.write_text("zoë\n")
    result = run("score", out, odd)
    assert result.exit_code == 0
    assert "scored as <UNK>" in result.stderr


def test_ctrl_c_keeps_the_last_good_checkpoint(tmp_path, corpus):
    out = tmp_path / "m.npz"
    # a shell without job control starts background jobs with SIGINT ignored, and an ignored
    # signal stays ignored across exec: the child restores Python's own handler first, as it
    # has under a terminal (not in a preexec_fn, which forks this multithreaded process)
    restore = (
        "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "runpy.run_module('seqkit', run_name='__main__')"
    )
    cmd = [
        sys.executable,
        "-c",
        restore,
        "train",
        str(corpus),
        "--out",
        str(out),
        "--steps",
        "100000",
        "--eval-every",
        "5",
        "--hidden-size",
        "8",
        "--batch-size",
        "4",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not out.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert out.exists(), "no checkpoint was written"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    loaded = run("sample", out, "-n", 2)
    assert loaded.exit_code == 0


def test_gradients_figure(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "g.png"
    result = run("gradients", "--out", png, "--steps", 12, "--hidden-size", 4)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    norms = {line.split(":")[0]: line for line in result.stdout.splitlines()}
    assert set(norms) == {"rnn", "gru", "lstm"}


def test_train_plot_writes_loss_curves(tmp_path, corpus):
    pytest.importorskip("matplotlib")
    png = tmp_path / "loss.png"
    result = train_small(corpus, tmp_path / "m.npz", "--plot", png)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_failed_run_leaves_an_existing_model_untouched(tmp_path, corpus):
    out = tmp_path / "m.npz"
    train_small(corpus, out)
    before = out.read_bytes()
    result = run("train", corpus, "--out", out, "--cell", "nope", "--steps", 5)
    assert result.exit_code == 1
    assert out.read_bytes() == before


def test_a_plugin_cell_trains_from_the_command_line(tmp_path, corpus):
    import seqkit

    if "lstm_peephole" not in seqkit.list_cells():
        pytest.skip("the seqkit-peephole example plugin is not installed")
    out = tmp_path / "p.npz"
    result = train_small(corpus, out, "--cell", "lstm_peephole")
    assert result.exit_code == 0, result.output
    assert "cell='lstm_peephole'" in result.stderr
    if importlib.util.find_spec("torch") is not None:  # the NumPy-only run (Python 3.13) skips it
        assert run("sample", out, "-n", 2, "--backend", "torch").exit_code == 0


@pytest.mark.parametrize("restore", ["--restore-best", "--no-restore-best"])
def test_train_says_when_it_ended_with_an_earlier_best(tmp_path, restore):
    # one text to learn, others to hold out: the dev loss falls, then rises as it overfits
    others = "anna carl dana evan fred gina hugo ivan jack kate lena mona nina otto paul".split()
    data = tmp_path / "lm.txt"
    data.write_text("\n".join(["bobby"] * 40 + others) + "\n", encoding="utf-8")
    out = tmp_path / "m.npz"
    result = CliRunner().invoke(
        cli,
        [
            str(a)
            for a in (
                "train",
                data,
                "--out",
                out,
                "--steps",
                60,
                "--lr",
                0.05,
                "--eval-every",
                2,
                "--dev-fraction",
                0.5,
                "--hidden-size",
                16,
                "--batch-size",
                4,
                "--patience",
                100,
                "--no-progress",
                restore,
            )
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    held = (
        "after 60 steps" in result.output and "it holds the best evaluation, step " in result.output
    )
    assert held == (restore == "--restore-best"), result.output
