"""The command line over a model's task (``predict``, ``evaluate``, ``corpora``) and the checks
every command shares: a model of the right kind, an optional dependency, a writable output path.

Each check runs before any work, so a run is never lost to a bad path or a missing package.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import click

__all__ = [
    "check_out_path",
    "check_plot_path",
    "corpora",
    "data_digest",
    "evaluate",
    "load_for",
    "limit_length",
    "predict",
    "read_lines",
    "size_warnings",
    "training_examples",
    "require_matplotlib",
]

_PLOT_EXTRA = "pip install 'seqkit[plot]'"


# --- checks -----------------------------------------------------------------------------------


def require_matplotlib(what: str) -> None:
    """One line saying how to install matplotlib unless it imports (``what`` needs it)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.ClickException(f"{what} needs matplotlib: {_PLOT_EXTRA}") from None


def check_plot_path(path: str | None, option: str = "--plot") -> None:
    """Refuse, before any work, a figure path matplotlib cannot write or a missing matplotlib.

    The format comes from the extension, checked against matplotlib's own list of formats.
    """
    if path is None:
        return
    require_matplotlib(option)
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    ext = Path(path).suffix.lstrip(".").lower()
    if ext not in formats:
        got = f"extension {'.' + ext!r}" if ext else "no extension"
        raise click.BadParameter(
            f"{path!r} has {got}; a figure is one of: {', '.join('.' + f for f in formats)}",
            param_hint=f"'{option}'",
        )
    check_out_path(path, option)


