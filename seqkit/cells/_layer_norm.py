"""Layer normalisation of a step's (B, F) rows (Ba, Kiros and Hinton 2016), forward and backward.

Notation (a (B, F), every row normalised over its F features; gain and shift (F,))::

    N1. mu = mean(a),  a_c = a - mu              per row
    N2. rstd = 1 / sqrt(mean(a_c^2) + eps)       per row
    N3. a_hat = a_c * rstd
    N4. y = a_hat * gain + shift

Backward, given d y::

    B4. d gain = sum_b d y * a_hat;  d shift = sum_b d y;  d a_hat = d y * gain
    B1-3. d a = rstd * (d a_hat - mean(d a_hat) - a_hat * mean(d a_hat * a_hat))
"""

from __future__ import annotations

import numpy as np

from seqkit.ops import Ops
from seqkit.shapes import Array

__all__ = [
    "layer_norm",
    "layer_norm_backward",
    "normalise",
    "normalise_backward",
    "positive_eps",
    "unit_gains",
]


def layer_norm(ops: Ops, a: Array, gain: Array, shift: Array, eps: float) -> tuple[Array, tuple]:
    """``(y, cache)``: y (B, F) the rows of ``a`` (B, F) normalised, scaled by ``gain`` (F,) and
    shifted by ``shift`` (F,); cache for :func:`layer_norm_backward`."""
    F = a.shape[1]
    a_c = ops.sub(a, ops.mul(ops.sum(a, axis=1, keepdims=True), 1.0 / F))  # N1
    var = ops.mul(ops.sum(a_c * a_c, axis=1, keepdims=True), 1.0 / F)
    rstd = 1.0 / ops.sqrt(ops.add(var, eps))  # N2
    a_hat = ops.mul(a_c, rstd, inplace=True)  # N3
    y = ops.add(a_hat * gain, shift, inplace=True)  # N4
    return y, (a_hat, rstd)


def layer_norm_backward(
    ops: Ops, d_y: Array, cache: tuple, gain: Array
) -> tuple[Array, Array, Array]:
    """Undo :func:`layer_norm`: ``(d_a, d_gain, d_shift)``, (B, F), (F,) and (F,)."""
    a_hat, rstd = cache
    F = d_y.shape[1]
    d_gain = ops.sum_leading(d_y * a_hat)  # B4
    d_shift = ops.sum_leading(d_y)
    d_hat = d_y * gain
    mean_d = ops.mul(ops.sum(d_hat, axis=1, keepdims=True), 1.0 / F)  # B1-3
    mean_dh = ops.mul(ops.sum(d_hat * a_hat, axis=1, keepdims=True), 1.0 / F)
    d_a = ops.mul(ops.sub(ops.sub(d_hat, mean_d, inplace=True), a_hat * mean_dh), rstd)
    return d_a, d_gain, d_shift


def normalise(ops: Ops, a: Array, params: dict, prefix: str, eps: float) -> tuple[Array, tuple]:
    """:func:`layer_norm` with the gain ``params[prefix + "_weight"]`` and the shift
    ``params[prefix + "_bias"]``."""
    return layer_norm(ops, a, params[prefix + "_weight"], params[prefix + "_bias"], eps)


def normalise_backward(
    ops: Ops, d_y: Array, cache: tuple, params: dict, grads: dict, prefix: str
) -> Array:
    """Undo :func:`normalise`: d a (B, F), the gain's and shift's gradients added to ``grads``."""
    d_a, d_gain, d_shift = layer_norm_backward(ops, d_y, cache, params[prefix + "_weight"])
    for name, value in ((prefix + "_weight", d_gain), (prefix + "_bias", d_shift)):
        grads[name] = ops.add(grads[name], value, inplace=True)
    return d_a


def unit_gains(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Gains (names ending in ``_weight``) at 1 and shifts (``_bias``) at 0, float64."""
    return {
        name: np.ones(shape) if name.endswith("_weight") else np.zeros(shape)
        for name, shape in shapes.items()
    }


def positive_eps(instance, attribute, value) -> None:
    """An attrs validator: ``eps`` is a positive number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name!r} must be a positive number (got {value!r})")
