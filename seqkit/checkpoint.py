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

No pickle is ever written or read. Files are written to a temporary file
``.NAME.<pid>-<random>.tmp`` in the same folder, flushed to disk, then renamed over the target,
so a crash or Ctrl-C never leaves a half-written or clobbered checkpoint; the next write to the
same target removes the partial files of writers that were killed.

A checkpoint is untrusted input. :func:`read_checkpoint` reads the zip's central directory
without decompressing anything, checks every member's name, compression method and declared size
against :class:`ReadLimits`, reads and validates the metadata (a size cap, a JSON nesting cap, a
schema), checks every array's ``.npy`` header (dtype allow-list, shape against what the config
implies, data size against the member's size), and only then decompresses, with a running byte
limit. Every failure is one :class:`CheckpointError` line naming the file.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import attrs
import numpy as np
from numpy.lib import format as npy_format

from seqkit._schema import Int, List, Nullable, Object, SchemaError, Text, Type
from seqkit.errors import SeqkitError
from seqkit.options import MAX_COUNT

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ExpectedShapes",
    "FORMAT_VERSION",
    "ReadLimits",
    "read_checkpoint",
    "save_checkpoint",
]

FORMAT = "seqkit-checkpoint"
FORMAT_VERSION = 1
_META = "__seqkit__"
_STATE = "state/"
_NPY = ".npy"

#: The array dtypes a checkpoint may hold (either byte order); the writer refuses others.
ARRAY_DTYPES = ("float32", "float64", "int32", "int64")
_ALLOWED_DTYPES = frozenset(np.dtype(d).newbyteorder(o) for d in ARRAY_DTYPES for o in "<>")
_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
# general-purpose flag bits a member may carry: 1-2 (deflate level), 3 (data descriptor),
# 11 (UTF-8 name); encryption (0, 6), patched data (5) and the rest are refused
_ALLOWED_FLAGS = 0x0002 | 0x0004 | 0x0008 | 0x0800
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")
_CHUNK = 1 << 20
# a JSON string, matched possessively so that crafted input cannot make the scan backtrack
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)

#: ``expected_shapes(kind, config, extra) -> {parameter name: shape}``: what the model layer
#: says a checkpoint of this kind and config must hold, computed without allocating.
ExpectedShapes = Callable[[str, dict, dict], Mapping[str, tuple[int, ...]]]


class CheckpointError(SeqkitError):
    """A checkpoint cannot be written, or is missing, truncated, corrupted, crafted, foreign or
    from a newer seqkit."""


@attrs.frozen
class Checkpoint:
    """The contents of a checkpoint file."""

    kind: str
    config: dict
    params: dict[str, np.ndarray]
    extra: dict = attrs.field(factory=dict)
    version: int = FORMAT_VERSION
    state: dict[str, np.ndarray] = attrs.field(factory=dict)


def _positive_int(_instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name!r} must be a positive integer (got {value!r})")


@attrs.frozen(kw_only=True)
class ReadLimits:
    """The caps :func:`read_checkpoint` enforces before it decompresses or allocates anything.

    Attributes:
        max_total_bytes: the file's size and the sum of the members' declared uncompressed sizes.
        max_member_bytes: one array member's declared uncompressed size.
        max_metadata_bytes: the ``__seqkit__`` member's size (4 bytes a character).
        max_members: the number of members in the archive.
        max_json_depth: how deeply the metadata's JSON may nest objects and lists.
        max_expansion: a deflated member over 1 MiB may expand at most this many times its
            compressed size (the zip-bomb guard; seqkit itself writes members uncompressed).
        max_header_bytes: one ``.npy`` header (NumPy's own default).
    """

    max_total_bytes: int = attrs.field(default=1 << 36, validator=_positive_int)  # 64 GiB
    max_member_bytes: int = attrs.field(default=1 << 34, validator=_positive_int)  # 16 GiB
    max_metadata_bytes: int = attrs.field(default=1 << 28, validator=_positive_int)  # 256 MiB
    max_members: int = attrs.field(default=1 << 16, validator=_positive_int)
    max_json_depth: int = attrs.field(default=64, validator=_positive_int)
    max_expansion: int = attrs.field(default=100, validator=_positive_int)
    max_header_bytes: int = attrs.field(default=10_000, validator=_positive_int)


