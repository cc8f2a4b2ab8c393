"""The full fault sweep of a real checkpoint, and the zip bomb's peak memory.

Every truncation and every single-byte flip (each byte XORed with each mask) of a small
LanguageModel checkpoint is loaded with :func:`seqkit.load`; each outcome is counted as
``identical`` (loaded the original parameters), ``CheckpointError`` (one line), ``different``
(loaded other parameters) or ``other`` (any other exception: a bug). Then a 2 GiB deflated
array of zeros is appended to a real checkpoint and loaded in a fresh interpreter, whose peak
memory is printed. Exit status 1 when anything is ``different`` or ``other``, or the bomb's peak
memory is over 100 MiB.

Run from the repository root::

    python benchmarks/checkpoint_sweep.py                  # 8 one-bit flips per byte
    python benchmarks/checkpoint_sweep.py --masks all      # all 255 values per byte (slow)
    python benchmarks/checkpoint_sweep.py --trained        # with a training state (larger)
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_checkpoint_fuzz import (  # noqa: E402
    BOMB_LIMIT,
    add_zip_bomb,
    bomb_peak_memory,
    flips,
    make_checkpoint,
    outcome,
    parameters,
    truncations,
)

MASKS = {"bits": [1 << k for k in range(8)], "ff": [0xFF], "all": list(range(1, 256))}


def sweep(cases, scratch: Path, reference) -> tuple[collections.Counter, list[str]]:
    counts: collections.Counter = collections.Counter()
    examples: list[str] = []
    for label, data in cases:
        result = outcome(data, scratch, reference)
        kind = result.split(":")[0].split()[0]
        counts[kind] += 1
        if kind in ("other", "different") and len(examples) < 10:
            examples.append(f"{label}: {result}")
    return counts, examples


def report(title: str, counts: collections.Counter, seconds: float) -> None:
    total = sum(counts.values())
    parts = ", ".join(
        f"{k} {counts.get(k, 0)}" for k in ("identical", "CheckpointError", "different", "other")
    )
    print(f"{title}: {total} files in {seconds:.0f} s: {parts}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", choices=sorted(MASKS), default="bits")
    parser.add_argument("--trained", action="store_true", help="sweep a training checkpoint")
    parser.add_argument("--no-bomb", action="store_true", help="skip the zip bomb")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = make_checkpoint(folder, trained=args.trained)
        data = path.read_bytes()
        reference = parameters(path)
        scratch = folder / "damaged.npz"
        print(f"checkpoint: {len(data)} bytes ({'with' if args.trained else 'no'} training state)")
        for title, cases in (
            ("truncations", truncations(data)),
            (
                f"byte flips ({len(MASKS[args.masks])} per byte)",
                flips(data, range(len(data)), MASKS[args.masks]),
            ),
        ):
            start = time.perf_counter()
            counts, examples = sweep(cases, scratch, reference)
            report(title, counts, time.perf_counter() - start)
            for line in examples:
                print("   ", line)
            ok &= not counts["other"] and not counts["different"]
        if not args.no_bomb:
            bomb = make_checkpoint(folder)
            add_zip_bomb(bomb, gib=2)
            measured = bomb_peak_memory(bomb)
            mib = 2**20
            print(
                f"zip bomb: {bomb.stat().st_size / mib:.1f} MiB file declaring 2 GiB: "
                f"{measured['result'].split(': ')[0]}; peak RSS {measured['rss_peak'] / mib:.1f} "
                f"MiB (after imports {measured['rss_before'] / mib:.1f} MiB), peak Python heap "
                f"during load {measured['heap_peak'] / mib:.2f} MiB"
            )
            print("   ", measured["result"])
            ok &= measured["rss_peak"] < BOMB_LIMIT
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
