"""Exact resume: a run saved every N steps, killed and resumed, equals a run never interrupted."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

import seqkit
from seqkit.checkpoint import read_checkpoint
from seqkit.cli import cli

TEXTS = ["anna", "anne", "bob", "bobby", "carl", "carla", "dana", "dan", "eve", "evelyn"] * 4


def fresh():
    vocab = seqkit.Vocabulary.build(TEXTS, level="char")
    return seqkit.LanguageModel(
        vocab, cell="lstm", hidden_size=6, backend="numpy", dtype="float64", seed=0
    )


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adagrad"])
def test_resumed_run_is_bit_identical(tmp_path, optimizer):
    options = dict(
        batch_size=7, lr=0.01, optimizer=optimizer, seed=3
    )  # 7 does not divide 40: epochs wrap
    whole = fresh()
    whole.fit(TEXTS, steps=15, **options)
    path = tmp_path / "ckpt.npz"
    first = fresh()
    first.fit(TEXTS, steps=6, checkpoint=path, checkpoint_every=3, **options)
    resumed = seqkit.load(path, backend="numpy", dtype="float64")
    assert resumed.training_state.step == 6
    resumed.fit(TEXTS, steps=15, resume=True, **options)
    for name, value in whole.numpy_params().items():
        np.testing.assert_array_equal(resumed.numpy_params()[name], value, err_msg=name)
    assert resumed.training_state.history.losses == whole.training_state.history.losses


def test_resume_refuses_changed_options(tmp_path):
    path = tmp_path / "ckpt.npz"
    fresh().fit(TEXTS, steps=2, batch_size=4, lr=0.01, seed=0, checkpoint=path)
    model = seqkit.load(path, backend="numpy", dtype="float64")
    with pytest.raises(ValueError, match=r"'batch_size': saved 4, now 5"):
        model.fit(TEXTS, steps=4, batch_size=5, lr=0.01, seed=0, resume=True)


def _params(path):
    return read_checkpoint(path).params


@pytest.mark.parametrize("extra", [[], ["--dropout", "0.3", "--layers", "2"]])
def test_sigkill_then_resume_from_the_command_line(tmp_path, extra):
    data = tmp_path / "names.txt"
    data.write_text("\n".join(TEXTS) + "\n")
    common = [
        *extra,
        "--steps",
        "60",
        "--hidden-size",
        "6",
        "--batch-size",
        "5",
        "--seed",
        "1",
        "--no-progress",
        "--eval-every",
        "1000",
    ]
    whole = tmp_path / "whole.npz"
    assert (
        CliRunner().invoke(cli, ["train", str(data), "--out", str(whole), *common]).exit_code == 0
    )

    killed = tmp_path / "killed.npz"
    cmd = [
        sys.executable,
        "-m",
        "seqkit",
        "train",
        str(data),
        "--out",
        str(killed),
        "--checkpoint-every",
        "4",
        *common,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    step = 0
    while time.time() < deadline and proc.poll() is None:
        if killed.exists():
            try:
                step = read_checkpoint(killed).extra["training"]["step"]
            except seqkit.CheckpointError:
                pass  # never half-written: the rename is atomic, but the file may be mid-replace
            if step >= 8:
                break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed.exists()
    saved_step = read_checkpoint(killed).extra["training"]["step"]
    assert saved_step < 60, "the run finished before it could be killed"
    resume = ["train", str(data), "--resume", str(killed), "--no-progress"]
    result = CliRunner().invoke(cli, resume)
    assert result.exit_code == 0, result.output
    assert f"at step {saved_step} of 60" in result.stderr
    a, b = _params(whole), _params(killed)
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resume_refuses_a_changed_shape_or_vocabulary(tmp_path):
    data = tmp_path / "names.txt"
    data.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "m.npz"
    runner = CliRunner()
    assert (
        runner.invoke(
            cli,
            [
                "train",
                str(data),
                "--out",
                str(out),
                "--steps",
                "3",
                "--hidden-size",
                "6",
                "--no-progress",
            ],
        ).exit_code
        == 0
    )
    result = runner.invoke(cli, ["train", "--resume", str(out), "--hidden-size", "8"])
    assert (
        result.exit_code == 1
        and "different model shape: --hidden-size 8 (saved 6)" in result.stderr
    )
    other = tmp_path / "other.txt"
    other.write_text("\n".join(TEXTS + ["zzyzx"]) + "\n")
    result = runner.invoke(cli, ["train", str(other), "--resume", str(out), "--steps", "5"])
    assert result.exit_code == 1 and "are not the data it was trained on" in result.stderr


def test_every_architecture_resumes_exactly(tmp_path):
    texts = ["ab", "ba", "aab", "bba", "abab", "b"] * 3
    labels = np.array([0, 1, 0, 1, 0, 1] * 3)
    vocab = seqkit.Vocabulary.build(texts, level="char")

    def make():
        return seqkit.SequenceClassifier(
            vocab, 2, cell="gru", hidden_size=4, backend="numpy", dtype="float64", seed=0
        )

    options = dict(batch_size=5, lr=0.02, seed=1)
    whole = make()
    whole.fit(texts, labels, steps=9, **options)
    path = tmp_path / "clf.npz"
    make().fit(texts, labels, steps=4, checkpoint=path, **options)
    resumed = seqkit.load(path, backend="numpy", dtype="float64")
    resumed.fit(texts, labels, steps=9, resume=True, **options)
    for name, value in whole.numpy_params().items():
        np.testing.assert_array_equal(resumed.numpy_params()[name], value, err_msg=name)


_OPENED: list = []
_RECORDING = {"on": False}


def _audit(event, args):
    if _RECORDING["on"] and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # every open() of the process (builtins, io, pathlib, numpy)


def _edit_record(path, edit):
    """Rewrite ``path`` with ``edit(metadata["cli"])`` applied."""
    import json

    import attrs

    from seqkit.checkpoint import save_checkpoint

    checkpoint = read_checkpoint(path)
    extra = json.loads(json.dumps(checkpoint.extra))
    edit(extra["metadata"]["cli"])
    save_checkpoint(path, attrs.evolve(checkpoint, extra=extra))


def test_resume_never_reads_a_path_the_checkpoint_names(tmp_path):
    """The issue's item 5: the stored data path edited to another file; that file is never
    opened (audited), its contents never shown; --resume needs the data on the command line."""
    data = tmp_path / "names.txt"
    data.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "m.npz"
    runner = CliRunner()
    common = ["--steps", "4", "--hidden-size", "6", "--no-progress", "--checkpoint-every", "2"]
    assert runner.invoke(cli, ["train", str(data), "--out", str(out), *common]).exit_code == 0
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-TOKEN-zqx\n" * 3)
    _edit_record(out, lambda cli_record: cli_record["run"].update(file=str(secret)))

    _OPENED.clear()
    _RECORDING["on"] = True
    try:
        result = runner.invoke(cli, ["train", "--resume", str(out), "--steps", "6"])
    finally:
        _RECORDING["on"] = False
    assert result.exit_code == 2 and "needs its training data again: FILE" in result.stderr
    assert "Traceback" not in result.output and "SECRET" not in result.output
    assert str(secret) not in _OPENED and str(out) in _OPENED

    # the right data resumes; other data (the secret file itself, given) is refused by digest
    wrong = runner.invoke(cli, ["train", str(secret), "--resume", str(out), "--steps", "6"])
    assert wrong.exit_code == 1 and "are not the data it was trained on" in wrong.stderr
    assert "SECRET" not in wrong.output  # the digest decides, before any vocabulary is shown
    ok = runner.invoke(cli, ["train", str(data), "--resume", str(out), "--steps", "6"])
    assert ok.exit_code == 0, ok.output
    assert "resuming" in ok.stderr and "at step 4 of 6" in ok.stderr


def test_resume_of_a_corpus_run_needs_the_corpus(tmp_path):
    out = tmp_path / "m.npz"
    runner = CliRunner()
    args = ["--steps", "2", "--hidden-size", "4", "--batch-size", "4", "--no-progress"]
    first = runner.invoke(cli, ["train", "--corpus", "first-names", "--out", str(out), *args])
    assert first.exit_code == 0, first.output
    result = runner.invoke(cli, ["train", "--resume", str(out), "--steps", "3"])
    assert result.exit_code == 2 and "needs its training data again: --corpus first-names" in (
        result.stderr
    )
    again = ["train", "--corpus", "first-names", "--resume", str(out), "--steps", "3"]
    assert runner.invoke(cli, again).exit_code == 0
