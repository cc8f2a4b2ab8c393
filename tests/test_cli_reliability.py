"""`seqkit train` when things go wrong: divergence, invalid options, configurations too large
for memory. Every case is one clear line in the command line's own spelling, never a traceback."""

import math

import attrs
import numpy as np
import pytest
from click.testing import CliRunner

import seqkit
import seqkit.memory
from seqkit.checkpoint import read_checkpoint
from seqkit.cli import cli
from seqkit.memory import InsufficientMemory
from seqkit.options import TrainingOptions
from tests import test_cli

NAMES = test_cli.NAMES
corpus = test_cli.corpus  # the fixture: a file of NAMES

SMALL = ["--hidden-size", "8", "--batch-size", "8", "--no-progress", "--seed", "0"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, exit_code=1):
    """The one ``Error:`` line of a failed command (no traceback, no internal error)."""
    assert result.exit_code == exit_code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "internal error" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# --- divergence --------------------------------------------------------------------------------


@pytest.mark.parametrize("dev", [["--dev-fraction", "0.2"], ["--dev-fraction", "0.0001"]])
def test_huge_lr_stops_with_one_true_line(tmp_path, corpus, dev):
    """The issue's --lr 1e6: was OverflowError (with dev data) or exit 0 with a garbage model."""
    out = tmp_path / "m.npz"
    line = one_line_error(invoke("train", corpus, "--out", out, "--lr", "1e6", *SMALL, *dev))
    assert "training diverged" in line and "--lr" in line and "'lr'" not in line
    assert "--clip-norm is 5" in line and "set" not in line  # it was set: say so
    assert f"{out} was not written" in line and not out.exists()


class _SpikeAt:
    """Patch LanguageModel.loss_and_grads so that training step ``step`` has a huge loss."""

    def __init__(self, monkeypatch, step):
        real = seqkit.LanguageModel.loss_and_grads
        self.n = 0

        def loss_and_grads(model, batch, *, ctx=None):
            loss, grads = real(model, batch, ctx=ctx)
            if ctx is not None and ctx.training:
                self.n += 1
                if self.n == step:
                    loss = loss * 1e6
            return loss, grads

        monkeypatch.setattr(seqkit.LanguageModel, "loss_and_grads", loss_and_grads)


@pytest.mark.parametrize(
    ("step", "good", "saved", "says"),
    [(8, 6, 6, "holds the model from step 6"), (7, 5, 6, "gave the diverging loss")],
)
def test_divergence_after_a_checkpoint_names_the_file_truly(
    tmp_path, corpus, monkeypatch, step, good, saved, says
):
    """The issue's "MODEL was not written" although MODEL existed at the last good step."""
    _SpikeAt(monkeypatch, step)
    out = tmp_path / "m.npz"
    args = ["train", corpus, "--out", out, "--steps", 20, "--checkpoint-every", 2, *SMALL]
    line = one_line_error(invoke(*args))
    assert f"step {step}:" in line and f"parameters from step {good}" in line
    assert says in line and "not written" not in line
    assert read_checkpoint(out).extra["training"]["step"] == saved


# --- every training option, invalid, from the command line ---------------------------------------

_BAD = {"int": ["0", "-1", "x"], "float": ["nan", "-1", "inf", "x"]}


def _invalid_values(field):
    if field.type == "bool":
        return ["=maybe"]  # a flag takes no value
    if "choices" in field.metadata:
        return ["bogus"]
    kind = "float" if "float" in field.type else "int"
    values = list(_BAD[kind])
    if field.name in ("seed", "warmup_steps"):
        values.remove("0")  # valid for these two
    return values


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--" + f.name.replace("_", "-"), v)
        for f in attrs.fields(TrainingOptions)
        for v in _invalid_values(f)
    ],
)
def test_every_training_option_invalid_is_one_line_naming_its_flag(tmp_path, corpus, flag, value):
    arg = [flag + value] if value.startswith("=") else [flag, value]
    result = invoke("train", corpus, "--out", tmp_path / "m.npz", "--steps", "3", *SMALL, *arg)
    assert result.exit_code in (1, 2), result.output
    line = one_line_error(result, result.exit_code)
    assert flag in line, line
    assert not any(f"'{f.name}'" in line for f in attrs.fields(TrainingOptions)), line
    assert not (tmp_path / "m.npz").exists()


def test_warmup_not_below_steps_names_both_flags(tmp_path, corpus):
    result = invoke("train", corpus, "--out", tmp_path / "m.npz", "--steps", 3, "--warmup-steps", 3)
    line = one_line_error(result)
    assert "--warmup-steps must be less than --steps = 3" in line


