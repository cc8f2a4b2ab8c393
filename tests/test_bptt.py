"""Hand-written BPTT against central finite differences, float64, random non-zero states."""

import numpy as np
import pytest

import seqkit
from seqkit import bptt
from tests.helpers import backend64, numeric_grad, random_inputs, scalar_loss, state_parts

CELLS = ["rnn", "gru", "gru_simple", "lstm"]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_gradients_match_finite_differences(cell, num_layers, bidirectional, with_lengths):
    rng = np.random.default_rng(hash((cell, num_layers, bidirectional, with_lengths)) % 2**32)
    be = backend64()
    layer = seqkit.Recurrent(cell, 3, 4, num_layers=num_layers, bidirectional=bidirectional)
    params = layer.init_params(seed=1)
    T, B = 5, 3
    x, state, lengths = random_inputs(layer, T, B, rng, lengths=with_lengths)
    out, final, cache = be.recurrent_forward(layer, params, x, initial_state=state, lengths=lengths)
    w_out = rng.normal(size=out.shape)
    w_fin = tuple(rng.normal(size=f.shape) for f in state_parts(final))
    w_fin = w_fin[0] if len(w_fin) == 1 else w_fin
    grads = be.recurrent_backward(layer, cache, w_out, w_fin)

    def loss():
        return scalar_loss(be, layer, params, x, state, lengths, w_out, w_fin)

    checks = {"x": x, **dict(zip([f"{n}0" for n in layer.state_names], state_parts(state)))}
    checks.update(params)
    for name, arr in checks.items():
        expected = numeric_grad(loss, arr)
        np.testing.assert_allclose(grads[name], expected, rtol=1e-5, atol=1e-7, err_msg=name)


def test_padded_input_values_never_matter(rng):
    be = backend64()
    layer = seqkit.Recurrent("lstm", 2, 3, bidirectional=True)
    params = layer.init_params(seed=0)
    x, state, _ = random_inputs(layer, 6, 2, rng)
    lengths = np.array([6, 2])
    a, fa, _ = be.recurrent_forward(layer, params, x, state, lengths)
    x2 = x.copy()
    x2[2:, 1] = np.nan  # padding holding garbage, even NaN
    b, fb, _ = be.recurrent_forward(layer, params, x2, state, lengths)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fa[0], fb[0])
    assert np.all(a[2:, 1] == 0)


def test_zero_length_input_returns_initial_state(rng):
    be = backend64()
    layer = seqkit.Recurrent("gru", 2, 3, num_layers=2)
    params = layer.init_params(seed=0)
    _, h0, _ = random_inputs(layer, 1, 4, rng)
    out, final, cache = be.recurrent_forward(layer, params, np.zeros((0, 4, 2)), h0)
    assert out.shape == (0, 4, 3)
    np.testing.assert_array_equal(final, h0)
    grads = be.recurrent_backward(layer, cache, np.zeros((0, 4, 3)), np.ones_like(h0))
    np.testing.assert_array_equal(grads["h0"], np.ones_like(h0))
    assert not np.any(grads["weight_hh_l0"])


def test_rnn_relu_option():
    be = backend64()
    layer = seqkit.Recurrent(seqkit.get_cell("rnn", nonlinearity="relu"), 2, 3)
    params = layer.init_params(seed=0)
    x = np.random.default_rng(0).normal(size=(4, 2, 2))
    out, _, _ = be.recurrent_forward(layer, params, x)
    assert np.all(out >= 0) and np.any(out > 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_kept(dtype, rng):
    be = seqkit.get_backend("numpy", dtype=dtype)
    layer = seqkit.Recurrent("lstm", 2, 3)
    out, (h, c), cache = be.recurrent_forward(
        layer, layer.init_params(seed=0), rng.normal(size=(3, 2, 2))
    )
    grads = be.recurrent_backward(layer, cache, np.ones(out.shape))
    assert out.dtype == h.dtype == c.dtype == np.dtype(dtype)
    assert all(g.dtype == np.dtype(dtype) for g in grads.values())


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("rows", [3, 4, 10])
def test_weight_products_by_chunk_equal_one_product(cell, rows, monkeypatch, rng):
    """The weight-gradient products run a chunk of steps at a time; chunking changes nothing.

    With B = 2 and T = 7, ``rows`` 3, 4, 10 give chunks of 1, 2 and 5 steps: chunks that do and
    do not start at t = 0, and a last chunk shorter than the others.
    """
    be = backend64()
    layer = seqkit.Recurrent(cell, 3, 4, num_layers=2, bidirectional=True)
    params = layer.init_params(seed=1)
    x, state, lengths = random_inputs(layer, 7, 2, rng, lengths=True)
    out, _, cache = be.recurrent_forward(layer, params, x, state, lengths)
    d_out = rng.normal(size=out.shape)
    whole = be.recurrent_backward(layer, cache, d_out)  # 14 rows: one chunk
    monkeypatch.setattr(bptt, "_CHUNK_ROWS", rows)
    chunked = be.recurrent_backward(layer, cache, d_out)  # the same cache, differentiated again
    for name, value in whole.items():
        np.testing.assert_allclose(chunked[name], value, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_every_step_at_once_in_either_order_equals_step_by_step(one_hot, shared, rng):
    """``WeightGradients.add_steps`` (what a compiled loop hands over) equals ``add_step`` from
    T-1 down, with ``d xg`` in time order or last first, dense or one-hot input."""
    from seqkit.ops import OneHotIds

    ops = backend64().ops
    T, B, I, G, H = 5, 3, 6, 8, 2
    if one_hot:
        x = OneHotIds(ops, ops.int_array(rng.integers(0, I, size=(T, B))), I)
    else:
        x = rng.normal(size=(T, B, I))
    p = {
        "weight_ih": rng.normal(size=(G, I)),
        "weight_hh": rng.normal(size=(G, H)),
        "bias_ih": rng.normal(size=G),
        "bias_hh": rng.normal(size=G),
    }
    out, h0 = rng.normal(size=(T, B, H)), rng.normal(size=(B, H))
    d_xg, d_hg = rng.normal(size=(T, B, G)), rng.normal(size=(T, B, G))
    d_hg = d_xg if shared else d_hg

    def weights():
        return bptt.WeightGradients(ops, p, x, out, h0, shared)

    each = weights()
    for t in reversed(range(T)):
        each.add_step(t, d_xg[t], d_hg[t])
    expected = each.result()
    for last_first in (False, True):
        at_once = weights()
        rows = d_xg[::-1] if last_first else d_xg
        feature_major = (np.ascontiguousarray(d.transpose(2, 0, 1)) for d in (d_xg, d_hg))
        at_once.add_steps(rows, None, *feature_major, last_first=last_first)
        got = at_once.result()
        for name, value in expected.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-12, err_msg=name)
        if not one_hot:
            np.testing.assert_allclose(at_once.d_x, each.d_x, rtol=1e-12, atol=1e-12)
