"""The fused path: built-in ``rnn``, ``gru`` and ``lstm`` stacks on PyTorch's RNN kernels.

``torch._VF.lstm`` and friends are what ``torch.nn.LSTM.forward`` calls (cuDNN on a GPU, the
native kernels on a CPU). They take the weights as a flat list in PyTorch's order, which is
exactly ``Recurrent.param_shapes()``'s order, so the caller's tensors go in as they are: no copy,
no detach, and gradients reach them through autograd.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import _VF
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqkit.cells import GRU, LSTM, RNN
from seqkit.ops import OneHotIds
from seqkit.recurrent import Recurrent

__all__ = ["fused_kernel", "fused_forward", "frozen_forward", "min_fill", "unpacked_pays"]


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
    if unpacked_pays(layer, x, lengths):
        return frozen_forward(layer, x, state0, weights, lengths, train)
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


#: What a padded step adds to an LSTM's input-gate pre-activation (minus) and to its forget
#: gate's (plus): sigmoid then gives 0 and 1 exactly, in float32 and float64 alike (exp(-1e4)
#: underflows to 0), whatever the rest of the pre-activation is (|h| <= 1 bounds W_hh's part).
FREEZE = 1e4


def min_fill(hidden_size: int) -> float:
    """The least share of real steps for :func:`frozen_forward` to pay: of T x B, T the longest.

    Unpacked, the padding is computed too; packed, torch's per-step loop computes only the rows
    still running at each step, but costs about twice as much per row. The share where the two
    cross grows with the layer (on 2 cores, one LSTM layer forward and backward, float32, at
    (B, H): about 0.28 at (64, 128), 0.36 at (64, 256), 0.48 at (64, 512), 0.55 at (128, 512),
    0.62 at (128, 1024); ``benchmarks/bench_padding.py``, docs/reference/performance.rst).
    0.4 at H = 256, 0.125 more per doubling, at least 0.3.
    """
    return max(0.3, 0.4 + 0.125 * math.log2(hidden_size / 256))


def unpacked_pays(layer: Recurrent, x, lengths: np.ndarray) -> bool:
    """Whether variable lengths run unpacked (:func:`frozen_forward`) rather than packed.

    On a CPU torch runs an LSTM on oneDNN's RNN primitive only when its input is not packed
    (float32, oneDNN on, no projection: ``torch.nn.LSTM``'s own rule), and packing falls back to
    the per-step loop: twice as slow at the main job's shape (docs/reference/performance.rst).
    Only a unidirectional stack can run so: the reverse direction starts in the padding. And
    only a batch whose ``lengths`` fill at least :func:`min_fill` of the steps up to the
    longest: below, packing skips more padding than the faster kernel makes up for.
    """
    onednn = (
        type(layer.cell) is LSTM
        and not layer.bidirectional
        and not layer.proj_size
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )
    fill = float(np.mean(lengths)) / float(np.max(lengths))  # of the steps the kernel runs
    return onednn and fill >= min_fill(layer.hidden_size)


def frozen_forward(layer: Recurrent, x, state0: tuple, weights: list, lengths, train: bool):
    """A unidirectional LSTM stack over variable lengths, unpacked, the padding frozen.

    Each layer runs up to the batch's longest length (the steps past it come out as zeros, as
    packed) with one more input column, 1 at a padded step (t at or past the sequence's length)
    and 0 elsewhere, whose weights add ``-FREEZE`` to the input gate's pre-activation and
    ``+FREEZE`` to the forget gate's. At a padded step i = 0 and f = 1 exactly, so
    ``c = f * c + i * g`` keeps the value it had at the sequence's last step, and nothing in the
    padding reaches a gradient (sigmoid's derivative is 0 there). h moves on in the padding, so
    each layer's final h is read from its output at the last step. Outputs past each length are
    then set to zero. The result equals the packed run (exactly, up to the
    kernels' rounding; ``tests/test_torch_backend.py``).

    Args:
        x: (T, B, I) tensor; ``weights`` the flat list in PyTorch's order (4 per layer).
        state0: ``(h0, c0)``, (L, B, H) each. ``lengths``: (B,) host integers in 1..T.

    Returns:
        ``(out, (h_n, c_n))`` as :func:`fused_forward`'s.
    """
    T, B, H = int(np.max(lengths)), x.shape[1], layer.hidden_size
    padded_to = x.shape[0]
    x = x[:T]
    steps = torch.arange(T, device=x.device)[:, None]
    ends = torch.as_tensor(lengths, dtype=torch.int64, device=x.device)
    valid = steps < ends[None, :]  # (T, B)
    flag = (~valid).to(x.dtype)[..., None]
    column = torch.zeros((4 * H, 1), dtype=x.dtype, device=x.device)
    column[:H] = -FREEZE  # PyTorch's gate order: i, f, g, o
    column[H : 2 * H] = FREEZE
    per_layer = len(layer.direction_shapes(0))
    rows = torch.arange(B, device=x.device)
    h_n, c_n, inp = [], [], x
    for k in range(layer.num_layers):
        w = weights[k * per_layer : (k + 1) * per_layer]
        w = [torch.cat([w[0], column], dim=1), *w[1:]]
        hx = (state0[0][k : k + 1], state0[1][k : k + 1])
        inp, _, c = _VF.lstm(
            torch.cat([inp, flag], dim=-1), hx, w, True, 1, 0.0, train, False, False
        )
        h_n.append(inp[ends - 1, rows])
        c_n.append(c[0])
    out = torch.where(valid[..., None], inp, 0.0)
    if padded_to > T:
        out = torch.cat([out, out.new_zeros((padded_to - T, B, H))])
    return out, (torch.stack(h_n), torch.stack(c_n))


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
