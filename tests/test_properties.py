"""Hypothesis properties of the recurrent stack that shape checks miss (NumPy reference)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import seqkit
from tests.helpers import backend64, random_inputs, state_parts

CELLS = ["rnn", "gru", "gru_simple", "lstm"]

layers = st.builds(
    lambda cell, i, h, n: seqkit.Recurrent(cell, i, h, num_layers=n),
    st.sampled_from(CELLS),
    st.integers(1, 4),
    st.integers(1, 5),
    st.integers(1, 3),
)


@given(
    layer=layers,
    T=st.integers(2, 8),
    B=st.integers(1, 4),
    split=st.data(),
    seed=st.integers(0, 2**16),
)
def test_two_chunks_with_carried_state_equal_one_pass(layer, T, B, split, seed):
    be, rng = backend64(), np.random.default_rng(seed)
    params = layer.init_params(seed=seed)
    x, state, _ = random_inputs(layer, T, B, rng)
    k = split.draw(st.integers(1, T - 1))
    whole, final, _ = be.recurrent_forward(layer, params, x, state)
    first, mid, _ = be.recurrent_forward(layer, params, x[:k], state)
    second, final2, _ = be.recurrent_forward(layer, params, x[k:], mid)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-12, atol=1e-14)
    for a, b in zip(state_parts(final), state_parts(final2)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@given(
    layer=layers,
    T=st.integers(1, 6),
    pad=st.integers(1, 4),
    B=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    bi=st.booleans(),
)
def test_padded_steps_change_nothing(layer, T, pad, B, seed, bi):
    layer = seqkit.Recurrent(
        layer.cell,
        layer.input_size,
        layer.hidden_size,
        num_layers=layer.num_layers,
        bidirectional=bi,
    )
    be, rng = backend64(), np.random.default_rng(seed)
    params = layer.init_params(seed=seed)
    x, state, _ = random_inputs(layer, T, B, rng)
    padded = np.concatenate([x, rng.normal(size=(pad, B, layer.input_size))])
    out, final, _ = be.recurrent_forward(layer, params, x, state)
    out_p, final_p, _ = be.recurrent_forward(layer, params, padded, state, lengths=np.full(B, T))
    np.testing.assert_allclose(out_p[:T], out, rtol=1e-12, atol=1e-14)
    assert not np.any(out_p[T:])
    for a, b in zip(state_parts(final), state_parts(final_p)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@given(
    cell=st.sampled_from(CELLS),
    T=st.integers(1, 6),
    B=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_reverse_direction_is_forward_cell_on_reversed_prefix(cell, T, B, seed):
    be, rng = backend64(), np.random.default_rng(seed)
    bi = seqkit.Recurrent(cell, 3, 4, bidirectional=True)
    uni = seqkit.Recurrent(cell, 3, 4)
    params = bi.init_params(seed=seed)
    reverse = {k.replace("_reverse", ""): v for k, v in params.items() if k.endswith("_reverse")}
    x, _, lengths = random_inputs(bi, T, B, rng, lengths=True)
    out, final, _ = be.recurrent_forward(bi, params, x, lengths=lengths)
    for b, n in enumerate(lengths):
        seq = x[:n, b : b + 1][::-1]
        r_out, r_final, _ = be.recurrent_forward(uni, reverse, seq)
        np.testing.assert_allclose(out[:n, b, 4:], r_out[::-1, 0], rtol=1e-12, atol=1e-14)
        for a, f in zip(state_parts(final), state_parts(r_final)):
            np.testing.assert_allclose(a[1, b], f[0, 0], rtol=1e-12, atol=1e-14)


grads_st = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.integers(1, 5).flatmap(lambda n: st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n)),
    min_size=1,
)


@given(raw=grads_st, max_norm=st.floats(1e-3, 1e3))
def test_clip_grad_norm_bounds_and_leaves_small_gradients(raw, max_norm):
    grads = {k: np.array(v) for k, v in raw.items()}
    clipped, norm = seqkit.clip_grad_norm(grads, max_norm)
    assert np.isclose(norm, np.sqrt(sum((g**2).sum() for g in grads.values())))
    assert seqkit.global_norm(clipped) <= max_norm * (1 + 1e-12)
    if norm <= max_norm:
        for k in grads:
            assert clipped[k] is grads[k]
    else:  # direction kept
        for k in grads:
            np.testing.assert_allclose(clipped[k] * norm / max_norm, grads[k], rtol=1e-9, atol=1e-9)


@given(raw=grads_st, threshold=st.floats(1e-3, 1e3))
def test_clip_grad_value_is_elementwise_clamp(raw, threshold):
    grads = {k: np.array(v) for k, v in raw.items()}
    clipped = seqkit.clip_grad_value(grads, threshold)
    for k, g in grads.items():
        assert np.all(np.abs(clipped[k]) <= threshold)
        small = np.abs(g) <= threshold
        np.testing.assert_array_equal(clipped[k][small], g[small])
