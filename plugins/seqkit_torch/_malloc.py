"""glibc's malloc told, once, to keep the memory the compiled loops free between calls.

A compiled loop (:mod:`seqkit_torch._scan`) allocates its stacked arrays anew on every call:
an AOTInductor package owns its outputs, so they cannot be handed buffers to reuse. At
``bench_torch.py --small`` (T = 64, B = 32, H = 256) a forward and backward call allocates about
40 MB in blocks of 2-8 MB and frees them at its end. By default glibc raises its mmap threshold
to the largest block freed so far (8 MB here) and gives the top of its heap back to the system
once more than twice that (16 MB) is free there. So each call returned the memory and the next
one faulted it in again, a page at a time: 900 to 5,000 page faults a call, and the backward
loop took 12-15 ms instead of 8.7-9.5 ms (median of 60 calls; docs/reference/performance.rst).
``torch.nn.LSTM`` makes no faults at all: oneDNN's RNN primitive reuses one workspace.

:func:`keep_freed_memory` sets the two thresholds that glibc would otherwise move by itself
(``mallopt``, the calls behind the ``MALLOC_*_`` environment variables). Blocks under 32 MB,
glibc's largest mmap threshold, come from the heap. Up to 256 MB free at the heap's top stays
with the process, as PyTorch's CUDA allocator keeps GPU memory. Beyond that, glibc trims as
before. The compiled path calls it once, on a CPU, when its first loop is built.

It leaves malloc alone when someone else has chosen: a malloc setting in the environment
(``GLIBC_TUNABLES`` naming ``glibc.malloc``, or ``MALLOC_TRIM_THRESHOLD_`` and its siblings),
another allocator preloaded (jemalloc, tcmalloc, mimalloc), a C library that is not glibc, or
``SEQKIT_TUNE_MALLOC=0``.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

from seqkit.errors import ConfigError

__all__ = ["ENV", "describe", "keep_freed_memory"]

#: The environment variable that turns the tuning off (``0``) or on (``1``, the default).
ENV = "SEQKIT_TUNE_MALLOC"

# mallopt's parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Free memory at the top of the heap that glibc keeps before it trims.
TRIM_THRESHOLD = 256 << 20
#: Blocks from this size on are mapped on their own; 32 MB is glibc's largest (64-bit).
MMAP_THRESHOLD = 32 << 20

#: Environment variables through which a user sets glibc's malloc (ours would override them).
_USER_SETTINGS = (
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_ARENA_MAX",
)
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

_tuned: bool | None = None  # once per process: None until the first call


def keep_freed_memory(environ: Mapping[str, str] | None = None, libc=None) -> bool:
    """Set glibc's trim and mmap thresholds, once per process; True if they were set.

    ``environ`` (default ``os.environ``) and ``libc`` (default this process's C library) are
    for tests. A second call returns the first call's answer and changes nothing.

    Raises:
        ConfigError: ``SEQKIT_TUNE_MALLOC`` is set to something other than 0 or 1.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    environ = os.environ if environ is None else environ
    _tuned = False
    if _wanted(environ) and (libc is not None or _is_glibc()):
        libc = ctypes.CDLL(None) if libc is None else libc
        _tuned = bool(
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    return _tuned


def describe(environ: Mapping[str, str] | None = None) -> str:
    """Which malloc serves this process and who set it, in words (for benchmark reports: the
    compiled path's fixed cost per step is largely malloc's, docs/reference/performance.rst)."""
    environ = os.environ if environ is None else environ
    preload = environ.get("LD_PRELOAD", "")
    for name in _OTHER_ALLOCATORS:
        if name in preload:
            return f"{name} (preloaded)"
    if not _is_glibc():
        return "the C library's own (not glibc; seqkit leaves it alone)"
    glibc = f"glibc {platform.libc_ver()[1]}"
    try:
        wanted = _wanted(environ)
    except ConfigError as exc:
        return f"{glibc} (untouched: {exc})"
    if wanted:
        return (
            f"{glibc}, seqkit's thresholds once a compiled loop is built "
            f"(mmap {MMAP_THRESHOLD >> 20} MB, trim {TRIM_THRESHOLD >> 20} MB)"
        )
    if environ.get(ENV, "").strip() == "0":
        return f"{glibc}, left alone ({ENV}=0)"
    return f"{glibc}, as the environment sets it"


def _wanted(environ: Mapping[str, str]) -> bool:
    """Whether this process's malloc is seqkit's to tune (see the module's docstring)."""
    value = environ.get(ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ConfigError(
            f"environment variable {ENV} must be 0 (leave malloc alone) or 1 (tune it), "
            f"got {value!r}"
        )
    if value == "0":
        return False
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return False
    if any(environ.get(name) for name in _USER_SETTINGS):
        return False
    preload = environ.get("LD_PRELOAD", "")
    return not any(name in preload for name in _OTHER_ALLOCATORS)


def _is_glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
