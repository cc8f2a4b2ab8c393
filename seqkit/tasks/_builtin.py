"""The built-in tasks, registered through the same hook a plugin uses."""

from __future__ import annotations

from seqkit.hookspecs import hookimpl
from seqkit.tasks.classify import Classification
from seqkit.tasks.lm import LanguageModelling
from seqkit.tasks.tag import Tagging
from seqkit.tasks.translate import Translation


@hookimpl
def seqkit_register_tasks():
    return [LanguageModelling(), Classification(), Tagging(), Translation()]
