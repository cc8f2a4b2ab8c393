"""The loop over time: a recurrent stack's forward pass and backpropagation through time.

Written once against :class:`seqkit.ops.Ops`, so every backend without autograd (the NumPy
reference) and every autograd backend that wants the cells' hand-written gradients run the same
code. The cell computes one step (:class:`seqkit.Cell`); this module owns everything around it.

Notation (shape letters in :mod:`seqkit.shapes`; we are at step t of one direction)::

    F1. xg = x @ W_ih^T + b_ih            all T steps in one matrix product, before the loop
                                          (a gather of W_ih's columns for one-hot ids)
    F2. hg<t> = h<t-1> @ W_hh^T + b_hh    one matrix product per step; b_hh joins b_ih in F1
                                          for a cell with ``sums_projections`` (uses xg + hg only)
    F2r. with recurrent dropout the product reads h<t-1> * m (m (B, H), one mask per sequence)
    F3. s<t> = cell.step(xg<t>, hg<t>, s<t-1>)
    F3p. with a projection (``proj_size`` P): h<t> = h~<t> @ W_hr^T, h~<t> (B, H) the cell's h
    F3z. with zoneout, each part: s<t> = z<t> * s<t-1> + (1 - z<t>) * s<t> (z 0/1, or p in eval)
    F4. padded rows keep s<t-1>: s<t> = where(t < length, s<t>, s<t-1>); out<t> = h<t> or 0

Backward, from t = T-1 down to 0, given d out<t> and d s<T-1> (the final state's gradient)::

    B4. rows past their length pass d s<t> straight to d s<t-1> and take nothing from d out<t>
    B3z. with zoneout: d s<t-1> += z<t> * d s<t>, and the cell's new state gets (1 - z<t>) * d s<t>
    B3p. with a projection: d W_hr = sum_t d h<t>^T h~<t>;  d h~<t> = d h<t> @ W_hr
    B3. d xg<t>, d hg<t>, d s<t-1> = cell.step_backward(d s<t>)
    B2. d h<t-1> += d hg<t> @ W_hh;  d W_hh = sum_t d hg<t>^T h<t-1>
    B2r. with recurrent dropout: d h<t-1> += (d hg<t> @ W_hh) * m;  d W_hh reads h<t-1> * m
    B1. d x = d xg @ W_ih,  d W_ih = d xg^T x,  d b_ih = sum d xg
        (for one-hot ids: no d x, and d W_ih a scatter-add of d xg's rows into the ids' columns)

The sums over t in B1 and B2 are not taken step by step: every ``_CHUNK_ROWS`` rows of steps x
batch become one product each (:class:`WeightGradients`), so the weight gradients cost a few big
products whatever T is, and only one chunk of step gradients is alive at a time (a loop that
hands over every step at once, as the torch backend's compiled one does, makes one chunk).

Every per-step array is feature-major (:func:`_feature_major`): a ``(B, G*H)`` step is stored as
``G*H`` runs of ``B`` numbers, so each gate block is contiguous and the per-step products read and
write column-major operands, which BLAS runs faster at the small B of a recurrent step.

Under a projection h<t> and h<t-1> have P features (the output, ``hg``'s input, the first state
part) and ``c`` and the cell's own h~ have H; without one F3p and B3p cost nothing.

Layer 0 may read :class:`~seqkit.ops.OneHotIds` (what :class:`seqkit.OneHot` gives) instead of
a (T, B, V) array: F1 and B1 go through :meth:`Ops.project <seqkit.ops.Ops.project>` and
:meth:`Ops.project_grad <seqkit.ops.Ops.project_grad>`, which gather and scatter-add for ids and
multiply otherwise, so the one-hot matrix is never built; its gradient ``"x"`` is None.

The loop over time of one direction (F2-F4 forward, B4-B2 backward) is an object with this
module's :func:`direction_forward` and :func:`direction_backward` signatures, passed as
``loop``; the default, :data:`STEP_LOOP`, is those two functions: Python runs one step after
another. A backend may pass its own, which runs the same steps some other way (the torch
backend's compiled path runs them as two compiled scans, ``seqkit_torch._scan``); F1 and B1,
the layers, the directions and the masks stay here.

A bidirectional layer's reverse direction runs the same recursion on each sequence's valid prefix
read back to front (``ops.take_time`` with :func:`reverse_index`), so one loop serves both.

The masks of F2r and F3z come in a :class:`seqkit.dropout.LoopMasks`, one entry per layer and
direction; a direction's zoneout masks are indexed by its processing step. Without masks (the
default) F2r and F3z cost nothing.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from seqkit.ops import OneHotIds, Ops
from seqkit.recurrent import Recurrent
from seqkit.shapes import Array

__all__ = [
    "STEP_LOOP",
    "Direction",
    "RecurrentCache",
    "WeightGradients",
    "direction_backward",
    "direction_forward",
    "input_projection",
    "recurrent_backward",
    "recurrent_forward",
    "reverse_index",
]


def reverse_index(steps: int, lengths: np.ndarray | None, batch: int) -> np.ndarray:
    """``(T, B)`` time index that reverses each valid prefix and leaves padding in place.

    ``index[t, b] = lengths[b] - 1 - t`` for ``t < lengths[b]``, else ``t``; it is its own inverse.
    """
    t = np.arange(steps)[:, None]
    if lengths is None:
        return np.broadcast_to(steps - 1 - t, (steps, batch)).copy()
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


@attrs.define
class Direction:
    """What one direction of one layer keeps for its backward pass."""

    x: Array  # (T, B, I_l), in processing order
    out: Array  # (T, B, H) (or P), h<t> in processing order, before padding was zeroed
    state0: tuple  # initial state, tuple of (B, H) (h (B, P) under a projection)
    steps: Any  # the cell caches: a list of one per step, or what the loop keeps instead
    full: Array | None = None  # (T, B, H) the cell's h~<t> before a projection, else None
    hidden: Array | None = None  # (B, H) recurrent-dropout mask of F2r, else None
    zone: tuple | None = None  # per state part (z, 1 - z) of F3z, else None


@attrs.define
class RecurrentCache:
    """Everything :func:`recurrent_backward` needs from :func:`recurrent_forward`."""

    layer: Recurrent
    params: dict
    lengths: np.ndarray | None
    mask: Array | None  # (T, B, 1) bool, or None when no step is padded
    partial: list[bool]  # partial[t]: some row is padded at step t
    reverse: np.ndarray  # (T, B) reverse_index, for bidirectional layers
    dirs: list[list[Direction]]  # [layer][direction]
    loop: Any = None  # the loop over time that ran (STEP_LOOP or a backend's)


def recurrent_forward(
    ops: Ops,
    layer: Recurrent,
    params: dict,
    x: Array,
    state0: tuple,
    lengths: np.ndarray | None,
    masks=None,
    loop=None,
) -> tuple[Array, tuple, RecurrentCache]:
    """Run the stack over ``x``; arguments are already validated and on the backend.

    Args:
        x: (T, B, I).
        state0: tuple of (L*D, B, H) arrays, one per ``layer.state_names`` (h (L*D, B, P)
            under a projection, see ``layer.state_sizes``).
        lengths: (B,) host integers in 1..T, or None for full length.
        masks: None, or the :class:`seqkit.dropout.LoopMasks` of F2r and F3z (checked).
        loop: the loop over time of each direction (see above); None for :data:`STEP_LOOP`.

    Returns:
        ``(out, final, cache)``: out (T, B, D*H) (D*P) with zeros past each length, final state
        as a tuple of (L*D, B, H) arrays (h (L*D, B, P)), and the cache for
        :func:`recurrent_backward`. The cache may share memory with ``out`` (one direction, no
        padding): leave ``out`` unmodified until the backward pass has run.
    """
    T, B, _ = x.shape
    L, D = layer.num_layers, layer.num_directions
    H = layer.state_sizes[0]  # features of h: the hidden size, or P under a projection
    shortest = int(lengths.min()) if lengths is not None and T > 0 else T
    mask = ops.mask(lengths, T) if lengths is not None and shortest < T else None
    partial = [t >= shortest for t in range(T)]  # some row is padded at step t
    reverse = reverse_index(T, lengths, B)  # (T, B) ints; used by a second direction only
    if mask is not None:
        # padding never reaches a cell, whatever values it holds
        x = x * mask if isinstance(x, OneHotIds) else ops.where(mask, x, 0.0)
    final = tuple(ops.empty((L * D, B, n)) for n in layer.state_sizes)
    loop = STEP_LOOP if loop is None else loop
    cache = RecurrentCache(layer, params, lengths, mask, partial, reverse, [], loop)
    layer_in = x
    for lyr in range(L):
        out: Array = ops.empty((T, B, D * H)) if D == 2 else None
        cache.dirs.append([])
        for d in range(D):
            k = lyr * D + d
            p = layer.direction_params(params, lyr, d)
            x_d = layer_in if d == 0 else _take_time(ops, layer_in, reverse)
            s0 = tuple(s[k] for s in state0)
            hidden, zone = (None, None) if masks is None else (masks.hidden[k], masks.zoneout[k])
            o, sT, direction = loop.forward(
                ops, layer.cell, p, x_d, s0, mask, partial, hidden, zone
            )
            if D == 1:
                out = o  # one direction: its h<t> are the layer's output, no copy
            else:
                out[:, :, d * H : (d + 1) * H] = o if d == 0 else ops.take_time(o, reverse)
            for part, s in zip(final, sT):
                part[k] = s
            cache.dirs[lyr].append(direction)
        if mask is not None:
            out = ops.where(mask, out, 0.0)
        layer_in = out
    return layer_in, final, cache


def _take_time(ops: Ops, x: Array | OneHotIds, index: np.ndarray) -> Array | OneHotIds:
    return x.take_time(index) if isinstance(x, OneHotIds) else ops.take_time(x, index)


def _feature_major(ops: Ops, rows: int, features: int) -> Array:
    """An uninitialised ``(rows, features)`` array stored feature by feature (column-major).

    Every per-step array of the loop is laid out like this: each gate block of a ``(B, G*H)``
    step is then one contiguous run of memory, and the two per-step products read and write
    column-major operands, which BLAS runs about 30% faster than row-major ones at the small
    batch sizes of a recurrent step. Elementwise results inherit the layout of their operands.
    """
    return ops.empty((features, rows)).T


def input_projection(ops: Ops, cell, p: dict, x: Array, *, feature_major: bool = True) -> Array:
    """F1: ``xg = x @ W_ih^T + b_ih`` for every step at once, (T, B, G*H).

    Each step's (B, G*H) block is feature-major unless ``feature_major`` is False (then
    row-major). A cell that only adds xg and hg (``sums_projections``) takes bias_hh here too,
    once, instead of once per step in F2.
    """
    T, B = x.shape[:2]
    GH = p["weight_ih"].shape[0]
    if feature_major:
        xg = ops.project(x, p["weight_ih"], out=ops.empty((T, GH, B)).swapaxes(1, 2))
    else:
        xg = ops.project(x, p["weight_ih"])  # a new array: no copy into one made beforehand
    xg += (p["bias_ih"] + p["bias_hh"]) if cell.sums_projections else p["bias_ih"]
    return xg


def direction_forward(
    ops: Ops, cell, p: dict, x: Array, state: tuple, mask, partial, hidden=None, zone=None
):
    """F1-F4 for one direction of one layer, a step at a time.

    Returns ``(out, final, saved)``: out (T, B, P) in processing order, the final state tuple,
    and the :class:`Direction` that :func:`direction_backward` reads.
    """
    T, B = x.shape[:2]
    GH = p["weight_ih"].shape[0]
    H = GH // cell.num_gates
    w_hr = p.get(_PROJECTION)  # (P, H), or None without a projection
    P = H if w_hr is None else w_hr.shape[0]
    summed = cell.sums_projections
    xg = input_projection(ops, cell, p, x)  # F1
    w_hh_t, b_hh = p["weight_hh"].T, p["bias_hh"]
    out = ops.empty((T, B, P))
    full = None if w_hr is None else ops.empty((T, B, H))
    steps = []
    state0 = state
    state = tuple(_copy_into(_feature_major(ops, B, s.shape[1]), s) for s in state)
    hg = _feature_major(ops, B, GH)  # one buffer for every step: cells copy what they keep of hg
    if zone is not None:
        zone = tuple((z, 1.0 - z) for z in zone)  # F3z's weights of s<t-1> and of the new s<t>
    for t in range(T):
        # F2. recurrent projection (F2r: of the masked h<t-1>)
        ops.matmul(state[0] if hidden is None else state[0] * hidden, w_hh_t, out=hg)
        if not summed:
            hg += b_hh
        # F3. one cell step
        new, step_cache = cell.step(ops, xg[t], hg, state, p)
        if w_hr is not None:
            # F3p. project the cell's h~<t> (B, H) to h<t> (B, P)
            full[t] = new[0]
            new = (ops.matmul(new[0], w_hr.T, out=_feature_major(ops, B, P)), *new[1:])
        if zone is not None:
            # F3z. zoneout: each unit keeps s<t-1> with weight z (0/1 in training, p in eval)
            new = tuple(_at(z, t) * s + _at(f, t) * n for (z, f), n, s in zip(zone, new, state))
        # F4. rows past their length keep their state
        if partial[t]:
            new = tuple(ops.where(mask[t], n, s) for n, s in zip(new, state))
        out[t] = new[0]
        steps.append(step_cache)
        state = new
    return out, state, Direction(x, out, state0, steps, full, hidden, zone)


def _at(z, t: int):
    """Step t of a zoneout weight: a (T, B, F) array's row, or the float of evaluation."""
    return z if isinstance(z, float) else z[t]


