"""What every task shares: the examples of a file, the generic line reader, the Task interface."""

from __future__ import annotations

import abc
import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from seqkit.corpora import Corpus, split_train_dev
from seqkit.errors import SeqkitError
from seqkit.vocab import LEVELS, SPECIALS, Vocabulary

__all__ = ["DataError", "Examples", "Task", "TaskDefaults"]


class DataError(SeqkitError, ValueError):
    """A line of a data file is malformed; the message names the file, the line and the fault."""


@attrs.frozen
class Examples:
    """What a task's reader made of a file: one input and (but for ``lm``) one target each.

    Attributes:
        source: where the lines came from, for messages (a file name, ``"corpus 'dates'"``).
        level: ``"char"`` or ``"word"``: how the inputs split into tokens.
        inputs: N input texts (for ``tag`` at word level, the tokens joined by single spaces).
        targets: N targets (a label, a tuple of tags, a target text), or None for ``lm``.
        line_numbers: N line numbers (from 1) of the examples in ``source``.
    """

    source: str
    level: str
    inputs: tuple[str, ...]
    targets: tuple[Any, ...] | None
    line_numbers: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.inputs)

    def where(self, i: int) -> str:
        """``"train.tsv line 7"``: where example ``i`` came from."""
        return f"{self.source} line {self.line_numbers[i]}"

    def subset(self, index: Sequence[int]) -> Examples:
        """The examples at ``index``, in that order."""
        return attrs.evolve(
            self,
            inputs=tuple(self.inputs[i] for i in index),
            targets=None if self.targets is None else tuple(self.targets[i] for i in index),
            line_numbers=tuple(self.line_numbers[i] for i in index),
        )

    def split(self, dev_fraction: float) -> tuple[Examples, Examples]:
        """``(train, dev)`` by :func:`seqkit.corpora.split_train_dev` on the input texts.

        Equal inputs land on one side, so a dev input is never also a training input.
        """
        train, dev = split_train_dev(range(len(self)), dev_fraction, key=self.inputs.__getitem__)
        return self.subset(train), self.subset(dev)


@attrs.frozen(kw_only=True)
class TaskDefaults:
    """A task's default hyperparameters (the quality floors of the docs are reached with them).

    Attributes:
        level: token level of the vocabularies (``"char"`` or ``"word"``).
        model: keyword arguments of the model's constructor (``cell``, ``hidden_size``, ...).
        fit: keyword arguments of ``fit`` (``steps``, ``batch_size``, ``lr``).
    """

    level: str = "char"
    model: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    fit: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)


def _check_level(level: Any) -> str:
    if level not in LEVELS:
        raise ValueError(f"'level' must be one of {', '.join(map(repr, LEVELS))} (got {level!r})")
    return level


