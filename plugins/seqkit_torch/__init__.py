"""The PyTorch backend: seqkit layers on torch tensors, CPU or GPU, gradients by autograd.

``rnn``, ``gru`` and ``lstm`` stacks run on PyTorch's fused RNN kernels (cuDNN on a GPU); every
other cell runs its backend-neutral definition with its hand-written backward inside one
``torch.autograd.Function``. Importing this package does not import torch; building a
:class:`TorchBackend` does, and says how to install it when it is missing.
"""

from seqkit.hookspecs import hookimpl
from seqkit_torch.backend import PATHS, TorchBackend, TorchCache

__all__ = ["PATHS", "TorchBackend", "TorchCache", "TorchOps"]


def __getattr__(name: str):
    # TorchOps lives in a module that imports torch, so it is loaded on first use only
    if name == "TorchOps":
        from seqkit_torch.ops import TorchOps

        return TorchOps
    raise AttributeError(f"module 'seqkit_torch' has no attribute {name!r}")


@hookimpl
def seqkit_register_backends():
    return [TorchBackend]
