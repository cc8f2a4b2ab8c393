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


def test_a_refused_value_reports_false(fresh):
    assert _malloc.keep_freed_memory({}, FakeLibc(result=0)) is False


def test_another_c_library_is_left_alone(fresh, monkeypatch):
    monkeypatch.setattr(_malloc.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert _malloc.keep_freed_memory({}) is False


_PATTERN = textwrap.dedent(
    """
    import resource, sys
    import torch
    from seqkit.cells import LSTM
    from seqkit_torch import _malloc, _scan
    from seqkit_torch.ops import TorchOps

    _scan.scan_loop(LSTM(), TorchOps("float32", "cpu"))  # what the compiled path builds first

    def call():  # a compiled call's pattern: blocks of 8 MB and smaller ones, all freed at its end
        big = [torch.empty(2 << 20).fill_(1.0) for _ in range(6)]
        small = [torch.empty(1 << 16).fill_(1.0) for _ in range(20)]
        del big, small

    for _ in range(5):
        call()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        call()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
    print(_malloc._tuned, faults)
    """
)


@pytest.mark.skipif(not _malloc._is_glibc(), reason="glibc's malloc only")
def test_a_compiled_loop_on_a_cpu_keeps_freed_memory_in_the_process(monkeypatch):
    """Freed blocks are reused, not returned to the system and faulted in again page by page."""
    for name in ("GLIBC_TUNABLES", "LD_PRELOAD", "SEQKIT_TUNE_MALLOC", *_malloc._USER_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    out = subprocess.run(
        [sys.executable, "-c", _PATTERN], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "True"
    assert float(out[1]) < 2.0  # glibc's own thresholds: 16 a call on this pattern
