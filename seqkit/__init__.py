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
from seqkit.callbacks import Callback
from seqkit.cells import Cell
from seqkit.checkpoint import CheckpointError
from seqkit.clip import clip_grad_norm, clip_grad_value, global_norm
from seqkit.config import Config, load_config
from seqkit.data import iterate_minibatches, lm_batch, mask_from_lengths, one_hot, pad_batch
from seqkit.errors import ConfigError, PluginError, SeqkitError, ShapeError, UnknownNameError
from seqkit.hookspecs import hookimpl
from seqkit.layers import Dense, DenseStack, Embedding, OneHot
from seqkit.losses import Loss, get_loss
from seqkit.models import (
    Batch,
    LanguageModel,
    Model,
    Seq2Seq,
    SequenceClassifier,
    SequenceTagger,
    load,
)
from seqkit.ops import Ops
from seqkit.optim import SGD, Adagrad, Adam, AdamW, Optimizer, get_optimizer, list_optimizers
from seqkit.options import TrainingOptions
from seqkit.recurrent import Recurrent, get_cell
from seqkit.samplers import Sampler, get_sampler
from seqkit.schedules import get_schedule, list_schedules, schedule_config
from seqkit.training import TrainingDiverged, TrainingHistory
from seqkit.vocab import Vocabulary

__version__ = "0.1.0"

__all__ = [
    "Adagrad",
    "Adam",
    "AdamW",
    "Backend",
    "Batch",
    "Callback",
    "Cell",
    "CheckpointError",
    "Config",
    "ConfigError",
    "Dense",
    "DenseStack",
    "Embedding",
    "LanguageModel",
    "Loss",
    "Model",
    "OneHot",
    "Ops",
    "Optimizer",
    "PluginError",
    "PluginInfo",
    "Recurrent",
    "SGD",
    "Sampler",
    "Seq2Seq",
    "SeqkitError",
    "SequenceClassifier",
    "SequenceTagger",
    "ShapeError",
    "TrainingDiverged",
    "TrainingHistory",
    "TrainingOptions",
    "UnknownNameError",
    "Vocabulary",
    "clip_grad_norm",
    "clip_grad_value",
    "get_backend",
    "get_cell",
    "get_loss",
    "get_optimizer",
    "get_sampler",
    "get_schedule",
    "global_norm",
    "hookimpl",
    "iterate_minibatches",
    "list_backends",
    "list_cells",
    "list_losses",
    "list_optimizers",
    "list_plugins",
    "list_samplers",
    "list_schedules",
    "lm_batch",
    "load",
    "load_config",
    "mask_from_lengths",
    "one_hot",
    "pad_batch",
    "plugin_manager",
    "register_plugin",
    "schedule_config",
    "unregister_plugin",
]