# --- writing --------------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` atomically; returns the path written.

    An existing file keeps its permission bits; a new one gets ``0o666`` minus the umask. Partial
    temporary files of this target left by killed writers are removed first.

    Raises:
        ValueError: a reserved or malformed parameter name, or a dtype outside
            :data:`ARRAY_DTYPES`.
        CheckpointError: the file cannot be written (its folder is missing or read-only, the
            disk is full); the message names ``path``.
    """
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
        if not _valid_array_name(name):
            raise ValueError(
                f"array name {name!r} is not allowed: use letters, digits, '_', '.', '-' "
                f"(and '/' between parts of a state name), at most 200 characters a part"
            )
        if value.dtype not in _ALLOWED_DTYPES:
            raise ValueError(
                f"params[{name!r}] must have a dtype in {', '.join(ARRAY_DTYPES)} "
                f"(got dtype {value.dtype})"
            )
    text = json.dumps(meta)
    return write_atomically(
        path, lambda fh: np.savez(fh, **{_META: np.array(text)}, **arrays), "checkpoint"
    )


def write_atomically(
    path: str | os.PathLike, write: Callable[[BinaryIO], object], what: str, error=CheckpointError
) -> Path:
    """Write ``path`` whole or not at all: ``write(fh)`` fills a new file beside it, which then
    replaces it (``os.replace``), so a failure (a full disk, Ctrl-C, a crash) leaves the old
    file as it was and no partial one. A path that exists and is not a regular file (a device
    such as ``/dev/null``, a pipe, a socket, a folder) is refused, never replaced.

    Raises:
        ``error`` (default :class:`CheckpointError`): the file cannot be written; the message
            names ``what`` and ``path`` and says why.
    """
    path = Path(path)

    def fail(reason: str) -> Exception:
        return error(f"cannot write {what} {path}: {reason}")

    try:
        kind = os.stat(path).st_mode
    except OSError:
        kind = None  # missing (to be created), or reported below when the write fails
    if kind is not None and not stat.S_ISREG(kind):
        what_it_is = "a folder" if stat.S_ISDIR(kind) else "a device, pipe or socket"
        raise fail(f"it exists and is not a regular file ({what_it_is})")
    folder = path.parent
    _remove_stale_partials(path)
    fd, tmp = _create_temporary(path, fail)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise fail(exc.strerror or str(exc)) from None
        raise
    _fsync_folder(folder)
    return path


def _temporary_pattern(path: Path) -> re.Pattern:
    """Names of this target's temporary files: ``.NAME.<pid>-<random>.tmp``, or the
    ``.NAME.<random>.tmp`` of seqkit versions that did not record the writer's pid."""
    return re.compile(rf"\.{re.escape(path.name)}\.(?:(\d{{1,10}})-)?[a-z0-9_]{{8}}\.tmp")


def _create_temporary(path: Path, fail) -> tuple[int, str]:
    """A new temporary file beside ``path``: created with mode 0o666 so that the kernel applies
    the umask, or given the mode of the file it will replace."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise fail(exc.strerror or str(exc)) from None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        except FileNotFoundError:
            raise fail(f"folder {path.parent} does not exist") from None
        except OSError as exc:
            raise fail(
                f"cannot create a file in folder {path.parent} ({exc.strerror or exc})"
            ) from None
        if mode is not None:
            os.chmod(tmp, mode)
        return fd, str(tmp)
    raise fail("no free temporary name")


def _remove_stale_partials(path: Path) -> None:
    """Delete this target's temporary files whose writer is gone (killed mid-write)."""
    pattern = _temporary_pattern(path)
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return  # the write itself reports a missing or unreadable folder
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = match.group(1)
        if pid is not None and _process_alive(int(pid)):
            continue  # a writer still at work (another thread or process)
        try:
            os.unlink(entry.path)
        except OSError:
            pass  # gone already, or still open on a platform that locks open files


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT; an open file cannot be
        return False  # deleted there anyway
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a pid we cannot ask about): leave it
    return True


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable where the platform allows opening a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _valid_array_name(name: str) -> bool:
    """A parameter name (one part) or a ``state/`` name (parts joined by ``/``)."""
    if name.startswith(_STATE):
        parts = name[len(_STATE) :].split("/")
        return all(_NAME.fullmatch(p) for p in parts)
    return _NAME.fullmatch(name) is not None


