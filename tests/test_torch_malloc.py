"""seqkit_torch._malloc: glibc's thresholds set once, only where nobody else chose them."""

import subprocess
import sys
import textwrap

import pytest

from seqkit.errors import ConfigError

pytest.importorskip("torch")
from seqkit_torch import _malloc  # noqa: E402


class FakeLibc:
    """Records mallopt's calls; answers ``result`` (glibc: 1 on success, 0 on a bad value)."""

    def __init__(self, result=1):
        self.calls, self.result = [], result

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return self.result


@pytest.fixture
def fresh(monkeypatch):
    """A process in which the thresholds were never set."""
    monkeypatch.setattr(_malloc, "_tuned", None)


def test_sets_both_thresholds_once(fresh):
    libc = FakeLibc()
    assert _malloc.keep_freed_memory({}, libc) is True
    assert libc.calls == [
        (_malloc.M_MMAP_THRESHOLD, 32 << 20),
        (_malloc.M_TRIM_THRESHOLD, 256 << 20),
    ]
    assert _malloc.keep_freed_memory({}, libc) is True  # the first answer; nothing set again
    assert len(libc.calls) == 2


@pytest.mark.parametrize(
    "environ",
    [
        {"SEQKIT_TUNE_MALLOC": "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"},
        {"GLIBC_TUNABLES": "glibc.rtld.nns=2:glibc.malloc.mmap_threshold=65536"},
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"MALLOC_TOP_PAD_": "0"},
        {"MALLOC_ARENA_MAX": "2"},
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
        {"LD_PRELOAD": "/opt/lib/libtcmalloc_minimal.so.4"},
        {"LD_PRELOAD": "libmimalloc.so"},
    ],
)
def test_leaves_malloc_alone_where_someone_else_chose(fresh, environ):
    libc = FakeLibc()
    assert _malloc.keep_freed_memory(environ, libc) is False
    assert libc.calls == []


@pytest.mark.parametrize(
    "environ",
    [
        {"SEQKIT_TUNE_MALLOC": "1"},
        {"SEQKIT_TUNE_MALLOC": ""},
        {"GLIBC_TUNABLES": "glibc.rtld.nns=2"},  # tunables, none of them malloc's
        {"LD_PRELOAD": "/usr/lib/libfaketime.so"},
        {"MALLOC_TRIM_THRESHOLD_": ""},  # set but empty: glibc ignores it too
    ],
)
def test_tunes_where_the_environment_leaves_it_open(fresh, environ):
    assert _malloc.keep_freed_memory(environ, FakeLibc()) is True


@pytest.mark.parametrize("value", ["yes", "2", "true", "-1", "on"])
def test_a_bad_switch_names_the_variable_and_the_choices(fresh, value):
    with pytest.raises(ConfigError) as info:
        _malloc.keep_freed_memory({"SEQKIT_TUNE_MALLOC": value}, FakeLibc())
    message = str(info.value)
    assert "SEQKIT_TUNE_MALLOC" in message and repr(value) in message
    assert "0" in message and "1" in message


@pytest.mark.parametrize(
    "environ, words",
    [
        ({}, "seqkit's thresholds"),
        ({"SEQKIT_TUNE_MALLOC": "1"}, "seqkit's thresholds"),
        ({"SEQKIT_TUNE_MALLOC": "0"}, "left alone (SEQKIT_TUNE_MALLOC=0)"),
        ({"SEQKIT_TUNE_MALLOC": "yes"}, "SEQKIT_TUNE_MALLOC must be 0 (leave malloc alone)"),
        ({"MALLOC_ARENA_MAX": "2"}, "as the environment sets it"),
        ({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=1000"}, "as the environment sets it"),
        ({"LD_PRELOAD": "/usr/lib/libtcmalloc_minimal.so.4"}, "tcmalloc (preloaded)"),
        ({"LD_PRELOAD": "libjemalloc.so.2", "SEQKIT_TUNE_MALLOC": "1"}, "jemalloc (preloaded)"),
    ],
)
def test_describe_names_the_allocator_and_who_set_it(monkeypatch, environ, words):
    monkeypatch.setattr(_malloc.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(_malloc.platform, "system", lambda: "Linux")
    text = _malloc.describe(environ)
    assert words in text
    assert ("glibc 2.36" in text) == ("preloaded" not in text)


def test_describe_another_c_library(monkeypatch):
    monkeypatch.setattr(_malloc.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert "not glibc" in _malloc.describe({})


def test_a_refused_value_reports_false(fresh):
    assert _malloc.keep_freed_memory({}, FakeLibc(result=0)) is False


def test_another_c_library_is_left_alone(fresh, monkeypatch):
    monkeypatch.setattr(_malloc.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert _malloc.keep_freed_memory({}) is False


_PATTERN = textwrap.dedent(
    """
    import ctypes
    from seqkit.cells import LSTM
    from seqkit_torch import _malloc, _scan
    from seqkit_torch.ops import TorchOps

    class MallInfo(ctypes.Structure):  # glibc's struct mallinfo2: ten size_t counters
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    _scan.scan_loop(LSTM(), TorchOps("float32", "cpu"))  # what the compiled path builds first

    start = libc.mallinfo2()
    blocks = [libc.malloc(16 << 20) for _ in range(8)]  # a compiled call's outputs, 128 MB
    peak = libc.mallinfo2()
    for block in reversed(blocks):  # freed at the call's end, the last allocated first
        libc.free(block)
    end = libc.mallinfo2()
    print(_malloc._tuned, peak.hblkhd - start.hblkhd, peak.arena - start.arena, peak.arena - end.arena)
    """
)


def _has_mallinfo2():
    version = tuple(
        int(part) for part in _malloc.platform.libc_ver()[1].split(".")[:2] if part.isdigit()
    )
    return _malloc._is_glibc() and version >= (2, 33)


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc 2.33 or newer (mallinfo2)")
def test_a_compiled_loop_on_a_cpu_keeps_freed_memory_in_the_process(monkeypatch):
    """Blocks of 16 MB come from the heap, and freeing them gives nothing back to the system.

    This reads malloc's own counters (mallinfo2), not the process's page faults: a fault count
    also holds what the kernel does on a shared machine (CI saw 13 faults per call with the
    thresholds in place, where this machine sees 0). Without the thresholds, glibc maps each
    16 MB block by itself (``mmapped`` is 128 MB); with only the mmap threshold, the free
    heap top is trimmed (``trimmed`` > 0).
    """
    for name in ("GLIBC_TUNABLES", "LD_PRELOAD", "SEQKIT_TUNE_MALLOC", *_malloc._USER_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    tuned, mmapped, grown, trimmed = subprocess.run(
        [sys.executable, "-c", _PATTERN], capture_output=True, text=True, check=True
    ).stdout.split()
    assert tuned == "True"
    assert int(mmapped) == 0
    assert int(grown) > 0  # the heap grew to hold them ...
    assert int(trimmed) == 0  # ... and kept what it grew
