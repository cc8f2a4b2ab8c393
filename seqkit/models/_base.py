"""What every model shares: its blocks on one backend, training, evaluation, saving, loading."""

from __future__ import annotations

import abc
import inspect
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import numpy as np

from seqkit.backend import Backend, get_backend
from seqkit.blocks import Chain, Encode, LastState, PerStep, Stack, prefixed, unprefixed
from seqkit.callbacks import Callback, Checkpoint, EarlyStopping, Evaluate, Progress
from seqkit.checkpoint import Checkpoint as CheckpointFile
from seqkit.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from seqkit.config import resolve_seed
from seqkit.context import Context
from seqkit.distributed import DistributedInfo, from_environment
from seqkit.dropout import Dropout, check_probability
from seqkit.errors import unknown
from seqkit.layers import DenseStack, Embedding, OneHot
from seqkit.memory import check_parameters
from seqkit.options import TrainingOptions
from seqkit.recurrent import RECURRENT_OPTIONS, Recurrent, get_cell
from seqkit.training import (
    Examples,
    TrainingHistory,
    TrainingState,
    build_optimizer,
    train,
)
from seqkit.vocab import Vocabulary

__all__ = ["Batch", "Model", "load"]

_KINDS: dict[str, type[Model]] = {}


@attrs.frozen
class Batch:
    """One minibatch as a model's network and loss read it.

    Attributes:
        inputs: what the network reads (a :class:`~seqkit.blocks.Seq` of (T, B) ids, or a
            pair of them for an encoder-decoder).
        targets: the loss's targets: (T, B) ids, (B,) class ids, or (B, 1) probabilities.
        mask: (T, B) booleans, True at the steps the loss counts; None for one step per sequence.
        n_tokens: the input tokens, for throughput.
        weight: what the training loss is a mean over (tokens or sequences): data-parallel
            training weights each process's shard by it.
    """

    inputs: Any
    targets: np.ndarray | None
    mask: np.ndarray | None
    n_tokens: int
    weight: float


def resolve_backend(
    backend: str | Backend | None, dtype: str | None = None, device: str | None = None
) -> Backend:
    """A backend instance from a name, an instance, or the config (``None``)."""
    if isinstance(backend, Backend):
        if dtype is not None or device is not None:
            raise ValueError(
                "give 'dtype' and 'device' to get_backend(), not with a backend instance"
            )
        return backend
    return get_backend(backend, dtype=dtype, device=device)


def check_vocab(name: str, vocab: Any) -> Vocabulary:
    """``vocab`` if it is a :class:`~seqkit.Vocabulary`."""
    if not isinstance(vocab, Vocabulary):
        raise TypeError(f"{name!r} must be a seqkit.Vocabulary (got {type(vocab).__name__})")
    return vocab


