"""The largest training loss over the first (counted as at least 1 nat) in runs with high rates,
warm-up and schedules: the evidence for seqkit.training.DIVERGENCE_FACTOR (docs/training.rst).

    python benchmarks/divergence_ratios.py
"""

import numpy as np

import seqkit
from seqkit.corpora import get_corpus
from seqkit.tasks import get_task

RUNS = [
    ("lm", {"optimizer": "adam", "lr": 0.01}),
    ("lm", {"optimizer": "adam", "lr": 0.03}),
    ("lm", {"optimizer": "adam", "lr": 0.1, "warmup_steps": 50}),
    ("lm", {"optimizer": "adam", "lr": 0.1}),
    ("lm", {"optimizer": "sgd", "lr": 1.0}),
    ("lm", {"optimizer": "sgd", "lr": 3.0, "warmup_steps": 50, "lr_schedule": "cosine"}),
    ("lm", {"optimizer": "adagrad", "lr": 0.5}),
    ("classify", {"optimizer": "adam", "lr": 0.05}),
    ("classify", {"optimizer": "sgd", "lr": 2.0}),
    ("lm", {"optimizer": "adam", "lr": 1.0}),
    ("lm", {"optimizer": "adam", "lr": 1e6}),
]


def model_and_data(kind):
    """GRU-64 on 2,000 first names, or an LSTM-64 classifier on name-sex."""
    if kind == "lm":
        texts = list(get_task("lm").from_corpus(get_corpus("first-names"), level="char").inputs)
        texts = texts[:2000]
        vocab = seqkit.Vocabulary.build(texts, level="char")
        return seqkit.LanguageModel(vocab, cell="gru", hidden_size=64, seed=0), (texts,)
    examples = get_task("classify").from_corpus(get_corpus("name-sex"), level="char")
    labels = sorted(set(examples.targets))
    vocab = seqkit.Vocabulary.build(examples.inputs, level="char")
    model = seqkit.SequenceClassifier(vocab, num_classes=2, hidden_size=64, seed=0)
    return model, (list(examples.inputs), [labels.index(t) for t in examples.targets])


def main():
    for kind, options in RUNS:
        model, data = model_and_data(kind)
        try:
            losses = model.fit(*data, steps=300, batch_size=32, seed=0, **options).losses
            end = f"end {np.mean(losses[-20:]):.3f}"
        except seqkit.TrainingDiverged as exc:
            losses, end = exc.history.losses, f"DIVERGED at step {exc.step}"
        ratio = max(losses) / max(losses[0], 1.0)
        first, top = losses[0], max(losses)
        print(f"{kind:8} {options}: first {first:.3f} max {top:.3f} ratio {ratio:.2f} {end}")


if __name__ == "__main__":
    main()