# --- memory ---------------------------------------------------------------------------------


@pytest.fixture
def small_machine(monkeypatch):
    """A machine with 64 MiB available."""
    monkeypatch.setattr(seqkit.memory, "available_bytes", lambda: 64 << 20)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--hidden-size", "4096"], "--hidden-size"),
        (["--embedding-size", "1000000"], "--embedding-size"),
        (["--layers", "500", "--hidden-size", "128"], "--layers"),
        (["--level", "word", "--hidden-size", "700"], "vocabulary"),
    ],
    ids=["hidden", "embedding", "layers", "vocabulary-x-hidden"],
)
def test_a_model_too_large_is_refused_before_allocating(tmp_path, small_machine, args, flag):
    words = tmp_path / "words.txt"  # 3,000 distinct words: V x H dominates at word level
    words.write_text("\n".join(f"w{i} w{i + 1} w{i + 2}" for i in range(3000)) + "\n")
    out = tmp_path / "m.npz"
    line = one_line_error(invoke("train", words, "--out", out, "--no-progress", *args))
    assert "needs at least" in line and "64.0 MiB available" in line and flag in line
    assert "'hidden_size'" not in line and not out.exists()


def test_the_issue_hidden_size_is_refused_on_any_machine(tmp_path, corpus):
    """No small_machine here: 10**7 hidden units need petabytes."""
    line = one_line_error(
        invoke("train", corpus, "--out", tmp_path / "m.npz", "--hidden-size", "10000000")
    )
    assert "needs at least" in line and "PiB" in line and "--hidden-size" in line


@pytest.mark.parametrize(
    "build",
    [
        lambda v: seqkit.LanguageModel(v, hidden_size=4096),
        lambda v: seqkit.LanguageModel(v, embedding_size=10**6),
        lambda v: seqkit.LanguageModel(v, hidden_size=128, num_layers=500),
        lambda v: seqkit.SequenceClassifier(v, 2, hidden_size=4096, bidirectional=True),
        lambda v: seqkit.SequenceTagger(v, ["B", "I"], hidden_size=4096),
        lambda v: seqkit.Seq2Seq(v, v, hidden_size=4096),
    ],
    ids=["lm-hidden", "lm-embedding", "lm-layers", "classifier", "tagger", "seq2seq"],
)
def test_python_constructors_refuse_a_model_too_large(small_machine, build):
    vocab = seqkit.Vocabulary.build(["abc", "def"])
    with pytest.raises(
        InsufficientMemory, match=r"needs at least .* and this machine has 64.0 MiB"
    ):
        build(vocab)


def test_a_huge_vocabulary_times_hidden_is_refused_from_python(small_machine):
    vocab = seqkit.Vocabulary.build([" ".join(f"w{i}" for i in range(100_000))], level="word")
    with pytest.raises(InsufficientMemory, match=r"V=100003.* has 32,117,859 parameters"):
        seqkit.LanguageModel(vocab, hidden_size=64)


def test_training_memory_grows_with_the_batch_and_is_checked(monkeypatch):
    model = seqkit.LanguageModel(seqkit.Vocabulary.build(NAMES), hidden_size=16, seed=0)
    examples = model._examples(NAMES)
    one = seqkit.memory.step_bytes(model, examples.batch(np.array([0])))
    four = seqkit.memory.step_bytes(model, examples.batch(np.array([0, 0, 0, 0])))
    assert one > 0 and four > one
    # a machine with room for the model but not for a step on 10**6 examples
    monkeypatch.setattr(seqkit.memory, "available_bytes", lambda: 4 * four)
    model.fit(NAMES, steps=1, batch_size=2, seed=0)  # fits: trains
    big = [n * 20 for n in NAMES] * 2000
    with pytest.raises(InsufficientMemory, match=r"training .* on batches of 120,000 examples"):
        model.fit(big, steps=1, batch_size=10**6, seed=0)


def test_a_memory_error_reaching_the_top_is_one_line(tmp_path, corpus, monkeypatch):
    def fit(*args, **kwargs):
        raise MemoryError("Unable to allocate 224. GiB for an array with shape (300000, 100000)")

    monkeypatch.setattr(seqkit.LanguageModel, "fit", fit)
    line = one_line_error(invoke("train", corpus, "--out", tmp_path / "m.npz", *SMALL))
    assert line == (
        "Error: out of memory: Unable to allocate 224. GiB for an array with shape (300000, 100000)"
    )


