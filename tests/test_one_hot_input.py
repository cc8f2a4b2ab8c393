"""One-hot input without the one-hot matrix: ``OneHotIds`` into a recurrent stack equals the
product with the dense (T, B, V) matrix on every backend, gradients included."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

import seqkit
from seqkit.blocks import Chain
from seqkit.context import Context
from seqkit.errors import ShapeError
from seqkit.layers import OneHot
from seqkit.ops import OneHotIds

torch = pytest.importorskip("torch")
from seqkit_torch import TorchBackend  # noqa: E402

T, B, H = 6, 3, 4


def _backends():
    yield "numpy", seqkit.get_backend("numpy", dtype="float64")
    yield "torch", TorchBackend(dtype="float64")  # auto: fused where there is a kernel
    for path in ("fused", "generic"):
        yield f"torch-{path}", TorchBackend(dtype="float64", path=path)
    try:
        import jax  # noqa: F401
    except ImportError:
        return
    yield "jax", seqkit.get_backend("jax", dtype="float64")


BACKENDS = dict(_backends())


def _stack_case(be, cell, V, *, layers, bidirectional, seed):
    rng = np.random.default_rng(seed)
    layer = seqkit.Recurrent(cell, V, H, num_layers=layers, bidirectional=bidirectional)
    params = {k: be.asarray(v) for k, v in layer.init_params(seed).items()}
    ids = rng.integers(0, V, size=(T, B))
    # a scale per row, as Encode's start input (0) and a dropout mask's entry give it
    x, _ = OneHot(V).forward(be.ops, None, ids)
    x = x * be.asarray(rng.choice([0.0, 0.5, 2.0], size=(T, B, 1)))
    LD = layers * layer.num_directions
    state0 = tuple(be.asarray(rng.normal(size=(LD, B, H))) for _ in layer.state_names)
    d_out = be.asarray(rng.normal(size=(T, B, layer.output_size)))
    d_final = tuple(be.asarray(rng.normal(size=(LD, B, H))) for _ in layer.state_names)
    return layer, params, x, state0, d_out, d_final


def _run(be, layer, params, x, state0, lengths, d_out, d_final):
    s0 = state0 if len(state0) == 2 else state0[0]
    dfin = d_final if len(d_final) == 2 else d_final[0]
    out, final, cache = be.recurrent_forward(layer, params, x, s0, lengths)
    grads = be.recurrent_backward(layer, cache, d_out, dfin)
    final = final if isinstance(final, tuple) else (final,)
    values = {"out": out, **{f"final{i}": f for i, f in enumerate(final)}}
    values.update({f"d_{k}": v for k, v in grads.items() if k != "x"})
    return {k: np.asarray(be.to_numpy(v)) for k, v in values.items()}, grads["x"]


@pytest.mark.parametrize("backend", [name for name in BACKENDS if name != "torch"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(
    "V", [5, 40]
)  # the fused kernel: dense one-hot below D*G*H, gathered above
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
@pytest.mark.parametrize("padded", [False, True])
def test_ids_equal_the_dense_product(backend, cell, V, layers, bidirectional, padded):
    be = BACKENDS[backend]
    layer, params, x, state0, d_out, d_final = _stack_case(
        be, cell, V, layers=layers, bidirectional=bidirectional, seed=V + layers
    )
    lengths = np.array([T, 2, 4]) if padded else None
    got, d_x = _run(be, layer, params, x, state0, lengths, d_out, d_final)
    want, d_x_dense = _run(be, layer, params, x.dense(), state0, lengths, d_out, d_final)
    assert d_x is None and d_x_dense is not None  # ids have no gradient
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-13, err_msg=name)
    # the weight of the ids' columns only gets a gradient: the others stay zero
    unused = np.setdiff1d(np.arange(V), be.to_numpy(x.ids).ravel())
    assert np.all(got["d_weight_ih_l0"][:, unused] == 0.0)


def test_scatter_add_of_repeated_ids_equals_the_product():
    """One id at every position: d W_ih's column is the sum of every step's d xg."""
    ops = seqkit.get_backend("numpy", dtype="float64").ops
    rng = np.random.default_rng(3)
    ids = np.array([[2, 2], [2, 0], [2, 2]])
    x = OneHotIds(ops, ids, 4, rng.normal(size=(3, 2, 1)))
    d = rng.normal(size=(3, 2, 5))
    acc = rng.normal(size=(5, 4))
    want = acc + d.reshape(-1, 5).T @ x.dense().reshape(-1, 4)
    np.testing.assert_allclose(ops.project_grad(x, d, acc.copy()), want, rtol=1e-14, atol=1e-14)
    w = rng.normal(size=(5, 4))
    np.testing.assert_allclose(ops.project(x, w), x.dense() @ w.T, rtol=1e-14, atol=1e-14)
    # a (..., V) factor counts at the ids only (a dropout mask), a (..., 1) one as a scale
    mask = rng.normal(size=(3, 2, 4))
    np.testing.assert_allclose((x * mask).dense(), x.dense() * mask, rtol=1e-15, atol=0)
    np.testing.assert_allclose((x * mask[..., :1]).dense(), x.dense() * mask[..., :1], rtol=1e-15)


def test_wrong_one_hot_size_is_refused():
    be = seqkit.get_backend("numpy", dtype="float64")
    layer = seqkit.Recurrent("gru", 5, H)
    x, _ = OneHot(6).forward(be.ops, None, np.zeros((2, 2), dtype=int))
    with pytest.raises(ShapeError, match="I=5 .*got OneHotIds of shape \\(2, 2, 6\\)"):
        be.recurrent_forward(layer, layer.init_params(0), x)


class _DenseOneHot(OneHot):
    """The old encoding, for comparison: the (T, B, V) matrix itself."""

    def forward(self, ops, params, ids, *, ctx=None):
        y, cache = super().forward(ops, params, ids, ctx=ctx)
        return y.dense(), cache


def _with_dense_input(model):
    blocks = dict(model.network.blocks)
    encoder = blocks["encoder"]
    blocks["encoder"] = attrs.evolve(encoder, layer=_DenseOneHot(encoder.layer.num_classes))
    model.network = Chain(blocks)
    return model


@pytest.mark.parametrize(
    "backend", [name for name in BACKENDS if name in ("numpy", "torch", "jax")]
)
@pytest.mark.parametrize("cell", ["lstm", "gru_simple"])
@pytest.mark.parametrize(
    "options",
    [{}, {"input_dropout": 0.3, "recurrent_dropout": 0.25, "zoneout": 0.2}],
    ids=["plain", "loop-masks"],
)
def test_language_model_gradients_equal_the_dense_input(backend, cell, options):
    """A whole model in training (start input, padding, dropout after the encoding and between
    two layers; with the stack's own masks too, input dropout on the ids of layer 0 among them):
    the same loss and gradients as with the one-hot matrix."""
    be = BACKENDS[backend]
    texts = ["abcab", "ba", "cabbac", "a"]
    vocab = seqkit.Vocabulary.build(texts, level="char")
    kw = dict(cell=cell, hidden_size=5, num_layers=2, dropout=0.3, backend=be, seed=4, **options)
    ids_model = seqkit.LanguageModel(vocab, **kw)
    dense_model = _with_dense_input(seqkit.LanguageModel(vocab, **kw))
    batch = ids_model.batch(texts)
    results = [
        m.loss_and_grads(batch, ctx=Context(training=True, rng=np.random.default_rng(7)))
        for m in (ids_model, dense_model)
    ]
    (loss, grads), (loss_dense, grads_dense) = results
    assert loss == pytest.approx(loss_dense, rel=1e-12)
    assert grads.keys() == grads_dense.keys()
    for name in grads:
        np.testing.assert_allclose(
            be.to_numpy(grads[name]),
            be.to_numpy(grads_dense[name]),
            rtol=1e-11,
            atol=1e-12,
            err_msg=name,
        )
