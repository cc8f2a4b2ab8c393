"""How fast the gradient of a loss at the last step fades as it flows back to h<t>.

For a sequence of ``T`` steps and a loss read from the last output only, ``L = sum(w * h<T>)``,
this measures ``|| dL / dh<t> ||`` for every ``t``: the part of the gradient that BPTT carries
back ``T - t`` steps. It is computed with seqkit's hand-written BPTT, run one step at a time:
the gradient of each one-step chunk's initial state is the gradient of the state it started from,
and it is the final-state gradient of the chunk before (a sequence run in chunks is one pass).

Run it directly to print the numbers: ``python docs/_ext/gradient_decay.py``.
"""

from __future__ import annotations

import numpy as np

import seqkit

T, B, I, H = 40, 32, 8, 32

#: label -> (cell, how its weights are set); see the tutorial for why each is set as it is.
SETUPS = {
    "rnn (default init)": ("rnn", {}),
    "rnn (W_hh x 4)": ("rnn", {"scale_hh": 4.0}),
    "gru (update-gate bias +3)": ("gru", {"gate_bias": (1, 3.0)}),
    "lstm (forget-gate bias +3)": ("lstm", {"gate_bias": (1, 3.0)}),
}


def norms(cell: str, *, scale_hh: float = 1.0, gate_bias: tuple[int, float] | None = None,
          seed: int = 0) -> np.ndarray:
    """``(T,)``: mean over the batch of ``|| dL/dh<T-k> ||`` for distance ``k = 0 .. T-1``."""
    be = seqkit.get_backend("numpy", dtype="float64")
    rng = np.random.default_rng(seed)
    layer = seqkit.Recurrent(cell, I, H)
    params = layer.init_params(rng)
    params["weight_hh_l0"] *= scale_hh
    if gate_bias is not None:  # gate block index and value, PyTorch's gate order
        block, value = gate_bias
        params["bias_ih_l0"][block * H : (block + 1) * H] = value
    x = rng.normal(size=(T, B, I))
    # forward one step at a time, keeping each step's cache: BPTT can then be run back one step
    # at a time, and the gradient of the state entering each step read off on the way
    caches, state = [], None
    for t in range(T):
        _, state, cache = be.recurrent_forward(layer, params, x[t : t + 1], initial_state=state)
        caches.append(cache)
    w = rng.normal(size=(1, B, H)) / np.sqrt(H)
    d_state = w if len(layer.state_names) == 1 else (w, np.zeros((1, B, H)))
    no_output_grad = np.zeros((1, B, H))
    out = np.zeros(T)
    for k in range(T):
        grads = be.recurrent_backward(layer, caches[T - 1 - k], no_output_grad, d_state)
        d_state = grads["h0"] if len(layer.state_names) == 1 else (grads["h0"], grads["c0"])
        out[k] = np.linalg.norm(grads["h0"][0], axis=1).mean()  # d L / d h<T-1-k>
    return out


def gradient_decay(path) -> None:
    """Write the figure: gradient norm against distance, log scale, one line per setup."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    steps = np.arange(1, T + 1)
    for label, (cell, options) in SETUPS.items():
        ax.semilogy(steps, norms(cell, **options), label=label, marker=".", markersize=3)
    ax.set_xlabel("distance T - t (steps the gradient travels back)")
    ax.set_ylabel("mean || dL / dh<t> ||")
    ax.set_title(f"Gradient of a last-step loss, H = {H}, B = {B}, computed with seqkit's BPTT")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    for label, (cell, options) in SETUPS.items():
        n = norms(cell, **options)
        print(f"{label:28s} k=1: {n[0]:.3g}  k=10: {n[9]:.3g}  k=40: {n[-1]:.3g}")
