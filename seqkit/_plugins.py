"""The plugin manager: entry-point group ``seqkit``, registries built from the hooks, listing."""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
from typing import Any

import attrs
import pluggy

from seqkit import hookspecs
from seqkit.errors import PluginError, unknown

ENTRY_POINT_GROUP = "seqkit"

# hook name -> (what it registers, the base class every registered item must subclass)
_KINDS: dict[str, str] = {
    "seqkit_register_backends": "backend",
    "seqkit_register_cells": "cell",
    "seqkit_register_corpora": "corpus",
    "seqkit_register_losses": "loss",
    "seqkit_register_samplers": "sampler",
}


@attrs.frozen
class PluginInfo:
    """One loaded plugin: where it came from and what it registered (``kind -> names``)."""

    name: str
    distribution: str | None
    version: str | None
    entry_point: str | None
    registered: dict[str, tuple[str, ...]]


class _Manager:
    """Loads plugins once and builds one name -> object registry per kind."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("seqkit")
        self.pm.add_hookspecs(hookspecs)
        self._origin: dict[str, tuple[str | None, str | None, str | None]] = {}
        self._registries: dict[str, dict[str, tuple[str, Any]]] | None = None
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            self._load_entry_point(ep)

    def _load_entry_point(self, ep: importlib.metadata.EntryPoint) -> None:
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        if self.pm.has_plugin(ep.name):
            return  # the same distribution seen twice on sys.path
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"plugin {ep.name!r} (entry point '{ep.name} = {ep.value}' in group "
                f"{ENTRY_POINT_GROUP!r} of distribution {dist!r}) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self.register(plugin, name=ep.name, origin=(dist, version, f"{ep.name} = {ep.value}"))

    def register(self, plugin: object, name: str | None = None, origin=(None, None, None)) -> str:
        try:
            name = self.pm.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(f"plugin {name or plugin!r} could not be registered: {exc}") from exc
        assert name is not None
        try:
            self._check_hook_names(plugin, name, origin)
        except PluginError:
            self.pm.unregister(plugin)
            raise
        self._origin[name] = origin
        self._registries = None
        return name

    def _check_hook_names(self, plugin: object, name: str, origin) -> None:
        """Every ``@hookimpl`` must name a seqkit hook, and a function named like a hook must
        be marked: a typo or a missing decorator would otherwise register nothing, silently.
        (pluggy's ``check_pending`` finds the first case, for every plugin at once.)"""
        hooks = self.hook_names()
        where = f"plugin {name!r}" + (f" (entry point '{origin[2]}')" if origin[2] else "")
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.has_spec():
                continue
            if any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls()):
                close = difflib.get_close_matches(caller.name, hooks, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise PluginError(
                    f"{where} implements unknown hook {caller.name!r}{hint} "
                    f"(seqkit's hooks: {', '.join(hooks)})"
                )
        for hook in hooks:
            function = getattr(plugin, hook, None)
            if callable(function) and not hasattr(function, "seqkit_impl"):
                raise PluginError(
                    f"{where} defines {hook}() without marking it with @seqkit.hookimpl, "
                    f"so seqkit would never call it"
                )

    def hook_names(self) -> list[str]:
        """The names of every hook seqkit specifies, sorted."""
        return sorted(
            n
            for n, caller in vars(self.pm.hook).items()
            if not n.startswith("_") and caller.has_spec()
        )

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._origin.pop(name, None)
        self._registries = None

    def registries(self) -> dict[str, dict[str, tuple[str, Any]]]:
        """``kind -> {name: (plugin name, object)}``, built on first use."""
        if self._registries is None:
            self._registries = {kind: {} for kind in _KINDS.values()}
            for hook_name, kind in _KINDS.items():
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    for obj in self._call(impl, hook_name):
                        self._add(kind, impl.plugin_name, obj)
        return self._registries

    def _call(self, impl, hook_name: str) -> list:
        try:
            result = impl.function()
        except Exception as exc:
            raise PluginError(
                f"plugin {impl.plugin_name!r} raised in {hook_name}(): {type(exc).__name__}: {exc}"
            ) from exc
        if result is None:
            return []
        if not isinstance(result, list | tuple):
            raise PluginError(
                f"plugin {impl.plugin_name!r}: {hook_name}() must return a list, "
                f"got {type(result).__name__}"
            )
        return list(result)

    def _add(self, kind: str, plugin_name: str, obj: Any) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"plugin {plugin_name!r} registered a {kind} without a 'name' string: {obj!r}"
            )
        registry = self._registries[kind]  # type: ignore[index]
        if name in registry and registry[name][1] is not obj:
            raise PluginError(
                f"{kind} {name!r} is registered twice: by plugin {registry[name][0]!r} "
                f"and by plugin {plugin_name!r}"
            )
        registry[name] = (plugin_name, obj)

    def plugins(self) -> list[PluginInfo]:
        registries = self.registries()
        out = []
        for name, _plugin in sorted(self.pm.list_name_plugin(), key=lambda item: item[0]):
            dist, version, ep = self._origin.get(name, (None, None, None))
            registered = {
                kind: tuple(sorted(n for n, (p, _) in reg.items() if p == name))
                for kind, reg in registries.items()
            }
            out.append(
                PluginInfo(name, dist, version, ep, {k: v for k, v in registered.items() if v})
            )
        return out


@functools.cache
def _manager() -> _Manager:
    return _Manager()


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide ``pluggy.PluginManager("seqkit")`` with every entry point loaded."""
    return _manager().pm


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin (a module or object with ``@hookimpl`` functions); returns its name."""
    return _manager().register(plugin, name=name)


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    _manager().unregister(name)


def list_plugins() -> list[PluginInfo]:
    """Every loaded plugin with its distribution, version, entry point and what it registered."""
    return _manager().plugins()


def lookup(kind: str, name: str) -> Any:
    """The registered object of ``kind`` called ``name``; unknown names list the choices."""
    registry = _manager().registries()[kind]
    if not isinstance(name, str) or name not in registry:
        raise unknown(kind, name, sorted(registry))
    return registry[name][1]


def build(kind: str, base: type, name: Any, options: dict) -> Any:
    """A ``base`` instance: ``name`` itself when it is one, else the registered ``kind`` called
    ``name`` built with ``options``. Unknown names list the registered ones; unknown options
    list the ones the class takes."""
    if isinstance(name, base):
        if options:
            raise TypeError(
                f"{kind} options {sorted(options)} given with a {kind} instance {name!r}"
            )
        return name
    cls = lookup(kind, name)
    fields = [f.name for f in attrs.fields(cls)] if attrs.has(cls) else []
    unknown_options = sorted(set(options) - set(fields))
    if unknown_options:
        raise TypeError(
            f"{kind} {name!r} got unknown options {unknown_options}; "
            f"its options are: {', '.join(fields) or '(none)'}"
        )
    return cls(**options)


def names(kind: str) -> list[str]:
    """Sorted names registered for ``kind``."""
    return sorted(_manager().registries()[kind])


def list_backends() -> list[str]:
    """Names of every registered backend, sorted."""
    return names("backend")


def list_cells() -> list[str]:
    """Names of every registered cell, sorted."""
    return names("cell")


def list_corpora() -> list[str]:
    """Names of every registered corpus, sorted."""
    return names("corpus")


def list_losses() -> list[str]:
    """Names of every registered loss, sorted."""
    return names("loss")


def list_samplers() -> list[str]:
    """Names of every registered sampler, sorted."""
    return names("sampler")