# --- reading --------------------------------------------------------------------------------------

# what zipfile, zlib and the .npy header parser raise on damaged input
_DAMAGE = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    struct.error,
    zlib.error,
    OverflowError,
)


@attrs.frozen
class _Member:
    """An array member whose header has been checked: where its data starts, what it holds."""

    info: zipfile.ZipInfo
    header_bytes: int
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype


def read_checkpoint(
    path: str | os.PathLike,
    *,
    expected_shapes: ExpectedShapes | None = None,
    limits: ReadLimits | None = None,
) -> Checkpoint:
    """Read and validate a checkpoint, checking everything before decompressing anything.

    Args:
        path: the ``.npz`` file.
        expected_shapes: ``(kind, config, extra) -> {parameter name: shape}`` from the model
            layer, called once the metadata is validated; the archive must then hold exactly
            these parameters with these shapes, and every ``state/optim/<buffer>/<parameter>``
            array must have its parameter's shape. It may raise :class:`CheckpointError` (or
            ``ValueError``/``TypeError``/``KeyError``) for a config that builds no model.
            Without it, parameter members are checked by name and against ``limits`` only.
        limits: the caps (default :class:`ReadLimits`).

    Returns:
        the :class:`Checkpoint`; arrays in native byte order.

    Raises:
        CheckpointError: one line naming the file and what is wrong (what was expected, what
            the file holds).
    """
    path = Path(path)
    limits = ReadLimits() if limits is None else limits

    def fail(message: str) -> CheckpointError:
        return CheckpointError(f"{path}: {message}")

    if not path.is_file():
        raise fail("not a file" if path.exists() else "no such checkpoint file")
    size = path.stat().st_size
    if size > limits.max_total_bytes:
        raise fail(f"file of {size} bytes exceeds the cap of {limits.max_total_bytes} bytes")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = _check_directory(zf.infolist(), size, limits, fail)
            if _META + _NPY not in infos:
                raise fail(f"not a seqkit checkpoint (no {_META!r} entry)")
            meta = _read_metadata(zf, infos.pop(_META + _NPY), limits, fail)
            kind, config, extra = meta["kind"], meta["config"], meta["extra"]
            expected = _call_expected(expected_shapes, kind, config, extra, fail)
            members = {
                name[: -len(_NPY)]: _read_header(zf, info, limits, fail)
                for name, info in infos.items()
            }
            _check_members(members, expected, fail)
            arrays = {name: _read_data(zf, m, fail) for name, m in members.items()}
    except CheckpointError:
        raise
    except MemoryError:
        raise fail("not enough memory to read the checkpoint's arrays") from None
    except _DAMAGE as exc:
        raise fail(
            f"not a readable seqkit checkpoint (truncated or corrupted: {type(exc).__name__}: "
            f"{_one_line(exc)})"
        ) from None
    for name, array in arrays.items():  # what a diverged run or a crafted file would hold
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise fail(f"array {name!r} holds NaN or infinite values (a diverged or damaged model)")
    params = {n: a for n, a in arrays.items() if not n.startswith(_STATE)}
    state = {n[len(_STATE) :]: a for n, a in arrays.items() if n.startswith(_STATE)}
    return Checkpoint(kind, config, params, extra, meta["version"], state)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _check_directory(
    infos: list[zipfile.ZipInfo], size: int, limits: ReadLimits, fail
) -> dict[str, zipfile.ZipInfo]:
    """``{member name: info}`` once every member's name, method, flags and sizes are allowed."""
    if len(infos) > limits.max_members:
        raise fail(f"{len(infos)} archive members exceed the cap of {limits.max_members}")
    out: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        what = f"archive member {name[:200]!r}"
        if name in out:
            raise fail(f"{what} appears twice")
        if not name.endswith(_NPY) or not (
            name == _META + _NPY or _valid_array_name(name[: -len(_NPY)])
        ):
            raise fail(
                f"unexpected {what}: expected '{_META}.npy', '<parameter>.npy' or "
                f"'state/<name>.npy' with names of letters, digits, '_', '.', '-'"
            )
        if info.compress_type not in _COMPRESSION:
            raise fail(
                f"{what} uses compression method {info.compress_type}; allowed: "
                + ", ".join(f"{k} ({v})" for k, v in _COMPRESSION.items())
            )
        if info.flag_bits & ~_ALLOWED_FLAGS:
            raise fail(
                f"{what} has zip flags {info.flag_bits:#06x}; allowed flags: "
                f"{_ALLOWED_FLAGS:#06x} (no encryption, no patched data)"
            )
        cap = limits.max_metadata_bytes if name == _META + _NPY else limits.max_member_bytes
        if info.file_size > cap:
            raise fail(f"{what} declares {info.file_size} bytes, over the cap of {cap} bytes")
        if info.compress_size > size:
            raise fail(
                f"{what} declares {info.compress_size} compressed bytes in a {size}-byte file"
            )
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise fail(
                f"{what} is stored uncompressed but declares {info.compress_size} bytes "
                f"in the file and {info.file_size} bytes of data"
            )
        if info.file_size > max(1 << 20, limits.max_expansion * info.compress_size):
            raise fail(
                f"{what} would expand {info.compress_size} compressed bytes to {info.file_size} "
                f"(more than {limits.max_expansion} times: a zip bomb?)"
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise fail(
                f"members declare more than the cap of {limits.max_total_bytes} bytes in all"
            )
        out[name] = info
    return out


def _read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ReadLimits, fail) -> _Member:
    """The member's ``.npy`` header, checked: version, dtype, shape, and size against the zip's."""
    what = f"array {info.filename[: -len(_NPY)]!r}"
    with zf.open(info) as fh:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            header = npy_format.read_array_header_1_0(fh, max_header_size=limits.max_header_bytes)
        elif version == (2, 0):
            header = npy_format.read_array_header_2_0(fh, max_header_size=limits.max_header_bytes)
        else:
            raise fail(f"{what}: .npy format version {version} (expected 1.0 or 2.0)")
        header_bytes = fh.tell()
    shape, fortran_order, dtype = header
    if dtype not in _ALLOWED_DTYPES and not (info.filename == _META + _NPY and dtype.kind == "U"):
        raise fail(f"{what} has dtype {dtype.str}; allowed: {', '.join(ARRAY_DTYPES)}")
    data_bytes = math.prod(shape) * dtype.itemsize
    if header_bytes + data_bytes != info.file_size:
        raise fail(
            f"{what} declares shape {shape} of {dtype.name} ({data_bytes} bytes of data) but the "
            f"archive member holds {info.file_size - header_bytes} bytes of data"
        )
    return _Member(info, header_bytes, tuple(shape), bool(fortran_order), dtype)


