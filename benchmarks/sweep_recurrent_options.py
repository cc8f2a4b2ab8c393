"""What each recurrent option does to a character language model of the surnames corpus.

One LSTM language model per setting, every one trained for the same number of steps from the
same initial seed and minibatch order (NumPy backend, float32), then scored on the same dev
names. Writes a small CSV that the docs draw their table and figure from (the docs never train;
the seconds each run took are printed, not written: on a shared machine they measure the load):

    python benchmarks/sweep_recurrent_options.py --out docs/tutorials/recurrent_options.csv

Defaults: 500 steps of 64 names, H = 64, an embedding of 16, Adam at 0.005; dev: the corpus's
content-hashed 10% (``seqkit.corpora.split_train_dev``), cut to ``--dev-size`` names.
"""

from __future__ import annotations

import argparse
import csv
import time

import numpy as np

import seqkit
from seqkit.corpora import get_corpus, split_train_dev

#: label -> LanguageModel keywords on top of the base model's
SETTINGS = {
    "lstm (baseline)": {},
    "dropout=0.25": {"dropout": 0.25},
    "recurrent_dropout=0.25": {"recurrent_dropout": 0.25},
    "input_dropout=0.25": {"input_dropout": 0.25},
    "zoneout=0.1": {"zoneout": 0.1},
    "learn_initial_state": {"learn_initial_state": True},
    "proj_size=32": {"proj_size": 32},
    "recurrent_init=orthogonal": {"recurrent_init": "orthogonal"},
    "forget_bias=1.0": {"forget_bias": 1.0},
    "cell=lstm_ln": {"cell": "lstm_ln"},
}


def run(args) -> dict:
    names = list(get_corpus("surnames").load())
    train, dev = split_train_dev(names, 0.1)
    dev = dev[: args.dev_size]
    vocab = seqkit.Vocabulary.build(train, level="char")
    base = dict(
        cell="lstm",
        hidden_size=args.hidden_size,
        embedding_size=16,
        backend="numpy",
        dtype="float32",
        seed=0,
    )
    rows = []
    for label, options in SETTINGS.items():
        if args.only and label not in args.only:
            continue
        model = seqkit.LanguageModel(vocab, **{**base, **options})
        start = time.perf_counter()
        history = model.fit(train, steps=args.steps, batch_size=64, lr=0.005, seed=0, clip_norm=5.0)
        seconds = time.perf_counter() - start
        nats = model.nats_per_token(dev)
        train_loss = float(np.mean(history.losses[-100:]))
        rows.append(
            {
                "setting": label,
                "dev nats/token": f"{nats:.4f}",
                "train loss (last 100 steps)": f"{train_loss:.4f}",
            }
        )
        print(f"{label:28s} dev {nats:.4f} nats/token  train {train_loss:.4f}  {seconds:.0f} s")
    print(f"{len(train):,} training names, {len(dev):,} dev names, {args.steps} steps")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--dev-size", type=int, default=2000)
    parser.add_argument("--only", nargs="*", default=None, help="Labels to run (default: all).")
    parser.add_argument("--out", default=None, help="Write the JSON here.")
    args = parser.parse_args()
    rows = run(args)
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
