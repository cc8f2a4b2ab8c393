"""What every model shares: parameters on one backend, training, saving and loading."""

from __future__ import annotations

import abc
import os
from typing import Any, ClassVar

import numpy as np

from seqkit.backend import Backend, get_backend
from seqkit.checkpoint import Checkpoint, CheckpointError, read_checkpoint, save_checkpoint
from seqkit.distributed import DistributedInfo, from_environment
from seqkit.errors import unknown
from seqkit.layers import Embedding, OneHot
from seqkit.optim import get_optimizer
from seqkit.recurrent import Recurrent, get_cell
from seqkit.training import TrainingHistory, TrainingState, train

__all__ = ["Model", "load"]

_KINDS: dict[str, type[Model]] = {}


def prefixed(prefix: str, values: dict) -> dict:
    """``{"w": 1} -> {"prefix.w": 1}``."""
    return {f"{prefix}.{name}": value for name, value in values.items()}


def unprefixed(prefix: str, values: dict) -> dict:
    """The entries of ``values`` under ``prefix.``, with the prefix removed."""
    start = prefix + "."
    return {name[len(start) :]: value for name, value in values.items() if name.startswith(start)}


def input_encoder(vocab_size: int, embedding_size: int | None) -> OneHot | Embedding:
    """The seed's one-hot input (``embedding_size=None``) or a learned embedding."""
    return OneHot(vocab_size) if embedding_size is None else Embedding(vocab_size, embedding_size)


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


