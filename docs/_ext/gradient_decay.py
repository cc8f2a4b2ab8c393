"""How fast the gradient of a loss at the last step fades as it flows back to h<t>.

For a sequence of ``T`` steps and a loss read from the last output only, ``L = w . h<T-1>``, the
curves are ``|| dL / dh<t> ||`` for every ``t``: the part of the gradient that BPTT carries back
``T-1-t`` steps. :func:`seqkit.plots.gradient_decay` computes them with seqkit's hand-written BPTT
(the same function draws ``seqkit gradients``); this module only chooses the weights of each setup
and draws the figure.

Run it directly to print the numbers: ``python docs/_ext/gradient_decay.py``.
"""

from __future__ import annotations

import numpy as np

import seqkit
from seqkit.plots import gradient_decay as decay
from seqkit.plots import plot_gradient_decay

T, I, H = 40, 8, 32

#: label -> (cell, how its weights are set); see the tutorial for why each is set as it is.
SETUPS = {
    "rnn (default init)": ("rnn", {}),
    "rnn (W_hh x 4)": ("rnn", {"scale_hh": 4.0}),
    "gru (update-gate bias +3)": ("gru", {"gate_bias": (1, 3.0)}),
    "lstm (forget-gate bias +3)": ("lstm", {"gate_bias": (1, 3.0)}),
}


def params(cell: str, *, scale_hh: float = 1.0, gate_bias: tuple[int, float] | None = None,
           seed: int = 0) -> dict[str, np.ndarray]:
    """The default initial parameters of a one-layer ``cell``, with the setup's changes."""
    p = seqkit.Recurrent(cell, I, H).init_params(seed=seed)
    p["weight_hh_l0"] = p["weight_hh_l0"] * scale_hh
    if gate_bias is not None:  # gate block index and value, PyTorch's gate order
        block, value = gate_bias
        p["bias_ih_l0"][block * H : (block + 1) * H] = value
    return p


def norms(cell: str, **options) -> np.ndarray:
    """``(T,)``: ``|| dL/dh<T-1-k> ||`` for distance ``k = 0 .. T-1``."""
    return decay(cell, steps=T, hidden_size=H, input_size=I, params=params(cell, **options))


def gradient_decay(path) -> None:
    """Write the figure: gradient norm against distance, log scale, one line per setup."""
    plot_gradient_decay({label: norms(cell, **o) for label, (cell, o) in SETUPS.items()}, path)


if __name__ == "__main__":
    for label, (cell, options) in SETUPS.items():
        n = norms(cell, **options)
        print(f"{label:28s} k=1: {n[1]:.3g}  k=10: {n[10]:.3g}  k={T - 1}: {n[-1]:.3g}")
