"""The JAX backend for seqkit, registered as backend ``"jax"``.

Every cell, built-in or from a plugin, runs its own backend-neutral ``step`` inside one
``jax.lax.scan`` per layer and direction, jit-compiled once per shape class; gradients come from
JAX's autodiff (``jax.vjp``), so the cells' hand-written ``step_backward`` is never called here.
Importing this package does not import jax; building a :class:`JaxBackend` does, and says how to
install it when it is missing.
"""

from seqkit.hookspecs import hookimpl
from seqkit_jax.backend import JaxBackend, JaxCache

__all__ = ["JaxBackend", "JaxCache", "JaxOps"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # JaxOps lives in a module that imports jax, so it is loaded on first use only
    if name == "JaxOps":
        from seqkit_jax.ops import JaxOps

        return JaxOps
    raise AttributeError(f"module 'seqkit_jax' has no attribute {name!r}")


@hookimpl
def seqkit_register_backends():
    return [JaxBackend]