def test_memory_is_read_from_the_system():
    have = seqkit.memory.available_bytes()
    assert have is None or (isinstance(have, int) and have > 0)
    assert seqkit.memory.format_bytes(1536) == "1.5 KiB"
    assert seqkit.memory.format_bytes(3 * 2**50) == "3.0 PiB"
    assert math.isclose(float(seqkit.memory.format_bytes(2**30 * 223.6).split()[0]), 223.6)


# --- files the command line writes and reads ---------------------------------------------------


@pytest.fixture
def lm_model(tmp_path, corpus):
    path = tmp_path / "lm.npz"
    result = invoke("train", corpus, "--out", path, "--steps", "3", *SMALL)
    assert result.exit_code == 0, result.output
    return path


def _special_files(tmp_path):
    """Paths that exist and are not regular files: a pipe and a socket (named as figures, so
    that only their kind is wrong). No device: a regression would replace it, as root."""
    import os
    import socket

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    sock = tmp_path / "sock.png"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    return {"fifo": fifo, "socket": sock}


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="POSIX special files")
@pytest.mark.parametrize("kind", ["fifo", "socket"])
@pytest.mark.parametrize(
    "command",
    [
        ["train", "{corpus}", "--steps", "2", *SMALL, "--out", "{target}"],
        ["train", "{corpus}", "--steps", "2", *SMALL, "--out", "{tmp}/m.npz", "--plot", "{target}"],
        ["demo", "--steps", "2", "--no-progress", "--out", "{target}"],
        ["gradients", "--steps", "5", "--out", "{target}"],
    ],
)
def test_an_output_that_is_not_a_regular_file_is_refused_untouched(tmp_path, corpus, kind, command):
    """Was: --out /dev/null, as root, replaced the device with a model file (the class: any
    path that exists and is not a regular file)."""
    import os

    if command[0] == "gradients" or "--plot" in command:
        pytest.importorskip("matplotlib")  # figures are refused first without it
    target = _special_files(tmp_path)[kind]
    before = os.stat(target)
    args = [a.format(corpus=corpus, target=target, tmp=tmp_path) for a in command]
    line = one_line_error(invoke(*args), exit_code=2)
    assert "is not a regular file" in line and str(target) in line
    after = os.stat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (
        before.st_mode,
        before.st_ino,
        before.st_rdev,
    )


