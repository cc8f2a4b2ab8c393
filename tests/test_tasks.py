"""Tasks: the registry, every reader's formats and malformed lines, and each task end to end."""

import json
import types

import attrs
import numpy as np
import pytest

import seqkit
from seqkit.errors import UnknownNameError
from seqkit.models import load
from seqkit.tasks import DataError, Examples, Task, TaskDefaults, get_task, list_tasks, task_of
from seqkit.tasks.classify import labels_of
from seqkit.tasks.lm import LanguageModelling

SMALL = {"hidden_size": 4, "backend": "numpy", "dtype": "float64", "seed": 0}
FIT = {"steps": 3, "batch_size": 2, "seed": 0}

CLASSIFY = ["abc\tyes", "", "cab\tno", "bca\tyes", "  aab \t no ", "ccc\tmaybe"]
TAG = ["ab\tB I", "bab\tB B I", "aa\tI I"]
TAG_WORDS = ["the cat sat .\tO B-X O O", "a dog\tO B-X"]
TRANSLATE = ["9 mar 1993\t1993-03-09", "10 apr 2001\t2001-04-10", "3/9/93\t1993-03-09"]
LM = ["smith", "jones", "\tsmith\tjones"]


def test_the_four_built_in_tasks_are_registered():
    assert list_tasks() == ["classify", "lm", "tag", "translate"]
    kinds = {name: get_task(name).model_kind for name in list_tasks()}
    assert kinds == {
        "classify": "SequenceClassifier",
        "lm": "LanguageModel",
        "tag": "SequenceTagger",
        "translate": "Seq2Seq",
    }
    assert get_task("tag").file_format == "tokens<TAB>tags"
    info = {p.name: p for p in seqkit.list_plugins()}["tasks"]
    assert info.registered == {"task": ("classify", "lm", "tag", "translate")}


def test_unknown_task_lists_the_choices():
    with pytest.raises(UnknownNameError, match="unknown task 'clasify'; available: classify, lm"):
        get_task("clasify")


def test_a_plugin_adds_a_task():
    class Shouting(LanguageModelling):
        name = "shout"
        description = "a language model of upper-case text"

        def _parse(self, values, level):
            return values[0].upper(), None

    plugin = types.SimpleNamespace(seqkit_register_tasks=seqkit.hookimpl(lambda: [Shouting()]))
    seqkit.register_plugin(plugin, name="shout-plugin")
    try:
        task = get_task("shout")
        assert task.read(["abc"], "f").inputs == ("ABC",)
        model = task.build_model(task.read(["abc"], "f"), **SMALL)
        assert task_of(model) is task  # by the name in its metadata, not by its kind
    finally:
        seqkit.unregister_plugin("shout-plugin")
    assert "shout" not in list_tasks()


# --- reading ----------------------------------------------------------------------------------


def test_readers_parse_each_format():
    data = get_task("classify").read(CLASSIFY, "train.tsv")
    assert data.inputs == ("abc", "cab", "bca", "aab", "ccc")  # fields stripped
    assert data.targets == ("yes", "no", "yes", "no", "maybe")
    assert data.line_numbers == (1, 3, 4, 5, 6)  # the blank line 2 is skipped, still counted
    assert data.where(1) == "train.tsv line 3"
    tag = get_task("tag").read([line + "\r\n" for line in TAG], "t.tsv")
    assert tag.targets == (("B", "I"), ("B", "B", "I"), ("I", "I"))
    words = get_task("tag").read(TAG_WORDS, "w.tsv", level="word")
    assert words.inputs == ("the cat sat .", "a dog") and words.level == "word"
    pairs = get_task("translate").read(TRANSLATE, "d.tsv")
    assert pairs.targets[2] == "1993-03-09"
    lm = get_task("lm").read(LM, "names.txt")
    assert lm.inputs == ("smith", "jones", "smith\tjones") and lm.targets is None


