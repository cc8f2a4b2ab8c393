"""Train each task's default model on its built-in corpus from the command line; print the dev
metric and the wall time.

The quality floors of issue 12 (2 CPU cores, the task's defaults, at most 2,000 steps, under 90 s
a run): classify accuracy >= 0.90 on ``name-sex``, translate exact match >= 0.97 on ``dates``,
tag token accuracy >= 0.95 on ``surname-split`` (its baseline, ``B`` on the first letter and
``I`` elsewhere, is printed too). Each run is what a user types::

    seqkit train --task T --corpus C --out MODEL --backend B --no-progress [EXTRA...]
    seqkit corpora C --split dev > dev.tsv          # the 10% that train held out
    seqkit evaluate MODEL dev.tsv --json

Usage::

    python benchmarks/task_floors.py                          # all three, NumPy and torch
    python benchmarks/task_floors.py --task tag --backend torch
    python benchmarks/task_floors.py --task classify -- --hidden-size 128 --steps 2000

``train_seconds`` is the wall time of the whole ``seqkit train`` process (start-up, reading the
corpus, training with its dev evaluations, writing the model); ``cpu_seconds`` is that process's
CPU time (all its threads): on a machine shared with other jobs the wall time grows and the CPU
time much less. ``load`` is the 1-minute load average before the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORPUS = {"classify": "name-sex", "translate": "dates", "tag": "surname-split"}
FLOOR = {"classify": 0.90, "translate": 0.97, "tag": 0.95}
HEADLINE = {"classify": "accuracy", "translate": "exact_match", "tag": "token_accuracy"}
SEQKIT = [sys.executable, "-m", "seqkit"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(task: str, backend: str, extra: list[str], workdir: Path) -> dict:
    corpus, model = CORPUS[task], workdir / f"{task}-{backend}.npz"
    train = [*SEQKIT, "train", "--task", task, "--corpus", corpus, "--out", str(model)]
    train += ["--backend", backend, "--no-progress", *extra]
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(train, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(train)} failed:\n{done.stderr}")
    dev = workdir / f"{corpus}.dev.tsv"
    lines = subprocess.run(
        [*SEQKIT, "corpora", corpus, "--split", "dev"], capture_output=True, text=True, check=True
    ).stdout
    dev.write_text(lines, encoding="utf-8")
    report = subprocess.run(
        [*SEQKIT, "evaluate", str(model), str(dev), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    metrics = json.loads(report.stdout)
    result = {
        "task": task,
        "corpus": corpus,
        "backend": backend,
        "dev": metrics["examples"],
        HEADLINE[task]: round(metrics[HEADLINE[task]], 4),
        "floor": FLOOR[task],
        "train_seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "load": round(load, 2),
        "closing_line": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "",
        "command": " ".join(["seqkit", *train[3:]]),
    }
    rows = [line.split("\t") for line in lines.splitlines() if line]
    if task == "tag":
        tags = [row[1].split() for row in rows]
        baseline = sum(
            1 for t in tags for i, tag in enumerate(t) if tag == ("B" if i == 0 else "I")
        )
        result["baseline_token_accuracy"] = round(baseline / sum(map(len, tags)), 4)
        result["span_f1"] = round(metrics["span_f1"]["f1"], 4)
    if task == "classify":
        labels = [row[1] for row in rows]
        result["majority_accuracy"] = round(max(map(labels.count, set(labels))) / len(labels), 4)
        result["macro_f1"] = round(metrics["macro_f1"], 4)
    if task == "translate":
        result["char_error_rate"] = round(metrics["char_error_rate"], 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(CORPUS), action="append")
    parser.add_argument("--backend", action="append", help="numpy, torch, ... (default: both)")
    parser.add_argument("extra", nargs="*", help="more seqkit train options, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.task or ["classify", "tag", "translate"]:
            for backend in args.backend or ["numpy", "torch"]:
                print(json.dumps(run(task, backend, args.extra, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
