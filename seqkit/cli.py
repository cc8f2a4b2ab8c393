"""The ``seqkit`` command line: train, sample, score, list plugins, and draw figures.

Every command exits 0 on success and 1 with one line on stderr (``Error: ...``) when the input
is bad, a checkpoint is unreadable, or training diverges; usage errors exit 2, Ctrl-C during
training 130.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import click

from seqkit._cli_tasks import (
    COMMANDS,
    check_distinct,
    check_out_path,
    check_plot_path,
    data_digest,
    limit_length,
    load_for,
    read_lines,
    require_matplotlib,
    size_warnings,
    training_examples,
)
from seqkit.callbacks import Callback
from seqkit.distributed import LOST_RANK_EXIT, from_environment
from seqkit.errors import LostRankError, SeqkitError
from seqkit.options import MAX_COUNT
from seqkit.recurrent import RECURRENT_OPTIONS

__all__ = ["main", "cli"]


_CLICK_FLOW = (click.ClickException, click.exceptions.Abort, click.exceptions.Exit)


class _Group(click.Group):
    """Turns every failure into one clear line instead of a traceback.

    Errors about the input (bad files, checkpoints, values) read ``Error: ...``; anything else is
    the last line of defence, ``seqkit: internal error: <type>: <message>``, exit 1. ``--debug``
    (or ``SEQKIT_DEBUG=1`` in the environment) shows the traceback instead.
    """

    def invoke(self, ctx: click.Context):
        debug = ctx.params.get("debug") or bool(os.environ.get("SEQKIT_DEBUG"))
        try:
            return super().invoke(ctx)
        except _CLICK_FLOW:
            raise
        except BrokenPipeError:
            # the reader of stdout went away (``seqkit corpora surnames | head``): stop quietly
            # as a tool killed by SIGPIPE would; later writes go nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except MemoryError as exc:  # what no estimate foresaw (seqkit.memory checks first)
            if debug:
                raise
            raise click.ClickException(f"out of memory: {_one_line(exc)}") from None
        except LostRankError as exc:  # not the cause: the launcher names the rank that is
            if debug:
                raise
            click.echo(f"Error: {_one_line(exc)}", err=True)
            ctx.exit(LOST_RANK_EXIT)
        except (SeqkitError, ValueError, TypeError, LookupError, OSError) as exc:
            if debug:
                raise
            raise click.ClickException(_one_line(exc)) from None
        except Exception as exc:
            if debug:
                raise
            click.echo(
                f"seqkit: internal error: {type(exc).__name__}: {_one_line(exc)} "
                "(run 'seqkit --debug ...' for the traceback)",
                err=True,
            )
            ctx.exit(1)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _device(device: str | None) -> str | None:
    """In a multi-process job on CUDA each rank takes the GPU of its local rank."""
    info = from_environment()
    if info is None or info.world_size == 1 or device != "cuda":
        return device  # "auto" is resolved the same way by the torch backend
    return f"cuda:{info.local_rank}"


def _backend(name: str | None, device: str | None = None, dtype: str | None = None):
    from seqkit.backend import get_backend

    return get_backend(name, device=device, dtype=dtype)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="seqkit")
@click.option("--debug", is_flag=True, help="Show the traceback of a failure.")
def cli(debug: bool) -> None:
    """Recurrent sequence models: language models, classifiers, taggers and encoder-decoders."""


# --- train ------------------------------------------------------------------------------------

# command-line names of model constructor options where they differ
_MODEL_NAMES = {"layers": "num_layers"}
# the model constructor options of the command line
_MODEL = (
    "cell",
    "hidden_size",
    "layers",
    "embedding_size",
    "bidirectional",
    "dropout",
    *RECURRENT_OPTIONS,
)
# what fixes the model's shape or the data: a resumed run must keep them
_SHAPE = (
    "task",
    "level",
    *_MODEL,
    "dev_fraction",
    "max_len",
    "truncate",
    "max_vocab",
    "min_count",
)
# the command line's defaults where they differ from fit's (a task's own defaults come first)
_CLI_DEFAULTS = {"steps": 1500, "batch_size": 64, "seed": 0}


def _recurrent_options() -> list:
    """One click option per stack option (``RECURRENT_OPTIONS``), generated from the field
    metadata of :class:`~seqkit.Recurrent`; None (left out) means the task's default, and the
    values are checked where the stack is built (errors name the flag)."""
    import attrs

    from seqkit.recurrent import Recurrent

    fields = {field.name: field for field in attrs.fields(Recurrent)}
    options = []
    for name in RECURRENT_OPTIONS:
        field = fields[name]
        flag = "--" + name.replace("_", "-")
        shown = "" if field.default is None else f" [default: {field.default}]"
        kwargs = {"default": None, "help": field.metadata["help"] + shown}
        if field.type == "bool":
            kwargs["is_flag"] = True
        elif "choices" in field.metadata:
            kwargs["type"] = click.Choice(field.metadata["choices"])
        else:
            kwargs["type"] = float if "float" in field.type else int
        options.append(click.option(flag, name, **kwargs))
    return options


def _model_options() -> list:
    """The model and data options of ``seqkit train``; None means the task's default."""
    return [
        click.option(
            "--task",
            "task",
            default="lm",
            show_default=True,
            help="What to train: lm, classify, tag, translate, or a plugin's task "
            "(the file format and the model follow from it).",
        ),
        click.option(
            "--level",
            type=click.Choice(["char", "word"]),
            default=None,
            help="Token level (default: the task's, char).",
        ),
        click.option(
            "--cell", default=None, help="Registered cell (seqkit plugins; default: the task's)."
        ),
        click.option(
            "--hidden-size",
            type=click.IntRange(min=1),
            default=None,
            help="H of every recurrent layer (default: the task's).",
        ),
        click.option("--layers", type=click.IntRange(min=1), default=None, help="L (default: 1)."),
        click.option(
            "--embedding-size",
            type=click.IntRange(min=1),
            default=None,
            help="Learned embedding of this size instead of one-hot input (default: the task's).",
        ),
        click.option(
            "--bidirectional",
            is_flag=True,
            default=None,
            help="A bidirectional recurrent stack (classify, tag: the models that read the "
            "whole input first).",
        ),
        click.option(
            "--dropout",
            type=click.FloatRange(0, 1, max_open=True),
            default=None,
            help="Dropout on the input, between layers and before the head (training only; "
            "default 0).",
        ),
        *_recurrent_options(),
        click.option(
            "--max-len",
            type=click.IntRange(min=1),
            default=None,
            help="Drop examples whose input has more tokens (reported); see --truncate.",
        ),
        click.option(
            "--truncate",
            is_flag=True,
            help="With --max-len: cut long inputs (and their tags) instead of dropping them.",
        ),
        click.option(
            "--max-vocab",
            type=click.IntRange(min=3),
            default=None,
            help="Keep at most this many tokens, the 3 specials included (rarest cut first).",
        ),
        click.option(
            "--min-count",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Keep only tokens seen at least this many times in the training data.",
        ),
        click.option("--backend", default=None, help="Backend name (default: config, else numpy)."),
        click.option("--device", default=None, help="cpu, cuda, cuda:N or auto (torch backend)."),
        click.option(
            "--dtype",
            type=click.Choice(["float32", "float64"]),
            default=None,
            help="Default: config, else float32.",
        ),
        click.option(
            "--nproc",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Data-parallel processes on this machine (backend torch; torchrun works too).",
        ),
        click.option(
            "--dev-fraction",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.1,
            show_default=True,
        ),
        click.option(
            "--plot",
            "plot_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="Write training and dev loss curves to this figure (.png, .svg, .pdf, ...).",
        ),
        click.option("--progress/--no-progress", default=True, show_default=True),
    ]


