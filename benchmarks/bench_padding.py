"""Variable lengths on the fused LSTM: packed against unpacked with the padding frozen.

On a CPU in float32, torch runs an unpacked LSTM on oneDNN's RNN primitive and a packed one in
its per-step loop, about twice as slow per row but skipping the padding. seqkit's fused path
picks between the two by the share of real steps in the batch
(``seqkit_torch._fused.min_fill``). This prints, for each size and share, the time of one stack's
forward and backward (``recurrent_forward`` + ``recurrent_backward``) both ways, their ratio, and
which route the rule takes, so that the rule can be checked on another machine.

    python benchmarks/bench_padding.py                    # the sizes of the docs' table
    python benchmarks/bench_padding.py --sizes 35,64,128,512 --shares 0.3,0.5,0.7
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from seqkit_torch import TorchBackend, _fused

import seqkit

SIZES = ["15,64,29,128", "100,64,64,128", "50,32,64,256", "30,64,128,512", "20,64,256,1024"]


def lengths_for(share: float, T: int, B: int, rng) -> np.ndarray:
    """B lengths in 1..T, one of them T, whose mean is about ``share * T``."""
    mean = share * T
    lengths = np.clip(rng.normal(mean, mean / 4, B).round(), 1, T).astype(np.int64)
    lengths[0] = T
    return lengths


def timed(route: str, case: tuple, repeat: int, number: int) -> float:
    """Best seconds per forward and backward call of ``case`` with variable lengths ``route``."""
    backend, layer, params, x, state0, d_out, lengths = case
    choose = _fused.unpacked_pays
    _fused.unpacked_pays = lambda *_: route == "frozen"
    try:
        best = float("inf")
        for round_ in range(repeat + 1):  # the first round warms up
            start = time.perf_counter()
            for _ in range(number):
                out, _, cache = backend.recurrent_forward(layer, params, x, state0, lengths)
                backend.recurrent_backward(layer, cache, d_out)
            if round_:
                best = min(best, (time.perf_counter() - start) / number)
        return best
    finally:
        _fused.unpacked_pays = choose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=SIZES, help="T,B,I,H per size")
    parser.add_argument("--shares", default="0.2,0.35,0.5,0.65,0.8")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the best counts")
    parser.add_argument("--number", type=int, default=5, help="calls per round")
    args = parser.parse_args()
    if not torch.backends.mkldnn.is_available():
        raise SystemExit("this torch has no oneDNN: variable lengths always pack")
    try:
        sizes = [tuple(int(v) for v in size.split(",")) for size in args.sizes]
        shares = [float(s) for s in args.shares.split(",")]
    except ValueError as exc:
        parser.error(f"--sizes wants T,B,I,H integers and --shares numbers ({exc})")
    if any(len(size) != 4 or min(size) < 1 for size in sizes):
        parser.error(f"--sizes wants four positive integers T,B,I,H each, got {args.sizes}")
    if any(not 0 < share <= 1 for share in shares):
        parser.error(f"--shares must lie in (0, 1], got {args.shares}")
    rng = np.random.default_rng(0)
    backend = TorchBackend(dtype="float32", path="fused")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; one LSTM stack of "
        f"{args.layers} layer(s), forward and backward, float32, best of {args.repeat} x "
        f"{args.number} calls; ratio = frozen / packed (under 1: the frozen route is faster)"
    )
    print(f"{'(T, B, I, H)':>20}  {'share':>5}  {'packed':>9}  {'frozen':>9}  ratio  rule")
    for T, B, I, H in sizes:
        layer = seqkit.Recurrent("lstm", I, H, num_layers=args.layers)
        params = {k: backend.asarray(v) for k, v in layer.init_params(0).items()}
        x = backend.asarray(rng.normal(size=(T, B, I)).astype(np.float32))
        state0 = tuple(backend.asarray(np.zeros((args.layers, B, H), np.float32)) for _ in "hc")
        d_out = backend.asarray(rng.normal(size=(T, B, H)).astype(np.float32))
        for share in shares:
            lengths = lengths_for(share, T, B, rng)
            case = (backend, layer, params, x, state0, d_out, lengths)
            times = {}
            for route in ("packed", "frozen", "packed", "frozen"):  # alternating, best counts
                t = timed(route, case, args.repeat, args.number)
                times[route] = min(times.get(route, t), t)
            rule = "frozen" if _fused.unpacked_pays(layer, x, lengths) else "packed"
            fill = lengths.mean() / lengths.max()
            print(
                f"{str((T, B, I, H)):>20}  {fill:5.2f}  {times['packed'] * 1e3:6.2f} ms  "
                f"{times['frozen'] * 1e3:6.2f} ms  {times['frozen'] / times['packed']:5.2f}  "
                f"{rule}",
                flush=True,
            )


if __name__ == "__main__":
    main()
