"""Mutated checkpoint metadata (``extra.metadata``: the CLI's record, the task's) under
``train --resume``, ``sample`` and ``predict``: each mutation either works or is one clear line
naming the field; never a traceback, never the last line of defence."""

import copy
import json
import random

import attrs
import pytest
from click.testing import CliRunner

from seqkit.checkpoint import read_checkpoint, save_checkpoint
from seqkit.cli import cli

NAMES = ["anna", "anne", "annie", "bob", "bobby", "carl", "carla", "dana", "dan", "eve"] * 3
SEXES = ["f", "f", "f", "m", "m", "m", "f", "f", "m", "f"] * 3
SMALL = ["--hidden-size", "4", "--batch-size", "4", "--no-progress", "--checkpoint-every", "2"]
# a value of every JSON type, and values at and out of the edges of the ranges
REPLACEMENTS = [None, True, False, 0, -1, 2**70, 1.5, float("nan"), "", "x" * 2000, [], {}, [[1]]]
COMMANDS = {"lm": ("resume", "sample", "predict"), "classify": ("resume", "predict")}


def _paths(value, path=()):
    """Every path into ``value``'s objects and lists (the root excluded)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        yield (*path, key)
        yield from _paths(item, (*path, key))


def _mutations(metadata, rng):
    """``(description, new metadata)``: every key removed, every object given an unknown key,
    every value swapped for values of other types and out of range (a sample per value)."""
    yield "metadata a list", [["cli", 1]]
    yield "cli an object of junk", {**metadata, "cli": {"x": 1}}
    for path in _paths(metadata):
        parent = _at(metadata, path[:-1])
        if isinstance(parent, dict):
            yield f"remove {path}", _edit(metadata, path, None, remove=True)
        for value in rng.sample(REPLACEMENTS, 4):
            yield f"{path} = {value!r:.30}", _edit(metadata, path, value)
    for path in [(), *_paths(metadata)]:
        if isinstance(_at(metadata, path), dict):
            yield f"add a key to {path}", _edit(metadata, (*path, "zz_unknown"), 1)


def _at(value, path):
    for key in path:
        value = value[key]
    return value


def _edit(metadata, path, value, *, remove=False):
    new = copy.deepcopy(metadata)
    parent = _at(new, path[:-1])
    if remove:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return new


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A language model and a classifier trained from the command line, with their data."""
    folder = tmp_path_factory.mktemp("fuzz")
    lm_data = folder / "names.txt"
    lm_data.write_text("\n".join(NAMES) + "\n")
    cl_data = folder / "sexes.tsv"
    cl_data.write_text("\n".join(f"{n}\t{s}" for n, s in zip(NAMES, SEXES)) + "\n")
    out = {}
    for task, data in (("lm", lm_data), ("classify", cl_data)):
        model = folder / f"{task}.npz"
        args = ["train", str(data), "--task", task, "--out", str(model), "--steps", "2", *SMALL]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        out[task] = (model, data)
    return out


def _command(name, task, model, data):
    return {
        "resume": ["train", str(data), "--task", task, "--resume", str(model), "--steps", "3"],
        "sample": ["sample", str(model), "-n", "2", "--max-len", "5"],
        "predict": ["predict", str(model), str(data)],
    }[name]


@pytest.mark.parametrize("task", sorted(COMMANDS))
def test_mutated_metadata_is_never_a_traceback(tmp_path, trained, task):
    source, data = trained[task]
    checkpoint = read_checkpoint(source)
    rng = random.Random(13)
    runner = CliRunner()
    outcomes = {"works": 0, "one line": 0}
    for description, metadata in _mutations(checkpoint.extra["metadata"], rng):
        path = tmp_path / "m.npz"
        extra = {**json.loads(json.dumps(checkpoint.extra)), "metadata": metadata}
        save_checkpoint(path, attrs.evolve(checkpoint, extra=extra))
        for name in COMMANDS[task]:
            result = runner.invoke(cli, _command(name, task, path, data))
            where = f"{name} with {description}: {result.output[-500:]}"
            assert result.exception is None or isinstance(result.exception, SystemExit), where
            assert "Traceback" not in result.output and "internal error" not in result.output, where
            if result.exit_code == 0:
                outcomes["works"] += 1
                continue
            errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
            assert result.exit_code in (1, 2) and len(errors) == 1, where
            outcomes["one line"] += 1
    assert outcomes["one line"] > 20 and outcomes["works"] > 5, outcomes


def test_the_issue_examples_name_the_field(tmp_path, trained):
    source, data = trained["lm"]
    checkpoint = read_checkpoint(source)
    runner = CliRunner()
    cases = [
        ({"x": 1}, "extra.metadata.cli.run is missing"),
        ({**checkpoint.extra["metadata"]["cli"], "checkpoint_every": 0}, "checkpoint_every"),
    ]
    for record, field in cases:
        extra = {**checkpoint.extra, "metadata": {**checkpoint.extra["metadata"], "cli": record}}
        path = tmp_path / "m.npz"
        save_checkpoint(path, attrs.evolve(checkpoint, extra=extra))
        result = runner.invoke(cli, _command("resume", "lm", path, data))
        assert result.exit_code == 1 and "invalid checkpoint metadata" in result.stderr
        assert field in result.stderr
    options = checkpoint.extra["metadata"]["cli"]["options"]
    for key, value, says in [
        ("hidden_size", True, "options.hidden_size must be an integer, a value of --hidden-size"),
        ("hidden_size", 0, "options.hidden_size is not a value of --hidden-size"),
        ("lr", -1.0, "options.lr must be None or a positive finite number"),
        ("level", "byte", "options.level is not a value of --level"),
        ("optimizer", 3, "options.optimizer must be a string"),
        ("nonsense", 1, "unknown key extra.metadata.cli.options.nonsense"),
    ]:
        record = {**checkpoint.extra["metadata"]["cli"], "options": {**options, key: value}}
        extra = {**checkpoint.extra, "metadata": {**checkpoint.extra["metadata"], "cli": record}}
        save_checkpoint(tmp_path / "m.npz", attrs.evolve(checkpoint, extra=extra))
        result = runner.invoke(cli, _command("resume", "lm", tmp_path / "m.npz", data))
        assert result.exit_code == 1 and says in result.stderr, result.stderr
