"""Training speed end to end: the main job's model on seqkit's backends and in plain PyTorch.

The model of ``seqkit demo``: a character language model on the US surnames corpus, one-hot
input (I = V), one GRU layer of H = 128, a linear head, softmax cross-entropy (mean over tokens),
Adam at lr 0.003, gradients clipped to norm 5, batches of 64. seqkit trains it through its public
API only (``seqkit.LanguageModel(...).fit(...)``); the plain PyTorch script is the same network
with ``nn.GRU`` + ``nn.Linear`` + ``torch.optim.Adam`` on the same padded batches. Each run is
warmed up first (``--warmup`` steps: allocator, oneDNN plans, and the compiled path's compile,
which is timed and printed on its own), then ``--steps`` steps are timed, the cases taking turns
(round-robin, so that load from elsewhere hits each alike); the best of ``--repeat`` timed runs
counts. seqkit's time runs from its first step to its last (a callback):
``fit`` encodes the whole corpus first, which the plain script does once, untimed. Ratios are
against the plain script.

"With a custom cell" is a registered copy of the cell under another name (``gru_custom``), which
no backend has a fused kernel for: on torch it runs on the compiled path (``path="compiled"``),
and the generic path is shown beside it.

    python benchmarks/bench_train.py                      # GRU, CPU, 50 steps
    python benchmarks/bench_train.py --cell lstm          # LSTM (+ lstm_peephole if installed)
    python benchmarks/bench_train.py --device cuda --skip-numpy
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import attrs
import numpy as np
import torch

import seqkit
from seqkit.blocks import Stack
from seqkit.cells import GRU, LSTM
from seqkit.corpora import get_corpus, split_train_dev
from seqkit.data import lm_batch

H, BATCH, LR, CLIP = 128, 64, 0.003, 5.0


@attrs.frozen
class CustomGRU(GRU):
    """The GRU under another name: a third-party cell with no fused twin."""

    name = "gru_custom"


@attrs.frozen
class CustomLSTM(LSTM):
    """The LSTM under another name: a third-party cell with no fused twin."""

    name = "lstm_custom"


class CustomPlugin:
    @seqkit.hookimpl
    def seqkit_register_cells(self):
        return [CustomGRU, CustomLSTM]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Clock(seqkit.Callback):
    """The seconds from the first step's start to the last step's end: ``fit`` encodes the whole
    corpus before it (about 0.8 s for the surnames), which the plain script does once, outside."""

    def __init__(self, device: str) -> None:
        self.device, self.seconds = device, 0.0

    def on_begin(self, run) -> None:
        sync(self.device)
        self.start = time.perf_counter()

    def on_end(self, run) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self.start


def seqkit_runner(vocab, texts, cell: str, backend, device: str):
    """``(model, fit)`` for seqkit's LanguageModel on ``backend``; fit returns its steps' time."""
    model = seqkit.LanguageModel(vocab, cell=cell, hidden_size=H, backend=backend, seed=0)

    def fit(steps: int) -> float:
        clock = Clock(device)
        model.fit(texts, steps=steps, batch_size=BATCH, lr=LR, seed=0, callbacks=[clock])
        return clock.seconds

    return model, fit


def plain_torch_runner(vocab, texts, cell: str, device: str):
    """The same network, loss, optimizer and batches written directly in PyTorch."""
    V = len(vocab)
    torch.manual_seed(0)
    rnn = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell](V, H).to(device)
    head = torch.nn.Linear(H, V).to(device)
    params = [*rnn.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=LR)
    encoded = [vocab.encode(t) for t in texts]
    pad = vocab.pad_id

    def fit(steps: int) -> None:
        rng = np.random.default_rng(0)
        for _ in range(steps):
            pick = rng.choice(len(encoded), size=BATCH, replace=False)
            inputs, targets, lengths = lm_batch([encoded[i] for i in pick], vocab)
            ids = torch.from_numpy(inputs).to(device)  # (T, B)
            tgt = torch.from_numpy(targets).to(device)
            mask = torch.from_numpy(np.arange(inputs.shape[0])[:, None] < lengths[None, :]).to(
                device
            )
            # the start id (pad) encodes as the zero vector, as in seqkit
            x = torch.nn.functional.one_hot(ids, V).float() * (ids != pad)[..., None]
            out, _ = rnn(x)  # (T, B, H); padding comes after each sequence, so no packing
            logits = head(out)  # (T, B, V)
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, V), tgt.reshape(-1), reduction="none"
            )
            loss = (nll * mask.reshape(-1)).sum() / mask.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, CLIP)
            opt.step()
        sync(device)

    return fit


def recurrent_layer(model) -> seqkit.Recurrent:
    """The model's recurrent stack (the layer of its ``Stack`` block)."""
    return next(block.layer for _, block in model.network.walk() if isinstance(block, Stack))