def _copy_into(dest: Array, src: Array) -> Array:
    dest[...] = src
    return dest


def recurrent_backward(
    ops: Ops, cache: RecurrentCache, d_out: Array, d_final: tuple | None
) -> dict:
    """Backpropagation through time for the stack that produced ``cache``.

    Args:
        d_out: (T, B, D*H) (D*P) gradient of the loss with respect to the output.
        d_final: tuple of (L*D, B, H) gradients of the final state (h's (L*D, B, P)), or None
            for zeros.

    Returns:
        ``{"x": (T, B, I), "h0": (L*D, B, H), ["c0": ...], <every parameter name>: ...}``.
    """
    layer = cache.layer
    L, D = layer.num_layers, layer.num_directions
    H = layer.state_sizes[0]  # features of h: the hidden size, or P under a projection
    T, B = d_out.shape[:2]
    mask, reverse = cache.mask, cache.reverse
    grads: dict = {}
    d_state0 = tuple(ops.empty((L * D, B, n)) for n in layer.state_sizes)
    d_layer_out = d_out
    for lyr in reversed(range(L)):
        if mask is not None:
            d_layer_out = ops.where(mask, d_layer_out, 0.0)  # padded outputs are constants
        d_in = None
        for d in range(D):
            k = lyr * D + d
            p = layer.direction_params(cache.params, lyr, d)
            d_o = d_layer_out[:, :, d * H : (d + 1) * H]
            if d == 1:
                d_o = ops.take_time(d_o, reverse)
            if d_final is None:
                d_sT = tuple(0.0 for _ in layer.state_names)
            else:
                d_sT = tuple(part[k] for part in d_final)
            d_x, d_s0, g = cache.loop.backward(
                ops, layer.cell, p, cache.dirs[lyr][d], d_o, d_sT, mask, cache.partial
            )
            if d == 1 and d_x is not None:
                d_x = ops.take_time(d_x, reverse)
            if d_in is None:
                d_in = d_x
            elif d_x is not None:
                d_in += d_x
            for part, s in zip(d_state0, d_s0):
                part[k] = s
            suffix = layer.suffix(lyr, d)
            grads.update({short + suffix: value for short, value in g.items()})
        d_layer_out = d_in
    if mask is not None and d_layer_out is not None:
        d_layer_out = ops.where(mask, d_layer_out, 0.0)
    ordered = {"x": d_layer_out}
    ordered.update({f"{name}0": part for name, part in zip(layer.state_names, d_state0)})
    ordered.update({name: grads[name] for name in layer.param_shapes()})
    return ordered


