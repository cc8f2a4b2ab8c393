"""The functional cell contract: every registered cell gives the same step and step_backward on
an immutable-array backend (simulated on NumPy) as on the NumPy reference.

:class:`ImmutableOps` is a JAX-like backend on NumPy: every array a cell gets and every array
an operation or an operator returns is read-only, assignment into it raises, ``a += b`` rebinds
``a`` to a new array (as it does for JAX arrays), and ``inplace=True`` is ignored. A cell that
overwrites ``xg``, assigns into a slice or ignores an operation's return value raises or
computes other values here than on :class:`NumpyOps`, which honours every in-place option.
"""

from __future__ import annotations

import numpy as np
import pytest
from seqkit_numpy import NumpyOps

import seqkit
from seqkit.ops import Ops

H, B = 3, 4


class Frozen(np.ndarray):
    """A read-only NumPy array whose arithmetic gives read-only arrays and never writes."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if out is not None:
            raise TypeError(f"immutable array: {ufunc.__name__} was asked to write into an array")
        plain = [np.asarray(a) if isinstance(a, Frozen) else a for a in inputs]
        return freeze(getattr(ufunc, method)(*plain, **kwargs))

    def __setitem__(self, key, value):
        raise TypeError("immutable array: item assignment")

    # like a JAX array: no in-place operators, so Python rebinds the name to a new array
    def __iadd__(self, other):
        return self + other

    def __isub__(self, other):
        return self - other

    def __imul__(self, other):
        return self * other

    def __itruediv__(self, other):
        return self / other


def freeze(a):
    if isinstance(a, tuple):
        return tuple(freeze(b) for b in a)
    if not isinstance(a, np.ndarray) and not np.isscalar(a):
        return a
    out = np.array(a, copy=True).view(Frozen)  # a copy: nothing else can write into it
    out.flags.writeable = False
    return out


class ImmutableOps(NumpyOps):
    """NumpyOps on frozen arrays, every ``inplace`` ignored (see the module docstring)."""

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name.startswith("_") or not callable(attr) or not hasattr(Ops, name):
            return attr

        def call(*args, **kwargs):
            kwargs.pop("inplace", None)
            plain = [_plain(a) for a in args]
            return freeze(attr(*plain, **kwargs))

        return call


def _plain(a):
    if isinstance(a, tuple | list):
        return type(a)(_plain(b) for b in a)
    if isinstance(a, Frozen):
        plain = a.view(np.ndarray)  # still read-only: an operation that writes fails
        return plain
    return a


def _cells():
    names = seqkit.list_cells()
    assert {"rnn", "gru", "gru_simple", "lstm", "lstm_peephole"} <= set(names), names
    cells = [seqkit.get_cell(name) for name in names]
    return cells + [seqkit.get_cell("rnn", nonlinearity="relu")]


def _feature_major(a: np.ndarray) -> np.ndarray:
    return np.asfortranarray(a)  # the layout the BPTT driver gives every per-step array


def _run(ops, cell, inputs, prepare):
    """One step and its backward on ``ops``; returns every output as plain float64 arrays."""
    xg, hg, state, d_state, params = (prepare(a) for a in inputs)
    grads = {name: ops.zeros(p.shape) for name, p in params.items()}
    new, cache = cell.step(ops, xg, hg, state, params)
    d_xg, d_hg, d_prev = cell.step_backward(ops, d_state, cache, params, grads)
    outs = [*new, d_xg, d_hg, *(d for d in d_prev if d is not None), *grads.values()]
    return [np.array(o, dtype=np.float64) for o in outs]


@pytest.mark.parametrize("cell", _cells(), ids=repr)
def test_cell_is_functional(cell):
    rng = np.random.default_rng(11)
    G = cell.num_gates
    xg = rng.standard_normal((B, G * H))
    hg = rng.standard_normal((B, G * H))
    state = tuple(rng.standard_normal((B, H)) for _ in cell.state_names)
    d_state = tuple(rng.standard_normal((B, H)) for _ in cell.state_names)
    params = {n: rng.standard_normal(s) for n, s in cell.extra_param_shapes(H).items()}
    inputs = (xg, hg, state, d_state, params)

    def mutable(a):
        if isinstance(a, dict):
            return {k: v.copy() for k, v in a.items()}
        if isinstance(a, tuple):
            return tuple(_feature_major(b) for b in a)
        return _feature_major(a)

    def immutable(a):
        if isinstance(a, dict):
            return {k: freeze(v) for k, v in a.items()}
        return freeze(a)

    expected = _run(NumpyOps("float64"), cell, inputs, mutable)
    got = _run(ImmutableOps("float64"), cell, inputs, immutable)
    assert len(got) == len(expected)
    for k, (g, e) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(g, e, rtol=1e-13, atol=1e-14, err_msg=f"{cell!r} output {k}")
    # the reference run left its own inputs alone where the contract says so
    ref_state = mutable(state)
    ref_d = mutable(d_state)
    ops = NumpyOps("float64")
    new, cache = cell.step(ops, mutable(xg), mutable(hg), ref_state, mutable(params))
    cell.step_backward(
        ops, ref_d, cache, mutable(params), {n: ops.zeros(p.shape) for n, p in params.items()}
    )
    for a, b in zip(ref_state + ref_d, state + d_state):
        np.testing.assert_array_equal(a, b)


def test_immutable_ops_catch_a_write():
    ops = ImmutableOps("float64")
    z = freeze(np.ones((2, 4)))
    with pytest.raises((TypeError, ValueError)):
        z[:, :2] *= 2.0
    y = z
    y += 1.0  # rebinds y, as for a JAX array
    assert float(z[0, 0]) == 1.0 and float(y[0, 0]) == 2.0
    s = ops.sigmoid(z, inplace=True)
    assert float(z[0, 0]) == 1.0 and not s.flags.writeable
