"""A recurrent stack as one pure JAX function: ``jax.lax.scan`` over the cell's own ``step``.

The same recursion as :mod:`seqkit.bptt`, written as a function of immutable arrays so that JAX
can compile and differentiate it (we are at step t of one direction)::

    F1. xg = x @ W_ih^T + b_ih            all T steps in one product, before the scan
                                          (a gather for one-hot ids: ``ops.project``)
                                          (+ b_hh for a cell with ``sums_projections``)
    F2. hg<t> = h<t-1> @ W_hh^T + b_hh    inside the scan (b_hh joined F1 for such a cell)
    F2r. with recurrent dropout the product reads h<t-1> * m (m (B, H), one mask per sequence)
    F3. s<t> = cell.step(xg<t>, hg<t>, s<t-1>)
    F3p. with a projection (``proj_size`` P): h<t> = h~<t> @ W_hr^T, h~<t> (B, H) the cell's h
    F3z. with zoneout, each part: s<t> = z<t> * s<t-1> + (1 - z<t>) * s<t> (z 0/1, or p in eval)
    F4. padded rows keep s<t-1>: s<t> = where(t < length, s<t>, s<t-1>); out<t> = h<t> or 0

The masks of F2r and F3z are those of :class:`seqkit.dropout.LoopMasks`, passed in as two
tuples indexed by layer and direction (``hidden``, ``zoneout``); they are constants of the vjp.

The reverse direction of a bidirectional layer runs F1-F4 on each sequence's valid prefix read
back to front (:func:`seqkit.bptt.reverse_index`, gathered here with ``take_time``).

:func:`forward` returns the stack's outputs together with its ``jax.vjp`` function, which is a
pytree (``jax.tree_util.Partial``) holding the residuals, so it passes out of ``jax.jit``;
:func:`backward` applies it. Both are compiled once per shape class: the layer, the ops (dtype
and device), whether lengths are given, and the shapes of the arrays.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from seqkit.ops import OneHotIds
from seqkit.recurrent import Recurrent

# one-hot ids cross jax.jit as their arrays; the ops and V are static
jax.tree_util.register_pytree_node(
    OneHotIds,
    lambda x: ((x.ids, x.scale), (x.ops, x.num_classes)),
    lambda aux, children: OneHotIds(aux[0], children[0], aux[1], children[1]),
)

__all__ = ["backward", "forward", "stack"]


def stack(
    ops, layer: Recurrent, params: dict, x, state0: tuple, lengths, reverse, hidden=None, zone=None
):
    """``(out, final)`` of the stack, a pure traceable function.

    Args:
        ops: the backend's :class:`~seqkit_jax.JaxOps`.
        params: every parameter by full name.
        x: (T, B, I), or :class:`~seqkit.ops.OneHotIds` of I (not differentiated).
        state0: tuple of (L*D, B, H), one per ``layer.state_names``.
        lengths: None, or (B,) integers in 1..T.
        reverse: (T, B) :func:`seqkit.bptt.reverse_index` when ``lengths`` is given, else None.
        hidden, zone: None, or ``LoopMasks.hidden`` and ``LoopMasks.zoneout`` (one entry per
            layer and direction; zoneout's (T, B, F) masks indexed by processing step).

    Returns:
        out (T, B, D*H), zero past each length; final, a tuple of (L*D, B, H).
    """
    T = x.shape[0]
    L, D = layer.num_layers, layer.num_directions
    mask = None if lengths is None else ops.mask(lengths, T)  # (T, B, 1)
    if mask is not None:
        # padding never reaches a cell, whatever values it holds
        x = x * mask if isinstance(x, OneHotIds) else ops.where(mask, x, 0.0)
    finals: list[list] = [[] for _ in layer.state_names]
    layer_in = x
    for lyr in range(L):
        outs = []
        for d in range(D):
            k = lyr * D + d
            p = layer.direction_params(params, lyr, d)
            x_d = layer_in if d == 0 else _reversed(ops, layer_in, reverse)
            h_mask = None if hidden is None else hidden[k]
            z = None if zone is None else zone[k]
            o, sT = _direction(
                ops, layer.cell, p, x_d, tuple(s[k] for s in state0), mask, h_mask, z
            )
            outs.append(o if d == 0 else _reversed(ops, o, reverse))
            for part, s in zip(finals, sT, strict=True):
                part.append(s)
        out = outs[0] if D == 1 else jnp.concatenate(outs, axis=-1)  # (T, B, D*H)
        if mask is not None:
            out = ops.where(mask, out, 0.0)
        layer_in = out
    return layer_in, tuple(jnp.stack(part) for part in finals)


def _reversed(ops, a, reverse):
    """``a`` (T, B, F) with each valid prefix reversed (all of it when ``reverse`` is None)."""
    if reverse is None:
        return a[::-1]
    return a.take_time(reverse) if isinstance(a, OneHotIds) else ops.take_time(a, reverse)


def _direction(ops, cell, p: dict, x, state: tuple, mask, hidden=None, zone=None):
    """One direction of one layer: out (T, B, H) in processing order, final state tuple."""
    # zoneout's per-step masks are scanned over; evaluation's float p is a constant
    steps = None if zone is None or jnp.ndim(zone[0]) == 0 else tuple(zone)
    summed = cell.sums_projections
    # F1. the input projection of every step at once
    xg = ops.project(x, p["weight_ih"]) + (
        (p["bias_ih"] + p["bias_hh"]) if summed else p["bias_ih"]
    )  # (T, B, G*H)
    w_hh_t, b_hh = p["weight_hh"].T, p["bias_hh"]
    w_hr = p.get("weight_hr")  # (P, H) under a projection, else None

    def step(s, inputs):
        xg_t, m_t, z_t = inputs  # (B, G*H), (B, 1) or None, per part (B, F) or None
        hg = ops.matmul(s[0] if hidden is None else s[0] * hidden, w_hh_t)  # F2 (F2r)
        if not summed:
            hg = hg + b_hh
        new, _ = cell.step(ops, xg_t, hg, s, p)  # F3; the cell's cache is not needed here
        if w_hr is not None:  # F3p
            new = (ops.matmul(new[0], w_hr.T), *new[1:])
        if zone is not None:  # F3z
            z_t = zone if z_t is None else z_t
            new = tuple(z * old + (1.0 - z) * n for z, n, old in zip(z_t, new, s, strict=True))
        if m_t is not None:  # F4
            new = tuple(ops.where(m_t, n, old) for n, old in zip(new, s, strict=True))
        return new, new[0]

    final, out = lax.scan(step, state, (xg, mask, steps))
    return out, final


@functools.partial(jax.jit, static_argnums=(0, 1))
def forward(ops, layer: Recurrent, params: dict, x, state0: tuple, lengths, reverse, hidden, zone):
    """``(out, final, vjp)``: :func:`stack`'s results and its ``jax.vjp`` function.

    ``vjp((d_out, d_final)) -> (d_params, d_x, d_state0)`` (without d_x for one-hot ids); lengths,
    the reverse index and the masks (``hidden``, ``zone``: None or :func:`stack`'s) are not
    differentiated.
    """

    def run(params, x, state0):
        return stack(ops, layer, params, x, state0, lengths, reverse, hidden, zone)

    if isinstance(x, OneHotIds):  # ids are not differentiated
        (out, final), vjp = jax.vjp(lambda p, s: run(p, x, s), params, state0)
    else:
        (out, final), vjp = jax.vjp(run, params, x, state0)
    return out, final, vjp


@jax.jit
def backward(vjp, d_out, d_final: tuple):
    """``(d_params, d_x, d_state0)`` from the function :func:`forward` returned (d_x None for
    one-hot ids)."""
    grads = vjp((d_out, d_final))
    return grads if len(grads) == 3 else (grads[0], None, grads[1])