def _flag(name: str) -> str:
    """The command-line flag of a Python option name (``clip_norm`` -> ``--clip-norm``,
    ``num_layers`` -> ``--layers``): the one mapping the options and the messages use."""
    cli_name = {v: k for k, v in _MODEL_NAMES.items()}.get(name, name)
    return "--" + cli_name.replace("_", "-")


def _python_names() -> list[str]:
    """The Python names of every option ``seqkit train`` passes on: the fields of
    :class:`~seqkit.TrainingOptions` and the model constructor's names."""
    import attrs

    from seqkit.options import TrainingOptions

    fields = [f.name for f in attrs.fields(TrainingOptions)]
    return fields + [_MODEL_NAMES.get(k, k) for k in _MODEL]


def _cli_spelling(message: str) -> str:
    """``message`` (from Python: options named ``'clip_norm'``) in the command line's spelling
    (``--clip-norm``). Errors raised in Python name the Python option; the CLI says its flag."""
    for name in _python_names():
        message = message.replace(f"'{name}'", _flag(name))
        message = re.sub(rf"\b{name}=", f"{_flag(name)} ", message)  # 'got proj_size=3'
    return message.replace("must be None or ", "must be ")  # a flag cannot be given None


def _training_options() -> list:
    """One click option per field of :class:`seqkit.TrainingOptions`, generated."""
    import attrs

    from seqkit.options import TrainingOptions

    options = []
    for field in attrs.fields(TrainingOptions):
        flag = _flag(field.name)
        default = _CLI_DEFAULTS.get(field.name, field.default)
        kwargs = {"default": default, "help": field.metadata["help"], "show_default": True}
        if field.type == "bool":
            flag = f"{flag}/--no-{flag[2:]}"
        elif "choices" in field.metadata:
            kwargs["type"] = click.Choice(field.metadata["choices"])
        else:
            kwargs["type"] = float if "float" in field.type else int
            kwargs["show_default"] = default is not None
        options.append(click.option(flag, field.name, **kwargs))
    return options


