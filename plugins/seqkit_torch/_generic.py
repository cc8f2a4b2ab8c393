"""The generic path: any cell, through its backend-neutral ``step`` and hand-written backward.

One :class:`torch.autograd.Function` wraps the whole stack: its forward runs
:func:`seqkit.bptt.recurrent_forward` on :class:`~seqkit_torch.ops.TorchOps` (no autograd graph,
in-place activations), its backward runs :func:`seqkit.bptt.recurrent_backward`. Autograd then
sees one node per layer stack instead of dozens per step, which is what makes the path fast, and
the result still composes with the rest of a model's graph.

The compiled path is this path with another loop over time: the driver's ``loop`` is then the
cell's :class:`~seqkit_torch._scan.ScanLoop`, which runs every step in compiled code.

This is also the path of a layer whose masks act inside the time loop (``recurrent_dropout``,
``zoneout``: :class:`seqkit.dropout.LoopMasks`): the masks are constants of the function, applied
by the same loop as on NumPy, so the two agree to rounding error.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch
from torch.autograd.function import once_differentiable

from seqkit import bptt
from seqkit.recurrent import Recurrent

__all__ = ["generic_forward"]


class _RecurrentFunction(torch.autograd.Function):
    """``(x, *state0, *params) -> (out, *final)`` with the cells' hand-written gradients."""

    @staticmethod
    def forward(ctx, ops, layer, names, lengths, masks, loop, n_state, x, *tensors):
        state0, values = tensors[:n_state], tensors[n_state:]
        params = dict(zip(names, values, strict=True))
        out, final, cache = bptt.recurrent_forward(
            ops, layer, params, x, tuple(state0), lengths, masks, loop
        )
        ctx.ops, ctx.cache, ctx.n_state, ctx.names = ops, _without(cache, out), n_state, names
        return (out, *final)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, *d_final):
        grads = bptt.recurrent_backward(ctx.ops, ctx.cache, d_out.contiguous(), tuple(d_final))
        layer = ctx.cache.layer
        d_state = [grads[f"{name}0"] for name in layer.state_names]
        return (
            *(None,) * 7,  # ops, layer, names, lengths, masks, loop, n_state
            grads["x"],
            *d_state,
            *(grads[n] for n in ctx.names),
        )


def _without(cache: bptt.RecurrentCache, out) -> bptt.RecurrentCache:
    """``cache`` with ``out`` in it (one direction's h<t>, the stack's output when nothing is
    padded) replaced by an alias that autograd does not track.

    ctx keeps the cache, and the tensor that the function returns gets ctx's node as its
    ``grad_fn``: the tensor itself in the cache would make a reference cycle (node -> ctx ->
    cache -> out -> node), which only Python's cycle collector frees. Every call's caches then
    lived until a collection, tens of MB each (a loop of calls at bench_torch --small swung
    between 540 and 750 MB resident; 318 MB flat without the cycle).
    """
    for directions in cache.dirs:
        for k, saved in enumerate(directions):
            if saved.out is out:
                directions[k] = attrs.evolve(saved, out=out.detach())
    return cache


def generic_forward(
    ops,
    layer: Recurrent,
    params: dict,
    x,
    state0: tuple,
    lengths: np.ndarray | None,
    masks=None,
    loop=None,
):
    """Run any cell's stack through its hand-written BPTT, differentiable by autograd.

    Arguments and returns as in :func:`seqkit_torch._fused.fused_forward`; ``masks``: None or
    the :class:`seqkit.dropout.LoopMasks` of the loop (tensors on the device, constants);
    ``loop``: the loop over time (None: Python's step loop; the compiled path's
    :class:`~seqkit_torch._scan.ScanLoop`).
    """
    names = tuple(layer.param_shapes())
    result = _RecurrentFunction.apply(
        ops,
        layer,
        names,
        lengths,
        masks,
        loop,
        len(state0),
        x,
        *state0,
        *(params[n] for n in names),
    )
    return result[0], tuple(result[1:])
