"""Gradient clipping, the seed's cure for exploding gradients, for any backend's arrays.

Both functions take a dict of gradients (NumPy arrays or tensors) and return a new dict; the
arrays given are not modified.
"""

from __future__ import annotations

import math

__all__ = ["clip_grad_value", "clip_grad_norm", "global_norm"]


def _check_threshold(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or not math.isfinite(value)
    ):
        raise ValueError(f"{name!r} must be a positive finite number (got {value!r})")
    return float(value)


def global_norm(grads: dict) -> float:
    """sqrt of the sum of squares of every entry of every gradient."""
    return math.sqrt(sum(float((g * g).sum()) for g in grads.values()))


def clip_grad_value(grads: dict, threshold: float) -> dict:
    """Clamp every entry to ``[-threshold, threshold]`` (the seed's rule)."""
    t = _check_threshold("threshold", threshold)
    return {name: g.clip(-t, t) for name, g in grads.items()}


def clip_grad_norm(grads: dict, max_norm: float) -> tuple[dict, float]:
    """Rescale all gradients together so their global norm is at most ``max_norm``.

    Returns:
        ``(clipped, norm)``: the new gradients (the same arrays when the norm is already within
        bounds) and the global norm before clipping. A non-finite norm (``inf``, ``nan``, the
        seed's exploding gradient) returns the gradients unchanged for the caller to act on.
    """
    m = _check_threshold("max_norm", max_norm)
    norm = global_norm(grads)
    if not math.isfinite(norm) or norm <= m:
        # within bounds, or non-finite: scaling inf or nan would only hide it from the caller
        return dict(grads), norm
    scale = m / norm
    return {name: g * scale for name, g in grads.items()}, norm
