"""seqkit's torch backend against calling torch.nn.LSTM directly: forward + backward, float32.

Both sides compute the same thing: the output and final state, then the gradients of the input,
the initial state and every weight for a given output gradient (seqkit's recurrent_backward
contract). The fused path should cost at most 1.15x torch.nn.LSTM. A cell without a fused kernel
(here an LSTM-shaped registered copy of ``lstm``) runs on the compiled path (the BPTT driver's
loops over time as two scans over its ``step`` and hand-written ``step_backward``, compiled
ahead of time by AOTInductor; floor 1.25x) and on the generic path (the same loops in Python); a
plain per-step autograd loop, eager and with its step compiled under autograd (the other way to
compile a cell), is shown for scale, and so are the compiled path's matrix products alone (the
same kernels, nothing else: the bound of any design that calls a library product per step). The
compile time (first call) is printed apart; it is never in the timed runs.

    python benchmarks/bench_torch.py                # CPU, torch's default thread count
    python benchmarks/bench_torch.py --device cuda  # cuDNN
    python benchmarks/bench_torch.py --threads 1 --repeat 7
    python benchmarks/bench_torch.py --size 1 --warm-up  # only compile the second size's packages

On a GPU the compiled path is also timed captured in one CUDA graph (forward and backward
replayed as a whole, no launch from the host): what graphs over the time loop would gain.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import attrs
import torch
from seqkit_torch import TorchBackend, _malloc, _scan

import seqkit
from seqkit.cells import LSTM

SIZES = [(64, 32, 64, 256), (100, 64, 128, 512)]
FLOOR = 1.15
COMPILED_FLOOR = 1.25


@attrs.frozen
class CustomLSTM(LSTM):
    """The LSTM under another name: a third-party cell with no fused twin."""

    name = "lstm_custom"


class CustomPlugin:
    @seqkit.hookimpl
    def seqkit_register_cells(self):
        return [CustomLSTM]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def race(fns: dict, repeat: int, device) -> tuple[dict, dict, dict, dict]:
    """Best and median time of each function, run round-robin so that load from elsewhere hits
    all alike; its median count of minor page faults a call (memory the process gave back and
    touched again; empty where ``resource`` is missing); and the median, over the rounds, of its
    time over the first function's in the same round (a ratio of neighbours in time, which a
    machine's load drifting from round to round moves less than a ratio of bests)."""
    for fn in fns.values():
        fn()  # warm-up: allocator, cuDNN plans, first-call dispatch
    sync(device)
    times = {name: [] for name in fns}
    faults = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            before = minor_faults()
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
            if before is not None:
                faults[name].append(minor_faults() - before)
    best = {name: min(t) for name, t in times.items()}
    median = {name: statistics.median(t) for name, t in times.items()}
    first = times[next(iter(fns))]
    paired = {
        name: statistics.median(mine / theirs for mine, theirs in zip(t, first))
        for name, t in times.items()
    }
    faults = {name: statistics.median(f) for name, f in faults.items() if f}
    return best, median, faults, paired


def per_call(faults: dict, name: str) -> str:
    """``faults``' median for ``name`` as text for a result line (empty where not counted)."""
    return f", {faults[name]:.0f} page faults a call" if name in faults else ""


def minor_faults() -> int | None:
    """This process's minor page faults so far (None without the ``resource`` module)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def lstm_step(z, c):
    """One LSTM step's elementwise part under autograd: (B, 4H), (B, H) -> h, c."""
    i, f, g, o = z.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def plain_autograd_loop(x, h, c, w_ih, w_hh, b_ih, b_hh, step=lstm_step):
    """One LSTM layer as a Python loop of autograd ops: what an un-fused cell costs naively."""
    xg = torch.matmul(x, w_ih.t()) + b_ih
    outs = []
    for t in range(x.shape[0]):
        h, c = step(xg[t] + h @ w_hh.t() + b_hh, c)
        outs.append(h)
    return torch.stack(outs), h, c