class Model(abc.ABC):
    """A composition of blocks whose parameters live on one backend.

    Subclasses build their blocks in ``__init__`` and list them in :attr:`blocks` by parameter
    prefix (``{"encoder": OneHot(V), "rnn": Recurrent(...), "head": DenseStack(...)}``), call
    :meth:`_init_params`, and implement :meth:`config`, :meth:`_positional`,
    :meth:`_loss_forward` and :meth:`_loss_backward`. Parameter names are ``prefix.name``.
    """

    #: Checkpoint ``kind``; set by subclasses.
    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _KINDS[cls.kind] = cls

    backend: Backend
    params: dict
    #: The blocks that own parameters, by prefix, in initialisation order. Each has
    #: ``param_shapes()`` and ``init_params(rng)``; :class:`~seqkit.Recurrent` stacks are
    #: laid out for the backend's kernels.
    blocks: dict[str, Any]
    #: Set by ``fit`` (and by :func:`load` for a checkpoint written during training): what
    #: ``fit(..., resume=True)`` continues from.
    training_state: TrainingState | None = None
    #: JSON-able notes saved with the model and restored by :func:`load` (the CLI records its
    #: data source and options here so that ``seqkit train --resume`` can continue).
    metadata: dict = {}

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name and shape."""
        return {
            f"{prefix}.{name}": shape
            for prefix, block in self.blocks.items()
            for name, shape in block.param_shapes().items()
        }

    def _init_params(self, seed: int | np.random.Generator | None) -> None:
        """Each block's default initialisation, in order, from one generator."""
        rng = np.random.default_rng(seed)
        values: dict[str, np.ndarray] = {}
        for prefix, block in self.blocks.items():
            values.update(prefixed(prefix, block.init_params(rng)))
        self._set_params(values)

    def _set_params(self, values: dict[str, np.ndarray]) -> None:
        params = {name: self.backend.asarray(value) for name, value in values.items()}
        for prefix, layer in self._recurrent_layers().items():
            # laid out for the backend's kernels once (cuDNN's one buffer), not on every call
            own = unprefixed(prefix, params)
            flat = self.backend.flatten_params(layer, own, requires_grad=False)
            params.update(prefixed(prefix, flat))
        self.params = params

    def _recurrent_layers(self) -> dict[str, Recurrent]:
        """``{parameter prefix: Recurrent}`` of every recurrent stack the model holds."""
        return {p: b for p, b in self.blocks.items() if isinstance(b, Recurrent)}

    def numpy_params(self) -> dict[str, np.ndarray]:
        """Every parameter as a NumPy array, by name."""
        return {name: np.array(self.backend.to_numpy(value)) for name, value in self.params.items()}

    @abc.abstractmethod
    def config(self) -> dict:
        """The constructor arguments (JSON-able) that rebuild this model's shape."""

    @abc.abstractmethod
    def _loss_forward(self, params: dict, *batch: Any) -> tuple[Any, Any]:
        """Training loss (0-d array) of one batch and the cache for :meth:`_loss_backward`."""

    @abc.abstractmethod
    def _loss_backward(self, params: dict, cache: Any) -> dict:
        """Hand-written gradient of the training loss for every parameter."""

    def _batch_tokens(self, batch: tuple) -> int:
        """Tokens in a batch, for throughput reports."""
        return 0

    def _batch_weight(self, batch: tuple) -> float:
        """What the training loss of ``batch`` is a mean over (its tokens or its examples):
        data-parallel training weights each process's shard by it."""
        raise NotImplementedError(f"{type(self).__name__} does not support data-parallel training")

    def _fit(
        self,
        make_batch,
        n_items: int,
        *,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
        distributed: bool | DistributedInfo = False,
        **options: Any,
    ) -> TrainingHistory:
        """Every model's ``fit``: checkpoints, exact resume and data parallelism, then
        :func:`seqkit.training.train` with ``options`` (steps, batch_size, lr, ...).

        Args:
            checkpoint: write the model and its training state here (atomically) every
                ``checkpoint_every`` steps (default: only at the end).
            resume: continue from :attr:`training_state` (set by :func:`seqkit.load` for a
                checkpoint written during training) with the same data and options; ``steps``
                is the total to reach. The result equals an uninterrupted run.
            distributed: True to train data-parallel in a job started by torchrun or
                ``seqkit train --nproc`` (read from the environment), or a
                :class:`~seqkit.distributed.DistributedInfo`; needs backend 'torch'. Rank 0
                writes ``checkpoint``; every rank ends with the same parameters.
        """
        if resume and self.training_state is None:
            raise ValueError(
                "resume=True needs a model loaded from a training checkpoint (no training state)"
            )
        info = from_environment() if distributed is True else (distributed or None)
        if distributed is True and info is None:
            raise ValueError(
                "distributed=True needs a multi-process launch (torchrun or seqkit train "
                "--nproc): RANK and WORLD_SIZE are not set"
            )
        joined = info is not None and info.world_size > 1
        if joined:
            self.backend.init_distributed(info)
        on_checkpoint = None
        if checkpoint is not None:
            on_checkpoint = lambda state: self.save(checkpoint)  # noqa: E731
            checkpoint_every = checkpoint_every or options["steps"]
        history = train(
            self,
            make_batch,
            n_items,
            resume=self.training_state if resume else None,
            checkpoint_every=checkpoint_every,
            on_checkpoint=on_checkpoint,
            distributed=info,
            **options,
        )
        if joined:  # only after success: a failing rank must not wait for the others here
            self.backend.leave_distributed()
        return history

    def _extra(self) -> dict:
        """JSON-able state beyond config and parameters (vocabularies)."""
        return {}

    @classmethod
    @abc.abstractmethod
    def _positional(cls, checkpoint: Checkpoint, config: dict) -> tuple:
        """The constructor's positional arguments (vocabularies, ...) from a checkpoint;
        may pop from ``config`` what it consumes."""

    @classmethod
    def _from_checkpoint(cls, checkpoint: Checkpoint, backend: Backend) -> Model:
        """Rebuild from a checkpoint's config and extra, then load its parameters."""
        config = dict(checkpoint.config)
        config["cell"] = get_cell(config.pop("cell"), **config.pop("cell_options", {}))
        model = cls(*cls._positional(checkpoint, config), backend=backend, _init=False, **config)  # type: ignore[call-arg]
        model._load_params(checkpoint)
        return model

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
            optimizer = get_optimizer(ts.options["optimizer"], lr=ts.options["lr"])
            extra["training"], state = ts.to_checkpoint(optimizer, self.backend.ops)
        save_checkpoint(
            path, Checkpoint(self.kind, self.config(), self.numpy_params(), extra, state=state)
        )

    def _load_params(self, checkpoint: Checkpoint) -> None:
        expected = self.param_shapes()
        got = {name: tuple(value.shape) for name, value in checkpoint.params.items()}
        if expected != got:
            missing = sorted(set(expected) - set(got))
            wrong = sorted(n for n in set(expected) & set(got) if expected[n] != got[n])
            raise CheckpointError(
                f"checkpoint parameters do not fit a {self.kind}: missing {missing}, "
                f"unexpected {sorted(set(got) - set(expected))}, wrong shape {wrong}"
            )
        self._set_params(checkpoint.params)


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
    checkpoint = read_checkpoint(path)
    cls = _KINDS.get(checkpoint.kind)
    if cls is None:
        raise CheckpointError(f"{path}: {unknown('model kind', checkpoint.kind, sorted(_KINDS))}")
    be = resolve_backend(backend, dtype, device)
    try:
        model = cls._from_checkpoint(checkpoint, be)
        model.metadata = dict(checkpoint.extra.get("metadata", {}))
        if "training" in checkpoint.extra:
            model.training_state = TrainingState.from_checkpoint(
                checkpoint.extra["training"], checkpoint.state, be.ops
            )
        return model
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: checkpoint contents are invalid: {type(exc).__name__}: {exc}"
        ) from None
