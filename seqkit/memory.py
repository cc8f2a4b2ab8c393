"""How much memory a model needs, estimated from the model before anything large is allocated.

A model's parameter count comes from its blocks' ``param_shapes`` (no arrays are made), and a
training step's working memory is measured on the model itself, on one and two of the longest
examples, then scaled to the batch. Each estimate is a lower bound: seqkit refuses a
configuration only when even that does not fit the memory the machine has available now, so a
run that would fit is never refused.

The available memory is ``MemAvailable`` of ``/proc/meminfo`` (Linux), else the free physical
pages of ``os.sysconf``; where neither exists there is no check. Only backends whose arrays live
in host memory (``device == "cpu"``) are checked.
"""

from __future__ import annotations

import math
import os
import tracemalloc
from collections.abc import Mapping
from typing import Any

import numpy as np

from seqkit.errors import SeqkitError

__all__ = [
    "InsufficientMemory",
    "available_bytes",
    "check_fits",
    "format_bytes",
    "parameter_count",
    "step_bytes",
]

# the model's initialiser draws every parameter in float64 before the backend takes them
_INIT_ITEMSIZE = 8
# how many examples the training check looks at to find a long one
_SAMPLE = 256


class InsufficientMemory(SeqkitError, MemoryError):
    """A configuration needs more memory than the machine has available; the message says how
    much it needs and how much there is."""


def available_bytes() -> int | None:
    """The memory available to a new allocation now, in bytes, or None where unknown."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``: binary units, one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def parameter_count(shapes: Mapping[str, tuple[int, ...]]) -> int:
    """The number of entries of parameters of these shapes (Python ints: no overflow)."""
    return sum(math.prod(int(n) for n in shape) for shape in shapes.values())


def check_fits(need: int, what: str, backend: Any, advice: str) -> None:
    """Raise :class:`InsufficientMemory` when ``need`` bytes exceed the available memory.

    Args:
        need: a lower bound of the bytes ``what`` will allocate.
        what: the subject of the message (``"LanguageModel(V=29, ...) with 3.0e+10 parameters"``).
        backend: the model's backend; only one whose device is ``"cpu"`` is checked.
        advice: what makes it smaller (options as Python spells them: ``'hidden_size'``).
    """
    if str(getattr(backend, "device", "cpu")) != "cpu":
        return
    have = available_bytes()
    if have is None or need <= have:
        return
    raise InsufficientMemory(
        f"{what} needs at least {format_bytes(need)} of memory and this machine has "
        f"{format_bytes(have)} available; {advice}"
    )


def check_parameters(model: Any) -> None:
    """Before a model initialises its parameters: do its parameters fit?"""
    n = parameter_count(model.param_shapes())
    check_fits(
        n * _INIT_ITEMSIZE,
        f"{model!r} has {n:,} parameters: initialising them",
        model.backend,
        "use a smaller 'hidden_size', 'embedding_size', 'num_layers' or vocabulary",
    )


def step_bytes(model: Any, batch: Any) -> int | None:
    """The peak bytes NumPy allocates while computing ``batch``'s loss and gradients (traced
    with :mod:`tracemalloc`), or None when tracemalloc is already in use (then it is left
    alone). Arrays of other libraries (torch) are not traced."""
    if tracemalloc.is_tracing():
        return None
    tracemalloc.start()
    try:
        with np.errstate(all="ignore"):
            model.loss_and_grads(batch)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def check_training(model: Any, examples: Any, batch_size: int, copies: int) -> None:
    """Before training allocates its state: do ``copies`` more sets of parameters (optimizer
    buffers, the last good parameters) and a step on ``batch_size`` long examples fit?

    The step is measured on one and on two copies of the longest of the first examples, so
    the estimate grows with the batch and with the length as the model's own arrays do (on a
    backend whose arrays are NumPy's: tracemalloc sees no others).
    """
    if str(getattr(model.backend, "device", "cpu")) != "cpu" or available_bytes() is None:
        return
    if examples.size == 0:
        return
    # tracemalloc sees NumPy's allocations only: measure a step where the arrays are NumPy's
    # (another backend would also compile for the two probe shapes; there the state is counted)
    measure = all(isinstance(p, np.ndarray) for p in model.params.values())
    batch = min(batch_size, examples.size)
    one = two = None
    if measure:
        sample = range(min(examples.size, _SAMPLE))
        longest = max(sample, key=lambda i: examples.batch(np.array([i])).n_tokens)
        one = step_bytes(model, examples.batch(np.array([longest])))
        two = step_bytes(model, examples.batch(np.array([longest, longest])))
    activations = 0 if one is None or two is None else one + max(two - one, 0) * (batch - 1)
    itemsize = np.dtype(model.backend.dtype).itemsize
    state = copies * parameter_count(model.param_shapes()) * itemsize
    check_fits(
        state + activations,
        f"training {model!r} on batches of {batch:,} examples",
        model.backend,
        "use a smaller 'batch_size' (or a smaller model, or shorter examples)",
    )