def products_alone(x, h0, weights, loop):
    """The matrix products of one LSTM layer forward and backward, as the compiled path runs
    them and nothing else: F1 (x W_ih^T), every step's h W_hh^T and d hg W_hh (each on the
    product ``loop.product`` names, packing included), and B1 (d W_ih, d W_hh from
    d xg^T stored feature-major, d x), through the backend's own matmul. No path that calls a
    library product per step can be faster than this."""
    T, B, _ = x.shape
    w_ih, w_hh = weights["weight_ih_l0"].detach(), weights["weight_hh_l0"].detach()
    G, H = w_hh.shape
    xs, h = x.detach().reshape(T * B, -1), h0[0].detach()
    hs = torch.randn(T * B, H, device=x.device)
    dgs = torch.randn(T * B, G, device=x.device)
    dgs_t = dgs.T.contiguous()  # as the backward package leaves d xg for the weight gradients
    ops = loop.ops
    forward, backward = loop.product(H, "forward"), loop.product(H, "backward")

    def products():
        fwd = _scan.step_weight(w_hh, B, forward, "forward")
        bwd = _scan.step_weight(w_hh, B, backward, "backward")
        ops.project(xs, w_ih)  # F1
        for t in range(T):
            _scan.step_product(h, fwd, B, forward, "forward")  # F2
            _scan.step_product(dgs[t * B : (t + 1) * B], bwd, B, backward, "backward")  # B2
        return ops.matmul(dgs_t, xs), ops.matmul(dgs_t, hs), ops.matmul(dgs, w_ih)  # B1

    return products


