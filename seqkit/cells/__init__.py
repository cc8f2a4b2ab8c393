"""Backend-neutral cell definitions: the :class:`Cell` interface and the built-in cells."""

from seqkit.cells._base import Cell
from seqkit.cells.gru import GRU
from seqkit.cells.gru_ln import LayerNormGRU
from seqkit.cells.gru_simple import SimpleGRU
from seqkit.cells.lstm import LSTM
from seqkit.cells.lstm_ln import LayerNormLSTM
from seqkit.cells.rnn import RNN

__all__ = ["Cell", "RNN", "GRU", "SimpleGRU", "LSTM", "LayerNormLSTM", "LayerNormGRU"]