def _with(options: list):
    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


@cli.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--corpus",
    default=None,
    help="Built-in corpus of the task instead of FILE (seqkit corpora lists them).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the model (required unless --resume).",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1, max=MAX_COUNT),
    default=None,
    help="Also write MODEL (with the training state) every N steps.",
)
@click.option(
    "--resume",
    "resume",
    type=click.Path(dir_okay=False),
    default=None,
    help="Continue the run saved in this checkpoint; give its FILE or --corpus again (checked "
    "against the sha256 the checkpoint holds).",
)
@_with(_model_options() + _training_options())
def train(file, corpus, out, checkpoint_every, resume, **options):
    """Train a model of --task (default lm) on FILE or a built-in corpus (--corpus).

    FILE has one example per line in the task's format: lm a text; classify text<TAB>label;
    tag tokens<TAB>tags; translate source<TAB>target. Model options not given take the task's
    defaults. With --nproc N (or under torchrun) N processes share every global batch of
    --batch-size examples and end with the parameters one process would reach; rank 0 prints
    and writes.
    """
    from seqkit.tasks import get_task

    check_out_path(out or resume)  # before any work: a run is never lost to a bad path
    check_plot_path(options["plot_path"])
    check_distinct({"FILE": file, "--out": out or resume, "--plot": options["plot_path"]})
    nproc = options.pop("nproc")
    launching = nproc > 1 and from_environment() is None
    model = saved = None
    if resume is not None:
        model, saved = _resumed(resume, options)
        out = out or resume
        checkpoint_every = checkpoint_every or saved.get("checkpoint_every")
        if file is None and corpus is None:  # never a path the checkpoint names: it is untrusted
            raise click.UsageError(
                f"--resume {resume} needs its training data again: {_data_hint(saved['run'])}"
            )
    elif out is None:
        raise click.UsageError("--out MODEL is required (unless --resume MODEL)")
    task = get_task(options["task"])
    _task_defaults(task, options, resumed=model is not None)
    examples = training_examples(task, file, corpus, options["level"])
    run = _run_record(file, corpus, examples)
    if saved is not None:
        _check_same_data(resume, saved["run"], run)
    if launching:  # what the checks above and these find, said once, before any process starts
        _options(options)
        _backend(options["backend"], _device(options["device"]), options["dtype"])
        if options["cell"] is not None:
            from seqkit._plugins import lookup

            lookup("cell", options["cell"])
        sys.exit(_launch(nproc, options))
    # the step --out holds already: the resumed checkpoint's, where the run writes back to it
    held = model.training_state.step if model is not None and _same_file(out, resume) else None
    _train_and_report(
        task, examples, out, options, run=run, model=model, every=checkpoint_every, held=held
    )


def _same_file(a: str, b: str | None) -> bool:
    return b is not None and os.path.realpath(a) == os.path.realpath(b)


def _run_record(file: str | None, corpus: str | None, examples) -> dict:
    """The checkpoint's record of the training data: where it came from (for messages only)
    and the digest ``--resume`` checks the data it is given against."""
    return {
        "file": str(Path(file).resolve()) if file else None,
        "corpus": corpus,
        "sha256": data_digest(examples),
        "examples": len(examples),
    }


