"""Damaged and crafted checkpoints: every outcome is an identical load or one CheckpointError.

``benchmarks/checkpoint_sweep.py`` runs the full sweep (every byte, every bit) with the helpers
defined here and prints the counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import seqkit
from seqkit.checkpoint import CheckpointError

# --- helpers shared with benchmarks/checkpoint_sweep.py --------------------------------------------


def make_checkpoint(folder: Path, *, trained: bool = False) -> Path:
    """A real LanguageModel checkpoint (with its training state when ``trained``)."""
    texts = ["hello world", "a tiny corpus"]
    vocab = seqkit.Vocabulary.build(texts, level="char")
    model = seqkit.LanguageModel(vocab, cell="lstm", hidden_size=3, seed=0)
    if trained:
        model.fit(texts, steps=2, batch_size=2, seed=0)
    path = folder / ("trained.npz" if trained else "model.npz")
    model.save(path)
    return path


def parameters(path: Path) -> dict[str, np.ndarray]:
    return seqkit.load(path).numpy_params()


def outcome(data: bytes, scratch: Path, reference: dict[str, np.ndarray]) -> str:
    """``"identical"``, ``"CheckpointError"``, ``"different"`` (loaded other parameters) or
    ``"other <Type>: <message>"`` for ``data`` written to ``scratch`` and loaded."""
    scratch.write_bytes(data)
    try:
        params = parameters(scratch)
    except CheckpointError as exc:
        assert "\n" not in str(exc), str(exc)
        return "CheckpointError"
    except Exception as exc:  # the failure the fuzz test exists to find
        return f"other {type(exc).__name__}: {exc}"[:300]
    same = params.keys() == reference.keys() and all(
        params[k].dtype == reference[k].dtype and np.array_equal(params[k], reference[k])
        for k in reference
    )
    return "identical" if same else "different"


def truncations(data: bytes):
    """Every proper prefix of ``data``, the empty one included."""
    for n in range(len(data)):
        yield f"truncated to {n} bytes", data[:n]


def flips(data: bytes, positions, masks):
    """``data`` with the byte at each position XORed with each mask."""
    for i in positions:
        for mask in masks:
            damaged = bytearray(data)
            damaged[i] ^= mask
            yield f"byte {i} ^ {mask:#04x}", bytes(damaged)


# --- the property tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    path = make_checkpoint(folder)
    return path.read_bytes(), parameters(path), folder / "damaged.npz"


def _bad(cases, scratch, reference) -> list[str]:
    bad = []
    for label, data in cases:
        result = outcome(data, scratch, reference)
        if result not in ("identical", "CheckpointError"):
            bad.append(f"{label}: {result}")
    return bad


def test_every_truncation_is_a_checkpoint_error(real):
    data, reference, scratch = real
    bad = [
        f"{label}: {result}"
        for label, damaged in truncations(data)
        if (result := outcome(damaged, scratch, reference)) != "CheckpointError"
    ]
    assert not bad, f"{len(bad)} truncations misbehave, e.g. {bad[:5]}"


def test_sampled_byte_flips_load_identically_or_raise_checkpoint_error(real):
    data, reference, scratch = real
    rng = np.random.default_rng(13)
    positions = rng.choice(len(data), size=min(len(data), 1500), replace=False)
    cases = (
        (label, damaged)
        for i in positions
        for label, damaged in flips(data, [int(i)], [int(rng.integers(1, 256))])
    )
    bad = _bad(cases, scratch, reference)
    assert not bad, f"{len(bad)} byte flips misbehave, e.g. {bad[:5]}"


# --- the zip bomb ---------------------------------------------------------------------------------

#: Peak memory allowed while rejecting the bomb, in bytes.
BOMB_LIMIT = 100 * 2**20


def add_zip_bomb(path: Path, *, gib: int = 2, name: str = "junk.npy") -> None:
    """Append a deflated ``gib`` GiB array of zeros to the archive, streamed (little memory)."""
    import zipfile

    n = gib * 2**30
    header = np.lib.format.header_data_from_array_1_0(np.zeros(0, dtype=np.uint8))
    header["shape"] = (n,)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(name, "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            zeros = bytes(2**24)
            for _ in range(n // len(zeros)):
                fh.write(zeros)


def bomb_peak_memory(path: Path) -> dict:
    """Load ``path`` in a fresh interpreter; its outcome and peak memory (RSS and Python heap).

    The peak RSS is the kernel's ``VmHWM`` of the new process image: ``ru_maxrss`` would carry
    over the parent's peak across ``fork`` and ``exec``.
    """
    script = textwrap.dedent(
        f"""
        import json, tracemalloc

        def peak_rss():
            with open("/proc/self/status") as fh:
                line = next(line for line in fh if line.startswith("VmHWM:"))
            return int(line.split()[1]) * 1024

        import seqkit
        before = peak_rss()
        tracemalloc.start()
        try:
            seqkit.load({str(path)!r})
            result = "loaded"
        except seqkit.CheckpointError as exc:
            result = "CheckpointError: " + str(exc)
        heap = tracemalloc.get_traced_memory()[1]
        print(json.dumps({{"result": result, "heap_peak": heap, "rss_peak": peak_rss(),
                          "rss_before": before}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_zip_bomb_is_refused_before_decompressing(tmp_path):
    path = make_checkpoint(tmp_path)
    add_zip_bomb(path, gib=2)
    assert path.stat().st_size < 16 * 2**20  # 2 GiB in a few MB on disk
    measured = bomb_peak_memory(path)
    assert measured["result"].startswith("CheckpointError: ")
    assert "junk" in measured["result"]
    assert measured["rss_peak"] < BOMB_LIMIT, measured
    assert measured["heap_peak"] < 10 * 2**20, measured
