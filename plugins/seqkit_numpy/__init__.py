"""The NumPy reference backend: seqkit's hand-written BPTT on NumPy arrays, on the CPU."""

from seqkit.hookspecs import hookimpl
from seqkit_numpy.backend import NumpyBackend, NumpyOps

__all__ = ["NumpyBackend", "NumpyOps"]


@hookimpl
def seqkit_register_backends():
    return [NumpyBackend]
