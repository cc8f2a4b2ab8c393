"""Dropout between stacked layers (seqkit.dropout, over the public backend API) on JAX: the same
host-drawn masks as NumPy, so the same outputs, states and gradients in float64."""

import numpy as np
import pytest

pytest.importorskip("jax")

import seqkit  # noqa: E402
from seqkit.context import Context  # noqa: E402
from seqkit.dropout import stack_backward, stack_forward  # noqa: E402
from seqkit.testing import make_batch  # noqa: E402


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_dropout_stack_equals_numpy_with_the_same_seed(cell):
    layer = seqkit.Recurrent(cell, 3, 4, num_layers=3, bidirectional=True, dropout=0.4)
    batch = make_batch(layer, 5, 3, seed=2, with_lengths=True)
    params = layer.init_params(7)
    results = []
    for name in ("numpy", "jax"):
        be = seqkit.get_backend(name, dtype="float64")
        ctx = Context(training=True, rng=np.random.default_rng(11))
        out, final, cache = stack_forward(
            be, layer, params, batch.x, batch.initial_state, batch.lengths, ctx=ctx
        )
        d_x, d_state, grads = stack_backward(be, cache, batch.d_out, batch.d_final)
        parts = d_state if isinstance(d_state, tuple) else (d_state,)
        grads = {"x": d_x, **{f"state0[{i}]": g for i, g in enumerate(parts)}, **grads}
        finals = final if isinstance(final, tuple) else (final,)
        results.append(
            (
                be.to_numpy(out),
                [be.to_numpy(f) for f in finals],
                {k: be.to_numpy(v) for k, v in grads.items()},
            )
        )
    (out_np, fin_np, g_np), (out_jx, fin_jx, g_jx) = results
    np.testing.assert_allclose(out_jx, out_np, rtol=1e-7, atol=1e-9)
    for a, b in zip(fin_jx, fin_np, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    assert list(g_jx) == list(g_np)
    for name in g_np:
        np.testing.assert_allclose(g_jx[name], g_np[name], rtol=1e-7, atol=1e-9, err_msg=name)
