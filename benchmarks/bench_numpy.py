"""The NumPy reference LSTM against torch.nn.LSTM on the CPU: time and memory of forward+backward.

Run: ``python benchmarks/bench_numpy.py [--repeat N] [--threads N] [--skip-torch] [--products]``

Both run float32 in one process, with torch limited to as many threads as NumPy's BLAS uses, and
the best of N interleaved runs is kept (the machine is shared; the best run is the least noisy).
Both compute the same gradients: the input's, the initial state's and every parameter's.

Memory is NumPy's own bookkeeping (``tracemalloc`` sees every array NumPy allocates): the peak of
one forward+backward above what was allocated before it (inputs, parameters), against the
activations BPTT must keep, ``T*B*(G+2)*H`` numbers for the LSTM (G = 4 gates, c and h).

Benchmark-only dependencies, the ``bench`` extra (``pip install -e '.[bench]'``): torch (CPU)
and threadpoolctl (to read and set the BLAS threads).
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np

import seqkit

SIZES = [(64, 32, 64, 256), (100, 64, 128, 512)]  # (T, B, I, H)
FLOOR = 1.3  # numpy/torch time ratio the issue allows
MEMORY_FLOOR = 2.0  # peak / activations
G = 4  # LSTM gate blocks
PAUSE = 0.3  # seconds between timed runs (see best_of)


def blas_threads(requested: int | None) -> int:
    """Set (when requested) and return the number of threads NumPy's BLAS uses."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        raise SystemExit(
            "bench_numpy.py needs threadpoolctl (it reads and sets the BLAS threads); "
            "install the bench extra: pip install -e '.[bench]'"
        ) from None

    if requested is not None:
        threadpool_limits(limits=requested, user_api="blas")
    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    if not counts:
        raise RuntimeError("threadpoolctl found no BLAS library behind NumPy")
    return counts[0]


def numpy_case(T, B, I, H, rng):
    """Inputs on the NumPy backend and a closure running one forward+backward."""
    be = seqkit.get_backend("numpy", dtype="float32")
    layer = seqkit.Recurrent("lstm", I, H)
    params = {k: be.asarray(v) for k, v in layer.init_params(seed=0, dtype="float32").items()}
    x = be.asarray(rng.standard_normal((T, B, I)))
    d_out = be.asarray(np.ones((T, B, H)))

    def run():
        out, final, cache = be.recurrent_forward(layer, params, x)
        return be.recurrent_backward(layer, cache, d_out)

    return run, params


def torch_case(T, B, I, H, rng, params):
    """The same LSTM in torch.nn.LSTM, same weights, and a closure running forward+backward."""
    import torch

    module = torch.nn.LSTM(I, H)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(np.asarray(params[name])))
    x = torch.from_numpy(rng.standard_normal((T, B, I)).astype(np.float32)).requires_grad_(True)
    d_out = torch.ones(T, B, H)

    def run():
        module.zero_grad(set_to_none=True)
        x.grad = None
        out, _ = module(x)
        out.backward(d_out)

    return run


def best_of(runs: dict, repeat: int, burst: int = 3) -> dict:
    """Best wall time of each closure, the closures interleaved so that noise hits all alike.

    Each closure runs in bursts of ``burst`` back-to-back calls after a pause, and only the
    calls after the first are timed. OpenBLAS's worker threads keep spinning for about 0.1 s
    after a call returns, so on a machine with few cores a run straight after the other
    library's is slowed by threads that are not its own (torch.nn.LSTM measured 80-88 ms right
    after a NumPy run, 42 ms after a pause, on 2 cores); the untimed first call wakes the
    library's own threads after the pause.
    """
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            gc.collect()
            time.sleep(PAUSE)
            run()
            for _ in range(burst - 1):
                t0 = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