def _data_hint(run: dict) -> str:
    """What ``--resume`` needs on the command line, from the checkpoint's record of the data
    (shown, never opened)."""
    if run.get("corpus"):
        return f"--corpus {run['corpus']}"
    where = f" (the run read {run['file']!r})" if run.get("file") else ""
    digest = f" whose examples have sha256 {run['sha256'][:16]}..." if run.get("sha256") else ""
    return f"FILE{digest}{where}"


def _check_same_data(path: str, saved: dict, now: dict) -> None:
    """The data given to ``--resume`` must be the run's: the same sha256 of its examples."""
    if saved.get("sha256") is None:  # written before seqkit recorded it: the vocabulary decides
        click.echo(
            f"seqkit: warning: {path} records no digest of its training data; only the "
            "vocabulary is checked",
            err=True,
        )
        return
    if saved["sha256"] != now["sha256"]:
        given = f"--corpus {now['corpus']}" if now["corpus"] else repr(now["file"])
        raise click.ClickException(
            f"cannot resume {path}: the examples of {given} (sha256 {now['sha256'][:16]}..., "
            f"{now['examples']:,} examples) are not the data it was trained on (sha256 "
            f"{saved['sha256'][:16]}..., {saved.get('examples') or 0:,} examples); give "
            f"{_data_hint(saved)}"
        )


def _task_defaults(task, options: dict, *, resumed: bool) -> None:
    """Fill the options not given on the command line (nor saved, on resume) with the task's
    defaults: its level, model options, and ``steps``, ``batch_size``, ``lr``."""
    if options["level"] is None:
        options["level"] = task.defaults.level
    if resumed:
        return
    ctx = click.get_current_context()
    for name, value in task.defaults.fit.items():
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.COMMANDLINE:
            options[name] = value


def _launch(nproc: int, options: dict) -> int:
    """Re-run this command line in ``nproc`` processes through the backend's launcher."""
    argv = list(click.get_current_context().find_root().obj or sys.argv[1:])
    i = argv.index("--nproc")
    del argv[i : i + 2]
    backend = _backend(options["backend"], None, options["dtype"])
    if backend.data_parallel is None:
        raise click.ClickException(
            f"backend {backend.name!r} does not train across processes; use --backend torch"
        )
    return backend.data_parallel.launch(nproc, argv)


def _resumed(path: str, options: dict):
    """The model saved at ``path`` and its CLI record; ``options`` get the saved values of
    every option not given on the command line. A different model shape is an error."""
    from seqkit.checkpoint import read_checkpoint
    from seqkit.models import load

    saved = read_checkpoint(path).extra.get("metadata", {}).get("cli")
    if saved is None:
        raise click.ClickException(
            f"{path}: holds no training state to resume (was it written by 'seqkit train'?)"
        )
    _check_record(path, saved)
    ctx = click.get_current_context()
    given = {
        k for k in options if ctx.get_parameter_source(k) is click.core.ParameterSource.COMMANDLINE
    }
    differs = [
        f"{_flag(k)} {options[k]!r} (saved {saved['options'].get(k)!r})"
        for k in _SHAPE
        if k in given and options[k] != saved["options"].get(k)
    ]
    if differs:
        raise click.ClickException(
            f"cannot resume {path} with a different model shape: {', '.join(differs)}"
        )
    # continue on the backend and dtype the run used, unless told otherwise
    options.update({k: v for k, v in saved["options"].items() if k in options and k not in given})
    model = load(path, _backend(options["backend"], _device(options["device"]), options["dtype"]))
    if model.training_state is None:
        raise click.ClickException(f"{path}: holds no training state to resume")
    return model, saved


