"""What each recurrent option does to dev nats/token: the tutorial's figure, from its table.

The numbers come from ``benchmarks/sweep_recurrent_options.py``, which trains one language model
per setting and writes ``docs/tutorials/recurrent_options.csv``; training takes minutes, so the
docs build only draws that file (the same file is the tutorial's table).
"""

from __future__ import annotations

import csv
from pathlib import Path

TABLE = Path(__file__).resolve().parent.parent / "tutorials" / "recurrent_options.csv"


def rows() -> list[dict]:
    """The table's rows, as strings, in the sweep's order (the baseline first)."""
    with open(TABLE, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def recurrent_options(path) -> None:
    """Write the figure: one bar per setting, dev nats/token, the baseline as a line."""
    import matplotlib.pyplot as plt

    table = rows()
    labels = [r["setting"] for r in table]
    values = [float(r["dev nats/token"]) for r in table]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.2))
    ax.barh(range(len(table)), values, color=["0.55"] + ["C0"] * (len(table) - 1))
    ax.axvline(values[0], color="0.3", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(table)), labels)
    ax.invert_yaxis()
    low, high = min(values), max(values)
    ax.set_xlim(low - 0.6 * (high - low) - 0.01, high + 0.3 * (high - low) + 0.01)
    ax.set_xlabel("dev nats/token (lower is better)")
    ax.set_title("LSTM language model of surnames, equal steps")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    for row in rows():
        print(row)
