"""Architectures as compositions: encoder -> recurrent stack -> dense head -> loss.

* :class:`LanguageModel`: one-to-many generation and sequence probabilities;
* :class:`SequenceClassifier`: many-to-one (the final state -> one class);
* :class:`SequenceTagger`: many-to-many with T_x = T_y (one tag per token);
* :class:`Seq2Seq`: encoder-decoder, T_x != T_y (greedy and beam-search translation).
"""

from seqkit.models._base import Batch, Model, load
from seqkit.models.classifier import SequenceClassifier
from seqkit.models.language_model import LanguageModel
from seqkit.models.seq2seq import Seq2Seq
from seqkit.models.tagger import SequenceTagger

__all__ = [
    "Batch",
    "Model",
    "LanguageModel",
    "SequenceClassifier",
    "SequenceTagger",
    "Seq2Seq",
    "load",
]