def best_time(fit, steps: int, repeat: int) -> float:
    """The best of ``repeat`` runs of ``steps`` steps (the time ``fit`` returns, else its own)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        seconds = fit(steps)
        best = min(best, time.perf_counter() - start if seconds is None else seconds)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=("gru", "lstm"), default="gru")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--skip-numpy", action="store_true", help="no NumPy rows (slow)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from seqkit_torch import TorchBackend

    seqkit.register_plugin(CustomPlugin(), name="bench-train-custom-cells")
    train, _ = split_train_dev(get_corpus("surnames").load(), 0.1)
    vocab = seqkit.Vocabulary.build(train, level="char")
    custom = f"{args.cell}_custom"
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs; torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; float32 {args.device}; "
        f"char LM on surnames ({len(train)} names, V = {len(vocab)}), {args.cell.upper()}-{H}, "
        f"batch {BATCH}, Adam; {args.steps} steps timed after {args.warmup}, best of {args.repeat}"
    )

    def torch_backend(path):
        return TorchBackend(dtype="float32", device=args.device, path=path)

    # (label, cell, backend); None for the plain PyTorch script
    cases = [(f"plain PyTorch (nn.{args.cell.upper()} + nn.Linear + Adam)", args.cell, None)]
    cases += [(f"seqkit torch   {args.cell!r}", args.cell, torch_backend("auto"))]
    cases += [(f"seqkit torch   {custom!r}", custom, torch_backend("compiled"))]
    cases += [(f"seqkit torch   {custom!r}", custom, torch_backend("generic"))]
    if args.cell == "lstm" and "lstm_peephole" in seqkit.list_cells():
        cases += [("seqkit torch   'lstm_peephole'", "lstm_peephole", torch_backend("compiled"))]
    if not args.skip_numpy:
        cases += [(f"seqkit numpy   {args.cell!r}", args.cell, "numpy")]
        cases += [(f"seqkit numpy   {custom!r}", custom, "numpy")]
    runs = []  # (label, backend, model, fit, warm-up seconds)
    for label, cell, backend in cases:
        model = None
        if backend is None:
            fit = plain_torch_runner(vocab, train, cell, args.device)
        else:
            model, fit = seqkit_runner(vocab, train, cell, backend, args.device)
        start = time.perf_counter()
        fit(args.warmup)  # allocator, kernels' plans, the compiled path's compile
        runs.append((label, backend, model, fit, time.perf_counter() - start))
    # round-robin: load from elsewhere hits every case alike, and the best run of each counts
    best = [float("inf")] * len(runs)
    for _ in range(args.repeat):
        for k, (_, _, _, fit, _) in enumerate(runs):
            best[k] = min(best[k], best_time(fit, args.steps, 1))
    for (label, backend, model, _, warm), seconds in zip(runs, best, strict=True):
        path, note = "cuDNN/oneDNN" if backend is None else "hand-written BPTT", ""
        if isinstance(backend, TorchBackend):
            layer = recurrent_layer(model)
            path = backend.layer_path(layer)  # after the run: a failed compile says generic
            if path == "compiled":
                stats = backend.compile_stats(layer)
                note = (
                    f"; compiling took {stats.seconds:.1f} s, {stats.graphs} packages, "
                    f"{stats.cached} from the store"
                )
        print(
            f"{label:44s} path {path:18s} {seconds / args.steps * 1e3:8.2f} ms/step  "
            f"{seconds / best[0]:5.2f}x   (warm-up {warm:.1f} s{note})"
        )


if __name__ == "__main__":
    main()
