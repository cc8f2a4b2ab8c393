"""One-hot input of a large vocabulary: the (T, B, V) matrix (before) against its ids (now).

A recurrent stack's forward and backward (``recurrent_forward`` + ``recurrent_backward``) over a
one-hot input, either built as the dense matrix (what ``OneHot`` gave before: ``x.dense()``) or
kept as :class:`seqkit.ops.OneHotIds` (what it gives now: layer 0 gathers columns of
``weight_ih`` and scatter-adds their gradient). Each case runs in a child process of its own, so
that its peak resident memory (``ru_maxrss``, less the process's memory after set-up) is its own.

    python benchmarks/bench_one_hot.py                          # V=25,000, GRU-128, T=35, B=64
    python benchmarks/bench_one_hot.py --vocab 60 --cell lstm   # a character vocabulary
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

import seqkit
from seqkit.layers import OneHot


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _backend(name: str, dtype: str):
    if name == "numpy":
        return seqkit.get_backend("numpy", dtype=dtype)
    from seqkit_torch import TorchBackend

    backend, _, path = name.partition("-")
    return TorchBackend(dtype=dtype, path=path or "auto")


def child(args) -> dict:
    """One case: best time of ``repeat`` forward+backward runs, and the peak memory they took."""
    be = _backend(args.backend, args.dtype)
    V, T, B, H = args.vocab, args.steps, args.batch, args.hidden
    layer = seqkit.Recurrent(args.cell, V, H)
    params = {k: be.asarray(v) for k, v in layer.init_params(0, dtype=args.dtype).items()}
    rng = np.random.default_rng(1)
    ids = rng.integers(0, V, size=(T, B))
    d_out = be.asarray(rng.normal(size=(T, B, H)))
    base = _rss_mib()

    def run():
        x, _ = OneHot(V).forward(be.ops, None, ids)
        if args.mode == "dense":
            x = x.dense()
        out, _, cache = be.recurrent_forward(layer, params, x)
        return be.recurrent_backward(layer, cache, d_out)

    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return {"ms": best * 1e3, "peak_mib": _rss_mib() - base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=25_000)
    parser.add_argument("--steps", type=int, default=35)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--cell", default="gru")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="numpy,torch,torch-generic")
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(child(args)))
        return
    shape = f"V={args.vocab} T={args.steps} B={args.batch} {args.cell}-{args.hidden} {args.dtype}"
    print(f"one-hot input, {shape}: forward+backward of the stack, best of {args.repeat}")
    print(
        f"{'backend':>14} {'dense ms':>10} {'ids ms':>9} {'speed-up':>9} {'dense MiB':>10} "
        f"{'ids MiB':>8}"
    )
    for backend in args.backends.split(","):
        result = {}
        for mode in ("dense", "ids"):
            cmd = [sys.executable, __file__, *sys.argv[1:], "--backend", backend, "--mode", mode]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            result[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        dense, ids = result["dense"], result["ids"]
        print(
            f"{backend:>14} {dense['ms']:10.1f} {ids['ms']:9.1f} {dense['ms'] / ids['ms']:8.1f}x "
            f"{dense['peak_mib']:10.0f} {ids['peak_mib']:8.0f}"
        )


if __name__ == "__main__":
    main()
