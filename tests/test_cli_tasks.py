"""The task commands (predict, evaluate, corpora), wrong-kind models, and the no-traceback sweep."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import seqkit
from seqkit.cli import cli
from seqkit.tasks import get_task

NAMES = ["anna", "anne", "bob", "bobby", "carl", "carla", "dana", "dan", "eve", "evan"]
SEX = ["f", "f", "m", "m", "m", "f", "f", "m", "f", "m"]

LINES = {
    "lm": NAMES,
    "classify": [f"{n}\t{s}" for n, s in zip(NAMES, SEX)],
    "tag": [
        f"{n}{m}\t{' '.join('B' + ' I' * (len(n) - 1))} {' '.join('B' + ' I' * (len(m) - 1))}"
        for n, m in zip(NAMES, reversed(NAMES))
    ],
    "translate": [f"{n}\t{n[::-1]}" for n in NAMES],
}


def run(*args, catch=False):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=catch)


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train(task_name, file, out, *extra, catch=False):
    return run(
        "train",
        "--task",
        task_name,
        file,
        "--out",
        out,
        "--steps",
        3,
        "--hidden-size",
        8,
        "--batch-size",
        4,
        "--lr",
        0.01,
        "--no-progress",
        *extra,
        catch=catch,
    )


def build(task_name, tmp_path, *, backend="numpy"):
    """A small model of ``task_name`` trained a few steps by ``seqkit train --task``."""
    file = write(tmp_path / f"{task_name}-train.tsv", LINES[task_name])
    path = tmp_path / f"{task_name}.npz"
    result = train(task_name, file, path, "--backend", backend, "--dev-fraction", 0.3)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    return {name: build(name, tmp) for name in LINES}


@pytest.fixture
def data(tmp_path):
    return {name: write(tmp_path / f"{name}.tsv", lines) for name, lines in LINES.items()}


# --- predict, evaluate ------------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(LINES))
def test_predict_one_line_per_input(task, models, data):
    result = run("predict", models[task], data[task])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(NAMES)
    if task == "classify":
        assert set(lines) <= {"f", "m"}
    elif task == "tag":
        for line, name in zip(lines, NAMES):
            assert len(line.split()) == len(name) + len(NAMES[::-1][NAMES.index(name)])
            assert set(line.split()) <= {"B", "I"}
    elif task == "lm":
        assert all(float(line) < 0 for line in lines)


# the keys of one --json record of predict, per task
PREDICT_KEYS = {
    "lm": {"text", "log_prob", "tokens"},
    "classify": {"text", "label", "probabilities"},
    "tag": {"text", "tokens", "tags", "scores"},
    "translate": {"source", "translation", "log_prob"},
}


@pytest.mark.parametrize("task", sorted(LINES))
def test_predict_json_shapes(task, models, data):
    result = run("predict", models[task], data[task], "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(NAMES)
    for record in records:
        assert set(record) == PREDICT_KEYS[task]
    if task == "classify":
        for record in records:
            assert set(record["probabilities"]) == {"f", "m"}
            assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
            assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
    if task == "tag":
        for record in records:
            assert len(record["tags"]) == len(record["tokens"]) == len(record["scores"])
            assert all(0 < s <= 1 for s in record["scores"])


EVALUATE_KEYS = {
    "lm": {"examples", "tokens", "nats_per_token", "perplexity"},
    "classify": {"examples", "accuracy", "macro_f1", "per_label", "confusion_matrix"},
    "tag": {"examples", "tokens", "token_accuracy", "per_tag", "span_f1"},
    "translate": {"examples", "exact_match", "char_error_rate"},
}


@pytest.mark.parametrize("task", sorted(LINES))
def test_evaluate_json_and_text(task, models, data):
    result = run("evaluate", models[task], data[task], "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert set(metrics) == EVALUATE_KEYS[task]
    assert metrics["examples"] == len(NAMES)
    text = run("evaluate", models[task], data[task])
    assert text.exit_code == 0, text.output
    assert text.stdout.strip() == get_task(task).format_metrics(metrics).strip()


def test_evaluate_classify_confusion_matrix_counts(models, data):
    metrics = json.loads(run("evaluate", models["classify"], data["classify"], "--json").stdout)
    cm = metrics["confusion_matrix"]
    assert cm["labels"] == ["f", "m"]
    matrix = np.array(cm["matrix"])
    assert matrix.sum() == len(NAMES)
    assert matrix.sum(axis=1).tolist() == [SEX.count("f"), SEX.count("m")]
    assert metrics["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())


def test_beam_search_for_translate_and_refused_elsewhere(models, data):
    result = run("predict", models["translate"], data["translate"], "--beam", 3)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(NAMES)
    refused = run("predict", models["classify"], data["classify"], "--beam", 3)
    assert refused.exit_code == 1
    assert "does not decode: beam_size must be 1 (got 3)" in refused.stderr


def test_evaluate_names_a_malformed_line(models, tmp_path):
    bad = write(tmp_path / "bad.tsv", ["anna\tf", "bob m", "carl\tm"])
    result = run("evaluate", models["classify"], bad)
    assert result.exit_code == 1
    assert f"{bad} line 2: expected 2 tab-separated fields" in result.stderr
    assert result.stderr.count("\n") == 1


def test_evaluate_names_an_unknown_label(models, tmp_path):
    bad = write(tmp_path / "bad.tsv", ["anna\tf", "bob\tx"])
    result = run("evaluate", models["classify"], bad)
    assert result.exit_code == 1
    assert "line 2: label 'x' is not one of the model's labels (f, m)" in result.stderr


def test_label_names_survive_a_backend_switch(tmp_path, data):
    pytest.importorskip("torch")
    path = build("classify", tmp_path, backend="numpy")
    on_numpy = run("predict", path, data["classify"], "--json", "--backend", "numpy")
    on_torch = run("predict", path, data["classify"], "--json", "--backend", "torch")
    assert on_numpy.exit_code == on_torch.exit_code == 0, on_torch.output
    a = [json.loads(line) for line in on_numpy.stdout.splitlines()]
    b = [json.loads(line) for line in on_torch.stdout.splitlines()]
    assert [r["label"] for r in a] == [r["label"] for r in b]
    for ra, rb in zip(a, b):
        assert set(rb["probabilities"]) == {"f", "m"}
        for label in ("f", "m"):
            assert rb["probabilities"][label] == pytest.approx(ra["probabilities"][label], abs=1e-5)


def test_corpora_lists_task_and_size():
    result = run("corpora", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["name-sex"]["task"] == "classify" and rows["name-sex"]["size"] == 4832
    assert rows["dates"]["task"] == "translate"
    assert rows["surname-split"]["task"] == "tag"
    assert rows["surnames"]["task"] == "lm" and rows["surnames"]["size"] == 88799
    text = run("corpora").stdout.splitlines()
    assert text[0].split() == ["name", "task", "examples", "description"]
    assert any(line.split()[:3] == ["name-sex", "classify", "4,832"] for line in text)
    # the size column alone carries the count: no description repeats it
    assert not any(row["description"][0].isdigit() for row in rows.values())


@pytest.mark.parametrize("name", ["name-sex", "surname-split"])
def test_corpus_split_lines_are_the_split_train_makes(name):
    from seqkit.corpora import get_corpus

    corpus = get_corpus(name)
    task = get_task(corpus.task)
    train_split, dev_split = task.from_corpus(corpus).split(0.2)
    out = {}
    for split in ("train", "dev"):
        result = run("corpora", name, "--split", split, "--dev-fraction", "0.2")
        assert result.exit_code == 0, result.output
        out[split] = task.read(result.stdout.splitlines(), split)
    assert out["dev"].inputs == dev_split.inputs and out["dev"].targets == dev_split.targets
    assert out["train"].inputs == train_split.inputs
    assert len(out["train"]) + len(out["dev"]) == corpus.size()
    everything = run("corpora", name).stdout.splitlines()
    assert everything == corpus.load()


@pytest.mark.parametrize(
    "args, says",
    [
        (["nosuch"], "unknown corpus 'nosuch'; available: dates"),
        (["dates", "--split", "test"], "'test' is not one of 'all', 'train', 'dev'"),
        (["dates", "--dev-fraction", "1"], "--dev-fraction"),
        (["dates", "--json"], "--json lists the corpora; it takes no NAME"),
    ],
)
def test_corpus_export_errors_are_one_line(args, says):
    result = run("corpora", *args)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert says in result.output


def test_a_closed_pipe_ends_quietly():
    import subprocess
    import sys

    reader = "import sys; sys.stdin.readline()"  # reads one line, then closes the pipe
    seqkit_cmd = [sys.executable, "-m", "seqkit", "corpora", "surnames"]
    producer = subprocess.Popen(seqkit_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    consumer = subprocess.run([sys.executable, "-c", reader], stdin=producer.stdout)
    producer.stdout.close()
    stderr = producer.communicate(timeout=120)[1].decode()
    assert consumer.returncode == 0
    assert producer.returncode == 141 and stderr == "", stderr


# --- wrong kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, task, takes",
    [
        ("sample", "classify", "'sample' takes a LanguageModel"),
        ("sample", "tag", "'sample' takes a LanguageModel"),
        ("sample", "translate", "'sample' takes a LanguageModel"),
        ("score", "translate", "'score' takes a LanguageModel"),
        ("score", "classify", "'score' takes a LanguageModel"),
    ],
)
def test_a_model_of_the_wrong_kind_is_one_line(command, task, takes, models, data):
    args = [command, models[task]] + ([data["lm"]] if command == "score" else [])
    result = run(*args)
    assert result.exit_code == 1
    kind = get_task(task).model_kind
    assert f"is a {kind} (task '{task}'): {takes}; use seqkit train, predict, evaluate" in (
        result.stderr
    )
    assert result.stderr.count("\n") == 1


# --- the last line of defence -----------------------------------------------------------------


def test_an_unexpected_exception_is_one_line(monkeypatch, models, data):
    task = get_task("classify")

    def broken(*args, **kwargs):
        raise RuntimeError("the flux\ncapacitor")

    monkeypatch.setattr(type(task), "predict", broken)
    result = run("predict", models["classify"], data["classify"], catch=True)
    assert result.exit_code == 1
    assert result.stderr.startswith("seqkit: internal error: RuntimeError: the flux capacitor")
    assert result.stderr.count("\n") == 1
    debug = run("--debug", "predict", models["classify"], data["classify"], catch=True)
    assert isinstance(debug.exception, RuntimeError)


def test_debug_shows_the_traceback_of_an_input_error(tmp_path, models):
    result = run("--debug", "predict", models["lm"], tmp_path / "missing.txt", catch=True)
    assert result.exception is not None and not isinstance(result.exception, SystemExit)


def test_plot_format_is_refused_before_any_work(models, data, tmp_path):
    result = run("evaluate", models["classify"], data["classify"], "--plot", tmp_path / "cm.xyz")
    assert result.exit_code == 2 or "needs matplotlib: pip install 'seqkit[plot]'" in result.stderr
    if result.exit_code == 2:
        assert "'.xyz'" in result.stderr and ".png" in result.stderr


def test_evaluate_plot_draws_the_confusion_matrix(models, data, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "cm.png"
    result = run("evaluate", models["classify"], data["classify"], "--plot", png)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refused = run("evaluate", models["lm"], data["lm"], "--plot", png)
    assert refused.exit_code == 1 and "task 'lm' has none" in refused.stderr


def test_without_matplotlib_figures_say_how_to_install(monkeypatch, models, data, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    for args in (
        ["gradients", "--out", tmp_path / "g.png"],
        ["evaluate", models["classify"], data["classify"], "--plot", tmp_path / "cm.png"],
    ):
        result = run(*args)
        assert result.exit_code == 1
        assert "needs matplotlib: pip install 'seqkit[plot]'" in result.stderr
        assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "out, message",
    [
        ("nodir/g.png", "the directory of '{tmp}/nodir/g.png' ('{tmp}/nodir') does not exist"),
        (".", "is a directory"),
    ],
)
def test_gradients_output_path_checked_first(out, message, tmp_path):
    pytest.importorskip("matplotlib")
    result = run("gradients", "--out", tmp_path / out)
    assert result.exit_code == 2
    assert message.format(tmp=tmp_path) in result.stderr


# --- the sweep: every command, broken inputs, never a traceback -------------------------------


def _broken(tmp_path, models):
    """``(bad models, bad data files)``: each fails as that argument."""
    d = tmp_path / "broken"
    d.mkdir()
    (d / "latin1.txt").write_bytes("jos\xe9\n".encode("latin-1"))
    (d / "empty.txt").write_text("")
    (d / "blank.txt").write_text("\n \n")
    good = models["lm"].read_bytes()
    (d / "truncated.npz").write_bytes(good[: len(good) // 2])
    flipped = bytearray(good)
    flipped[len(good) // 3] ^= 0xFF
    (d / "flipped.npz").write_bytes(bytes(flipped))
    (d / "text.npz").write_text("not a checkpoint\n")
    files = [d / "missing.txt", d, d / "latin1.txt", d / "empty.txt", d / "blank.txt"]
    bad_models = files + [d / "truncated.npz", d / "flipped.npz", d / "text.npz"]
    return bad_models, files


def _sweep_cases(tmp_path, models, data):
    bad_models, bad_files = _broken(tmp_path, models)
    out = tmp_path / "out.npz"
    lm, text = models["lm"], data["lm"]
    for bad in bad_models:
        yield from (["sample", bad], ["score", bad, text], ["predict", bad, text])
        yield ["evaluate", bad, text]
    for bad in bad_files:
        yield from (["score", lm, bad], ["predict", lm, bad], ["evaluate", lm, bad])
        yield ["evaluate", models["classify"], bad]
        yield ["train", bad, "--out", out, "--steps", 1, "--no-progress"]
        yield ["train", "--task", "tag", bad, "--out", out, "--steps", 1, "--no-progress"]
        yield ["gradients", "--out", bad]
    for kind in ("classify", "tag", "translate"):  # not language models
        yield from (["sample", models[kind]], ["score", models[kind], text])
    yield from (
        ["evaluate", models["classify"], text],  # no labels in an lm file
        ["sample", lm, "-n", 0],
        ["sample", lm, "--top-p", 2],
        ["sample", lm, "--backend", "jaxx"],
        ["predict", lm, text, "--beam", 0],
        ["predict", models["translate"], text, "--beam", "x"],
        ["evaluate", lm, text, "--plot", tmp_path / "p.xyz"],
        ["gradients", "--out", tmp_path / "g.png", "--cells", "lstn"],
        ["gradients", "--out", tmp_path / "g.png", "--steps", 1],
        ["gradients", "--out", tmp_path / "nodir" / "g.png"],
        ["train", text, "--out", out, "--hidden-size", 0],
        ["train", text, "--out", out, "--lr", "nan", "--steps", 2, "--no-progress"],
        ["train", text, "--out", out, "--cell", "lstn"],
        ["train", "--corpus", "klingon", "--out", out],
        ["train", "--task", "classify", "--corpus", "surnames", "--out", out],
        ["train", "--task", "nope", text, "--out", out],
        ["train", "--task", "translate", text, "--out", out],  # no tab
        ["train", text, "--out", tmp_path / "nodir" / "m.npz"],
        ["train", text, "--out", out, "--max-vocab", 2],
        ["train", text, "--out", out, "--max-len", 1, "--steps", 1],  # every example dropped
        ["train", "--resume", models["classify"], "--steps", 1],  # no training state
        ["train", "--resume", bad_models[-1]],
        ["corpora", "--bogus"],
        ["no-such-command"],
    )


def test_no_command_prints_a_traceback(tmp_path, models, data):
    failures = []
    for args in _sweep_cases(tmp_path, models, data):
        result = run(*args, catch=True)
        raised = result.exception is not None and not isinstance(result.exception, SystemExit)
        # every case is broken: a non-zero exit with a message, never an exception
        if raised or "Traceback" in result.output or result.exit_code == 0 or not result.stderr:
            failures.append((args, result.exit_code, repr(result.exception), result.output[-300:]))
    assert not failures, "\n".join(map(str, failures))


# --- training from the command line -----------------------------------------------------------


@pytest.mark.parametrize("task", sorted(LINES))
def test_train_reports_the_task_dev_metric(task, tmp_path, data):
    result = train(task, data[task], tmp_path / "m.npz", "--dev-fraction", 0.3, "--eval-every", 3)
    assert result.exit_code == 0, result.output
    headline = get_task(task).headline
    assert f"step 3: dev {headline} " in result.stderr
    assert result.stdout.startswith("dev: ")
    model = seqkit.load(tmp_path / "m.npz")
    assert model.kind == get_task(task).model_kind
    assert model.metadata["task"]["name"] == task
    assert model.metadata["cli"]["options"]["task"] == task


def test_label_names_survive_cli_training_and_save(tmp_path, models):
    model = seqkit.load(models["classify"])
    assert model.metadata["task"]["labels"] == ["f", "m"]
    assert "cli" in model.metadata  # the CLI's record is merged in, not put in its place


def test_task_defaults_fill_the_options_not_given(tmp_path, data):
    result = run(
        "train",
        "--task",
        "classify",
        data["classify"],
        "--out",
        tmp_path / "m.npz",
        "--steps",
        2,
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    model = seqkit.load(tmp_path / "m.npz")
    defaults = get_task("classify").defaults.model
    assert model.cell.name == defaults["cell"]
    assert model.hidden_size == defaults["hidden_size"]
    assert model.embedding_size == defaults["embedding_size"]
    assert (
        model.metadata["cli"]["options"]["batch_size"]
        == get_task("classify").defaults.fit["batch_size"]
    )


def test_model_options_reach_the_model(tmp_path, data):
    out = tmp_path / "m.npz"
    result = train(
        "tag",
        data["tag"],
        out,
        "--bidirectional",
        "--embedding-size",
        4,
        "--dropout",
        0.1,
        "--layers",
        2,
        "--cell",
        "gru",
    )
    assert result.exit_code == 0, result.output
    model = seqkit.load(out)
    assert (model.bidirectional, model.embedding_size, model.dropout, model.num_layers) == (
        True,
        4,
        0.1,
        2,
    )
    assert model.cell.name == "gru"


def test_an_option_the_model_does_not_take_is_one_line(tmp_path, data):
    result = train("lm", data["lm"], tmp_path / "m.npz", "--bidirectional")
    assert result.exit_code == 2
    assert "task 'lm' (LanguageModel) does not take --bidirectional" in result.stderr
    assert not (tmp_path / "m.npz").exists()


def test_unknown_task_lists_the_tasks(tmp_path, data):
    result = train("klassify", data["lm"], tmp_path / "m.npz")
    assert result.exit_code == 1
    assert "unknown task 'klassify'; available: classify, lm, tag, translate" in result.stderr


def test_a_corpus_of_another_task_is_refused(tmp_path):
    result = run("train", "--task", "classify", "--corpus", "dates", "--out", tmp_path / "m.npz")
    assert result.exit_code == 2
    assert "corpus 'dates' is for task 'translate', not 'classify': use --task translate" in (
        result.stderr
    )


@pytest.mark.parametrize(
    "task, line, fault",
    [
        (
            "classify",
            "bob m",
            "line 2: expected 2 tab-separated fields (text<TAB>label), got 1 (no tab)",
        ),
        (
            "classify",
            "bob\tm\tx",
            "line 2: expected 2 tab-separated fields (text<TAB>label), got 3 (2 tabs)",
        ),
        ("classify", "bob\t ", "line 2: the label field is empty (expected text<TAB>label)"),
        ("classify", "\tm", "line 2: the text field is empty (expected text<TAB>label)"),
        ("tag", "bob\tB I", "line 2: 3 char-level tokens but 2 tags"),
        ("tag", "bob", "line 2: expected 2 tab-separated fields (tokens<TAB>tags), got 1 (no tab)"),
        ("translate", "bob\t", "line 2: the target field is empty (expected source<TAB>target)"),
        ("translate", "bob", "line 2: expected 2 tab-separated fields (source<TAB>target), got 1"),
    ],
)
def test_a_malformed_line_stops_training_with_file_and_line(task, line, fault, tmp_path):
    file = write(tmp_path / "bad.tsv", [LINES[task][0], line, LINES[task][1]])
    out = tmp_path / "m.npz"
    result = train(task, file, out)
    assert result.exit_code == 1
    assert f"{file} {fault}" in result.stderr
    assert result.stderr.count("\n") == 1 and not out.exists()


def test_a_non_utf8_file_names_the_byte_offset(tmp_path):
    file = tmp_path / "latin1.tsv"
    file.write_bytes("anna\tf\njos\xe9\tm\n".encode("latin-1"))
    result = train("classify", file, tmp_path / "m.npz")
    assert result.exit_code == 1
    assert f"{file}: not UTF-8 text: byte 0xe9 at byte offset 10 (line 2)" in result.stderr


def test_max_len_drops_and_reports(tmp_path):
    lines = LINES["classify"] + ["x" * 40 + "\tm"]
    file = write(tmp_path / "long.tsv", lines)
    result = train("classify", file, tmp_path / "m.npz", "--max-len", 10)
    assert result.exit_code == 0, result.output
    assert (
        f"seqkit: dropped 1 of 11 examples longer than --max-len 10 tokens (the longest, "
        f"{file} line 11, has 40)" in result.stderr
    )


def test_max_len_truncate_cuts_tags_with_tokens(tmp_path, data):
    result = train("tag", data["tag"], tmp_path / "m.npz", "--max-len", 5, "--truncate")
    assert result.exit_code == 0, result.output
    assert "seqkit: truncated 10 of 10 examples longer than --max-len 5" in result.stderr
    refused = train(
        "translate", data["translate"], tmp_path / "t.npz", "--max-len", 2, "--truncate"
    )
    assert refused.exit_code == 2 and "cannot be truncated" in refused.stderr


def test_max_vocab_and_min_count_cap_the_vocabulary(tmp_path, data):
    result = train("lm", data["lm"], tmp_path / "m.npz", "--max-vocab", 6, "--dev-fraction", 0)
    assert result.exit_code == 0, result.output
    assert len(seqkit.load(tmp_path / "m.npz").vocab) == 6
    result = train("lm", data["lm"], tmp_path / "c.npz", "--min-count", 100)
    assert result.exit_code == 0, result.output
    assert len(seqkit.load(tmp_path / "c.npz").vocab) == 3  # only the specials


def test_a_huge_vocabulary_is_warned_about(tmp_path):
    words = [" ".join(f"w{i}x{j}" for j in range(11)) for i in range(1000)]
    file = write(tmp_path / "words.txt", words)
    result = run(
        "train",
        file,
        "--level",
        "word",
        "--out",
        tmp_path / "m.npz",
        "--steps",
        1,
        "--hidden-size",
        4,
        "--batch-size",
        2,
        "--no-progress",
        "--dev-fraction",
        0,
    )
    assert result.exit_code == 0, result.output
    assert "seqkit: warning: a vocabulary of 11,003 tokens" in result.stderr
    assert "--max-vocab N or --min-count N" in result.stderr


def test_resume_with_steps_not_above_the_saved_step_is_refused(tmp_path, data):
    out = tmp_path / "m.npz"
    assert train("classify", data["classify"], out, "--checkpoint-every", 3).exit_code == 0
    before = out.read_bytes()
    result = run("train", data["classify"], "--resume", out, "--steps", 2)
    assert result.exit_code == 1
    assert "the run is at step 3 and --steps is 2; give a larger --steps" in result.stderr
    assert out.read_bytes() == before
    again = run("train", data["classify"], "--resume", out, "--steps", 5, "--no-progress")
    assert again.exit_code == 0, again.output
    model = seqkit.load(out)
    assert model.training_state.step == 5 and model.metadata["task"]["labels"] == ["f", "m"]


@pytest.mark.parametrize(
    "out, message",
    [
        ("nodir/m.npz", "the directory of '{tmp}/nodir/m.npz' ('{tmp}/nodir') does not exist"),
        (".", "is a directory"),
    ],
)
def test_train_output_path_checked_before_training(out, message, tmp_path, data):
    result = train("classify", data["classify"], tmp_path / out)
    assert result.exit_code == 2
    assert message.format(tmp=tmp_path) in result.stderr
    assert "training" not in result.stderr


def test_train_plot_format_checked_before_training(tmp_path, data):
    pytest.importorskip("matplotlib")
    result = train("lm", data["lm"], tmp_path / "m.npz", "--plot", tmp_path / "loss.xyz")
    assert result.exit_code == 2 and "'.xyz'" in result.stderr
    assert "training" not in result.stderr and not (tmp_path / "m.npz").exists()