def direction_backward(ops: Ops, cell, p: dict, saved: Direction, d_out, d_state, mask, partial):
    """B4-B1 for one direction of one layer, a step at a time, from T-1 down to 0.

    Returns ``(d_x, d_state0, grads)``: d_x (T, B, I_l) or None for one-hot ids, the initial
    state's gradient tuple, and this direction's parameter gradients by short name.
    """
    x, out, steps = saved.x, saved.out, saved.steps
    T, B = x.shape[:2]
    GH, P = p["weight_hh"].shape  # P: features of h, the hidden size H without a projection
    H = GH // cell.num_gates
    w_hr = p.get(_PROJECTION)
    # B2's product runs fastest with W_hh column-major too (one copy per call)
    w_hh = _copy_into(_feature_major(ops, GH, P), p["weight_hh"])
    grads = {
        name: ops.zeros(tuple(p[name].shape))
        for name in p
        if name not in _MATRICES and name != _PROJECTION
    }
    hidden, zone = saved.hidden, saved.zone
    weights = WeightGradients(ops, p, x, out, saved.state0[0], cell.sums_projections, hidden)
    d_proj = None if w_hr is None else ops.empty((T, B, P))  # d h<t> of every step, for B3p
    # the loop's own arrays, feature-major: it adds into d_state[0] in place
    sizes = (P,) + (H,) * (len(d_state) - 1)
    d_state = tuple(_copy_into(_feature_major(ops, B, n), d) for n, d in zip(sizes, d_state))
    for t in reversed(range(T)):
        d_h = d_state[0]
        d_h += d_out[t]
        d_new = d_state
        if partial[t]:
            # B4. padded rows: the cell sees no gradient, the state's passes through
            d_new = tuple(ops.where(mask[t], dn, 0.0) for dn in d_new)
        d_kept = None
        if zone is not None:
            # B3z. zoneout: the kept share goes to s<t-1>, the rest to the cell's new state
            d_kept = tuple(_at(z, t) * dn for (z, _), dn in zip(zone, d_new))
            d_new = tuple(_at(f, t) * dn for (_, f), dn in zip(zone, d_new))
        if w_hr is not None:
            # B3p. through the projection: d h~<t> = d h<t> @ W_hr (d W_hr after the loop)
            d_proj[t] = d_new[0]
            d_new = (ops.matmul(d_new[0], w_hr, out=_feature_major(ops, B, H)), *d_new[1:])
        # B3. one cell step backward
        d_xg, d_hg, d_prev = cell.step_backward(ops, d_new, steps[t], p, grads)
        # B2. through h<t-1> @ W_hh^T
        d_h_prev = ops.matmul(d_hg, w_hh, out=_feature_major(ops, B, P))
        if hidden is not None:
            d_h_prev = d_h_prev * hidden  # B2r. the product read h<t-1> * m
        if d_prev[0] is not None:
            d_h_prev += d_prev[0]
        d_prev = (d_h_prev, *(dp if dp is not None else ops.zeros((H, B)).T for dp in d_prev[1:]))
        if d_kept is not None:
            d_prev = tuple(dp + dk for dp, dk in zip(d_prev, d_kept))  # B3z
        if partial[t]:
            d_prev = tuple(ops.where(mask[t], dp, ds) for dp, ds in zip(d_prev, d_state))
        weights.add_step(t, d_xg, d_hg)
        d_state = d_prev
    grads.update(weights.result())
    if w_hr is not None:
        # B3p. d W_hr = sum_t d h<t>^T h~<t>, one product over every step
        rows = T * B
        grads[_PROJECTION] = ops.matmul(d_proj.reshape(rows, P).T, saved.full.reshape(rows, H))
    return weights.d_x, d_state, grads  # d_x None for one-hot ids