def _train_and_report(
    task, examples, out, options: dict, *, run=None, model=None, every=None, held=None
):
    """Limit the lengths, split off dev data, build (or check) the model, fit it with a
    reporting callback, and write it; returns ``(model, history)``. ``held`` is the step of
    the model ``out`` holds before the run (a resumed checkpoint written back to), if any."""
    from seqkit.training import TrainingDiverged

    examples, note = limit_length(
        task, examples, options["max_len"], "truncate" if options["truncate"] else "drop"
    )
    info = from_environment()
    main = info is None or info.is_main
    if note:
        _say(main, f"seqkit: {note}")
    train_data, dev_data = examples.split(options["dev_fraction"])
    if not len(train_data):
        raise click.ClickException(
            f"{examples.source}: no training examples left after the dev split"
        )
    opts = _options(options)
    vocabulary = {"max_size": options["max_vocab"], "min_count": options["min_count"]}
    if model is None:
        model = _new_model(task, train_data, vocabulary, options)
        what = f"{len(train_data):,} examples from {examples.source} ({len(dev_data):,} held out)"
        _say(main, f"training {model!r}{_paths(model)} on {what}")
        for warning in size_warnings(train_data, _vocabulary_size(model)):
            _say(main, warning)
    else:
        task.check_model(model)
        _check_data(task, model, train_data, vocabulary)
        if model.training_state.step >= opts.steps:
            raise click.ClickException(
                f"cannot resume: the run is at step {model.training_state.step} and --steps is "
                f"{opts.steps}; give a larger --steps to train further"
            )
        _say(main, f"resuming {model!r} at step {model.training_state.step} of {opts.steps}")
    model.metadata = {**model.metadata, **_record(model, options, run, every)}
    report = _Report(task, out, every, held)
    tokens_before = model.training_state.history.tokens if model.training_state else 0
    dev = task.fit_data(model, dev_data) if len(dev_data) else None
    try:
        history = model.fit(
            *task.fit_data(model, train_data),
            dev=dev if dev is None or len(dev) > 1 else dev[0],
            options=opts,
            callbacks=[report],
            progress=options["progress"],
            resume=model.training_state is not None,
            checkpoint=out if every else None,
            checkpoint_every=every,
            distributed=info if info is not None and info.world_size > 1 else False,
        )
    except KeyboardInterrupt:
        _say(main, f"seqkit: interrupted; {out} holds {report.holds()}")
        sys.exit(130)
    except TrainingDiverged as exc:
        if not main:  # every rank saw the same all-reduced loss: rank 0's line speaks for all
            sys.exit(1)
        message = f"{_cli_spelling(str(exc))}; {report.where(exc.good_step)}"
        raise click.ClickException(message) from None
    except LostRankError:
        raise  # the group reports it with its own exit status (LOST_RANK_EXIT)
    except (ValueError, SeqkitError) as exc:  # fit's checks name options as Python does
        raise click.ClickException(_cli_spelling(str(exc))) from None
    if not main:
        return model, history
    if not every:
        model.save(out)
    # tokens/s of this run: a resumed history holds the tokens of the earlier runs too
    rate = (history.tokens - tokens_before) / max(history.seconds, 1e-9)
    state = model.training_state
    steps_done = state.step if state is not None else opts.steps
    best = state.best if state is not None and state.last_params is not None else {}
    held = ""
    if best.get("step", steps_done) != steps_done:  # restore_best went back to it
        held = f"; it holds the best evaluation, step {best['step']:,}"
    _say(
        main,
        f"wrote {out} after {steps_done:,} steps in {history.seconds:.1f} s "
        f"({rate:,.0f} tokens/s){held}",
    )
    if len(dev_data):
        metrics = task.evaluate(model, dev_data)
        click.echo(f"dev: {len(dev_data):,} held-out examples")
        click.echo(task.format_metrics(metrics))
    if options["plot_path"]:
        _plot(history, options["plot_path"])
    return model, history


def _plot(history, path: str) -> None:
    from seqkit.plots import plot_training

    plot_training(history, path)
    click.echo(f"wrote {path}", err=True)


# train's parameters that are not in the record: the data and files of this call, and how to show
_NOT_RECORDED = ("file", "corpus", "out", "checkpoint_every", "resume", "nproc")
_NOT_RECORDED += ("device", "plot_path", "progress")


def _record(model, options: dict, run: dict | None, every: int | None) -> dict:
    """What ``--resume`` needs: the data source and every option but where to show and plot."""
    shown = {k: options[k] for k in options if k not in _NOT_RECORDED}
    shown.update(backend=model.backend.name, dtype=model.backend.dtype)
    record = {"run": run or {"file": None, "corpus": None}, "checkpoint_every": every}
    return {"cli": {**record, "options": shown}}