@pytest.mark.parametrize("kind", ["fifo", "socket", "folder"])
def test_the_atomic_writer_refuses_what_is_not_a_regular_file(tmp_path, kind):
    from seqkit.checkpoint import CheckpointError, write_atomically

    target = tmp_path / "folder" if kind == "folder" else _special_files(tmp_path)[kind]
    if kind == "folder":
        target.mkdir()
    with pytest.raises(CheckpointError, match="exists and is not a regular file"):
        write_atomically(target, lambda fh: fh.write(b"x"), "checkpoint")
    assert not target.is_file()


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_figure_write_keeps_the_old_figure(tmp_path, monkeypatch, error):
    """Was: a full disk left a truncated figure in place of the old one, and the message named
    no file."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from seqkit.errors import OutputError
    from seqkit.plots import plot_gradient_decay

    path = tmp_path / "g.svg"
    path.write_text("<svg>old</svg>")

    def savefig(self, fh, **kwargs):
        fh.write(b"<svg>half")
        raise error

    monkeypatch.setattr(Figure, "savefig", savefig)
    expected = OutputError if isinstance(error, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        plot_gradient_decay({"rnn": np.ones(3)}, str(path))
    if expected is OutputError:
        assert str(path) in str(info.value) and "No space left" in str(info.value)
    assert path.read_text() == "<svg>old</svg>"
    assert [p.name for p in tmp_path.iterdir()] == ["g.svg"]  # no temporary left


@pytest.mark.parametrize(
    "options",
    [
        ["--out", "{corpus}"],  # the model over its own training data
        ["--out", "{tmp}/m.png", "--plot", "{tmp}/m.png"],  # the figure over the model
        ["--out", "{tmp}/m.npz", "--plot", "{tmp}/alias.png"],  # the figure over the data
        ["--out", "{tmp}/alias.txt"],  # a symlink to the data is the data
    ],
)
def test_two_options_naming_one_file_are_refused_before_any_work(tmp_path, corpus, options):
    if "--plot" in options:
        pytest.importorskip("matplotlib")  # figures are refused first without it
    (tmp_path / "alias.txt").symlink_to(corpus)
    (tmp_path / "alias.png").symlink_to(corpus)
    data = corpus.read_bytes()
    args = [a.format(corpus=corpus, tmp=tmp_path) for a in options]
    line = one_line_error(invoke("train", corpus, "--steps", "2", *SMALL, *args), exit_code=2)
    assert "writing it would destroy that file" in line
    assert corpus.read_bytes() == data
    assert not (tmp_path / "m.png").exists() and not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
@pytest.mark.parametrize("command", ["score", "train"])
def test_a_device_as_the_data_file_is_refused_not_read_forever(tmp_path, lm_model, device, command):
    """Was: reading /dev/zero until memory ran out."""
    import os

    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    if command == "score":
        args = ["score", lm_model, device]
    else:
        args = ["train", device, "--out", tmp_path / "z.npz", "--steps", "2", *SMALL]
    line = one_line_error(invoke(*args))
    assert f"{device}: a device, not a text file" in line


def test_resuming_into_a_new_file_does_not_claim_it_holds_a_model(
    tmp_path, corpus, lm_model, monkeypatch
):
    """Was: 'new.npz holds the model from step 3' about a file never written."""
    _SpikeAt(monkeypatch, 1)  # the resumed run's first step, before anything is written
    out = tmp_path / "new.npz"
    line = one_line_error(
        invoke("train", corpus, "--resume", lm_model, "--out", out, "--steps", 10, "--no-progress")
    )
    assert "training diverged" in line and f"{out} was not written" in line
    assert not out.exists()


def test_a_failed_run_never_overwrites_a_good_model(tmp_path, corpus, lm_model):
    """Was: --lr 1e300 --eval-every 1 wrote a model of NaN over the existing --out."""
    good = lm_model.read_bytes()
    args = ["--out", lm_model, "--steps", "5", "--lr", "1e300", "--eval-every", "1", *SMALL]
    line = one_line_error(invoke("train", corpus, *args))
    assert "step 1: the update made" in line and "NaN or infinite" in line
    assert lm_model.read_bytes() == good


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--lr", "nan"], "--lr must be a positive finite number"),
        (["--cell", "evil"], "unknown cell 'evil'"),
        (["--task", "evil"], "unknown task 'evil'"),
        (["--steps", "0"], "--steps"),
        (["--device", "cuda:7"], "cuda:7"),
    ],
)
def test_a_data_parallel_run_checks_its_options_before_any_process_starts(
    tmp_path, corpus, monkeypatch, args, says
):
    """Was: every rank printed the error, then torch's launcher its own lines of failure."""
    import seqkit.cli

    pytest.importorskip("torch")

    def launch(nproc, options):
        raise AssertionError("launched processes for a command line that cannot run")

    monkeypatch.setattr(seqkit.cli, "_launch", launch)
    out = tmp_path / "m.npz"
    result = invoke("train", corpus, "--out", out, "--nproc", 2, "--backend", "torch", *args)
    line = one_line_error(result, exit_code=result.exit_code or 1)
    assert says in line and not out.exists()


@pytest.mark.parametrize("plot", ["{model}", "{data}"])
def test_evaluate_never_draws_over_its_model_or_data(tmp_path, plot):
    """Was: evaluate --plot over MODEL (or FILE) replaced it with the figure, exit 0."""
    pytest.importorskip("matplotlib")
    data = tmp_path / "cls.png"  # a figure's name, so only the collision is wrong
    data.write_text("".join(f"word{i % 3} w{i}\t{'ab'[i % 2]}\n" for i in range(20)))
    model = tmp_path / "m.png"
    args = ["--task", "classify", "--steps", "2", *SMALL]
    assert invoke("train", data, "--out", model, *args).exit_code == 0
    before = {p: p.read_bytes() for p in (model, data)}
    target = plot.format(model=model, data=data)
    line = one_line_error(invoke("evaluate", model, data, "--plot", target), exit_code=2)
    assert "writing it would destroy that file" in line
    assert {p: p.read_bytes() for p in (model, data)} == before


@pytest.mark.parametrize("flag", ["--seed", "--batch-size", "--steps", "--checkpoint-every"])
def test_a_count_beyond_what_a_checkpoint_records_is_refused(tmp_path, corpus, flag):
    """Was: --seed 10**44 trained and wrote a model that evaluate and --resume then refused."""
    out = tmp_path / "m.npz"
    result = invoke("train", corpus, "--out", out, *SMALL, flag, 2**62 + 1)
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    assert str(2**62) in result.output and not out.exists()


def test_an_output_path_ending_in_a_slash_is_a_folder_not_a_file(tmp_path, corpus):
    """Was: --out newdir/ wrote a file called newdir."""
    line = one_line_error(
        invoke("train", corpus, "--out", f"{tmp_path}/new/", "--steps", 2, *SMALL), exit_code=2
    )
    assert "names a folder" in line and not (tmp_path / "new").exists()
