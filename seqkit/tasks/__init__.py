"""Tasks: what the command line trains (``lm``, ``classify``, ``tag``, ``translate``).

A :class:`Task` is a registry entry (``seqkit_register_tasks`` hook) that knows its file format
and reader, how to build its model from data, the data form of ``fit``, its metrics and its
output format. The command line is generic over it; a plugin adds a task with one subclass.
"""

from __future__ import annotations

from typing import Any

from seqkit.tasks._base import DataError, Examples, Task, TaskDefaults

__all__ = ["DataError", "Examples", "Task", "TaskDefaults", "get_task", "list_tasks", "task_of"]


def get_task(name: str) -> Task:
    """The registered task called ``name``; unknown names list the choices."""
    from seqkit._plugins import lookup

    return lookup("task", name)


def list_tasks() -> list[str]:
    """Names of every registered task, sorted."""
    from seqkit._plugins import names

    return names("task")


def task_of(model: Any) -> Task:
    """The task of a model: the one named in ``model.metadata["task"]`` (written by
    :meth:`Task.build_model`), else the registered task whose model kind is ``model.kind``."""
    from seqkit._plugins import lookup, names

    registry = {name: lookup("task", name) for name in names("task")}
    named = model.metadata.get("task", {}).get("name")
    if named is not None:
        task = get_task(named)
        task.check_model(model)
        return task
    kind = getattr(model, "kind", type(model).__name__)
    for name in sorted(registry):
        if registry[name].model_kind == kind:
            return registry[name]
    raise ValueError(
        f"no registered task trains a {kind}; tasks: "
        + ", ".join(f"{n} ({t.model_kind})" for n, t in sorted(registry.items()))
    )
