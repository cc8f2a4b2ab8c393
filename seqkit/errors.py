"""The exceptions seqkit raises: each names the argument, what was expected and what arrived."""

__all__ = [
    "SeqkitError",
    "ShapeError",
    "ConfigError",
    "DataError",
    "OutputError",
    "LostRankError",
    "PluginError",
    "UnknownNameError",
]


class SeqkitError(Exception):
    """Base class of every error seqkit raises on purpose."""


class ShapeError(SeqkitError, ValueError):
    """An array argument has the wrong rank, size or dtype."""


class ConfigError(SeqkitError, ValueError):
    """A configuration key or value is invalid; the message names the source."""


class DataError(SeqkitError, ValueError):
    """An input file cannot be read as text; the message names the file and where."""


class OutputError(SeqkitError, OSError):
    """A file seqkit was asked to write (a figure) cannot be written; the message names it."""


class LostRankError(SeqkitError):
    """A collective of a data-parallel job failed: another process of the job is gone.

    A process that raises it is not the cause of the failure; ``seqkit train`` exits with
    :data:`seqkit.distributed.LOST_RANK_EXIT` so that the launcher reports the rank that is.
    """


class PluginError(SeqkitError):
    """A plugin failed to load or registered something invalid."""


class UnknownNameError(SeqkitError, LookupError):
    """A backend, cell or other registered name does not exist; lists the available ones."""

    def __str__(self) -> str:  # LookupError would quote the message like a KeyError
        return str(self.args[0]) if self.args else ""


def unknown(kind: str, name: object, available: list[str]) -> UnknownNameError:
    """Build the standard 'unknown X' error: ``unknown backend 'jaxx'; available: numpy, torch``."""
    choices = ", ".join(available) if available else "(none registered)"
    return UnknownNameError(f"unknown {kind} {name!r}; available: {choices}")