class _Flag:
    """Schema spec of a recorded option: a JSON value its flag takes (type first, then the
    flag's own check of ranges and choices); None where the flag's default is None."""

    _JSON = {
        click.types.BoolParamType: (bool, "true or false"),
        click.types.IntParamType: (int, "an integer"),
        click.types.FloatParamType: ((int, float), "a finite number"),
        click.types.StringParamType: (str, "a string"),
        click.types.Choice: (str, "a string"),
    }

    def __init__(self, param: click.Parameter) -> None:
        self.param = param
        self.json_type, self.expected = next(
            v for k, v in self._JSON.items() if isinstance(param.type, k)
        )

    def check(self, value, where: str) -> None:
        from seqkit._schema import SchemaError

        p = self.param
        if value is None and p.default is None:
            return
        ok = isinstance(value, self.json_type) and not (
            isinstance(value, bool) and self.json_type is not bool
        )
        ok = ok and not (isinstance(value, float) and not math.isfinite(value))
        ok = ok and not (isinstance(value, str) and len(value) > 1000)
        if not ok:
            raise SchemaError(
                f"{where} must be {self.expected}, a value of {p.opts[0]} (got {value!r:.60})"
            )
        try:
            p.type.convert(value, p, None)
        except click.BadParameter as exc:
            raise SchemaError(f"{where} is not a value of {p.opts[0]}: {exc.message}") from None


def _record_schema():
    """The schema of a checkpoint's ``extra.metadata.cli`` (what :func:`_record` writes), made
    from ``train``'s own options: every recorded option is typed and range-checked by its flag."""
    from seqkit._schema import Int, Nullable, Object, Text, Type

    run = Object(
        {
            "file": Nullable(Type("str", 4096)),
            "corpus": Nullable(Type("str", 100)),
            "sha256": Nullable(Text("64 lowercase hex digits", r"[0-9a-f]{64}")),
            "examples": Nullable(Int(0, 1 << 62)),
        },
        open=False,
    )
    options = {p.name: _Flag(p) for p in train.params if p.name not in _NOT_RECORDED}
    return Object(
        {
            "run": run,
            "checkpoint_every": Nullable(Int(1, 1 << 62)),
            "options": Object(options, open=False),
        },
        required=("run", "options"),
        open=False,
    )


def _check_record(path: str, saved) -> None:
    """One line naming the field when a checkpoint's ``extra.metadata.cli`` breaks its schema
    or holds training options :class:`~seqkit.TrainingOptions` refuses."""
    import attrs

    from seqkit._schema import SchemaError
    from seqkit.options import TrainingOptions

    where = "extra.metadata.cli"
    try:
        _record_schema().check(saved, where)
        names = {f.name for f in attrs.fields(TrainingOptions)}
        stored = {k: v for k, v in saved["options"].items() if k in names}
        try:
            TrainingOptions(**stored)
        except ValueError as exc:
            message = str(exc)
            for name in names:
                message = message.replace(f"'{name}'", f"{where}.options.{name}")
            raise SchemaError(message) from None
    except SchemaError as exc:
        raise click.ClickException(f"{path}: invalid checkpoint metadata: {exc}") from None


def _options(options: dict):
    """The :class:`~seqkit.TrainingOptions` of the command line; errors name the flag."""
    import attrs

    from seqkit.options import TrainingOptions

    names = [f.name for f in attrs.fields(TrainingOptions)]
    try:
        return TrainingOptions(**{k: options[k] for k in names})
    except ValueError as exc:
        raise click.ClickException(_cli_spelling(str(exc))) from None


def _new_model(task, train_data, vocabulary: dict, options: dict):
    """The task's model for ``train_data``: the model options given, the task's defaults for the
    rest (an option the model does not take is one line naming the ones it does)."""
    given = {k: options[k] for k in _MODEL if options[k] is not None}
    taken = task.model_options()
    wrong = [_flag(k) for k in given if _MODEL_NAMES.get(k, k) not in taken]
    if wrong:
        raise click.UsageError(
            f"task {task.name!r} ({task.model_kind}) does not take {', '.join(wrong)}"
        )
    backend = _backend(options["backend"], _device(options["device"]), options["dtype"])
    try:
        return task.build_model(
            train_data,
            vocabulary=vocabulary,
            backend=backend,
            seed=options["seed"],
            **{_MODEL_NAMES.get(k, k): v for k, v in given.items()},
        )
    except (ValueError, SeqkitError) as exc:  # the model's checks name options as Python does
        raise click.ClickException(_cli_spelling(str(exc))) from None