def _read_bytes(zf: zipfile.ZipFile, member: _Member, fail) -> bytearray:
    """Decompress a checked member's data, never past its declared size; the CRC is verified."""
    what = f"archive member {member.info.filename!r}"
    n_bytes = member.info.file_size - member.header_bytes
    buffer = bytearray(n_bytes)
    view = memoryview(buffer)
    with zf.open(member.info) as fh:
        fh.read(member.header_bytes)
        done = 0
        while done < n_bytes:
            chunk = fh.read(min(_CHUNK, n_bytes - done))
            if not chunk:
                raise fail(f"{what} ends after {done} of {n_bytes} bytes of data")
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
        if fh.read(1):  # reaching the end also makes zipfile check the CRC
            raise fail(f"{what} holds more than its declared {n_bytes} bytes of data")
    return buffer


def _read_data(zf: zipfile.ZipFile, member: _Member, fail) -> np.ndarray:
    """A checked member's array, in native byte order."""
    array = np.frombuffer(_read_bytes(zf, member, fail), dtype=member.dtype)
    array = array.reshape(member.shape, order="F" if member.fortran_order else "C")
    return array.astype(member.dtype.newbyteorder("="), copy=False)


def _read_metadata(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ReadLimits, fail) -> dict:
    """The ``__seqkit__`` JSON, size- and depth-capped, validated against the schema."""
    member = _read_header(zf, info, limits, fail)
    if member.dtype.kind != "U" or member.shape != ():
        raise fail(
            f"metadata {_META!r} must be a 0-d unicode array "
            f"(got dtype {member.dtype.str}, shape {member.shape})"
        )
    raw = bytes(_read_bytes(zf, member, fail))
    codec = "utf-32-be" if member.dtype.byteorder == ">" else "utf-32-le"
    try:
        text = raw.decode(codec).rstrip("\x00")
    except UnicodeDecodeError as exc:
        raise fail(f"metadata {_META!r} is not valid unicode ({exc.reason})") from None
    depth = _json_depth(text)
    if depth > limits.max_json_depth:
        raise fail(
            f"metadata JSON nests {depth} levels deep; at most {limits.max_json_depth} allowed"
        )
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise fail(f"metadata {_META!r} is not valid JSON ({_one_line(exc)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise fail(f"not a seqkit checkpoint (format {found!r}, expected {FORMAT!r})")
    version = meta.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise fail(
            f"checkpoint format version {version} is newer than this seqkit reads "
            f"({FORMAT_VERSION}); upgrade seqkit"
        )
    try:
        _META_SCHEMA.check(meta, "")
    except SchemaError as exc:
        raise fail(f"invalid checkpoint metadata: {exc}") from None
    return meta


def _json_depth(text: str) -> int:
    """How deeply ``text`` nests ``[`` and ``{`` outside strings, without recursing."""
    skeleton = _JSON_STRING.sub("", text).encode("utf-8", "replace")
    codes = np.frombuffer(skeleton, dtype=np.uint8)
    brackets = codes[np.isin(codes, np.frombuffer(b"[]{}", dtype=np.uint8))]
    if brackets.size == 0:
        return 0
    steps = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def _call_expected(expected_shapes, kind: str, config: dict, extra: dict, fail):
    if expected_shapes is None:
        return None
    try:
        shapes = expected_shapes(kind, config, extra)
    except KeyError as exc:  # a missing entry: say which, not just its bare name
        raise fail(f"the checkpoint does not describe a {kind}: it has no {exc} entry") from None
    except (CheckpointError, ValueError, TypeError) as exc:
        raise fail(f"the config does not describe a {kind}: {_one_line(exc)}") from None
    return {name: tuple(int(n) for n in shape) for name, shape in shapes.items()}


def _check_members(members: dict[str, _Member], expected: dict | None, fail) -> None:
    """Parameters are exactly the expected ones with their shapes; state arrays fit them."""
    params = {n: m for n, m in members.items() if not n.startswith(_STATE)}
    if expected is not None:
        missing = sorted(set(expected) - set(params))
        unexpected = sorted(set(params) - set(expected))
        if missing or unexpected:
            raise fail(
                f"parameters do not fit the config: missing {_names(missing)}, "
                f"unexpected {_names(unexpected)}"
            )
        for name, m in params.items():
            if m.shape != expected[name]:
                raise fail(f"parameter {name!r} must have shape {expected[name]} (got {m.shape})")
    for name, m in params.items():
        if m.dtype.kind != "f":
            raise fail(f"parameter {name!r} must be float32 or float64 (got {m.dtype.name})")
    shapes = expected if expected is not None else {n: m.shape for n, m in params.items()}
    for name, m in members.items():
        if not name.startswith(_STATE):
            continue
        parts = name[len(_STATE) :].split("/")
        # state/optim/<buffer>/<parameter>; state/best|last/<parameter> (early stopping's copies)
        owner = None
        if len(parts) == 3 and parts[0] == "optim":
            owner = parts[2]
        elif len(parts) == 2 and parts[0] in ("best", "last"):
            owner = parts[1]
        if owner is not None:
            if owner not in shapes:
                raise fail(f"state array {name!r} names no parameter of the model")
            if m.shape != shapes[owner]:
                raise fail(
                    f"state array {name!r} must have its parameter's shape {shapes[owner]} "
                    f"(got {m.shape})"
                )
        elif len(m.shape) > 1:
            raise fail(f"state array {name!r} must be 0-d or 1-d (got shape {m.shape})")


def _names(names: list[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(repr(n[:100]) for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


# --- the metadata schema --------------------------------------------------------------------------


_SIZE = Int(1, 1 << 16)
#: The model config keys the reader knows, with the ranges a model may have. A key not listed is
#: passed to the model's constructor, which must validate it.
CONFIG_SCHEMA = Object(
    {
        "cell": Type("str", 100),
        "cell_options": Object(),
        "hidden_size": _SIZE,
        "input_size": _SIZE,
        "num_layers": Int(1, 1024),
        "bidirectional": Type("bool"),
        "binary": Type("bool"),
        "embedding_size": Nullable(_SIZE),
        "head_sizes": List(_SIZE, 64),
        "num_classes": Int(1, 1 << 20),
        "dropout": Type("number"),  # the model checks the range [0, 1)
    }
)
_VOCAB = Object({"tokens": List(Type("str", 1000), 1 << 22)}, required=("tokens",))
_COUNT = Int(0, MAX_COUNT)
_TRAINING = Object(
    {
        "step": _COUNT,
        "cursor": _COUNT,
        "tokens": _COUNT,
        "options": Object(),
        # numpy's default generator, as ``bit_generator.state`` gives it
        "rng": Object(
            {
                "bit_generator": Text("'PCG64'", choices=("PCG64",)),
                "state": Object(
                    {"state": Int(0, (1 << 128) - 1), "inc": Int(0, (1 << 128) - 1)},
                    required=("state", "inc"),
                ),
                "has_uint32": Int(0, 1),
                "uinteger": Int(0, (1 << 32) - 1),
            },
            required=("bit_generator", "state", "has_uint32", "uinteger"),
        ),
        "losses": List(Nullable(Type("number"))),
        "grad_norms": List(Nullable(Type("number"))),
        "evals": List(List(Type("any"), 2)),  # [step, {metric: value}]
        "dropout_seed": Int(0, 1 << 128),
        # early stopping's best evaluation so far
        "best": Object({"value": Nullable(Type("number")), "step": _COUNT, "wait": _COUNT}),
    }
)
EXTRA_SCHEMA = Object(
    {
        "vocab": _VOCAB,
        "src_vocab": _VOCAB,
        "tgt_vocab": _VOCAB,
        "tags": List(Type("str", 1000), 1 << 20),
        # the notes of models and tasks are open; the keys seqkit reads are typed (the CLI checks
        # its own record, "cli", against the schema of its options when it resumes)
        "metadata": Object({"task": Object({"name": Type("str", 100)}, required=("name",))}),
        "training": _TRAINING,
    }
)
_META_SCHEMA = Object(
    {
        "format": Type("str"),
        "version": Int(1, FORMAT_VERSION),
        "kind": Type("str", 100),
        "config": CONFIG_SCHEMA,
        "extra": EXTRA_SCHEMA,
    },
    required=("format", "version", "kind", "config", "extra"),
    open=False,
)
