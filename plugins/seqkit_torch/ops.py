"""Torch tensors on one device and dtype behind :class:`seqkit.ops.Ops`.

This module imports torch at the top; :mod:`seqkit_torch` imports it only when a
:class:`~seqkit_torch.TorchBackend` is built, so ``import seqkit_torch`` works without torch.
"""

from __future__ import annotations

import numpy as np
import torch

from seqkit.errors import ShapeError
from seqkit.ops import Ops

__all__ = ["TorchOps"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: The fewest multiply-adds (M K N) of a product sent to oneDNN rather than torch.mm (MKL): a
#: oneDNN call costs 15-20 us more (the weight's reorder, the primitive), and the two break even
#: at 4-8 million (32 x 256 x 1024: 124 vs 107 us; 64 x 256 x 256: 52 vs 56 us).
_ONEDNN_MIN_WORK = 1 << 23


class TorchOps(Ops):
    """:class:`seqkit.ops.Ops` on torch tensors of one ``device`` and ``dtype``.

    ``inplace=True`` is honoured; it is for the hand-written BPTT driver, which runs under
    ``torch.no_grad``. Every call without it is safe inside an autograd graph.
    """

    xp = torch

    def __init__(self, dtype: str = "float32", device: str = "cpu") -> None:
        if dtype not in _DTYPES:
            raise ValueError(
                f"'dtype' must be one of {', '.join(map(repr, _DTYPES))} (got {dtype!r})"
            )
        self.dtype = dtype
        self.torch_dtype = _DTYPES[dtype]
        self.device = torch.device(device)
        self._onednn = (
            self.device.type == "cpu"
            and self.torch_dtype == torch.float32
            and torch.backends.mkldnn.is_available()
        )

    def __repr__(self) -> str:
        return f"TorchOps(dtype={self.dtype!r}, device={str(self.device)!r})"

    # --- conversion -----------------------------------------------------------------------
    def asarray(self, a):
        if isinstance(a, torch.Tensor):
            if a.is_complex():
                raise ShapeError(f"expected a real floating tensor (got dtype {a.dtype})")
            if a.dtype == self.torch_dtype and a.device == self.device:
                return a
            # .to keeps the autograd graph, so a cast input still gets its gradient
            return a.to(device=self.device, dtype=self.torch_dtype)
        # everything else goes through NumPy, so lists and bad values fail exactly as there
        arr = np.asarray(a, dtype=np.dtype(self.dtype))
        return torch.from_numpy(arr).to(self.device)

    def to_numpy(self, a):
        if isinstance(a, torch.Tensor):
            return a.detach().cpu().numpy()
        return np.asarray(a)

    # --- creation --------------------------------------------------------------------------
    def empty(self, shape):
        return torch.empty(shape, dtype=self.torch_dtype, device=self.device)

    def copy(self, a):
        return a.clone()

    def zeros(self, shape):
        return torch.zeros(shape, dtype=self.torch_dtype, device=self.device)

    def mask(self, lengths, steps):
        lens = torch.as_tensor(np.asarray(lengths), device=self.device)
        t = torch.arange(steps, device=self.device)
        return (t[:, None] < lens[None, :])[:, :, None]

    # --- linear algebra and indexing -----------------------------------------------------------
    def matmul(self, a, b, out=None):
        if self._on_onednn(a, b) and (out is None or out.is_contiguous()):
            y = torch.ops.mkldnn._linear_pointwise.default(a, b.mT, None, "none", [], "")
            return y if out is None else out.copy_(y)
        if out is None:
            return torch.matmul(a, b)
        if out.is_contiguous():
            return torch.matmul(a, b, out=out)
        if out.mT.is_contiguous():  # feature-major (seqkit.bptt): (a @ b)^T = b^T @ a^T
            torch.matmul(b.mT, a.mT, out=out.mT)
            return out
        return out.copy_(torch.matmul(a, b))

    def _on_onednn(self, a, b) -> bool:
        """Whether ``a @ b`` runs on oneDNN's inner product (``b^T`` its weight), 10-25% faster
        than torch.mm's MKL sgemm on this project's AMD EPYC at the B1 and F1 sizes: float32 on
        a CPU, ``a`` row-major (any leading axes; a transposed one is reordered at a loss),
        outside any autograd graph (the op has no derivative), and big enough to repay its
        call."""
        return (
            self._onednn
            and a.ndim >= 2
            and b.ndim == 2
            and a.is_contiguous()
            and a.numel() * b.shape[1] >= _ONEDNN_MIN_WORK
            and not (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))
        )

    def take_time(self, x, index):
        index = torch.as_tensor(np.asarray(index), device=x.device)
        return x[index, torch.arange(x.shape[1], device=x.device)[None, :]]

    # --- arithmetic and activations: in place when asked (the BPTT driver runs under no_grad) ---
    def sigmoid(self, x, *, inplace=False):
        return x.sigmoid_() if inplace else torch.sigmoid(x)  # stable for every finite input

    def tanh(self, x, *, inplace=False):
        return x.tanh_() if inplace else torch.tanh(x)

    def relu(self, x, *, inplace=False):
        return x.relu_() if inplace else torch.relu(x)

    # --- losses, layers and optimizers: torch's names for axes (dim=, keepdim=) ------------------
    def int_array(self, a):
        if isinstance(a, torch.Tensor):
            if a.is_floating_point() or a.is_complex():
                raise ShapeError(f"expected an integer tensor of ids (got dtype {a.dtype})")
            return a.to(device=self.device, dtype=torch.int64)
        return torch.from_numpy(np.asarray(a, dtype=np.int64)).to(self.device)

    def sum(self, x, axis=None, keepdims=False):
        if axis is None:
            total = x.sum()
            return total.reshape((1,) * x.ndim) if keepdims else total
        return x.sum(dim=axis, keepdim=keepdims)

    def logsumexp(self, x, keepdims=False):
        return torch.logsumexp(x, dim=-1, keepdim=keepdims)

    def log_softmax(self, x):
        return torch.log_softmax(x, dim=-1)

    def softmax(self, x):
        return torch.softmax(x, dim=-1)

    def log_sigmoid(self, x):
        return torch.nn.functional.logsigmoid(x)

    def take_last(self, x, ids):
        return torch.gather(x, -1, ids.unsqueeze(-1)).squeeze(-1)

    def one_hot(self, ids, n):
        return torch.nn.functional.one_hot(ids, n).to(self.torch_dtype)

    def rows(self, W, ids):
        return torch.nn.functional.embedding(ids, W)

    def add_rows(self, dW, ids, d, *, inplace=False):
        # each id's rows summed first into a row-major buffer of the distinct ids (index_add_), then
        # added once per id: index_put(accumulate=True) straight into dW adds every position one
        # by one, and into the transposed view a one-hot layer's weight gradient is (rows of
        # stride V) it cost 9 ms of an 11 ms training step (T*B = 2048 rows of 512, V = 60);
        # this way 0.16 ms, and 5.7 against 6.3 ms for 2048 rows of a 25,000-word vocabulary
        out = dW if inplace else dW.clone()
        ids, d = ids.reshape(-1), d.reshape(-1, dW.shape[-1])
        distinct, position = torch.unique(ids, return_inverse=True)
        sums = d.new_zeros((distinct.shape[0], d.shape[1])).index_add_(0, position, d)
        return out.index_put_((distinct,), sums, accumulate=True)