def _paths(model) -> str:
    """`` [torch path: generic]`` for a backend that chooses how each stack runs (its
    ``layer_path``: fused, compiled or generic), else ``""``."""
    from seqkit.blocks import Stack

    layer_path = getattr(model.backend, "layer_path", None)
    if layer_path is None:
        return ""
    stacks = [block.layer for _, block in model.network.walk() if isinstance(block, Stack)]
    paths = sorted({layer_path(layer) for layer in stacks})
    return f" [{model.backend.name} path: {', '.join(paths)}]"


def _vocabulary_size(model) -> int:
    """The largest of a model's vocabularies (the size of its input and output layers)."""
    from seqkit.vocab import Vocabulary

    values = [getattr(model, name) for name in model.positional]
    sizes = [len(v) for v in values if isinstance(v, Vocabulary)]
    return max(sizes, default=0)


def _check_data(task, model, train_data, vocabulary: dict) -> None:
    """A resumed run's data must give the saved model's vocabularies (and labels or tags)."""
    from seqkit.vocab import Vocabulary

    args, _ = task.model_args(train_data, vocabulary=vocabulary)
    for name, new in zip(model.positional, args, strict=True):
        old = getattr(model, name)
        if old == new:
            continue
        if isinstance(new, Vocabulary):
            added = sorted(set(new.tokens) - set(old.tokens))
            removed = sorted(set(old.tokens) - set(new.tokens))
            raise click.ClickException(
                f"cannot resume: the data's vocabulary differs from the checkpoint's "
                f"(new tokens {added[:10]}, missing tokens {removed[:10]})"
            )
        raise click.ClickException(
            f"cannot resume: the data's {name} differ from the checkpoint's "
            f"({new!r} vs saved {old!r})"
        )


def _say(main: bool, line: str) -> None:
    if main:
        click.echo(line, err=True)


class _Report(Callback):
    """The CLI's callback: a line with the task's dev metric at every evaluation (and samples,
    for a model that samples), and, without ``--checkpoint-every``, the model written there (an
    interrupted run keeps it)."""

    def __init__(self, task, out, every, saved_step) -> None:
        self.task, self.out, self.every, self.saved_step = task, out, every, saved_step

    def on_step(self, run, step, loss) -> None:
        if self.every and step % self.every == 0:
            self.saved_step = step

    def on_eval(self, run, step, metrics) -> None:
        if not self.every:
            run.model.save(self.out)  # atomic: an interrupted run keeps the last model whole
            self.saved_step = step
        headline = self.task.headline
        others = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != headline)
        line = f"step {step}: dev {headline} {metrics[headline]:.4f}"
        line += f" ({others})" if others else ""
        if "sample" in self.task.commands:
            line += "; samples: " + ", ".join(run.model.sample(3, seed=step, max_len=50))
        _write(line)

    def holds(self) -> str:
        return f"the model from step {self.saved_step}" if self.saved_step else "nothing new"

    def where(self, good_step: int) -> str:
        """Where ``out`` stands after a divergence whose last good parameters are step
        ``good_step``'s."""
        if not self.saved_step:
            return f"{self.out} was not written"
        if self.saved_step <= good_step:
            return f"{self.out} holds the model from step {self.saved_step}"
        return (
            f"{self.out} holds the model from step {self.saved_step}, whose parameters gave the "
            "diverging loss"
        )