@pytest.mark.parametrize(
    "task, lines, level, message",
    [
        (
            "classify",
            ["abc\tyes", "abc yes"],
            "char",
            "f.tsv line 2: expected 2 tab-separated fields \\(text<TAB>label\\), got 1 \\(no tab\\)",
        ),
        (
            "classify",
            ["abc\tyes\tno"],
            "char",
            "f.tsv line 1: expected 2 tab-separated fields \\(text<TAB>label\\), got 3 \\(2 tabs\\)",
        ),
        ("classify", ["\tyes"], "char", "f.tsv line 1: the text field is empty"),
        ("classify", ["abc\t  "], "char", "f.tsv line 1: the label field is empty"),
        ("translate", ["", "9 mar 1993"], "char", "f.tsv line 2: expected 2 tab-separated"),
        ("translate", ["9 mar 1993\t"], "char", "f.tsv line 1: the target field is empty"),
        ("translate", ["\t1993-03-09"], "char", "f.tsv line 1: the source field is empty"),
        ("tag", ["abc\tB I"], "char", "f.tsv line 1: 3 char-level tokens but 2 tags"),
        ("tag", ["ab\tB I I"], "char", "f.tsv line 1: 2 char-level tokens but 3 tags"),
        ("tag", ["a b\tB I"], "char", "f.tsv line 1: 3 char-level tokens but 2 tags"),
        ("tag", ["the cat\tO"], "word", "f.tsv line 1: 2 word-level tokens but 1 tags"),
        (
            "tag",
            ["new york-based\tB I I"],
            "word",
            "f.tsv line 1: token 'york-based' is 3 word-level tokens \\(york - based\\); "
            "separate them with spaces",
        ),
        ("tag", ["ab\t"], "char", "f.tsv line 1: the tags field is empty"),
        ("tag", ["ab"], "char", "f.tsv line 1: expected 2 tab-separated fields \\(tokens<TAB>tags"),
        ("lm", ["", "  "], "char", "f.tsv: holds no examples \\(every line is empty\\)"),
        ("classify", [], "char", "f.tsv: holds no examples .* expected lines of text<TAB>label"),
    ],
)
def test_every_malformed_line_names_file_line_and_fault(task, lines, level, message):
    with pytest.raises(DataError, match=message):
        get_task(task).read(lines, "f.tsv", level=level)


def test_read_refuses_an_unknown_level():
    with pytest.raises(ValueError, match="'level' must be one of 'char', 'word' \\(got 'byte'\\)"):
        get_task("lm").read(["a"], "f", level="byte")


def test_read_inputs_takes_the_first_field_of_labelled_or_bare_lines():
    assert get_task("classify").read_inputs(["abc\tyes", "", "cab"], "f") == ["abc", "cab"]
    assert get_task("lm").read_inputs(["a\tb", " c "], "f") == ["a\tb", "c"]
    with pytest.raises(DataError, match="f: holds no inputs"):
        get_task("tag").read_inputs(["", " "], "f")


def test_split_keeps_line_numbers_and_targets_with_their_inputs():
    data = get_task("classify").read([f"text{i}\t{'ab'[i % 2]}" for i in range(200)], "f")
    train, dev = data.split(0.3)
    assert sorted(train.line_numbers + dev.line_numbers) == list(range(1, 201))
    for part in (train, dev):
        for text, label, number in zip(part.inputs, part.targets, part.line_numbers):
            assert text == f"text{number - 1}" and label == "ab"[(number - 1) % 2]


# --- models -----------------------------------------------------------------------------------


def test_classify_maps_sorted_string_labels_to_ids_and_keeps_the_names():
    task = get_task("classify")
    data = task.read(CLASSIFY, "train.tsv")
    model = task.build_model(data, **SMALL)
    assert model.num_classes == 3
    assert model.metadata["task"] == {"name": "classify", "labels": ["maybe", "no", "yes"]}
    texts, ids = task.fit_data(model, data)
    assert ids == [2, 1, 2, 1, 0] and texts == list(data.inputs)
    dev = task.read(["abc\tperhaps"], "dev.tsv")
    with pytest.raises(
        DataError, match="dev.tsv line 1: label 'perhaps' is not one of the model's labels "
    ):
        task.fit_data(model, dev)


