"""Hypothesis strategies for the suite: seqkit.testing's public ones, at the suite's sizes."""

from seqkit.testing import lengths, make_batch, recurrent_layers, sequence_batches

__all__ = [
    "lengths",
    "make_batch",
    "recurrent_layers",
    "sequence_batches",
    "small_layers",
    "fd_layers",
]

#: Layers for agreement properties: every registered cell, L in 1..3, both directions.
small_layers = recurrent_layers(max_layers=3, max_input_size=3, max_hidden_size=3)

#: Layers for finite differences, which cost two forward passes per entry: L in 1..2.
fd_layers = recurrent_layers(max_layers=2, max_input_size=2, max_hidden_size=3)
