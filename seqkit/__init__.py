"""seqkit: recurrent sequence models with a NumPy reference, a PyTorch backend and cell plugins."""

from seqkit._plugins import (
    PluginInfo,
    list_backends,
    list_cells,
    list_losses,
    list_plugins,
    list_samplers,
    plugin_manager,
    register_plugin,
    unregister_plugin,
)
from seqkit.backend import Backend, get_backend
from seqkit.cells import Cell
from seqkit.clip import clip_grad_norm, clip_grad_value, global_norm
from seqkit.config import Config, load_config
from seqkit.errors import ConfigError, PluginError, SeqkitError, ShapeError, UnknownNameError
from seqkit.hookspecs import hookimpl
from seqkit.ops import Ops
from seqkit.recurrent import Recurrent, get_cell

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "Cell",
    "Config",
    "ConfigError",
    "Ops",
    "PluginError",
    "PluginInfo",
    "Recurrent",
    "SeqkitError",
    "ShapeError",
    "UnknownNameError",
    "clip_grad_norm",
    "clip_grad_value",
    "get_backend",
    "get_cell",
    "global_norm",
    "hookimpl",
    "list_backends",
    "list_cells",
    "list_losses",
    "list_plugins",
    "list_samplers",
    "load_config",
    "plugin_manager",
    "register_plugin",
    "unregister_plugin",
]