def test_classify_needs_two_labels():
    task = get_task("classify")
    with pytest.raises(DataError, match="train.tsv: classify needs at least 2 distinct labels"):
        task.build_model(task.read(["a\tx", "b\tx"], "train.tsv"), **SMALL)


def test_build_model_refuses_unknown_options_and_fills_defaults():
    task = get_task("translate")
    data = task.read(TRANSLATE, "d.tsv")
    with pytest.raises(TypeError, match=r"got unknown model options \['bidirectional'\]"):
        task.build_model(data, bidirectional=True, **SMALL)
    model = task.build_model(data, **SMALL)
    assert model.config()["cell"] == task.defaults.model["cell"]
    assert model.config()["hidden_size"] == 4  # the given option beats the default


def test_tasks_refuse_models_of_another_kind():
    tag = get_task("tag")
    tagger = tag.build_model(tag.read(TAG, "t.tsv"), **SMALL)
    for name in ("classify", "translate", "lm"):
        with pytest.raises(ValueError, match=f"task '{name}' needs a .*, got a SequenceTagger"):
            get_task(name).predict(tagger, ["ab"])


def test_beam_search_is_refused_by_tasks_that_do_not_decode():
    tag = get_task("tag")
    tagger = tag.build_model(tag.read(TAG, "t.tsv"), **SMALL)
    with pytest.raises(ValueError, match="task 'tag' does not decode: beam_size must be 1"):
        tag.predict(tagger, ["ab"], beam_size=3)


def test_task_of_reads_metadata_and_falls_back_to_the_kind():
    task = get_task("classify")
    model = task.build_model(task.read(CLASSIFY, "f"), **SMALL)
    assert task_of(model) is task
    vocab = seqkit.Vocabulary.build(["abc"])
    bare = seqkit.SequenceClassifier(vocab, 2, **SMALL)  # built from Python: no task metadata
    assert task_of(bare) is task and labels_of(bare) == ["0", "1"]
    bare.metadata = {"task": {"labels": ["a", "a"]}}
    with pytest.raises(ValueError, match="'task.labels' must be 2 distinct non-empty strings"):
        labels_of(bare)


def end_to_end(task_name, lines, tmp_path, level="char", **predict):
    task = get_task(task_name)
    data = task.read(lines, "train.tsv", level=level)
    model = task.build_model(data, **SMALL)
    model.fit(*task.fit_data(model, data), **FIT)
    records = task.predict(model, data.inputs, **predict)
    assert len(records) == len(data)
    json.dumps(records)  # JSON-able
    lines_out = [task.format_prediction(r) for r in records]
    assert all(isinstance(line, str) and "\n" not in line for line in lines_out)
    metrics = task.evaluate(model, data, **predict)
    assert metrics["examples"] == len(data)
    json.dumps(metrics)
    report = task.format_metrics(metrics)
    path = tmp_path / "model.npz"
    model.save(path)
    return task, data, model, records, metrics, report, load(path, "numpy", dtype="float64")


def test_classify_end_to_end(tmp_path):
    task, data, model, records, metrics, report, loaded = end_to_end("classify", CLASSIFY, tmp_path)
    assert set(records[0]) == {"text", "label", "probabilities"}
    for r in records:
        assert list(r["probabilities"]) == ["maybe", "no", "yes"]
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-12)
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
        assert task.format_prediction(r) == r["label"]
    predicted = [r["label"] for r in records]
    assert metrics["accuracy"] == pytest.approx(
        np.mean([p == t for p, t in zip(predicted, data.targets)])
    )
    assert set(metrics) == {"examples", "accuracy", "macro_f1", "per_label", "confusion_matrix"}
    matrix = np.array(metrics["confusion_matrix"]["matrix"])
    assert matrix.sum() == len(data) and np.trace(matrix) == round(metrics["accuracy"] * 5)
    assert "accuracy:" in report and "true \\ predicted" in report and "macro F1:" in report
    # the label names survive save/load
    assert loaded.metadata["task"] == model.metadata["task"]
    assert task_of(loaded) is task
    assert task.predict(loaded, data.inputs) == records


