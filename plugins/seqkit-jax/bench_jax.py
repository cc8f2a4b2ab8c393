"""seqkit's JAX backend (CPU) against torch.nn.LSTM: forward+backward time, compile time apart.

Run: ``python plugins/seqkit-jax/bench_jax.py [--repeat N] [--threads N] [--device cpu]``

Three runs of one LSTM forward+backward per size, float32, each computing the gradients of the
input, the initial state and every parameter from ``d_out = 1``:

* ``jax lstm``: the built-in ``lstm`` cell's own ``step`` in ``jax.lax.scan``, by ``jax.vjp``;
* ``jax custom``: ``lstm_copy``, a registered copy of ``lstm`` under another name (what a
  researcher's LSTM-shaped cell costs; JAX has no fused kernel for either, so the two should
  match, and XLA fuses each step's elementwise work);
* ``torch.nn.LSTM``: PyTorch's fused kernel, the yardstick; and, for the custom cell on torch,
  seqkit's generic path (the cell's hand-written BPTT in one autograd.Function).

The sizes are those of ``benchmarks/bench_numpy.py``. Compile time is the first call's time
minus a steady-state call's, reported apart; the steady-state time is the best of N interleaved
runs (the machine is shared; the best run is the least noisy). torch runs on as many threads as
XLA's CPU client uses (every core) unless ``--threads`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import time

import attrs
import numpy as np

import seqkit
from seqkit.cells import LSTM

SIZES = [(64, 32, 64, 256), (100, 64, 128, 512)]  # (T, B, I, H)


@attrs.frozen
class LSTMCopy(LSTM):
    """``lstm`` under another name: seqkit treats it as any third-party cell."""

    name = "lstm_copy"


class _CopyPlugin:
    @seqkit.hookimpl
    def seqkit_register_cells(self):
        return [LSTMCopy]


def jax_case(backend, cell, T, B, I, H, rng):
    """A closure running one forward+backward on the jax backend, waiting for the result."""
    import jax

    layer = seqkit.Recurrent(cell, I, H)
    params = {k: backend.asarray(v) for k, v in layer.init_params(0, dtype="float32").items()}
    x = backend.asarray(rng.standard_normal((T, B, I)))
    d_out = backend.asarray(np.ones((T, B, H)))

    def run():
        _, _, cache = backend.recurrent_forward(layer, params, x)
        return jax.block_until_ready(backend.recurrent_backward(layer, cache, d_out))

    return run


def torch_case(T, B, I, H, rng):
    """A closure running torch.nn.LSTM forward+backward with the same gradients."""
    import torch

    lstm = torch.nn.LSTM(I, H)
    x = torch.tensor(rng.standard_normal((T, B, I)), dtype=torch.float32, requires_grad=True)
    h0 = torch.zeros(1, B, H, requires_grad=True)
    c0 = torch.zeros(1, B, H, requires_grad=True)
    inputs = [x, h0, c0, *lstm.parameters()]

    def run():
        out, _ = lstm(x, (h0, c0))
        return torch.autograd.grad(out, inputs, grad_outputs=torch.ones_like(out))

    return run


def torch_generic_case(T, B, I, H, rng):
    """The custom cell on seqkit's torch backend (its generic path: hand-written BPTT)."""
    be = seqkit.get_backend("torch", dtype="float32")
    layer = seqkit.Recurrent("lstm_copy", I, H)
    params = be.init_params(layer, 0)
    x = be.asarray(rng.standard_normal((T, B, I)))
    d_out = be.asarray(np.ones((T, B, H)))

    def run():
        _, _, cache = be.recurrent_forward(layer, params, x)
        return be.recurrent_backward(layer, cache, d_out)

    return run


def _cell(best: dict, first: dict | None, name: str) -> str:
    """``time ratio [compile]`` of one case against torch.nn.LSTM's best time."""
    text = f"{best[name] * 1e3:7.1f}ms {best[name] / best['torch']:5.2f}x"
    if first is not None:
        text += f" {max(first[name] - best[name], 0.0):7.2f}s"
    return text


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case (best kept)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch's threads")
    parser.add_argument("--device", default="cpu", help="the jax backend's device")
    args = parser.parse_args()

    import jax
    import torch

    torch.set_num_threads(args.threads)
    seqkit.register_plugin(_CopyPlugin(), name="bench-lstm-copy")
    backend = seqkit.get_backend("jax", dtype="float32", device=args.device)
    print(
        f"jax {jax.__version__} on {backend.device} ({jax.devices()[0].device_kind}), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, float32, "
        f"best of {args.repeat}, forward+backward"
    )
    header = (
        f"{'T, B, I, H':>20} | {'torch.nn.LSTM':>13} | {'jax lstm':>9} {'ratio':>6} "
        f"{'compile':>8} | {'jax custom':>10} {'ratio':>6} {'compile':>8} | "
        f"{'torch generic':>13} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for T, B, I, H in SIZES:
        rng = np.random.default_rng(0)
        cases = {
            "torch": torch_case(T, B, I, H, rng),
            "jax lstm": jax_case(backend, "lstm", T, B, I, H, rng),
            "jax custom": jax_case(backend, "lstm_copy", T, B, I, H, rng),
            "torch generic": torch_generic_case(T, B, I, H, rng),
        }
        first = {name: timed(run) for name, run in cases.items()}  # compiles the jax cases
        best = dict.fromkeys(cases, float("inf"))
        for _ in range(args.repeat):
            for name, run in cases.items():  # interleaved, so load changes hit every case
                best[name] = min(best[name], timed(run))
        ref = best["torch"]
        print(
            f"{f'{T}, {B}, {I}, {H}':>20} | {ref * 1e3:11.1f}ms | "
            f"{_cell(best, first, 'jax lstm')} | "
            f"{_cell(best, first, 'jax custom'):>26} | {_cell(best, None, 'torch generic'):>15}"
        )
    print("ratio: time / torch.nn.LSTM's time (lower is faster); compile: first call - best call")


if __name__ == "__main__":
    main()
