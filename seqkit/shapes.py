"""The shape letters every docstring uses, fixed once.

====  ==========================================================
T     time steps (the longest sequence in a batch; T_x, T_y)
B     batch size
I     input size (features per step; V for one-hot input)
H     hidden size of one direction of one layer
G     gates of a cell: rows of ``weight_ih`` are ``G*H``
L     number of stacked layers
D     directions: 1, or 2 when bidirectional
V     vocabulary size
====  ==========================================================

Inside seqkit every sequence is time-major: ``x`` is ``(T, B, I)``, a recurrent layer's output is
``(T, B, D*H)`` and its states are ``(L*D, B, H)``, with layer ``l`` direction ``d`` at index
``l*D + d`` (PyTorch's order). No function takes ``batch_first``: transpose a batch-major
array with ``x.swapaxes(0, 1)`` before it enters.
"""

from typing import Any, TypeAlias

__all__ = ["Array", "State"]

#: An array of the backend in use (``numpy.ndarray`` or ``torch.Tensor``).
Array: TypeAlias = Any

#: A recurrent state ``(h,)`` or ``(h, c)``: each (B, H) inside a step, (L*D, B, H) outside.
State: TypeAlias = tuple
