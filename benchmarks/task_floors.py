"""Train each task's default model on its built-in corpus and print the dev metric and wall time.

The quality floors of issue 12 (2 CPU cores, at most 2,000 steps, under 90 s a run):
classify accuracy >= 0.90 on ``name-sex``, translate exact match >= 0.97 on ``dates``, tag token
accuracy >= 0.95 on ``surname-split`` (its baseline, ``B`` on the first letter and ``I``
elsewhere, is printed too). Every run uses the task's defaults (``Task.defaults``) unless
``--set name=value`` overrides a model or fit option, and the corpora's 10% dev split.

    python benchmarks/task_floors.py                      # all three, NumPy backend
    python benchmarks/task_floors.py --task tag --backend torch
    python benchmarks/task_floors.py --task classify --set hidden_size=128 --set steps=2000

``train_seconds`` is the wall time of building and training the model, ``total_seconds`` adds
the dev evaluation, and ``cpu_seconds`` is the process's CPU time for both (all its threads): on a
machine shared with other jobs the wall times grow and the CPU time does not.
"""

from __future__ import annotations

import argparse
import ast
import json
import time

from seqkit.corpora import get_corpus
from seqkit.metrics import token_accuracy
from seqkit.tasks import get_task

CORPUS = {"classify": "name-sex", "translate": "dates", "tag": "surname-split"}
FLOOR = {"classify": 0.90, "translate": 0.97, "tag": 0.95}


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: a cell name


def run(task_name: str, backend: str, overrides: dict, dev_fraction: float = 0.1) -> dict:
    task = get_task(task_name)
    train, dev = task.from_corpus(get_corpus(CORPUS[task_name])).split(dev_fraction)
    fit = {**task.defaults.fit, **{k: v for k, v in overrides.items() if k in task.defaults.fit}}
    model_options = {k: v for k, v in overrides.items() if k not in task.defaults.fit}
    start, cpu = time.perf_counter(), time.process_time()
    model = task.build_model(train, backend=backend, seed=0, **model_options)
    model.fit(*task.fit_data(model, train), seed=0, **fit)
    trained = time.perf_counter() - start
    metrics = task.evaluate(model, dev)
    result = {
        "task": task_name,
        "corpus": CORPUS[task_name],
        "backend": backend,
        "train": len(train),
        "dev": len(dev),
        "model": {**task.defaults.model, **model_options},
        "fit": fit,
        task.headline: round(metrics[task.headline], 4),
        "floor": FLOOR[task_name],
        "train_seconds": round(trained, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
    }
    if task_name == "tag":
        baseline = [["B"] + ["I"] * (len(tags) - 1) for tags in dev.targets]
        result["baseline_token_accuracy"] = round(token_accuracy(list(dev.targets), baseline), 4)
        result["span_f1"] = round(metrics["span_f1"]["f1"], 4)
    if task_name == "classify":
        majority = max(set(dev.targets), key=list(dev.targets).count)
        result["majority_accuracy"] = round(list(dev.targets).count(majority) / len(dev), 4)
        result["macro_f1"] = round(metrics["macro_f1"], 4)
    if task_name == "translate":
        result["char_error_rate"] = round(metrics["char_error_rate"], 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(CORPUS), action="append")
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    overrides = {k: _value(v) for k, v in overrides.items()}
    for task_name in args.task or ["classify", "tag", "translate"]:
        print(json.dumps(run(task_name, args.backend, overrides)), flush=True)


if __name__ == "__main__":
    main()
