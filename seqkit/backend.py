"""The backend interface: arrays, device, dtype, and a recurrent stack's forward and gradients."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from seqkit import bptt
from seqkit.config import load_config
from seqkit.distributed import DataParallel
from seqkit.dropout import LoopMasks
from seqkit.errors import ConfigError, ShapeError
from seqkit.ops import OneHotIds, Ops
from seqkit.recurrent import Recurrent
from seqkit.shapes import Array

__all__ = ["Backend", "get_backend"]


class Backend(abc.ABC):
    """Owns arrays, device and dtype, and how a recurrent stack runs and is differentiated.

    Subclasses set :attr:`name` and build :attr:`ops`. The public methods validate their
    arguments here, once for every backend, so that every backend raises the same errors; the
    work happens in :meth:`_recurrent_forward` and :meth:`_recurrent_backward`, which by default
    run the hand-written BPTT of :mod:`seqkit.bptt` on :attr:`ops`.
    """

    #: Registered name (``"numpy"``).
    name: ClassVar[str]
    #: The array operations for this backend's device and dtype.
    ops: Ops
    #: Whether :meth:`_recurrent_forward` takes ``masks`` (recurrent dropout and zoneout inside
    #: the time loop); the default, :mod:`seqkit.bptt`, does. A backend that overrides it
    #: without them sets False, and such layers are refused in one line.
    loop_masks: ClassVar[bool] = True

    def __init__(self, *, dtype: str = "float32", device: str = "cpu") -> None:
        self.dtype = dtype
        self.device = device

    def __repr__(self) -> str:
        cls = type(self).__name__
        return f"<{cls} name={self.name!r} dtype={self.dtype!r} device={self.device!r}>"

    # --- arrays ------------------------------------------------------------------------------
    def asarray(self, a: Any) -> Array:
        """``a`` as a float array of this backend (no copy when it already is one)."""
        return self.ops.asarray(a)

    def to_numpy(self, a: Array) -> np.ndarray:
        """The values of ``a`` as a NumPy array."""
        return self.ops.to_numpy(a)

    # --- recurrent stack ---------------------------------------------------------------------
    def recurrent_forward(
        self,
        layer: Recurrent,
        params: dict,
        x: Any,
        initial_state: Any = None,
        lengths: Any = None,
        *,
        masks: Any = None,
    ) -> tuple[Array, Any, Any]:
        """Run a recurrent stack over a batch.

        Args:
            layer: the :class:`~seqkit.Recurrent` specification.
            params: every parameter of ``layer.param_shapes()``, NumPy or backend arrays.
            x: (T, B, I) input, or a :class:`~seqkit.ops.OneHotIds` of V = I (what
                :class:`~seqkit.OneHot` gives): layer 0 then gathers columns of ``weight_ih``
                instead of multiplying a one-hot matrix, and ``recurrent_backward``'s ``"x"``
                is None.
            initial_state: None (zeros), h0 (L*D, B, H), or ``(h0, c0)`` for a cell with a
                memory state such as ``lstm``; h0 is (L*D, B, P) under ``layer.proj_size`` P.
            lengths: None, or (B,) integers in 1..T; steps at or past a sequence's length
                change nothing and output zeros.
            masks: None for an evaluation pass (``layer.zoneout``'s expectation, no recurrent
                dropout), or the :class:`seqkit.dropout.LoopMasks` of a training pass
                (:func:`seqkit.dropout.stack_forward` draws them).

        Returns:
            ``(out, final, cache)``: out (T, B, D*H) (D*P under a projection); final in the
            form of ``initial_state`` (h_n, or ``(h_n, c_n)``); cache for
            :meth:`recurrent_backward`.
        """
        if not isinstance(layer, Recurrent):
            raise TypeError(f"layer must be a seqkit.Recurrent (got {type(layer).__name__})")
        params = self._check_params(layer, params)
        x = self._check_x(layer, x)
        T, B, _ = x.shape
        state0 = self._check_state(layer, initial_state, B, "initial_state")
        lengths = _check_lengths(lengths, T, B)
        if masks is None:
            masks = LoopMasks.evaluation(layer)
        if masks is None:
            out, final, cache = self._recurrent_forward(layer, params, x, state0, lengths)
        else:
            if not isinstance(masks, LoopMasks):
                raise TypeError(
                    f"masks must be None or a seqkit.dropout.LoopMasks (got {type(masks).__name__})"
                )
            if not self.loop_masks:
                raise ConfigError(
                    f"backend {self.name!r} cannot run recurrent_dropout or zoneout (masks inside "
                    "the time loop); use backend 'numpy' or 'torch'"
                )
            masks.check(layer, T, B)
            out, final, cache = self._recurrent_forward(
                layer, params, x, state0, lengths, masks=masks
            )
        return out, _pack_state(layer, final), cache

    def recurrent_backward(
        self, layer: Recurrent, cache: Any, d_out: Any, d_final_state: Any = None
    ) -> dict:
        """Gradients of a scalar loss, given its gradients with respect to the outputs.

        Args:
            layer: the layer passed to :meth:`recurrent_forward`.
            cache: the third value :meth:`recurrent_forward` returned.
            d_out: (T, B, D*H) gradient of the loss with respect to ``out``.
            d_final_state: None (zeros), or the gradient of the final state in its form.

        Returns:
            dict with ``"x"`` (T, B, I) (None for one-hot ids), ``"h0"`` (and ``"c0"``)
            (L*D, B, H), and one entry per parameter name.
        """
        T, B = self._cache_shape(cache)
        d_out = self.asarray(d_out)
        expected = (T, B, layer.output_size)
        if tuple(d_out.shape) != expected:
            raise ShapeError(
                f"d_out must have shape (T, B, D*H) = {expected} (got {tuple(d_out.shape)})"
            )
        d_final = None
        if d_final_state is not None:
            d_final = self._check_state(layer, d_final_state, B, "d_final_state")
        return self._recurrent_backward(layer, cache, d_out, d_final)

    # --- whole-model gradients -------------------------------------------------------------------
    def loss_and_grads(self, forward, backward, params: dict, *args) -> tuple[float, dict]:
        """A model's loss and the gradient of every parameter.

        ``forward(params, *args) -> (loss, cache)`` is the model's forward pass written against
        this backend (0-d loss array); ``backward(params, cache) -> grads`` is its hand-written
        backward. This reference implementation calls both; an autograd backend may instead
        differentiate ``forward`` and never call ``backward``.
        """
        loss, cache = forward(params, *args)
        return float(loss), backward(params, cache)

    def flatten_params(self, layer: Recurrent, params: dict, *, requires_grad: bool = True) -> dict:
        """``params`` as this backend's arrays, laid out as its kernels want them.

        The reference keeps them as they are; a GPU backend may place a stack's weights in one
        buffer (cuDNN) so that no call copies them. Models hold their recurrent parameters so.
        """
        return self._check_params(layer, params)

    # --- optional capabilities ------------------------------------------------------------------
    @property
    def data_parallel(self) -> DataParallel | None:
        """Data-parallel training across processes (:class:`seqkit.distributed.DataParallel`),
        or None when this backend has none (the reference)."""
        return None

    def _recurrent_forward(self, layer, params, x, state0, lengths, masks=None):
        return bptt.recurrent_forward(self.ops, layer, params, x, state0, lengths, masks)

    def _recurrent_backward(self, layer, cache, d_out, d_final):
        return bptt.recurrent_backward(self.ops, cache, d_out, d_final)

    def _cache_shape(self, cache) -> tuple[int, int]:
        if not isinstance(cache, bptt.RecurrentCache):
            raise TypeError("cache must be the third value returned by recurrent_forward")
        x = cache.dirs[0][0].x
        return x.shape[0], x.shape[1]

    # --- validation, shared by every backend -----------------------------------------------------
    def _check_params(self, layer: Recurrent, params: dict) -> dict:
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict of arrays (got {type(params).__name__})")
        shapes = layer.param_shapes()
        missing = [name for name in shapes if name not in params]
        if missing:
            raise ShapeError(f"params is missing {', '.join(map(repr, missing))} for {layer!r}")
        extra = [name for name in params if name not in shapes]
        if extra:
            raise ShapeError(
                f"params has unexpected {', '.join(map(repr, extra))}; "
                f"expected: {', '.join(shapes)}"
            )
        out = {}
        for name, shape in shapes.items():
            value = self.asarray(params[name])
            if tuple(value.shape) != shape:
                raise ShapeError(
                    f"params[{name!r}] must have shape {shape} (got {tuple(value.shape)})"
                )
            out[name] = value
        return out

    def _check_x(self, layer: Recurrent, x: Any) -> Array | OneHotIds:
        if isinstance(x, OneHotIds):  # one-hot rows as their ids, of V = I
            if x.ids.ndim != 2 or x.num_classes != layer.input_size or x.ids.shape[1] == 0:
                raise ShapeError(
                    f"x must stand for (T, B, I) one-hot rows with I={layer.input_size} and "
                    f"B > 0 (got OneHotIds of shape {x.shape})"
                )
            return x
        x = self.asarray(x)
        if x.ndim != 3:
            raise ShapeError(f"x must be a (T, B, I) array (got shape {tuple(x.shape)})")
        if x.shape[2] != layer.input_size:
            raise ShapeError(
                f"x must have input size I={layer.input_size} in its last axis "
                f"(got shape {tuple(x.shape)})"
            )
        if x.shape[1] == 0:
            raise ShapeError(
                f"x must hold at least one sequence, B > 0 (got shape {tuple(x.shape)})"
            )
        return x

    def _check_state(self, layer: Recurrent, state: Any, batch: int, argname: str) -> tuple:
        names, LD = layer.state_names, layer.num_layers * layer.num_directions
        # (L*D, B, H) per part; h is (L*D, B, P) under a projection
        expected = {name: (LD, batch, n) for name, n in zip(names, layer.state_sizes)}
        letters = {name: "P" if layer.proj_size and i == 0 else "H" for i, name in enumerate(names)}
        if state is None:
            return tuple(self.ops.zeros(expected[name]) for name in names)
        if len(names) == 1:
            if isinstance(state, tuple | list):
                raise ShapeError(
                    f"{argname} for cell {layer.cell.name!r} must be one array h (L*D, B, H), "
                    f"not a {type(state).__name__}"
                )
            parts = (state,)
        else:
            if not isinstance(state, tuple | list) or len(state) != len(names):
                form = "(" + ", ".join(names) + ")"
                raise ShapeError(
                    f"{argname} for cell {layer.cell.name!r} must be a tuple {form} of "
                    f"(L*D, B, H) arrays (got {type(state).__name__})"
                )
            parts = tuple(state)
        out = []
        for name, part in zip(names, parts):
            part = self.asarray(part)
            if tuple(part.shape) != expected[name]:
                raise ShapeError(
                    f"{argname} {name} must have shape (L*D, B, {letters[name]}) = "
                    f"{expected[name]} (got {tuple(part.shape)})"
                )
            out.append(part)
        return tuple(out)


def _check_lengths(lengths: Any, steps: int, batch: int) -> np.ndarray | None:
    if lengths is None:
        return None
    if hasattr(lengths, "detach"):  # a tensor from an autograd backend
        lengths = lengths.detach().cpu().numpy()
    arr = np.asarray(lengths)
    if arr.shape != (batch,) or not (
        arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and np.all(arr == np.round(arr)))
    ):
        raise ShapeError(
            f"lengths must be (B,) = ({batch},) integers (got shape {arr.shape}, dtype {arr.dtype})"
        )
    arr = arr.astype(np.int64)
    if batch and (arr.min() < 1 or arr.max() > steps):
        raise ShapeError(
            f"lengths must lie in 1..T = 1..{steps} (got min {arr.min()}, max {arr.max()})"
        )
    return arr


def _pack_state(layer: Recurrent, state: tuple) -> Any:
    return state[0] if len(state) == 1 else state


def get_backend(
    name: str | None = None, *, dtype: str | None = None, device: str | None = None
) -> Backend:
    """A backend instance; arguments left out come from :func:`seqkit.load_config`.

    Args:
        name: registered backend name (``seqkit.list_backends()``).
        dtype: ``"float32"`` or ``"float64"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    """
    from seqkit._plugins import lookup

    if name is not None:
        lookup("backend", name)  # unknown names list the choices before config is read
    config = load_config(backend=name, dtype=dtype, device=device)
    cls = lookup("backend", config.backend)
    return cls(dtype=config.dtype, device=config.device)