def _write(line: str) -> None:
    try:
        from tqdm.auto import tqdm

        tqdm.write(line, file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        click.echo(line, err=True)


# --- demo -------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--out", type=click.Path(dir_okay=False), default="surnames-demo.npz", show_default=True
)
@click.option("--steps", type=click.IntRange(min=1), default=1500, show_default=True)
@click.option("--backend", default=None, help="Backend name (default: config, else numpy).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def demo(out, steps, backend, progress):
    """Train a character-level GRU on US surnames, then print ten invented names."""
    from seqkit.tasks import get_task

    check_out_path(out)  # before any work: a run is never lost to a bad path
    task = get_task("lm")
    examples = training_examples(task, None, "surnames", "char")
    ctx = click.get_current_context()
    own = ("file", "corpus", "out", "checkpoint_every", "resume", "nproc")
    options = {p.name: p.get_default(ctx) for p in train.params if p.name not in own}
    options.update(task.defaults.fit)
    options.update(
        level="char",
        cell="gru",
        hidden_size=128,
        steps=steps,
        backend=backend,
        progress=progress,
        eval_every=max(1, steps // 3),
    )
    run = _run_record(None, "surnames", examples)
    model, _ = _train_and_report(task, examples, out, options, run=run)
    click.echo("ten surnames seqkit invented:")
    for name in model.sample(10, seed=0, max_len=30):
        click.echo(f"  {name}")


# --- sample, score ----------------------------------------------------------------------------


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option(
    "-n", "n", type=click.IntRange(min=1), default=10, show_default=True, help="How many sequences."
)
@click.option(
    "--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True
)
@click.option("--top-k", type=click.IntRange(min=1), default=None)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=None)
@click.option("--greedy", is_flag=True, help="Take the most likely token at every step.")
@click.option("--prefix", default="", help="Text every sample starts with.")
@click.option("--max-len", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--backend", default=None)
@click.option("--device", default=None)
def sample(
    model_path, n, temperature, top_k, top_p, greedy, prefix, max_len, seed, backend, device
):
    """Print N sequences sampled from MODEL, one per line (same seed, same output)."""
    model, _ = load_for("sample", model_path, backend, device)
    for text in model.sample(
        n,
        sampler="greedy" if greedy else "random",
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        prefix=prefix,
        max_len=max_len,
        seed=seed,
    ):
        click.echo(text)


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--backend", default=None)
@click.option("--device", default=None)
def score(model_path, file, as_json, backend, device):
    """Log-probability of every line of FILE under MODEL, and the totals.

    Tokens count each line's <EOS>; tokens outside the vocabulary score as <UNK>.
    """
    model, _ = load_for("score", model_path, backend, device)
    lines = read_lines(file)
    per_line = model.token_log_probs(lines)
    unknown = sum(ids.count(model.vocab.unk_id) for ids in (model.vocab.encode(t) for t in lines))
    tokens = sum(len(p) for p in per_line)
    total = float(sum(p.sum() for p in per_line))
    nats = -total / tokens
    if unknown:
        click.echo(
            f"seqkit: note: {unknown} token(s) outside the vocabulary were scored as <UNK>",
            err=True,
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "lines": len(lines),
                    "tokens": tokens,
                    "unknown_tokens": unknown,
                    "log_prob": total,
                    "nats_per_token": nats,
                    "perplexity": math.exp(nats),
                    "per_line": [float(p.sum()) for p in per_line],
                }
            )
        )
        return
    for text, p in zip(lines, per_line):
        click.echo(f"{float(p.sum()):12.4f}  {text}")
    click.echo(
        f"lines {len(lines)}  tokens {tokens}  log-prob {total:.4f}  "
        f"nats/token {nats:.4f}  perplexity {math.exp(nats):.4f}"
    )


# --- plugins, figures -------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json):
    """Every plugin with its distribution, version and what it registered."""
    from seqkit._plugins import list_plugins

    infos = list_plugins()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": p.name,
                        "distribution": p.distribution,
                        "version": p.version,
                        "entry_point": p.entry_point,
                        "registered": {k: list(v) for k, v in p.registered.items()},
                    }
                    for p in infos
                ],
                indent=2,
            )
        )
        return
    for p in infos:
        origin = f"{p.distribution} {p.version}" if p.distribution else "registered at run time"
        click.echo(f"{p.name}  ({origin})")
        for kind, names in p.registered.items():
            click.echo(f"    {kind}: {', '.join(names)}")


@cli.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option(
    "--steps", type=click.IntRange(min=2), default=60, show_default=True, help="Sequence length T."
)
@click.option("--hidden-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--cells", default="rnn,gru,lstm", show_default=True, help="Comma-separated cells.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def gradients(out, steps, hidden_size, cells, seed):
    """Draw how the gradient of a loss at the last step w.r.t. h<t> decays with distance."""
    from seqkit.plots import gradient_decay, plot_gradient_decay

    require_matplotlib("seqkit gradients")
    check_plot_path(out, "--out")

    curves = {
        cell: gradient_decay(cell, steps=steps, hidden_size=hidden_size, seed=seed)
        for cell in cells.split(",")
    }
    plot_gradient_decay(curves, out)
    for cell, norms in curves.items():
        click.echo(f"{cell}: |dL/dh<T-1>| = {norms[0]:.3g}, |dL/dh<0>| = {norms[-1]:.3g}")
    click.echo(f"wrote {out}", err=True)


for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cli.main(args=argv, prog_name="seqkit", obj=argv)


if __name__ == "__main__":  # pragma: no cover
    main()