def check_out_path(path: str | os.PathLike | None, option: str = "--out") -> None:
    """Refuse, before any work, an output path whose directory is missing or not writable."""
    if path is None:
        return
    target = Path(path)
    parent = target.parent
    if str(path).endswith(("/", os.sep)):  # Path drops the slash: "new/" would write a file "new"
        raise click.BadParameter(
            f"{str(path)!r} names a folder; give a file's path", param_hint=f"'{option}'"
        )
    if target.is_dir():
        raise click.BadParameter(f"{str(path)!r} is a directory", param_hint=f"'{option}'")
    if target.exists() and not target.is_file():
        raise click.BadParameter(
            f"{str(path)!r} exists and is not a regular file (a device, pipe or socket); "
            "give a file's path",
            param_hint=f"'{option}'",
        )
    if not parent.is_dir():
        raise click.BadParameter(
            f"the directory of {str(path)!r} ({str(parent)!r}) does not exist",
            param_hint=f"'{option}'",
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise click.BadParameter(
            f"cannot write {str(path)!r}: the directory {str(parent)!r} is not writable",
            param_hint=f"'{option}'",
        )


def check_distinct(paths: dict[str, str | os.PathLike | None]) -> None:
    """Refuse, before any work, two arguments that name one file (``--out`` the training FILE,
    ``--plot`` the model): the second write would destroy the first file. ``paths`` maps each
    argument's name (an option's flag, or ``FILE``, ``MODEL``) to its path or None."""
    seen: dict[str, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise click.BadParameter(
                f"{str(path)!r} is also {seen[key]}; writing it would destroy that file",
                param_hint=f"'{option}'",
            )
        seen[key] = f"{option} {str(path)!r}" if option.startswith("-") else f"the {option}"


def read_lines(path: str) -> list[str]:
    """The non-blank lines of a UTF-8 file, stripped (``score``'s input); one line on error."""
    from seqkit.vocab import read_text_lines

    lines = [line.strip() for line in read_text_lines(path)]
    lines = [line for line in lines if line]
    if not lines:
        raise click.ClickException(f"{path}: holds no sequences (every line is empty)")
    return lines


def load_for(command: str, path: str, backend: str | None = None, device: str | None = None):
    """``(model, task)`` from a checkpoint, or one line if ``command`` does not take its kind.

    The line names what the model is and the commands that fit it, e.g.
    ``m.npz is a SequenceClassifier (task 'classify'): 'sample' takes a LanguageModel;
    use seqkit train, predict, evaluate with it``.
    """
    from seqkit.backend import get_backend
    from seqkit.models import load
    from seqkit.tasks import get_task, list_tasks, task_of

    model = load(path, get_backend(backend, device=device))
    task = task_of(model)
    if command not in task.commands:
        takes = sorted(
            {get_task(n).model_kind for n in list_tasks() if command in get_task(n).commands}
        )
        raise click.ClickException(
            f"{path} is a {task.model_kind} (task {task.name!r}): {command!r} takes a "
            f"{' or '.join(takes)}; use seqkit {', '.join(task.commands)} with it"
        )
    return model, task


def training_examples(task, file: str | None, corpus: str | None, level: str | None):
    """The examples of FILE (read as UTF-8, parsed by ``task``'s reader) or of a built-in
    corpus (through :meth:`Task.from_corpus`); exactly one of the two."""
    from seqkit.vocab import read_text_lines

    if (file is None) == (corpus is None):
        raise click.UsageError("give exactly one of FILE or --corpus NAME")
    level = task.defaults.level if level is None else level
    if corpus is not None:
        from seqkit.corpora import get_corpus

        found = get_corpus(corpus)
        if found.task != task.name:
            raise click.UsageError(
                f"corpus {corpus!r} is for task {found.task!r}, not {task.name!r}: "
                f"use --task {found.task}"
            )
        return task.from_corpus(found, level=level)
    return task.read(read_text_lines(file), file, level=level)


def data_digest(examples) -> str:
    """The sha256 (hex) of training examples as the task read them: the level, the inputs and
    the targets. ``seqkit train`` stores it; ``--resume`` checks the data it is given against it
    (a file and the built-in corpus it holds give the same digest)."""
    text = json.dumps([examples.level, list(examples.inputs), examples.targets], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _length(text: str, level: str) -> int:
    from seqkit.tasks._base import word_tokens

    return len(text) if level == "char" else len(word_tokens(text))


def limit_length(task, examples, max_len: int | None, how: str = "drop"):
    """``(examples, note)``: inputs longer than ``max_len`` tokens dropped or truncated.

    ``note`` says how many and which line was the longest (None when nothing changed).
    """
    if max_len is None:
        return examples, None
    lengths = [_length(text, examples.level) for text in examples.inputs]
    long = [i for i, n in enumerate(lengths) if n > max_len]
    if not long:
        return examples, None
    longest = max(long, key=lengths.__getitem__)
    what = (
        f"{len(long):,} of {len(examples):,} examples longer than --max-len {max_len} tokens "
        f"(the longest, {examples.where(longest)}, has {lengths[longest]:,})"
    )
    if how == "truncate":
        try:
            return task.truncate(examples, max_len), f"truncated {what}"
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--truncate'") from None
    keep = [i for i in range(len(examples)) if lengths[i] <= max_len]
    if not keep:
        raise click.ClickException(f"{examples.source}: every example is longer than --max-len")
    return examples.subset(keep), f"dropped {what}"


#: above these a run is slow or its checkpoint large; ``seqkit train`` says so
LONG_EXAMPLE = 1_000
LARGE_VOCABULARY = 10_000


def size_warnings(examples, vocab_size: int) -> list[str]:
    """Lines warning of a slow or large configuration, with the option that fixes it."""
    notes = []
    lengths = [_length(text, examples.level) for text in examples.inputs]
    i = max(range(len(lengths)), key=lengths.__getitem__)
    if lengths[i] > LONG_EXAMPLE:
        notes.append(
            f"seqkit: warning: {examples.where(i)} has {lengths[i]:,} tokens (median "
            f"{sorted(lengths)[len(lengths) // 2]:,}); every batch pads to its longest example, "
            "so training is slow: --max-len N drops (or --truncate cuts) long examples"
        )
    if vocab_size > LARGE_VOCABULARY:
        notes.append(
            f"seqkit: warning: a vocabulary of {vocab_size:,} tokens makes the input and output "
            "layers large and slow: --max-vocab N or --min-count N cap it"
        )
    return notes


def _input_level(model: Any) -> str:
    """The token level of a model's input vocabulary (an encoder-decoder's source side)."""
    vocab = getattr(model, "vocab", None) or model.src_vocab
    return vocab.level


def _chunks(items: list, size: int = 256):
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- commands ---------------------------------------------------------------------------------

_model_arg = click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
_file_arg = click.argument("file", type=click.Path(dir_okay=False))
_backend_opt = click.option("--backend", default=None, help="Backend name (default: config).")
_device_opt = click.option("--device", default=None, help="cpu, cuda, cuda:N or auto (torch).")
_beam_opt = click.option(
    "--beam",
    "beam_size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Beam width for models that decode (translate); 1 is greedy.",
)


@click.command()
@_model_arg
@_file_arg
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with scores.")
@_beam_opt
@_backend_opt
@_device_opt
def predict(model_path, file, as_json, beam_size, backend, device):
    """One prediction per line of FILE under MODEL: the label, the tags, the translation or
    (language model) the line's log-probability.

    A line of FILE may hold only the input, or the input and its target (the target is ignored).
    With --json each line is a JSON object: the label's probabilities, each tag's probability,
    the translation's log-probability.
    """
    from seqkit.vocab import read_text_lines

    model, task = load_for("predict", model_path, backend, device)
    inputs = task.read_inputs(read_text_lines(file), file)
    for chunk in _chunks(inputs):
        for record in task.predict(model, chunk, beam_size=beam_size):
            click.echo(json.dumps(record) if as_json else task.format_prediction(record))


@click.command()
@_model_arg
@_file_arg
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Draw the confusion matrix (classify) to this figure (.png, .svg, .pdf, ...).",
)
@_beam_opt
@_backend_opt
@_device_opt
def evaluate(model_path, file, as_json, plot_path, beam_size, backend, device):
    """The task's metrics of MODEL on FILE (lines in the task's training format).

    classify: accuracy, macro F1, per-label scores, confusion matrix; tag: token accuracy,
    per-tag scores (span F1 for IOB tags); translate: exact match, character error rate;
    lm: nats per token, perplexity (inf where it overflows).
    """
    from seqkit.vocab import read_text_lines

    check_plot_path(plot_path)
    check_distinct({"MODEL": model_path, "FILE": file, "--plot": plot_path})
    model, task = load_for("evaluate", model_path, backend, device)
    examples = task.read(read_text_lines(file), file, level=_input_level(model))
    metrics = task.evaluate(model, examples, beam_size=beam_size)
    if plot_path is not None:
        if "confusion_matrix" not in metrics:
            raise click.ClickException(
                f"--plot draws a confusion matrix; task {task.name!r} has none"
            )
        from seqkit.plots import plot_confusion_matrix

        plot_confusion_matrix(metrics["confusion_matrix"], plot_path)
        click.echo(f"wrote {plot_path}", err=True)
    click.echo(json.dumps(metrics) if as_json else task.format_metrics(metrics))


@click.command()
@click.argument("name", required=False)
@click.option(
    "--split",
    type=click.Choice(["all", "train", "dev"]),
    default="all",
    show_default=True,
    help="With NAME: which lines to print (the split seqkit train makes).",
)
@click.option(
    "--dev-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.1,
    show_default=True,
    help="With --split: the fraction held out, as seqkit train's --dev-fraction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the list of corpora).")
def corpora(name, split, dev_fraction, as_json):
    """Every built-in corpus with its task and size; with NAME, its lines in the task's file
    format (``--split dev`` gives the held-out lines ``seqkit train --corpus NAME`` evaluates on,
    ready for ``seqkit evaluate``)."""
    from seqkit._plugins import lookup, names

    if name is not None:
        if as_json:
            raise click.UsageError("--json lists the corpora; it takes no NAME")
        for line in _corpus_lines(name, split, dev_fraction):
            click.echo(line)
        return
    rows = []
    for corpus_name in names("corpus"):
        corpus = lookup("corpus", corpus_name)
        rows.append(
            {
                "name": corpus.name,
                "task": corpus.task,
                "size": corpus.size(),
                "description": corpus.description,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in [*rows, {"name": "name"}])
    twidth = max(len(r["task"]) for r in rows)
    click.echo(f"{'name':<{width}}  {'task':<{twidth}}  {'examples':>8}  description")
    for r in rows:
        click.echo(
            f"{r['name']:<{width}}  {r['task']:<{twidth}}  {r['size']:>8,}  {r['description']}"
        )


def _corpus_lines(name: str, split: str, dev_fraction: float) -> list[str]:
    """The corpus's lines, all or one side of the split that ``seqkit train`` makes (the
    task's reader parses them, :meth:`Examples.split` splits them, line numbers pick them)."""
    from seqkit.corpora import get_corpus
    from seqkit.tasks import get_task

    corpus = get_corpus(name)
    lines = corpus.load()
    if split == "all":
        return lines
    train, dev = get_task(corpus.task).from_corpus(corpus).split(dev_fraction)
    return [lines[n - 1] for n in (train if split == "train" else dev).line_numbers]


COMMANDS = (predict, evaluate, corpora)
