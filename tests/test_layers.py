"""seqkit.layers: Dense, DenseStack, Embedding and OneHot against finite differences and PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqkit_numpy import NumpyOps

from seqkit.errors import ShapeError
from seqkit.layers import Dense, DenseStack, Embedding, OneHot

torch = pytest.importorskip("torch")
from seqkit_torch.ops import TorchOps  # noqa: E402

ops = NumpyOps("float64")
ACTIVATIONS = (None, "tanh", "relu")


def fd_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar ``f()`` with respect to every entry of ``x``."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = float(f())
        x[i] = old - eps
        down = float(f())
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def check_against_fd(block, params, x, rng, *, rtol=1e-6, atol=1e-8):
    """backward(dy) equals the finite-difference gradient of sum(forward(x) * dy)."""
    y, cache = block.forward(ops, params, x)
    dy = rng.normal(size=y.shape)
    dx, grads = block.backward(ops, params, cache, dy)

    def objective():
        return np.sum(block.forward(ops, params, x)[0] * dy)

    assert sorted(grads) == sorted(block.param_shapes())
    for name, value in params.items():
        np.testing.assert_allclose(grads[name], fd_grad(objective, value), rtol=rtol, atol=atol)
    if dx is not None:
        np.testing.assert_allclose(dx, fd_grad(objective, x), rtol=rtol, atol=atol)


# --- Dense ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 3)])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_backward_matches_finite_differences(activation, shape):
    rng = np.random.default_rng(0)
    layer = Dense(3, 5, activation=activation)
    params = layer.init_params(1)
    check_against_fd(layer, params, rng.normal(size=shape), rng)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_matches_torch_linear(activation):
    rng = np.random.default_rng(2)
    layer = Dense(4, 3, activation=activation)
    params = layer.init_params(3)
    x = rng.normal(size=(5, 2, 4))
    y, cache = layer.forward(ops, params, x)
    dy = rng.normal(size=y.shape)
    dx, grads = layer.backward(ops, params, cache, dy)

    linear = torch.nn.Linear(4, 3, dtype=torch.float64)
    linear.load_state_dict({k: torch.tensor(v) for k, v in params.items()})
    act = {None: torch.nn.Identity(), "tanh": torch.nn.Tanh(), "relu": torch.nn.ReLU()}[activation]
    tx = torch.tensor(x, requires_grad=True)
    ty = act(linear(tx))
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["weight"], linear.weight.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["bias"], linear.bias.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_dense_init_is_pytorchs_and_seeded():
    layer = Dense(16, 400)
    params = layer.init_params(0)
    assert {k: v.shape for k, v in params.items()} == layer.param_shapes()
    assert layer.param_shapes() == {"weight": (400, 16), "bias": (400,)}
    for value in params.values():
        assert value.dtype == np.float64
        assert np.abs(value).max() <= 1 / math.sqrt(16)
        assert np.abs(value).max() > 0.9 / math.sqrt(16)  # uses the whole range
    again = layer.init_params(0)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    assert not np.array_equal(params["weight"], layer.init_params(1)["weight"])
    assert layer.init_params(0, dtype="float32")["weight"].dtype == np.float32


def test_dense_rejects_bad_options_and_inputs():
    with pytest.raises(ValueError, match="'activation' must be one of None, 'tanh', 'relu'"):
        Dense(2, 3, activation="sigmoid")
    with pytest.raises(ValueError, match="'in_features' must be a positive integer \\(got 0\\)"):
        Dense(0, 3)
    with pytest.raises(TypeError):
        Dense(2, 3, "tanh")  # options are keyword-only
    layer = Dense(2, 3)
    params = layer.init_params(0)
    with pytest.raises(ShapeError, match="'x' must be \\(T, B, 2\\) or \\(B, 2\\)"):
        layer.forward(ops, params, np.zeros((4, 3)))
    with pytest.raises(ShapeError, match="parameter 'weight' must have shape \\(3, 2\\)"):
        layer.forward(ops, {"weight": np.zeros((2, 3)), "bias": np.zeros(3)}, np.zeros((4, 2)))
    with pytest.raises(ShapeError, match="params is missing 'bias'"):
        layer.forward(ops, {"weight": np.zeros((3, 2))}, np.zeros((4, 2)))


# --- DenseStack -----------------------------------------------------------------------------------
def torch_sequential(stack):
    modules = []
    act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}.get(stack.activation)
    for k, (i, o) in enumerate(zip(stack.sizes[:-1], stack.sizes[1:], strict=True)):
        modules.append(torch.nn.Linear(i, o, dtype=torch.float64))
        if act is not None and k < len(stack.sizes) - 2:
            modules.append(act())
    return torch.nn.Sequential(*modules)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("sizes", [(3, 4), (3, 5, 4), (3, 5, 2, 4)])
def test_dense_stack_matches_torch_sequential(sizes, activation):
    rng = np.random.default_rng(4)
    stack = DenseStack(sizes, activation=activation)
    params = stack.init_params(5)
    net = torch_sequential(stack)
    assert list(net.state_dict()) == list(stack.param_shapes())  # names copy 1:1
    net.load_state_dict({k: torch.tensor(v) for k, v in params.items()}, strict=True)
    x = rng.normal(size=(2, 3, 3))
    y, cache = stack.forward(ops, params, x)
    dy = rng.normal(size=y.shape)
    dx, grads = stack.backward(ops, params, cache, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = net(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-14)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-12, atol=1e-14)


@settings(deadline=None, max_examples=10)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    activation=st.sampled_from(ACTIVATIONS),
    batch_shape=st.sampled_from([(2,), (2, 3)]),
    seed=st.integers(0, 2**32 - 1),
)
def test_dense_stack_backward_matches_finite_differences(sizes, activation, batch_shape, seed):
    rng = np.random.default_rng(seed)
    stack = DenseStack(sizes, activation=activation)
    x = rng.normal(size=batch_shape + (sizes[0],))
    # relu's kink: finite differences are only valid away from z = 0, which has probability 0
    check_against_fd(stack, stack.init_params(rng), x, rng, rtol=1e-5, atol=1e-7)


def test_dense_stack_layout_and_validation():
    stack = DenseStack([6, 8, 3], activation="relu")
    assert stack.sizes == (6, 8, 3) and stack.in_features == 6 and stack.output_size == 3
    assert [layer.activation for layer in stack.layers] == ["relu", None]
    assert stack.param_shapes() == {
        "0.weight": (8, 6),
        "0.bias": (8,),
        "2.weight": (3, 8),
        "2.bias": (3,),
    }
    assert list(DenseStack((6, 8, 3), activation=None).param_shapes())[2] == "1.weight"
    with pytest.raises(ValueError, match="'sizes' must have at least 2 entries"):
        DenseStack([4])
    with pytest.raises(ValueError, match="'sizes' must be positive integers"):
        DenseStack([4, 0, 2])


# --- Embedding ------------------------------------------------------------------------------------
def test_embedding_matches_torch_and_accumulates_repeats():
    rng = np.random.default_rng(6)
    emb = Embedding(7, 3)
    params = emb.init_params(7)
    ids = np.array([[1, 2, 1], [6, 1, 0]])  # 1 appears three times
    y, cache = emb.forward(ops, params, ids)
    assert y.shape == (2, 3, 3)
    dy = rng.normal(size=y.shape)
    dx, grads = emb.backward(ops, params, cache, dy)
    assert dx is None

    module = torch.nn.Embedding(7, 3, dtype=torch.float64)
    module.load_state_dict({"weight": torch.tensor(params["weight"])})
    ty = module(torch.tensor(ids))
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_allclose(grads["weight"], module.weight.grad.numpy(), rtol=1e-14)
    np.testing.assert_allclose(grads["weight"][1], dy[0, 0] + dy[0, 2] + dy[1, 1])
    assert not grads["weight"][[3, 4, 5]].any()


def test_embedding_backward_matches_finite_differences():
    rng = np.random.default_rng(8)
    emb = Embedding(5, 2)
    check_against_fd(emb, emb.init_params(rng), rng.integers(0, 5, size=(3, 4)), rng)
    check_against_fd(emb, emb.init_params(rng), np.array([4, 4, 0]), rng)  # (B,) ids


def test_embedding_init_and_validation():
    emb = Embedding(200, 50)
    w = emb.init_params(0)["weight"]
    assert w.shape == (200, 50) and emb.output_size == 50
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02  # N(0, 1)
    assert np.array_equal(w, emb.init_params(0)["weight"])
    params = Embedding(4, 2).init_params(0)
    with pytest.raises(ValueError, match="'ids' must be in 0..3 \\(got 4\\)"):
        Embedding(4, 2).forward(ops, params, np.array([[0, 4]]))
    with pytest.raises(ValueError, match="got -1"):
        Embedding(4, 2).forward(ops, params, [[0, -1]])
    with pytest.raises(ShapeError, match="'ids' must be integers"):
        Embedding(4, 2).forward(ops, params, np.zeros((2, 2)))
    with pytest.raises(ShapeError, match="'ids' must be \\(T, B\\) or \\(B,\\)"):
        Embedding(4, 2).forward(ops, params, np.zeros((2, 2, 2), dtype=int))


# --- OneHot ---------------------------------------------------------------------------------------
def test_one_hot():
    enc = OneHot(5)
    assert enc.param_shapes() == {} and enc.init_params(0) == {} and enc.output_size == 5
    ids = np.array([[0, 4], [2, 2], [1, 3]])
    x, cache = enc.forward(ops, {}, ids)
    assert x.shape == (3, 2, 5) and x.ndim == 3  # the rows, kept as their ids
    y = x.dense()
    assert y.dtype == np.float64 and y.shape == (3, 2, 5)
    want = torch.nn.functional.one_hot(torch.tensor(ids), 5).numpy()
    np.testing.assert_array_equal(y, want)
    assert enc.backward(ops, {}, cache, np.ones_like(y)) == (None, {})
    assert enc.forward(ops, None, np.array([3]))[0].dense().tolist() == [[0, 0, 0, 1, 0]]
    with pytest.raises(ValueError, match="'ids' must be in 0..4 \\(got 5\\)"):
        enc.forward(ops, {}, np.array([5]))
    with pytest.raises(ValueError, match="'num_classes' must be a positive integer"):
        OneHot(0)


# --- autograd safety ------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forwards_are_autograd_safe(activation):
    """The same forwards on torch leaf tensors: autograd gives the hand-written gradients."""
    tops = TorchOps("float64")
    rng = np.random.default_rng(9)
    emb, stack = Embedding(6, 3), DenseStack((3, 4, 2), activation=activation)
    p_emb, p_stack = emb.init_params(0), stack.init_params(1)
    ids = rng.integers(0, 6, size=(4, 2))
    dy = rng.normal(size=(4, 2, 2))

    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in {**p_emb, **p_stack}.items()}
    h, _ = emb.forward(tops, {"weight": leaves["weight"]}, ids)
    y, _ = stack.forward(tops, {k: leaves[k] for k in p_stack}, h)
    y.backward(torch.tensor(dy))
    assert all(leaf._version == 0 for leaf in leaves.values())  # nothing modified in place

    h, c_emb = emb.forward(ops, p_emb, ids)
    _, c_stack = stack.forward(ops, p_stack, h)
    dh, grads = stack.backward(ops, p_stack, c_stack, dy)
    grads.update(emb.backward(ops, p_emb, c_emb, dh)[1])
    for name, leaf in leaves.items():
        np.testing.assert_allclose(grads[name], leaf.grad.numpy(), rtol=1e-12, atol=1e-14)

    y_oh, _ = OneHot(5).forward(tops, {}, np.array([1, 4]))
    assert torch.equal(y_oh.dense(), torch.eye(5, dtype=torch.float64)[[1, 4]])
