"""Figures: training curves, and the seed's vanishing-gradient story measured on real cells.

matplotlib is an optional extra (``pip install 'seqkit[plot]'``); it is imported only here, with
the Agg backend, so figures render without a screen.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gradient_decay", "plot_confusion_matrix", "plot_gradient_decay", "plot_training"]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("figures need matplotlib: pip install 'seqkit[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str, **options) -> None:
    """``fig`` written to ``path`` whole or not at all, in the format of its extension, then
    closed (an old figure there stays as it was when the write fails).

    Raises:
        OutputError: the file cannot be written (a full disk, a folder that is missing or
            read-only, a device in its place); the message names ``path``.
    """
    from pathlib import Path

    from seqkit.checkpoint import write_atomically
    from seqkit.errors import OutputError

    fmt = Path(path).suffix.lstrip(".").lower() or None
    try:
        write_atomically(
            path, lambda fh: fig.savefig(fh, format=fmt, **options), "figure", OutputError
        )
    finally:
        plt.close(fig)


def gradient_decay(
    cell: str,
    *,
    steps: int = 60,
    hidden_size: int = 32,
    input_size: int = 8,
    seed: int = 0,
    params: dict | None = None,
) -> np.ndarray:
    """``norms[k] = |dL/dh<T-1-k>|`` for a loss that reads only the last step's output.

    L = w . h<T-1> with a fixed random w; the input is random. Each gradient is the
    ``"h0"`` gradient of the stack run from step t onwards with the state carried in, so it is
    exactly what BPTT sends back k steps (for an LSTM the memory cell c<t> is held fixed: this is
    the path through h alone). Uses the float64 NumPy reference.

    Returns:
        (T,) array, distance 0 first.
    """
    from seqkit.backend import get_backend
    from seqkit.recurrent import Recurrent

    be = get_backend("numpy", dtype="float64")
    layer = Recurrent(cell, input_size, hidden_size)
    params = layer.init_params(seed=seed) if params is None else params
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((steps, 1, input_size))
    w = rng.standard_normal((1, 1, hidden_size))
    norms = np.empty(steps)
    state = None
    for t in range(steps):
        _, state, _ = be.recurrent_forward(layer, params, x[t : t + 1], initial_state=state)
        rest = x[t + 1 :]
        if len(rest) == 0:
            norms[0] = np.linalg.norm(w)
            continue
        out, _, cache = be.recurrent_forward(layer, params, rest, initial_state=state)
        d_out = np.zeros_like(out)
        d_out[-1] = w[0]
        norms[steps - 1 - t] = np.linalg.norm(be.recurrent_backward(layer, cache, d_out)["h0"])
    return norms


def plot_gradient_decay(curves: dict[str, np.ndarray], path: str) -> None:
    """One line per cell: gradient norm (log scale) against distance in steps."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for cell, norms in curves.items():
        ax.semilogy(np.arange(len(norms)), norms, label=cell)
    ax.set_xlabel("distance k = T-1-t (steps back in time)")
    ax.set_ylabel("|dL / dh<t>|")
    ax.set_title("How far back the gradient reaches (random initial weights)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(plt, fig, path)


def plot_training(history, path: str) -> None:
    """Training loss per step (and its running mean) and the dev evaluations, in nats/token."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    losses = np.asarray(history.losses)
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, alpha=0.3, label="train (per step)")
    if len(losses) >= 20:
        k = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, label=f"train (mean of {k})")
    if history.evals:
        # the dev loss: the first metric of evaluate() (nats_per_token or loss)
        dev = [(step, next(iter(metrics.values()))) for step, metrics in history.evals]
        ax.plot(*zip(*dev, strict=True), "o-", label="dev")
    ax.set_xlabel("step")
    ax.set_ylabel("nats / token")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(plt, fig, path)


def plot_confusion_matrix(matrix: dict, path: str) -> None:
    """A confusion matrix as a heat map with its counts (rows true, columns predicted).

    Args:
        matrix: ``{"labels": [K names], "matrix": (K, K) counts}`` as
            :meth:`seqkit.metrics.ConfusionMatrix.to_dict` gives it.
        path: the figure's file; its extension sets the format.
    """
    plt = _pyplot()
    labels = list(matrix["labels"])
    counts = np.asarray(matrix["matrix"], dtype=np.int64)  # (K, K)
    K = len(labels)
    size = min(12.0, max(4.5, 2.5 + 0.5 * K))  # room for the title at K = 2
    fig, ax = plt.subplots(figsize=(size, size), dpi=120)
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(K), labels, rotation=45 if K > 4 else 0, ha="right" if K > 4 else "center")
    ax.set_yticks(range(K), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    dark = counts.max() / 2 if counts.size else 0
    for i in range(K):
        for j in range(K):
            color = "white" if counts[i, j] > dark else "black"
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=color)
    ax.set_title(f"confusion matrix ({counts.sum():,} examples)")
    fig.tight_layout()
    _save(plt, fig, path, bbox_inches="tight")