def cuda_graph(fn):
    """``fn`` captured in a CUDA graph: its replay, or the reason it cannot be captured."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up off the default stream, as capture asks
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            fn()
    except Exception as exc:  # a host sync or an uncapturable call: reported, not timed
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
    return graph.replay


def run(T, B, I, H, device, repeat, skip_generic, warm_up=False):
    torch.manual_seed(0)
    module = torch.nn.LSTM(I, H).to(device)
    weights = dict(module.named_parameters())  # leaf tensors: seqkit uses them as they are
    names = list(weights)
    x = torch.randn(T, B, I, device=device, requires_grad=True)
    h0 = torch.randn(1, B, H, device=device, requires_grad=True)
    c0 = torch.randn(1, B, H, device=device, requires_grad=True)
    d_out = torch.randn(T, B, H, device=device)
    inputs = [x, h0, c0, *weights.values()]

    def direct():
        out, _ = module(x, (h0, c0))
        return torch.autograd.grad(out, inputs, d_out)

    be = TorchBackend(dtype="float32", device=str(device))
    compiled = TorchBackend(dtype="float32", device=str(device), path="compiled")
    generic = TorchBackend(dtype="float32", device=str(device), path="generic")

    def seqkit_fn(layer, be=be):
        def fn():
            out, _, cache = be.recurrent_forward(layer, weights, x, (h0, c0))
            return be.recurrent_backward(layer, cache, d_out)

        return fn

    def naive(step=lstm_step):
        out, _, _ = plain_autograd_loop(x, h0[0], c0[0], *(weights[n] for n in names), step=step)
        return torch.autograd.grad(out, inputs, d_out)

    step_under_autograd = torch.compile(lstm_step, dynamic=True)

    fused_layer = seqkit.Recurrent("lstm", I, H)
    custom_layer = seqkit.Recurrent("lstm_custom", I, H)
    cases = {"direct": direct, "fused": seqkit_fn(fused_layer)}
    if not skip_generic:
        first = {}
        for name, fn in [
            ("compiled", seqkit_fn(custom_layer, compiled)),
            ("naive_compiled", lambda: naive(step_under_autograd)),
        ]:
            start = time.perf_counter()
            fn()  # compiles (or loads seqkit's store of packages): never timed below
            first[name] = time.perf_counter() - start
            cases[name] = fn
        stats = compiled.compile_stats(custom_layer)
        if warm_up:
            print(
                f"({T}, {B}, {I}, {H}): compiled path's first call {first['compiled']:.1f} s, "
                f"{stats.graphs} packages ({stats.cached} from the store), error {stats.error}"
            )
            return
        graphed = None
        if device.type == "cuda":
            graphed = cuda_graph(cases["compiled"])
            if callable(graphed):
                cases["compiled_graph"] = graphed
        loop = _scan.scan_loop(custom_layer.cell, compiled.ops)
        cases.update(
            generic=seqkit_fn(custom_layer, generic),
            naive=naive,
            products=products_alone(x, h0, weights, loop),
        )
    t, median, faults, paired = race(cases, repeat, device)
    shape = f"(T, B, I, H) = ({T}, {B}, {I}, {H})"
    print(
        f"{shape}  torch.nn.LSTM                  {t['direct'] * 1e3:9.2f} ms"
        f"   (median {median['direct'] * 1e3:.2f} ms{per_call(faults, 'direct')})"
    )
    ratio = t["fused"] / t["direct"]
    ok = "ok" if ratio <= FLOOR else f"ABOVE the {FLOOR}x floor"
    path = be.layer_path(fused_layer)
    print(
        f"{shape}  seqkit 'lstm', path {path!r}     {t['fused'] * 1e3:9.2f} ms"
        f"   ratio {ratio:5.2f}x ({ok}); round by round {paired['fused']:.2f}x"
    )
    if skip_generic:
        return
    ratio = t["compiled"] / t["direct"]
    ok = "ok" if ratio <= COMPILED_FLOOR else f"ABOVE the {COMPILED_FLOOR}x floor"
    stats = compiled.compile_stats(custom_layer)
    print(
        f"{shape}  seqkit 'lstm_custom', path {compiled.layer_path(custom_layer)!r}"
        f" {t['compiled'] * 1e3:9.2f} ms   ratio {ratio:5.2f}x ({ok}); first call "
        f"{first['compiled']:.1f} s, {stats.graphs} packages ({stats.cached} from the store) "
        f"in {stats.seconds:.1f} s so far; median {median['compiled'] * 1e3:.2f} ms, ratio "
        f"{median['compiled'] / median['direct']:.2f}x; round by round {paired['compiled']:.2f}x"
        f"{per_call(faults, 'compiled')}" + ("" if stats.error is None else f"; {stats.error}")
    )
    if "compiled_graph" in t:
        print(
            f"{shape}  the same, replayed as one CUDA graph   {t['compiled_graph'] * 1e3:9.2f} ms"
            f"   ratio {t['compiled_graph'] / t['direct']:5.2f}x  (no launch from the host)"
        )
    elif graphed is not None:
        print(f"{shape}  the same as one CUDA graph: not captured ({graphed})")
    path = generic.layer_path(custom_layer)
    print(
        f"{shape}  seqkit 'lstm_custom', path {path!r} {t['generic'] * 1e3:9.2f} ms"
        f"   ratio {t['generic'] / t['direct']:5.2f}x"
        "  (the cell's hand-written BPTT in one torch.autograd.Function)"
    )
    print(
        f"{shape}  for scale: the compiled path's products alone {t['products'] * 1e3:9.2f} ms"
        f"   ratio {t['products'] / t['direct']:5.2f}x  (what no per-step product beats)"
    )
    print(
        f"{shape}  for scale: plain per-step autograd loop {t['naive'] * 1e3:9.2f} ms"
        f"   ratio {t['naive'] / t['direct']:5.2f}x"
    )
    print(
        f"{shape}  for scale: the same loop, step compiled   {t['naive_compiled'] * 1e3:9.2f} ms"
        f"   ratio {t['naive_compiled'] / t['direct']:5.2f}x; first call "
        f"{first['naive_compiled']:.1f} s"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="timed runs per case; the best counts"
    )
    parser.add_argument("--small", action="store_true", help="only the first size")
    parser.add_argument(
        "--size",
        type=int,
        action="append",
        choices=range(len(SIZES)),
        help=f"only these sizes, by index into {SIZES} (repeatable)",
    )
    parser.add_argument(
        "--warm-up",
        action="store_true",
        help="only the compiled path's first calls (packages compiled into the store); no timing",
    )
    parser.add_argument("--skip-generic", action="store_true", help="only the fused path")
    args = parser.parse_args()
    for name in ("repeat", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1 (got {value})")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    device = torch.device(args.device)
    seqkit.register_plugin(CustomPlugin(), name="bench-custom-lstm")
    print(
        f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}, "
        f"{os.cpu_count()} CPUs; torch {torch.__version__}, {threads} threads "
        f"(same for every case); float32; best of {args.repeat} (and the median where shown)"
    )
    if device.type == "cpu":
        print(f"malloc: {_malloc.describe()}")
    if device.type == "cuda":
        print(
            f"device: {torch.cuda.get_device_name(device)}, cuDNN {torch.backends.cudnn.version()}"
        )
    sizes = [SIZES[k] for k in args.size] if args.size else SIZES[:1] if args.small else SIZES
    for T, B, I, H in sizes:
        run(T, B, I, H, device, args.repeat, args.skip_generic, args.warm_up)


if __name__ == "__main__":
    main()
