"""The built-in cells, registered through the same hook a third-party plugin uses."""

from seqkit.cells.gru import GRU
from seqkit.cells.gru_ln import LayerNormGRU
from seqkit.cells.gru_simple import SimpleGRU
from seqkit.cells.lstm import LSTM
from seqkit.cells.lstm_ln import LayerNormLSTM
from seqkit.cells.rnn import RNN
from seqkit.hookspecs import hookimpl


@hookimpl
def seqkit_register_cells():
    return [RNN, GRU, SimpleGRU, LSTM, LayerNormLSTM, LayerNormGRU]
