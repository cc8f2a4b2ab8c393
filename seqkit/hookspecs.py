"""Every pluggy hook seqkit calls. Each is a bare signature with a one-line rule.

Collecting hooks (``seqkit_register_*``) return a list, and every plugin's list is gathered.
The reference page ``docs/plugin_hooks.rst`` has one section per hook with a runnable example.
"""

from __future__ import annotations

import pluggy

__all__ = [
    "hookimpl",
    "hookspec",
    "seqkit_register_backends",
    "seqkit_register_cells",
    "seqkit_register_corpora",
    "seqkit_register_losses",
    "seqkit_register_samplers",
    "seqkit_register_tasks",
]

#: Marks a hook specification (seqkit's own use).
hookspec = pluggy.HookspecMarker("seqkit")
#: Marks a hook implementation: decorate your plugin's functions with ``@seqkit.hookimpl``.
hookimpl = pluggy.HookimplMarker("seqkit")


@hookspec
def seqkit_register_backends():
    """Return a list of :class:`seqkit.Backend` subclasses, each with a unique ``name``."""


@hookspec
def seqkit_register_cells():
    """Return a list of :class:`seqkit.Cell` subclasses, each with a unique ``name``."""


@hookspec
def seqkit_register_losses():
    """Return a list of :class:`seqkit.losses.Loss` subclasses, each with a unique ``name``."""


@hookspec
def seqkit_register_samplers():
    """Return a list of :class:`seqkit.samplers.Sampler` subclasses, each with a unique ``name``."""


@hookspec
def seqkit_register_corpora():
    """Return a list of :class:`seqkit.corpora.Corpus` instances, each with a unique ``name``."""


@hookspec
def seqkit_register_tasks():
    """Return a list of :class:`seqkit.tasks.Task` instances, each with a unique ``name``."""
