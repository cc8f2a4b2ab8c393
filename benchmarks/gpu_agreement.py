"""The compiled path on a device agrees with the NumPy reference: one process per check, so that
``benchmarks/gpu_check.sh`` runs them side by side (each compiles its own packages into the
shared store; a GPU machine has the cores for it).

    python benchmarks/gpu_agreement.py --device cuda --cell lstm_peephole --dtype float32
    python benchmarks/gpu_agreement.py --device cuda --recompiles   # new (T, B) reuse packages
    python benchmarks/gpu_agreement.py --device cuda --one-hot      # one-hot ids, fused/generic

Prints one line per check and exits 1 when one fails. ``--device cpu`` runs the same checks
here (slowly: every package is compiled by the C++ compiler).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from seqkit_torch import TorchBackend, _scan

import seqkit
from seqkit.layers import OneHot
from seqkit.testing import check_backends_agree, make_batch

#: The documented tolerance of float32 against the float64 reference (docs: the torch backend).
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


def agreement(cell: str, dtype: str, device: str) -> None:
    """``cell`` on the compiled path equals NumPy's float64 reference, one and two layers, both
    directions, with and without padding."""
    be = TorchBackend(dtype=dtype, device=device, path="compiled")
    start = time.perf_counter()
    tol = TOLERANCE[dtype]
    check_backends_agree(cell, backends=[be], dtype=dtype, num_layers=(1, 2), rtol=tol, atol=tol)
    layer = seqkit.Recurrent(cell, 3, 4)
    stats = be.compile_stats(layer)
    assert be.layer_path(layer) == "compiled", f"{cell} {dtype}: fell back ({stats.error})"
    print(
        f"{device} {dtype} {cell}: agrees with NumPy (rtol = atol = {tol}); {stats.graphs} loops "
        f"compiled or captured ({stats.cached} from the store) in {stats.seconds:.1f} s; "
        f"{time.perf_counter() - start:.1f} s in all"
    )


def recompiles(device: str) -> None:
    """Five new (T, B) after the first compile no package; on a GPU, where the loops are
    captured per shape, each new shape captures its two graphs (T = 1 runs the step loop)."""
    be = TorchBackend(dtype="float32", device=device, path="compiled")
    layer = seqkit.Recurrent("gru_simple", 3, 4, bidirectional=True)
    params = be.init_params(layer, 0)
    shapes = [(5, 3), (2, 4), (7, 2), (3, 9), (11, 5), (1, 6)]
    first = None
    start = time.perf_counter()
    for T, B in shapes:
        data = make_batch(layer, T, B, T + B, with_lengths=True)
        _, _, cache = be.recurrent_forward(layer, params, data.x, data.initial_state, data.lengths)
        be.recurrent_backward(layer, cache, data.d_out, data.d_final)
        first = first or be.compile_stats(layer).graphs
    stats = be.compile_stats(layer)
    assert stats.error is None, f"fell back ({stats.error})"
    extra = stats.graphs - first
    if _scan.scan_loop(layer.cell, be.ops).captures:
        assert stats.graphs == 2 * (len(shapes) - 1), stats
        print(
            f"{device}: {len(shapes) - 1} shapes captured {stats.graphs} graphs in "
            f"{stats.seconds:.2f} s ({time.perf_counter() - start:.2f} s in all)"
        )
    else:
        assert extra == 0, f"{extra} packages compiled for new (T, B)"
        print(f"{device}: five new (T, B) compiled no package ({first} in use)")


def one_hot(device: str) -> None:
    """One-hot ids (seqkit.OneHot's output) equal the dense one-hot product, gradients too: the
    fused kernel's gathered route (V > D*G*H) and the generic path's gather and scatter-add."""
    for path in ("fused", "generic"):
        be = TorchBackend(dtype="float64", device=device, path=path)
        layer = seqkit.Recurrent("lstm", 40, 4, num_layers=2, bidirectional=True)
        params = be.init_params(layer, 0)
        ids = np.random.default_rng(0).integers(0, 40, (6, 3))
        x, _ = OneHot(40).forward(be.ops, None, ids)
        d_out = torch.randn(6, 3, 8, dtype=torch.float64, device=device)
        got = []
        for inp in (x, x.dense()):
            out, _, cache = be.recurrent_forward(layer, params, inp, lengths=np.array([6, 2, 4]))
            got.append((out, be.recurrent_backward(layer, cache, d_out)["weight_ih_l0"]))
        for ids_value, dense_value in zip(*got):
            assert torch.allclose(ids_value, dense_value, rtol=1e-12, atol=1e-13), path
        print(f"{device}: one-hot ids on path {path} equal the dense product, d weight_ih too")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cell", action="append", default=[], help="repeatable")
    parser.add_argument("--dtype", action="append", choices=sorted(TOLERANCE), default=[])
    parser.add_argument("--recompiles", action="store_true")
    parser.add_argument("--one-hot", action="store_true")
    args = parser.parse_args()
    try:
        import seqkit_peephole

        if "lstm_peephole" not in seqkit.list_cells():
            seqkit.register_plugin(seqkit_peephole, name="peephole-gpu-check")
    except ImportError:
        pass
    checks = [
        (f"{cell} {dtype}", lambda c=cell, d=dtype: agreement(c, d, args.device))
        for cell in args.cell
        for dtype in args.dtype or sorted(TOLERANCE)
    ]
    if args.recompiles:
        checks.append(("recompiles", lambda: recompiles(args.device)))
    if args.one_hot:
        checks.append(("one-hot", lambda: one_hot(args.device)))
    failed = 0
    for name, check in checks:
        try:
            check()
        except Exception as exc:  # each check reports; the others still run
            failed += 1
            print(f"{args.device} {name}: FAILED: {type(exc).__name__}: {str(exc)[:2000]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