class Task(abc.ABC):
    """A kind of problem the command line trains on: its file format, model, metrics, output.

    A task is registered (an instance) through the ``seqkit_register_tasks`` hook, the built-in
    ones exactly as a plugin's. The command line is generic over it::

        task = get_task("classify")
        data = task.read(lines, "train.tsv", level=task.defaults.level)
        train, dev = data.split(0.1)
        model = task.build_model(train, **task.defaults.model, backend="numpy", seed=0)
        model.fit(*task.fit_data(model, train), **task.defaults.fit)
        task.evaluate(model, dev)            # {"accuracy": ..., "macro_f1": ..., ...}
        task.predict(model, dev.inputs)      # one JSON-able record per input
        task.format_prediction(record)       # its line of plain output

    A subclass sets the class attributes below and implements :meth:`_parse`,
    :meth:`_model_args`, :meth:`fit_data`, :meth:`predict`, :meth:`format_prediction`,
    :meth:`evaluate` and :meth:`format_metrics`.
    """

    #: Registered name (``"classify"``): ``seqkit train --task NAME``.
    name: ClassVar[str]
    #: One line for listings and ``--help``.
    description: ClassVar[str]
    #: The model class the task trains (its checkpoint ``kind`` is ``model_class.kind``).
    model_class: ClassVar[type]
    #: The tab-separated fields of one line, e.g. ``("text", "label")``.
    fields: ClassVar[tuple[str, ...]]
    #: The dev metric shown during training: a key of ``evaluate``'s dict and of the model's.
    headline: ClassVar[str]
    #: Whether a larger :attr:`headline` is better (accuracy) or worse (nats per token).
    higher_is_better: ClassVar[bool] = True
    #: The commands that take a model of this task.
    commands: ClassVar[tuple[str, ...]] = ("train", "predict", "evaluate")
    #: Default hyperparameters.
    defaults: ClassVar[TaskDefaults] = TaskDefaults()

    def __repr__(self) -> str:
        return f"<task {self.name!r}: {self.model_class.__name__} on {self.file_format}>"

    @property
    def model_kind(self) -> str:
        """The checkpoint kind of this task's models (``"SequenceClassifier"``)."""
        return self.model_class.kind

    @property
    def file_format(self) -> str:
        """One line of a data file: ``"text<TAB>label"``."""
        return "<TAB>".join(self.fields)

    # --- reading ----------------------------------------------------------------------------

    def read(self, lines: Sequence[str], source: str, *, level: str = "char") -> Examples:
        """Parse the lines of a data file (blank lines are skipped; fields are stripped).

        Args:
            lines: the file's lines, without or with their line ends.
            source: the file's name, for messages.
            level: ``"char"`` or ``"word"``: how the inputs split into tokens (``tag`` checks
                one tag per token).

        Raises:
            DataError: a malformed line, named by file and line number, or no example at all.
        """
        level = _check_level(level)
        inputs: list[str] = []
        targets: list[Any] = []
        numbers: list[int] = []
        for number, line in enumerate(lines, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                values = self._fields(line)
                text, target = self._parse(values, level)
            except ValueError as exc:
                raise DataError(f"{source} line {number}: {exc}") from None
            inputs.append(text)
            targets.append(target)
            numbers.append(number)
        if not inputs:
            raise DataError(
                f"{source}: holds no examples (every line is empty); expected lines of "
                f"{self.file_format}"
            )
        return Examples(
            source,
            level,
            tuple(inputs),
            None if len(self.fields) == 1 else tuple(targets),
            tuple(numbers),
        )

    def read_inputs(self, lines: Sequence[str], source: str) -> list[str]:
        """The inputs of a file for ``predict``: the first field of every non-blank line
        (a line may hold only the input, or the input and its target)."""
        whole = len(self.fields) == 1  # an lm text may hold tabs
        texts = [line.rstrip("\r\n") if whole else line.split("\t")[0] for line in lines]
        texts = [t.strip() for t in texts if t.strip()]
        if not texts:
            raise DataError(f"{source}: holds no inputs (every line is empty)")
        return texts

    def from_corpus(self, corpus: Corpus, *, level: str | None = None) -> Examples:
        """The examples of a registered corpus of this task, at ``level`` (default: the task's
        default level)."""
        if corpus.task != self.name:
            raise ValueError(
                f"corpus {corpus.name!r} is for task {corpus.task!r}, not {self.name!r}"
            )
        level = self.defaults.level if level is None else level
        return self.read(corpus.load(), f"corpus {corpus.name!r}", level=level)

    def truncate(self, examples: Examples, max_len: int) -> Examples:
        """``examples`` with every input cut to its first ``max_len`` tokens (a target that has
        one entry per token, a tag sequence, is cut with it; a label is kept).

        Raises:
            ValueError: the task's targets do not survive a cut input (a translation).
        """
        cut = []
        for text in examples.inputs:
            tokens = list(text) if examples.level == "char" else word_tokens(text)
            cut.append(("" if examples.level == "char" else " ").join(tokens[:max_len]))
        targets = examples.targets
        if targets is not None:
            targets = tuple(t[:max_len] if isinstance(t, tuple) else t for t in targets)
        return attrs.evolve(examples, inputs=tuple(cut), targets=targets)

    def _fields(self, line: str) -> list[str]:
        """The line's stripped fields: exactly :attr:`fields` of them, none empty."""
        if len(self.fields) == 1:
            values = [line]
        else:
            values = line.split("\t")
            if len(values) != len(self.fields):
                got = "no tab" if len(values) == 1 else f"{len(values) - 1} tabs"
                raise ValueError(
                    f"expected {len(self.fields)} tab-separated fields ({self.file_format}), "
                    f"got {len(values)} ({got})"
                )
        values = [v.strip() for v in values]
        for name, value in zip(self.fields, values, strict=True):
            if not value:
                raise ValueError(f"the {name} field is empty (expected {self.file_format})")
        return values

    @abc.abstractmethod
    def _parse(self, values: list[str], level: str) -> tuple[str, Any]:
        """``(input text, target)`` of one line's non-empty fields; ValueError if malformed."""

    # --- models -----------------------------------------------------------------------------

    def build_model(
        self, train: Examples, *, vocabulary: Mapping[str, Any] | None = None, **options: Any
    ) -> Any:
        """A new model for ``train``'s data: vocabularies (and label names) from it.

        Args:
            train: the training examples (their level sets the vocabularies').
            vocabulary: keyword arguments of :meth:`seqkit.Vocabulary.build` for the text
                vocabularies (``max_size``, ``min_count``).
            **options: the model constructor's keyword arguments (``cell``, ``hidden_size``,
                ``backend``, ``seed``, ...); :attr:`defaults` ``.model`` fills the missing ones.

        The task's name (and the label names of ``classify``) go into ``model.metadata["task"]``,
        which the checkpoint keeps: update ``metadata``, do not replace it.
        """
        accepted = self.model_options()
        wrong = sorted(set(options) - set(accepted))
        if wrong:
            raise TypeError(
                f"task {self.name!r} ({self.model_class.__name__}) got unknown model options "
                f"{wrong}; its options are: {', '.join(accepted)}"
            )
        args, metadata = self.model_args(train, vocabulary=vocabulary)
        model = self.model_class(*args, **{**self.defaults.model, **options})
        model.metadata = {**model.metadata, "task": {"name": self.name, **metadata}}
        return model

    def model_args(
        self, train: Examples, *, vocabulary: Mapping[str, Any] | None = None
    ) -> tuple[tuple, dict]:
        """The model's positional constructor arguments for ``train`` (its vocabularies, label
        names, tags) and the task's metadata; ``vocabulary`` as for :meth:`build_model`."""
        caps = dict(vocabulary or {})

        def build(texts: Sequence[str]) -> Vocabulary:
            return Vocabulary.build(texts, level=train.level, **caps)

        return self._model_args(train, build)

    def model_options(self) -> list[str]:
        """The keyword options of the model's constructor, its base classes' included (a
        constructor that passes ``**options`` on accepts those of the next in its MRO)."""
        accepted: list[str] = []
        for cls in self.model_class.__mro__:
            if "__init__" not in vars(cls):
                continue
            params = inspect.signature(vars(cls)["__init__"]).parameters.values()
            accepted += [
                p.name
                for p in params
                if p.kind is p.KEYWORD_ONLY
                and not p.name.startswith("_")
                and p.name not in accepted
            ]
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return accepted

    @abc.abstractmethod
    def _model_args(self, train: Examples, build: Any) -> tuple[tuple, dict]:
        """The constructor's positional arguments and the task's metadata for ``train``;
        ``build(texts)`` gives a text vocabulary of ``train``'s level and caps."""

    def check_model(self, model: Any) -> None:
        """A one-line error unless ``model`` is of this task's kind."""
        kind = getattr(model, "kind", type(model).__name__)
        if kind != self.model_kind:
            raise ValueError(f"task {self.name!r} needs a {self.model_kind}, got a {kind}")

    @abc.abstractmethod
    def fit_data(self, model: Any, examples: Examples) -> tuple:
        """``examples`` in the form ``model.fit`` (and ``dev=``, ``evaluate``) takes."""

    # --- prediction and evaluation ----------------------------------------------------------

    @abc.abstractmethod
    def predict(self, model: Any, inputs: Sequence[str], *, beam_size: int = 1) -> list[dict]:
        """One JSON-able record per input (its prediction and probabilities or scores).

        ``beam_size`` > 1 is for tasks that decode (``translate``); others refuse it.
        """

    @abc.abstractmethod
    def format_prediction(self, record: dict) -> str:
        """The plain one-line output of a record of :meth:`predict`."""

    @abc.abstractmethod
    def evaluate(self, model: Any, examples: Examples, *, beam_size: int = 1) -> dict:
        """The task's metrics of ``model`` on ``examples``: a JSON-able dict."""

    @abc.abstractmethod
    def format_metrics(self, metrics: dict) -> str:
        """The text report of a dict of :meth:`evaluate`."""

    def _no_beam(self, beam_size: int) -> None:
        if beam_size != 1:
            raise ValueError(
                f"task {self.name!r} does not decode: beam_size must be 1 (got {beam_size!r})"
            )


def word_tokens(text: str) -> list[str]:
    """The word-level tokens of ``text`` as a word-level :class:`~seqkit.Vocabulary` splits it."""
    return Vocabulary(tokens=SPECIALS, level="word").tokenize(text)


def number_lines(metrics: Mapping[str, Any], keys: Sequence[tuple[str, str]]) -> list[str]:
    """``"accuracy: 0.9100"`` lines of the float metrics ``keys`` (``(key, label)``) present."""
    width = max(len(label) for _, label in keys)
    return [
        f"{label + ':':<{width + 1}} {metrics[key]:.4f}" for key, label in keys if key in metrics
    ]


def scores_table(scores: Mapping[str, Mapping[str, float]], heading: str) -> str:
    """A precision / recall / F1 / support table, one row per label."""
    first = max(len(heading), *(len(str(k)) for k in scores))
    lines = [f"{heading:<{first}}  precision  recall      f1  support"]
    for label, s in scores.items():
        lines.append(
            f"{label!s:<{first}}  {s['precision']:9.4f}  {s['recall']:6.4f}  {s['f1']:6.4f}  "
            f"{s['support']:7d}"
        )
    return "\n".join(lines)
