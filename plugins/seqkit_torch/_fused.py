"""The fused path: built-in ``rnn``, ``gru`` and ``lstm`` stacks on PyTorch's RNN kernels.

``torch._VF.lstm`` and friends are what ``torch.nn.LSTM.forward`` calls (cuDNN on a GPU, the
native kernels on a CPU). They take the weights as a flat list in PyTorch's order, which is
exactly ``Recurrent.param_shapes()``'s order, so the caller's tensors go in as they are: no copy,
no detach, and gradients reach them through autograd.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import _VF
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqkit.cells import GRU, LSTM, RNN
from seqkit.ops import OneHotIds
from seqkit.recurrent import Recurrent

__all__ = ["fused_kernel", "fused_forward"]


def fused_kernel(layer: Recurrent):
    """The ``torch._VF`` function that runs ``layer`` exactly, or None when there is none.

    Only the built-in classes themselves qualify: a subclass may change ``step``, so it runs the
    generic path like any third-party cell.
    """
    cell = type(layer.cell)
    if layer.cell.extra_param_shapes(layer.hidden_size):
        return None
    if cell is LSTM:
        return _VF.lstm
    if cell is GRU:
        return _VF.gru
    if cell is RNN:
        return _VF.rnn_tanh if layer.cell.nonlinearity == "tanh" else _VF.rnn_relu
    return None


def fused_forward(layer: Recurrent, params: dict, x, state0: tuple, lengths: np.ndarray | None):
    """Run ``layer`` with its fused kernel; arguments as in :func:`seqkit.bptt.recurrent_forward`.

    Args:
        x: (T, B, I) tensor, or :class:`~seqkit.ops.OneHotIds` of I (see :func:`one_hot_input`).
        state0: tuple of (L*D, B, H) tensors, one per ``layer.state_names``.
        lengths: (B,) host integers in 1..T, or None.

    Returns:
        ``(out, final)``: out (T, B, D*H) with zeros past each length, final a tuple of
        (L*D, B, H) tensors.
    """
    kernel = fused_kernel(layer)
    T = x.shape[0]
    weights = [params[name] for name in layer.param_shapes()]
    if isinstance(x, OneHotIds):
        x, weights = one_hot_input(layer, x, weights)
    hx = state0 if len(state0) == 2 else state0[0]
    L, bi = layer.num_layers, layer.bidirectional
    train = torch.is_grad_enabled()  # cuDNN keeps its reserve for backward only in training mode
    if lengths is None or int(lengths.min()) == T:
        result = kernel(x, hx, weights, True, L, 0.0, train, bi, False)
        out, final = result[0], tuple(result[1:])
        return out, final
    # variable lengths: pack as torch.nn.LSTM does, sorting the batch and the states alike
    packed = pack_padded_sequence(
        x, torch.as_tensor(lengths, dtype=torch.int64), enforce_sorted=False
    )
    order, unorder = packed.sorted_indices, packed.unsorted_indices
    order_dev = order.to(x.device)
    if len(state0) == 2:
        hx = tuple(s.index_select(1, order_dev) for s in state0)
    else:
        hx = state0[0].index_select(1, order_dev)
    result = kernel(packed.data, packed.batch_sizes, hx, weights, True, L, 0.0, train, bi)
    out_packed = PackedSequence(result[0], packed.batch_sizes, order, unorder)
    out, _ = pad_packed_sequence(out_packed, total_length=T)
    unorder_dev = unorder.to(x.device)
    final = tuple(s.index_select(1, unorder_dev) for s in result[1:])
    return out, final


def one_hot_input(layer: Recurrent, x: OneHotIds, weights: list) -> tuple:
    """A dense input for the fused kernel from one-hot ids, and the weights that go with it.

    The kernel multiplies its input by ``weight_ih`` of layer 0, I' = I columns per row. Up to
    ``I = D*G*H`` the one-hot matrix itself is the cheapest input. Above, each direction's
    projection ``x W_ih^T + b_ih`` is gathered (differentiable: the gradient of ``W_ih`` is
    autograd's scatter-add) and the kernel reads the D gathered blocks side by side through a
    constant block identity with a zero bias: D*G*H columns per row, whatever the vocabulary.
    The results are the product with the one-hot matrix.

    Returns:
        ``(x', weights')``: x' (T, B, I') tensor; weights' the flat list with layer 0's
        ``weight_ih`` and ``bias_ih`` replaced (unchanged for the dense route).
    """
    D = layer.num_directions
    per_direction = len(layer.direction_shapes(0))
    GH = weights[0].shape[0]
    if x.num_classes <= D * GH:
        return x.dense(), weights
    blocks = [x.ops.project(x, weights[d * per_direction]) for d in range(D)]
    weights = list(weights)
    eye = torch.eye(GH, dtype=blocks[0].dtype, device=blocks[0].device)
    zero = torch.zeros(GH, dtype=eye.dtype, device=eye.device)
    for d in range(D):
        bias = weights[d * per_direction + 2]
        blocks[d] = blocks[d] + bias
        w = torch.zeros((GH, D * GH), dtype=eye.dtype, device=eye.device)
        w[:, d * GH : (d + 1) * GH] = eye
        weights[d * per_direction] = w
        weights[d * per_direction + 2] = zero
    return (blocks[0] if D == 1 else torch.cat(blocks, dim=-1)), weights