def products_only(T, B, I, H, repeat: int) -> dict:
    """Best time of the matrix products of one LSTM forward+backward, each timed on its own.

    The same shapes and layouts as seqkit.bptt: the input projection, 2*T per-step products
    (column-major, W_hh copied column-major for the backward) and the chunked weight-gradient
    products. Their sum is what the NumPy backend cannot go below with this BLAS.
    """
    from seqkit import bptt

    f32 = np.float32
    rng = np.random.default_rng(0)
    GH = G * H
    x = rng.standard_normal((T, B, I)).astype(f32)
    w_ih = rng.standard_normal((GH, I)).astype(f32)
    w_hh = rng.standard_normal((GH, H)).astype(f32)
    w_hh_cm = np.asfortranarray(w_hh)
    xg = np.empty((T, GH, B), f32).swapaxes(1, 2)
    h, hg = np.ones((H, B), f32).T, np.empty((GH, B), f32).T
    d, dh = np.ones((GH, B), f32).T, np.empty((H, B), f32).T
    rows = min(T, bptt._CHUNK_ROWS // B) * B
    chunks = T * B / rows
    dg = np.ones((GH, rows), f32).T
    xs, hs, dx = np.ones((rows, I), f32), np.ones((rows, H), f32), np.empty((rows, I), f32)
    ones = np.ones(rows, f32)
    parts = {
        "input projection": (1, lambda: np.matmul(x, w_ih.T, out=xg)),
        "per-step forward": (T, lambda: np.matmul(h, w_hh.T, out=hg)),
        "per-step backward": (T, lambda: np.matmul(d, w_hh_cm, out=dh)),
        "chunk d x": (chunks, lambda: np.matmul(dg, w_ih, out=dx)),
        "chunk d W_ih": (chunks, lambda: np.matmul(dg.T, xs)),
        "chunk d W_hh": (chunks, lambda: np.matmul(dg.T, hs)),
        "chunk d biases": (chunks, lambda: ones @ dg),
    }
    times = {}
    for name, (count, product) in parts.items():
        product()
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(10):
                product()
            best = min(best, (time.perf_counter() - t0) / 10)
        times[name] = count * best
    return times


def peak_memory(run) -> int:
    """Peak bytes NumPy allocates during ``run()``, above what is live before it."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = run()
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        tracemalloc.stop()
    return peak - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per size (best kept)")
    parser.add_argument(
        "--threads", type=int, default=None, help="BLAS and torch threads (default: BLAS's)"
    )
    parser.add_argument("--skip-torch", action="store_true", help="time the NumPy backend only")
    parser.add_argument(
        "--products",
        action="store_true",
        help="also time the matrix products alone, each in a loop of its own",
    )
    args = parser.parse_args()
    for name in ("repeat", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1 (got {value})")

    threads = blas_threads(args.threads)
    torch = None
    if not args.skip_torch:
        import torch

        torch.set_num_threads(threads)
    print(f"numpy {np.__version__}, BLAS threads {threads}", end="")
    print(f"; torch {torch.__version__}, threads {torch.get_num_threads()}" if torch else "")
    print("LSTM forward+backward, float32, best of", args.repeat)

    for T, B, I, H in SIZES:
        rng = np.random.default_rng(0)
        run_np, params = numpy_case(T, B, I, H, rng)
        runs = {"numpy": run_np}
        if torch:
            runs["torch"] = torch_case(T, B, I, H, rng, params)
        best = best_of(runs, args.repeat)

        peak = peak_memory(run_np)
        activations = T * B * (G + 2) * H * np.dtype(np.float32).itemsize
        mem_ratio = peak / activations
        # the same size at half the steps: what grows with T must be the activations only
        half = numpy_case(T // 2, B, I, H, rng)[0]
        peak_half = peak_memory(half)
        per_step = (peak - peak_half) / (T - T // 2)
        per_step_act = activations / T

        size = f"T={T} B={B} I={I} H={H}"
        line = f"{size}: numpy {best['numpy'] * 1e3:7.1f} ms"
        ok_time = True
        if torch:
            ratio = best["numpy"] / best["torch"]
            ok_time = ratio <= FLOOR
            line += f"  torch {best['torch'] * 1e3:7.1f} ms  ratio numpy/torch {ratio:.2f}"
        print(line)
        print(
            f"{size}: peak {peak / 2**20:6.1f} MiB  activations {activations / 2**20:6.1f} MiB  "
            f"ratio {mem_ratio:.2f}  growth per step {per_step / 2**10:.0f} KiB "
            f"(activations {per_step_act / 2**10:.0f} KiB)"
        )
        ok_mem = mem_ratio <= MEMORY_FLOOR and per_step <= MEMORY_FLOOR * per_step_act
        verdict = "PASS" if ok_time and ok_mem else "FAIL"
        speed = f"time ratio {ratio:.2f} <= {FLOOR}" if torch else "time not compared"
        beat = " (faster than torch)" if torch and ratio < 1.0 else ""
        print(f"{size}: {verdict}: {speed}{beat}, memory {mem_ratio:.2f}x <= {MEMORY_FLOOR}x")
        if args.products:
            times = products_only(T, B, I, H, args.repeat)
            total = sum(times.values())
            line = f"{size}: matrix products alone {total * 1e3:.1f} ms"
            if torch:
                line += f" = {total / best['torch']:.2f}x torch.nn.LSTM's whole forward+backward"
            print(line)
            print("    " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in times.items()))


if __name__ == "__main__":
    main()
