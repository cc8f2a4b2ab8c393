"""One frozen configuration object and the sources it is read from.

Sources, strongest first:

1. explicit arguments to :func:`load_config` (or to :func:`seqkit.get_backend`);
2. environment variables ``SEQKIT_BACKEND``, ``SEQKIT_DTYPE``, ``SEQKIT_DEVICE``, ``SEQKIT_SEED``;
3. the nearest ``seqkit.toml`` (top-level keys) or ``pyproject.toml`` with a ``[tool.seqkit]``
   table, searched from the working directory upward (in one directory ``seqkit.toml`` wins);
4. the defaults below.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from seqkit.errors import ConfigError

__all__ = ["Config", "load_config", "find_config_file", "default_seed", "resolve_seed", "DTYPES"]

DTYPES = ("float32", "float64")
# Only the form of a device name is checked here; each backend validates its own names (numpy:
# cpu; torch: cpu, cuda, cuda:N; jax: cpu, gpu, gpu:N) when it is built, and lists its choices.
_DEVICE = re.compile(r"^[a-z][a-z0-9_]*(:\d+)?$")
_DEVICE_CHOICES = "a name such as 'cpu', 'cuda', 'cuda:N', 'gpu' or 'auto'"


@attrs.frozen(kw_only=True)
class Config:
    """Where and how seqkit computes.

    Attributes:
        backend: registered backend name (``seqkit.list_backends()``).
        dtype: ``"float32"`` or ``"float64"``.
        device: a device name of the backend (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``
            for torch; the backend checks the name when it is built).
        seed: default seed for initializers, shufflers and samplers, or ``None``.
    """

    backend: str = "numpy"
    dtype: str = "float32"
    device: str = "cpu"
    seed: int | None = None


_KEYS = tuple(f.name for f in attrs.fields(Config))
_ENV = {key: f"SEQKIT_{key.upper()}" for key in _KEYS}


def _check(key: str, value: Any, source: str) -> Any:
    """Validate one value from one source; strings from the environment are parsed here."""
    if key not in _KEYS:
        raise ConfigError(f"{source}: unknown key {key!r}; allowed keys: {', '.join(_KEYS)}")
    if key == "seed":
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(
                    f"{source}: 'seed' must be a non-negative integer (got {value!r})"
                ) from None
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ConfigError(f"{source}: 'seed' must be a non-negative integer (got {value!r})")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key!r} must be a string (got {value!r})")
    if key == "dtype" and value not in DTYPES:
        raise ConfigError(
            f"{source}: 'dtype' must be one of {', '.join(map(repr, DTYPES))} (got {value!r})"
        )
    if key == "device" and not _DEVICE.match(value):
        raise ConfigError(f"{source}: 'device' must be {_DEVICE_CHOICES} (got {value!r})")
    if key == "backend":
        from seqkit._plugins import list_backends

        available = list_backends()
        if value not in available:
            raise ConfigError(
                f"{source}: 'backend' must be one of {', '.join(map(repr, available))} "
                f"(got {value!r})"
            )
    return value


def find_config_file(start: str | os.PathLike | None = None) -> tuple[Path, dict] | None:
    """The nearest config file from ``start`` (default: cwd) upward and its seqkit table."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        for filename in ("seqkit.toml", "pyproject.toml"):
            path = folder / filename
            if not path.is_file():
                continue
            try:
                with path.open("rb") as fh:
                    data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at byte offset "
                    f"{exc.start}); TOML files are UTF-8"
                ) from None
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
            if filename == "seqkit.toml":
                return path, data
            table = data.get("tool", {}).get("seqkit")
            if table is not None:
                if not isinstance(table, dict):
                    raise ConfigError(f"{path}: [tool.seqkit] must be a table")
                return path, table
    return None


def load_config(
    *,
    backend: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
    seed: int | None = None,
    cwd: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge explicit arguments, environment, config file and defaults into a :class:`Config`.

    ``None`` means "not given" for every argument. ``cwd`` and ``environ`` default to the
    process's own.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    found = find_config_file(cwd)
    if found is not None:
        path, table = found
        label = str(path) if path.name == "seqkit.toml" else f"{path} [tool.seqkit]"
        for key, value in table.items():
            values[key] = _check(key, value, label)
    for key, var in _ENV.items():
        if environ.get(var, "") != "":
            values[key] = _check(key, environ[var], f"environment variable {var}")
    explicit = {"backend": backend, "dtype": dtype, "device": device, "seed": seed}
    for key, value in explicit.items():
        if value is not None:
            values[key] = _check(key, value, f"argument {key!r}")
    return Config(**values)


def default_seed(
    *, cwd: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None
) -> int | None:
    """The configured default seed (``SEQKIT_SEED``, then the config file's ``seed``), or None.

    Raises:
        ConfigError: the environment or the config file holds an invalid value.
    """
    return load_config(cwd=cwd, environ=environ).seed


def resolve_seed(seed: Any, **sources: Any) -> Any:
    """``seed`` itself, or :func:`default_seed` when it is ``None``: what every initialiser,
    shuffler and sampler passes to ``numpy.random.default_rng``. ``seed`` may be an int or a
    ``numpy.random.Generator``; ``sources`` are :func:`default_seed`'s ``cwd`` and ``environ``.

    >>> from seqkit.config import resolve_seed
    >>> resolve_seed(3)
    3
    """
    return default_seed(**sources) if seed is None else seed