def test_classify_labels_survive_a_backend_switch(tmp_path):
    pytest.importorskip("torch")
    task, data, model, records, *_ = end_to_end("classify", CLASSIFY, tmp_path)
    on_torch = load(tmp_path / "model.npz", "torch", dtype="float64")
    moved = task.predict(on_torch, data.inputs)
    assert [r["label"] for r in moved] == [r["label"] for r in records]
    for a, b in zip(moved, records):
        for label in b["probabilities"]:
            assert a["probabilities"][label] == pytest.approx(b["probabilities"][label], abs=1e-10)


def test_tag_end_to_end(tmp_path):
    task, data, model, records, metrics, report, loaded = end_to_end("tag", TAG, tmp_path)
    assert model.tags == ("B", "I")
    r = records[1]
    assert r["tokens"] == ["b", "a", "b"] and len(r["tags"]) == len(r["scores"]) == 3
    assert all(0.5 <= s <= 1 for s in r["scores"])  # the chosen of two tags
    assert task.format_prediction(r) == " ".join(r["tags"])
    assert metrics["tokens"] == 7 and "span_f1" in metrics  # B/I tags are IOB
    assert set(metrics["per_tag"]) <= {"B", "I"}
    assert "token accuracy:" in report and "span F1:" in report
    assert task.predict(loaded, data.inputs) == records
    dev = task.read(["ab\tB X"], "dev.tsv")
    with pytest.raises(DataError, match="dev.tsv line 1: tag 'X' is not one of the model's tags"):
        task.evaluate(model, dev)


def test_tag_at_word_level_end_to_end(tmp_path):
    task, data, model, records, metrics, *_ = end_to_end("tag", TAG_WORDS, tmp_path, level="word")
    assert records[0]["tokens"] == ["the", "cat", "sat", "."]
    assert model.vocab.level == "word" and model.tags == ("B-X", "O")
    assert metrics["tokens"] == 6


def test_translate_end_to_end(tmp_path):
    task, data, model, records, metrics, report, loaded = end_to_end(
        "translate", TRANSLATE, tmp_path, beam_size=2
    )
    assert set(records[0]) == {"source", "translation", "log_prob"}
    for r in records:
        expected = model.log_prob(r["source"], r["translation"])
        assert r["log_prob"] == pytest.approx(expected, abs=1e-12) and r["log_prob"] < 0
        assert task.format_prediction(r) == r["translation"]
    assert set(metrics) == {"examples", "exact_match", "char_error_rate"}
    assert "exact match:" in report and "char error rate:" in report


def test_lm_end_to_end(tmp_path):
    task, data, model, records, metrics, report, loaded = end_to_end("lm", LM, tmp_path)
    assert records[0]["tokens"] == 6  # five letters and <EOS>
    assert records[0]["log_prob"] == pytest.approx(model.log_prob("smith"), abs=1e-12)
    assert task.format_prediction(records[0]) == f"{records[0]['log_prob']:.4f}"
    assert metrics["nats_per_token"] == pytest.approx(model.nats_per_token(list(data.inputs)))
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["nats_per_token"]))
    assert "nats/token:" in report
    assert task.commands == ("train", "predict", "evaluate", "sample", "score")


def test_task_defaults_are_frozen_mappings():
    defaults = TaskDefaults(level="word", model={"cell": "gru"}, fit={"steps": 5})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        defaults.level = "char"
    for name in list_tasks():
        task = get_task(name)
        assert isinstance(task, Task) and task.defaults.level in ("char", "word")
        assert {"steps", "batch_size", "lr"} <= set(task.defaults.fit)
        assert task.headline in {"accuracy", "token_accuracy", "exact_match", "nats_per_token"}


def test_examples_of_lm_have_no_targets():
    data = Examples("f", "char", ("a", "b"), None, (1, 2))
    assert data.subset([1]).targets is None and len(data.subset([1])) == 1
