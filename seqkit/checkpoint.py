"""The portable checkpoint format: one ``.npz`` file any backend writes and reads.

Layout (format version 1):

* ``__seqkit__``: a 0-d unicode array holding JSON metadata:
  ``{"format": "seqkit-checkpoint", "version": 1, "kind": <model class name>,
  "config": {...}, "extra": {...}}`` (``extra`` carries vocabularies, training state, ...);
* one float array per parameter, under its PyTorch-style name (``rnn.weight_ih_l0``, ...),
  saved as float64 or float32 as it was held;
* for a resumable training checkpoint, arrays of the training state under ``state/``
  (optimizer buffers ``state/optim/<buffer>/<parameter>``, the epoch's example order
  ``state/order``); the rest of the training state (step, RNG state, options, history) is in
  ``extra["training"]``.

No pickle is ever written or read (``allow_pickle=False``). Files are written to a temporary file
in the same folder, flushed to disk, then renamed over the target, so a crash or Ctrl-C never
leaves a half-written or clobbered checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import attrs
import numpy as np

from seqkit.errors import SeqkitError

__all__ = ["Checkpoint", "CheckpointError", "save_checkpoint", "read_checkpoint", "FORMAT_VERSION"]

FORMAT = "seqkit-checkpoint"
FORMAT_VERSION = 1
_META = "__seqkit__"
_STATE = "state/"


class CheckpointError(SeqkitError):
    """A checkpoint file is missing, truncated, corrupted, foreign or from a newer seqkit."""


@attrs.frozen
class Checkpoint:
    """The contents of a checkpoint file."""

    kind: str
    config: dict
    params: dict[str, np.ndarray]
    extra: dict = attrs.field(factory=dict)
    version: int = FORMAT_VERSION
    state: dict[str, np.ndarray] = attrs.field(factory=dict)


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically; returns the path written."""
    path = Path(path)
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": checkpoint.kind,
        "config": checkpoint.config,
        "extra": checkpoint.extra,
    }
    arrays = {name: np.asarray(value) for name, value in checkpoint.params.items()}
    if _META in arrays or any(name.startswith(_STATE) for name in arrays):
        raise ValueError(f"parameter names {_META!r} and '{_STATE}...' are reserved")
    arrays.update({_STATE + name: np.asarray(value) for name, value in checkpoint.state.items()})
    for name, value in arrays.items():
        if value.dtype.kind not in "fiub":
            raise ValueError(f"params[{name!r}] must be a numeric array (got dtype {value.dtype})")
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **{_META: np.array(json.dumps(meta))}, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint; every failure is a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with np.load(path, allow_pickle=False) as data:
            if _META not in data.files:
                raise CheckpointError(f"{path}: not a seqkit checkpoint (no {_META!r} entry)")
            meta = json.loads(str(data[_META]))
            params = {n: data[n] for n in data.files if n != _META and not n.startswith(_STATE)}
            state = {n[len(_STATE) :]: data[n] for n in data.files if n.startswith(_STATE)}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: not a readable seqkit checkpoint "
            f"(truncated or corrupted: {type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a seqkit checkpoint "
            f"(format {meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: invalid checkpoint version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is newer than this seqkit reads "
            f"({FORMAT_VERSION}); upgrade seqkit"
        )
    for key, kind in (("kind", str), ("config", dict), ("extra", dict)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{path}: checkpoint metadata {key!r} must be a {kind.__name__}")
    return Checkpoint(meta["kind"], meta["config"], params, meta["extra"], version, state)