class WeightGradients:
    """B1 and the weight half of B2, as products over many steps, a chunk of steps at a time.

    The backward loop hands over each step's ``d xg`` and ``d hg``; they are gathered, feature-
    major, into a chunk of about ``_CHUNK_ROWS`` rows (steps x batch), and each full chunk
    becomes a few big products while its values are still in cache::

        d x[chunk] = d xg[chunk] @ W_ih           d W_ih += d xg[chunk]^T x[chunk]
        (no d x for one-hot ids, and ``project_grad`` scatter-adds d W_ih)
        d W_hh += d hg[chunk]^T h[chunk - 1]      d b_ih += sum d xg[chunk];  d b_hh += sum d hg

    For a cell with ``sums_projections`` d hg is d xg, and only d xg is kept. Only one chunk of
    step gradients is alive at a time, whatever T is. Under recurrent dropout (F2r) the product
    read ``h * hidden``, and so does d W_hh. The weight gradients' left operand is ``d xg^T``: a
    feature-major chunk makes it row-major, which the torch backend's oneDNN products need (MKL
    and NumPy's BLAS take either layout).
    """

    def __init__(
        self, ops: Ops, p: dict, x: Array, out: Array, h0: Array, shared: bool, hidden=None
    ):
        T, B = x.shape[:2]
        self.ops, self.p, self.x, self.out, self.h0, self.B = ops, p, x, out, h0, B
        self.shared, self.hidden = shared, hidden
        self.steps = max(1, min(T, _CHUNK_ROWS // max(B, 1)))  # steps per chunk
        self.d_x = None if isinstance(x, OneHotIds) else ops.empty(tuple(x.shape))
        self.grads: dict = {}
        self.start = self.end = T  # the chunk being filled covers steps [start, end)
        self.d_xg = self.d_hg = None
        # the weight gradients' operands: the same values, feature-major when a caller has them so
        self.w_xg = self.w_hg = None
        self.every_step = False  # whether one chunk holds every step (add_steps)
        self.last_first = False  # whether d_xg holds the steps from T-1 down (add_steps)

    def add_step(self, t: int, d_xg: Array, d_hg: Array) -> None:
        """Take step t's gradients; steps arrive from T-1 down to 0."""
        B = self.B
        if self.d_xg is None:
            self.start = max(0, self.end - self.steps)
            rows, GH = (self.end - self.start) * B, d_xg.shape[1]
            self.d_xg = _feature_major(self.ops, rows, GH)
            self.d_hg = self.d_xg if self.shared else _feature_major(self.ops, rows, GH)
        row = (t - self.start) * B
        self.d_xg[row : row + B] = d_xg
        if not self.shared:
            self.d_hg[row : row + B] = d_hg
        if t == self.start:
            self.w_xg, self.w_hg = self.d_xg, self.d_hg  # feature-major already
            self._flush()

    def add_steps(
        self, d_xg: Array, d_hg: Array | None, d_xg_t=None, d_hg_t=None, *, last_first=False
    ) -> None:
        """Take every step's gradients at once, as one chunk: ``d_xg`` (T, B, G*H) for d x,
        ``d_hg`` likewise (ignored for a cell with ``sums_projections``) and, where a caller has
        them, the same values feature-major, ``d_xg_t`` and ``d_hg_t`` (G*H, T, B), for the
        weight gradients (then ``d_hg`` may be None). Views, no copies.

        ``last_first``: ``d_xg`` holds the steps from T-1 down to 0, as a backward loop makes
        them (the feature-major arrays are in time order). d x is then reversed after its
        product, and one-hot ids are read in that order; a caller saves a copy of ``d_xg``.
        """
        T, B = self.x.shape[:2]
        self.start, self.end, rows = 0, T, T * B
        self.every_step = True
        self.last_first = last_first
        self.d_xg = d_xg.reshape(rows, -1)
        self.w_xg = self.d_xg if d_xg_t is None else d_xg_t.reshape(-1, rows).T
        if self.shared:
            self.d_hg, self.w_hg = self.d_xg, self.w_xg
        else:
            self.d_hg = None if d_hg is None else d_hg.reshape(rows, -1)
            self.w_hg = self.d_hg if d_hg_t is None else d_hg_t.reshape(-1, rows).T
        self._flush()

    def _flush(self) -> None:
        ops, p, B = self.ops, self.p, self.B
        start, end, d_xg, w_xg, w_hg = self.start, self.end, self.d_xg, self.w_xg, self.w_hg
        rows = (end - start) * B
        x = self.x[start:end]
        # last first (every step at once): d_xg's rows are those of x reversed in time
        if self.d_x is not None:
            if not self.last_first:
                ops.matmul(d_xg, p["weight_ih"], out=self.d_x[start:end].reshape(rows, -1))
            else:
                d_x = ops.matmul(d_xg, p["weight_ih"]).reshape(self.d_x.shape)
                self.d_x = ops.xp.flip(d_x, (0,))
        if isinstance(x, OneHotIds):  # one-hot ids scatter rows of d xg: theirs stay row-major
            if self.last_first:
                x = x.take_time(reverse_index(end - start, None, B))
            self.grads["weight_ih"] = ops.project_grad(x, d_xg, self.grads.get("weight_ih"))
        else:
            self.grads["weight_ih"] = ops.project_grad(x, w_xg, self.grads.get("weight_ih"))
        # h<t-1> is out<t-1>, and the initial state at t = 0
        if start > 0:
            h_prev = self._read(self.out[start - 1 : end - 1]).reshape(rows, -1)
            self._add("weight_hh", ops.matmul(w_hg.T, h_prev))
        elif self.every_step:
            # one product over h0 joined to out beats two (0.4 ms at T = 64, B = 32, H = 256 on
            # the torch backend, whose oneDNN products want w_hg^T whole); a copy of the rows,
            # which a streaming chunk does without to keep its peak memory down
            h_prev = ops.xp.concatenate((self.h0[None], self.out[: end - 1]), axis=0)
            self._add("weight_hh", ops.matmul(w_hg.T, self._read(h_prev).reshape(rows, -1)))
        else:
            self._add("weight_hh", ops.matmul(w_hg[:B].T, self._read(self.h0)))
            if end > 1:
                h_prev = self._read(self.out[: end - 1]).reshape(rows - B, -1)
                self._add("weight_hh", ops.matmul(w_hg[B:].T, h_prev))
        d_b_ih = ops.sum_leading(w_xg)
        self._add("bias_ih", d_b_ih)
        self._add("bias_hh", ops.copy(d_b_ih) if self.shared else ops.sum_leading(w_hg))
        self.d_xg = self.d_hg = self.w_xg = self.w_hg = None
        self.end = start

    def _read(self, h: Array) -> Array:
        """h<t-1> as F2 read it: times the recurrent-dropout mask (F2r) when there is one."""
        return h if self.hidden is None else h * self.hidden

    def _add(self, name: str, value: Array) -> None:
        if name in self.grads:
            self.grads[name] += value
        else:
            self.grads[name] = value

    def result(self) -> dict:
        """The four matrices' gradients, by short name (zeros where no step ran)."""
        return {
            name: self.grads[name] if name in self.grads else self.ops.zeros(self.p[name].shape)
            for name in _MATRICES
        }


#: The loop over time of :func:`recurrent_forward` unless a backend passes its own: Python, one
#: step after another (any object with ``forward`` and ``backward`` of these signatures will do).
class _StepLoop:
    forward = staticmethod(direction_forward)
    backward = staticmethod(direction_backward)


STEP_LOOP = _StepLoop()

_MATRICES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_PROJECTION = "weight_hr"  # (P, H), present only under a projection (Recurrent.proj_size)
_CHUNK_ROWS = 1024  # steps x batch rows per chunk of the weight-gradient products
