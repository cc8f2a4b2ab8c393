"""Architectures as compositions: encoder -> recurrent stack -> dense head -> loss."""

from seqkit.models._base import Model, load
from seqkit.models.language_model import LanguageModel

__all__ = ["Model", "LanguageModel", "load"]