class Model(abc.ABC):
    """A composition of blocks whose parameters live on one backend.

    Args:
        cell: a registered cell name or :class:`~seqkit.Cell` (``"lstm"``, ``"gru"``, ...).
        hidden_size: H of every recurrent layer (default: the model's).
        num_layers: L, stacked recurrent layers.
        embedding_size: None for the seed's one-hot input (I = V), else a learned embedding of
            this size.
        head_sizes: hidden sizes of the dense head before the output (none by default: one
            linear layer).
        dropout: p in [0, 1): inverted dropout, in training only, on the input encoding,
            between stacked recurrent layers (``Recurrent(dropout=p)``, PyTorch's meaning) and
            before the head. 0 (default) trains bit for bit as no dropout.
        **recurrent: the recurrent stack's options ``proj_size``, ``recurrent_init``,
            ``forget_bias``, ``recurrent_dropout``, ``input_dropout``, ``zoneout`` and
            ``learn_initial_state``, passed to its :class:`~seqkit.Recurrent` (documented
            there; the defaults change nothing). They are keywords of the signature, generated
            from ``seqkit.recurrent.RECURRENT_OPTIONS``, as are the checkpoint config's entries
            and ``seqkit train``'s ``--proj-size`` ... options.
        backend: backend name or instance; None reads the config.
        dtype: ``"float32"`` or ``"float64"`` when ``backend`` is a name or None.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``, as ``dtype``.
        seed: initialises the parameters (None: the config's ``seed``, else fresh entropy).

    A subclass sets :attr:`kind`, :attr:`positional`, :attr:`data_names` and :attr:`monitor`,
    stores its own constructor arguments before calling ``super().__init__``, and implements
    :meth:`_network` (its blocks), :meth:`_loss`, :meth:`_examples` (how data becomes batches)
    and :meth:`evaluate`. Parameter names are the blocks' prefixes joined by dots.
    """

    #: Checkpoint ``kind``; set by subclasses.
    kind: ClassVar[str]
    #: The constructor's positional arguments, saved in the checkpoint (vocabularies, ...).
    positional: ClassVar[tuple[str, ...]]
    #: The names of ``fit``'s data arguments (``("texts", "labels")``); ``dev`` has this form.
    data_names: ClassVar[tuple[str, ...]]
    #: The :meth:`evaluate` metric that early stopping minimises.
    monitor: ClassVar[str] = "loss"
    #: ``hidden_size`` when the constructor is not given one.
    default_hidden_size: ClassVar[int] = 64

    backend: Backend
    params: dict
    #: The model as one block (a :class:`~seqkit.blocks.Chain`, or a model's own glue block).
    network: Any
    #: Set by ``fit`` (and by :func:`load` for a checkpoint written during training): what
    #: ``fit(..., resume=True)`` continues from.
    training_state: TrainingState | None = None
    #: JSON-able notes saved with the model and restored by :func:`load` (the CLI records its
    #: data source and options here so that ``seqkit train --resume`` can continue).
    metadata: dict = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _KINDS[cls.kind] = cls
        if "__init__" in cls.__dict__:
            cls.__signature__ = _full_signature(cls.__init__)

    def __init__(
        self,
        *,
        cell: str | Any = "lstm",
        hidden_size: int | None = None,
        num_layers: int = 1,
        embedding_size: int | None = None,
        head_sizes: Sequence[int] = (),
        dropout: float = 0.0,
        backend: str | Backend | None = None,
        dtype: str | None = None,
        device: str | None = None,
        seed: int | None = None,
        _init: bool = True,
        **recurrent: Any,
    ) -> None:
        wrong = [name for name in recurrent if name not in RECURRENT_OPTIONS]
        if wrong:
            raise TypeError(
                f"{type(self).__name__}() got an unexpected keyword argument {wrong[0]!r}; "
                f"the recurrent options are: {', '.join(RECURRENT_OPTIONS)}"
            )
        #: The recurrent stack's options (``RECURRENT_OPTIONS``), every one, defaults included.
        self.recurrent_options = {**_RECURRENT_DEFAULTS, **recurrent}
        self.cell = get_cell(cell)
        self.hidden_size = self.default_hidden_size if hidden_size is None else hidden_size
        self.num_layers = num_layers
        self.embedding_size = embedding_size
        self.head_sizes = tuple(head_sizes)
        check_probability("dropout", dropout)
        self.dropout = float(dropout)
        self.backend = resolve_backend(backend, dtype, device)
        self.network = self._network()
        self.loss_fn = self._loss()
        if _init:
            check_parameters(self)  # one line, not a MemoryError deep in the initialiser
            self._set_params(self.network.init_params(np.random.default_rng(resolve_seed(seed))))

    # --- building blocks, for subclasses -------------------------------------------------------
    def _input(self, vocab_size: int) -> OneHot | Embedding:
        """The seed's one-hot input (``embedding_size=None``) or a learned embedding."""
        if self.embedding_size is None:
            return OneHot(vocab_size)
        return Embedding(vocab_size, self.embedding_size)

    def _chain(
        self,
        vocab_size: int,
        outputs: int | None,
        *,
        start_id: int | None = None,
        bidirectional: bool = False,
        pool: bool = False,
        input_key: str = "encoder",
        given_state: bool = False,
    ) -> Chain:
        """``Encode [-> Dropout] -> Stack [-> LastState] [-> Dropout -> PerStep(head)]``: ids
        in, (T, B, outputs) logits out, (B, outputs) with ``pool`` (many-to-one), the stack's
        output and final state with ``outputs=None``. The dropout blocks are there when
        ``dropout > 0``; masks are drawn in block order. ``given_state``: the stack always
        starts from a state it is given (a decoder), so it learns none."""
        encoder = Encode(self._input(vocab_size), start_id=start_id)
        options = dict(self.recurrent_options)
        if given_state:
            options["learn_initial_state"] = False
        rnn = Recurrent(
            self.cell,
            encoder.output_size,
            self.hidden_size,
            num_layers=self.num_layers,
            bidirectional=bidirectional,
            dropout=self.dropout,
            **options,
        )
        blocks: dict[str, Any] = {input_key: encoder}
        if self.dropout:
            blocks["input_dropout"] = PerStep(Dropout(self.dropout))
        blocks["rnn"] = Stack(rnn, self.backend)
        if pool:
            blocks["pool"] = LastState(rnn)
        if outputs is not None:
            if self.dropout:
                blocks["head_dropout"] = PerStep(Dropout(self.dropout))
            blocks["head"] = PerStep(DenseStack((rnn.output_size, *self.head_sizes, outputs)))
        return Chain(blocks)

    @abc.abstractmethod
    def _network(self) -> Any:
        """The model's blocks as one block."""

    @abc.abstractmethod
    def _loss(self) -> Any:
        """The training loss (:func:`seqkit.get_loss`)."""

    @abc.abstractmethod
    def _examples(self, *data: Any) -> Examples:
        """Check ``fit``'s data (``data_names``) and say how it becomes :class:`Batch` es."""

    @abc.abstractmethod
    def evaluate(self, *data: Any) -> dict[str, float]:
        """Metrics on held-out data of the training data's form."""

    # --- description ---------------------------------------------------------------------------
    def _own_config(self) -> dict:
        """The subclass's constructor options beyond the shared ones (JSON-able)."""
        return {}

    def config(self) -> dict:
        """The constructor arguments (JSON-able) that rebuild this model's shape."""
        return {
            "cell": self.cell.name,
            "cell_options": self.cell.options(),
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "embedding_size": self.embedding_size,
            "head_sizes": list(self.head_sizes),
            "dropout": self.dropout,
            **self.recurrent_options,
            **self._own_config(),
        }

    def _sizes(self) -> str:
        """The data sizes shown by ``repr`` (``V=28``)."""
        return f"V={len(self.vocab)}"  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        c = self.config()
        shown = [f"cell={c['cell']!r}", f"hidden_size={c['hidden_size']}"]
        shown += [f"num_layers={c['num_layers']}"]
        shown += [f"{k}={c[k]}" for k in ("bidirectional",) if k in c]
        return f"{self.kind}({self._sizes()}, {', '.join(shown)}, backend={self.backend.name!r})"

    # --- parameters ----------------------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name and shape."""
        return self.network.param_shapes()

    def _set_params(self, values: dict[str, np.ndarray]) -> None:
        params = {name: self.backend.asarray(value) for name, value in values.items()}
        for prefix, block in self.network.walk():
            if isinstance(block, Stack):
                # laid out for the backend's kernels once (cuDNN's one buffer), not on every call
                own = unprefixed(prefix, params)
                own = {name: own[name] for name in block.layer.param_shapes()}  # no h0, c0
                flat = self.backend.flatten_params(block.layer, own, requires_grad=False)
                params.update(prefixed(prefix, flat))
        self.params = params

    def numpy_params(self) -> dict[str, np.ndarray]:
        """Every parameter as a NumPy array, by name."""
        return {name: np.array(self.backend.to_numpy(value)) for name, value in self.params.items()}

    # --- the network and its loss --------------------------------------------------------------
    def _context(self, ctx: Context | None = None) -> Context:
        """``ctx``, or ``Context()`` (evaluation: no dropout) when None."""
        return ctx if ctx is not None else Context()

    def _forward(self, inputs: Any, params: dict | None = None, ctx: Context | None = None):
        """The network's output for ``inputs`` (not in training: no dropout)."""
        params = self.params if params is None else params
        return self.network.forward(self.backend.ops, params, inputs, ctx=self._context(ctx))[0]

    def _loss_forward(self, params: dict, batch: Batch, ctx: Context | None = None):
        """The training loss (0-d array) of ``batch`` and the cache of :meth:`_loss_backward`."""
        ops = self.backend.ops
        out, cache = self.network.forward(ops, params, batch.inputs, ctx=self._context(ctx))
        loss, loss_cache = self.loss_fn.forward(ops, out.data, batch.targets, batch.mask)
        return loss, (out, cache, loss_cache)

    def _loss_backward(self, params: dict, cache: Any) -> dict:
        """The hand-written gradient of every parameter, through the blocks' backwards."""
        ops = self.backend.ops
        out, net_cache, loss_cache = cache
        d_out = attrs.evolve(out, data=self.loss_fn.backward(ops, loss_cache), state=None)
        return self.network.backward(ops, params, net_cache, d_out)[1]

    def loss(self, batch: Batch) -> float:
        """The training loss of ``batch`` with the current parameters."""
        return float(self._loss_forward(self.params, batch)[0])

    def loss_and_grads(self, batch: Batch, *, ctx: Context | None = None) -> tuple[float, dict]:
        """The training loss of ``batch`` and every parameter's gradient (by name)."""
        return self.backend.loss_and_grads(
            lambda params, b: self._loss_forward(params, b, ctx),
            self._loss_backward,
            self.params,
            batch,
        )

    def batch(self, *data: Any) -> Batch:
        """All of ``data`` (in ``fit``'s form) as one :class:`Batch`."""
        examples = self._examples(*data)
        return examples.batch(np.arange(examples.size))

    # --- training ------------------------------------------------------------------------------
    def fit(
        self,
        *data: Any,
        dev: Any = None,
        callbacks: Sequence[Callback] = (),
        options: TrainingOptions | None = None,
        progress: bool = False,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
        distributed: bool | DistributedInfo = False,
        **overrides: Any,
    ) -> TrainingHistory:
        """Train on ``data`` (``data_names``: ``texts``; ``texts, labels``; ...).

        Args:
            data: the training data, as the model's ``data_names`` say.
            dev: held-out data of the same form (one sequence of texts for a language model, a
                tuple of the two sequences for the others), evaluated with :meth:`evaluate`
                every ``eval_every`` steps and at the end; ``history.evals`` records
                ``(step, metrics)``.
            callbacks: :class:`~seqkit.Callback` objects, called after the built-in ones.
            options: a :class:`~seqkit.TrainingOptions`; keyword arguments (``steps=``,
                ``lr=``, ``patience=``, ...) override its fields.
            progress: show a progress bar (tqdm) with the loss and tokens/s.
            checkpoint: write the model and its training state here (atomically) every
                ``checkpoint_every`` steps and at the end.
            resume: continue from :attr:`training_state` (set by :func:`seqkit.load` for a
                checkpoint written during training) with the same data and options; ``steps``
                is the total to reach. The result equals an uninterrupted run.
            distributed: True to train data-parallel in a job started by torchrun or
                ``seqkit train --nproc`` (read from the environment), or a
                :class:`~seqkit.distributed.DistributedInfo`; needs a backend whose
                ``data_parallel`` is not None. Rank 0 writes ``checkpoint``; every rank ends
                with the same parameters.

        Returns:
            the :class:`~seqkit.training.TrainingHistory`.
        """
        opts = TrainingOptions.build(options, **overrides)
        if resume and self.training_state is None:
            raise ValueError(
                "resume=True needs a model loaded from a training checkpoint (no training state)"
            )
        examples = self._examples(*data)
        built: list[Callback] = [Progress()] if progress else []
        if dev is not None:
            dev = (dev,) if len(self.data_names) == 1 else tuple(dev)
            self._examples(*dev)  # checked now, not at the first evaluation
            built.append(Evaluate(dev, opts.eval_every or max(1, opts.steps // 10)))
            built.append(EarlyStopping(self.monitor, opts.patience, opts.restore_best))
        elif opts.patience is not None:
            raise ValueError(f"'patience' needs dev data (got patience={opts.patience}, dev=None)")
        ending = [Checkpoint(checkpoint, checkpoint_every)] if checkpoint is not None else []
        info = _distributed(distributed, self.backend)
        joined = info is not None and info.world_size > 1
        if joined:
            self.backend.data_parallel.join(info)
        try:
            history = train(
                self,
                examples,
                opts,
                callbacks=[*built, *callbacks, *ending],
                resume=self.training_state if resume else None,
                distributed=info,
            )
        except BaseException:
            if joined:  # a failing rank must not wait for the others (leave() would)
                self.backend.data_parallel.abandon()
            raise
        if joined:
            self.backend.data_parallel.leave()
        return history

    # --- saving and loading --------------------------------------------------------------------
    def _extra(self) -> dict:
        """The positional arguments that are not in :meth:`config`, JSON-able."""
        config = self.config()
        return {
            name: _to_json(getattr(self, name)) for name in self.positional if name not in config
        }

    @classmethod
    def _from_config(cls, config: dict, extra: dict, backend: Backend) -> Model:
        """The model a checkpoint's config and extra describe, on ``backend``, parameters not
        yet allocated (:func:`load` sets them once the file is checked)."""
        config = dict(config)
        config["cell"] = get_cell(config.pop("cell"), **config.pop("cell_options", {}))
        args = [
            config.pop(name) if name in config else _from_json(name, extra[name])
            for name in cls.positional
        ]
        return cls(*args, backend=backend, _init=False, **config)

    def save(self, path: str | os.PathLike, *, training_state: bool = True) -> None:
        """Write the model to ``path`` in the portable checkpoint format (atomic; no pickle).

        Args:
            training_state: also store :attr:`training_state` (optimizer buffers, step, random
                state) when there is one, so that ``fit(..., resume=True)`` continues exactly.
        """
        extra: dict = {**self._extra(), "metadata": self.metadata}
        state: dict[str, np.ndarray] = {}
        if training_state and self.training_state is not None:
            ts = self.training_state
            o = ts.options
            optimizer = build_optimizer(o["optimizer"], o.get("lr"), o.get("weight_decay"))
            extra["training"], state = ts.to_checkpoint(optimizer, self.backend.ops)
        save_checkpoint(
            path, CheckpointFile(self.kind, self.config(), self.numpy_params(), extra, state=state)
        )


_RECURRENT_DEFAULTS = {
    f.name: f.default for f in attrs.fields(Recurrent) if f.name in RECURRENT_OPTIONS
}


def _recurrent_signature(init: Any) -> inspect.Signature:
    """``Model.__init__``'s signature with its ``**recurrent`` spelled out as one keyword per
    ``RECURRENT_OPTIONS`` field (before ``backend``), so that ``help()``, the subclasses'
    signatures and the tasks' ``model_options`` see them."""
    signature = inspect.signature(init)
    params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    fields = {f.name: f for f in attrs.fields(Recurrent)}
    extra = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=fields[name].default,
            annotation=fields[name].type,
        )
        for name in RECURRENT_OPTIONS
    ]
    at = [p.name for p in params].index("backend")
    return signature.replace(parameters=[*params[:at], *extra, *params[at:]])


Model.__init__.__signature__ = _recurrent_signature(Model.__init__)  # type: ignore[attr-defined]


def _full_signature(init: Any) -> inspect.Signature:
    """A subclass's constructor signature with the ``**options`` it passes on to
    :class:`Model` spelled out (``help()``, and tools that read the keywords, see them all)."""
    own = list(inspect.signature(init).parameters.values())[1:]  # without self
    shared = [
        p
        for p in list(inspect.signature(Model.__init__).parameters.values())[1:]
        if not p.name.startswith("_")
    ]
    names = {p.name for p in own}
    kept = [p for p in own if p.kind is not p.VAR_KEYWORD]
    return inspect.Signature([*kept, *(p for p in shared if p.name not in names)])


def _to_json(value: Any) -> Any:
    return value.to_dict() if isinstance(value, Vocabulary) else list(value)


def _from_json(name: str, value: Any) -> Any:
    return Vocabulary.from_dict(value) if name.endswith("vocab") else value


def _distributed(distributed: bool | DistributedInfo, backend: Backend) -> DistributedInfo | None:
    info = from_environment() if distributed is True else (distributed or None)
    if distributed is True and info is None:
        raise ValueError(
            "distributed=True needs a multi-process launch (torchrun or seqkit train "
            "--nproc): RANK and WORLD_SIZE are not set"
        )
    if info is not None and info.world_size > 1 and backend.data_parallel is None:
        raise ValueError(
            f"backend {backend.name!r} does not train across processes; use backend 'torch'"
        )
    return info


def load(
    path: str | os.PathLike,
    backend: str | Backend | None = None,
    *,
    dtype: str | None = None,
    device: str | None = None,
) -> Model:
    """Load a model saved with ``save`` onto ``backend`` (any backend, whichever saved it).

    ``dtype`` and ``device`` choose the backend's when ``backend`` is a name or None (config).

    Raises:
        CheckpointError: missing, truncated, corrupted, foreign or newer-version file.
    """
    be = resolve_backend(backend, dtype, device)
    built: list[Model] = []

    def expected_shapes(kind: str, config: dict, extra: dict) -> dict[str, tuple[int, ...]]:
        cls = _KINDS.get(kind)
        if cls is None:
            raise CheckpointError(unknown("model kind", kind, sorted(_KINDS)))
        built.append(cls._from_config(config, extra, be))
        return built[-1].param_shapes()

    # the reader checks every member against these shapes before it decompresses anything
    checkpoint = read_checkpoint(path, expected_shapes=expected_shapes)
    model = built[-1]
    try:
        model._set_params(checkpoint.params)
        model.metadata = dict(checkpoint.extra.get("metadata", {}))
        if "training" in checkpoint.extra:
            model.training_state = TrainingState.from_checkpoint(
                checkpoint.extra["training"], checkpoint.state, be.ops
            )
        return model
    except KeyError as exc:
        raise CheckpointError(f"{path}: checkpoint contents are invalid: no {exc} entry") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: checkpoint contents are invalid: {type(exc).__name__}: {exc}"
        ) from None
