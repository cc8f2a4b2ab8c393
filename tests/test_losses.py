"""seqkit.losses: values and gradients against finite differences and PyTorch, masks, stability."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqkit_numpy import NumpyOps

from seqkit.errors import ShapeError, UnknownNameError
from seqkit.losses import REDUCTIONS, Loss, SigmoidBCE, SoftmaxCrossEntropy, get_loss

torch = pytest.importorskip("torch")
from seqkit_torch.ops import TorchOps  # noqa: E402

F = torch.nn.functional

ops = NumpyOps("float64")
LOSSES = ("softmax_cross_entropy", "sigmoid_bce")


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


def make_batch(name, T, B, V, rng, *, all_valid=False):
    """Random logits (T, B, V), targets and a mask with at least one valid step per sequence."""
    logits = rng.normal(size=(T, B, V)) * 2
    if name == "softmax_cross_entropy":
        targets = rng.integers(0, V, size=(T, B))
    else:
        targets = rng.uniform(size=(T, B, V))
        targets[rng.uniform(size=targets.shape) < 0.3] = 1.0  # hard labels too
    lengths = np.full(B, T) if all_valid else rng.integers(1, T + 1, size=B)
    mask = np.arange(T)[:, None] < lengths[None, :]
    return logits, targets, mask


# --- registry and options --------------------------------------------------------------------
def test_registered_and_built_by_name():
    assert isinstance(get_loss("softmax_cross_entropy"), SoftmaxCrossEntropy)
    assert get_loss("sigmoid_bce", reduction="token_mean") == SigmoidBCE(reduction="token_mean")
    loss = SigmoidBCE()
    assert get_loss(loss) is loss
    assert isinstance(loss, Loss) and loss.reduction == "sum"


def test_unknown_name_and_options_are_clear():
    with pytest.raises(UnknownNameError, match="unknown loss 'mse'; available: .*sigmoid_bce"):
        get_loss("mse")
    with pytest.raises(ValueError, match="'reduction' must be one of sum, batch_mean, token_mean"):
        get_loss("sigmoid_bce", reduction="mean")
    with pytest.raises(TypeError, match="its options are: reduction"):
        get_loss("sigmoid_bce", weight=2.0)
    with pytest.raises(TypeError):
        SoftmaxCrossEntropy("sum")  # keyword-only


def test_bad_inputs_name_the_argument():
    loss = SoftmaxCrossEntropy()
    z = np.zeros((2, 3, 4))
    with pytest.raises(ShapeError, match="'targets' must have shape \\(2, 3\\)"):
        loss.forward(ops, z, np.zeros((3, 2), dtype=int))
    with pytest.raises(ShapeError, match="integer class ids"):
        loss.forward(ops, z, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="class ids in 0..3 .*got 4 at step 1, sequence 2"):
        loss.forward(ops, z, np.array([[0, 1, 2], [3, 0, 4]]))
    with pytest.raises(ShapeError, match="'mask' must have shape \\(2, 3\\)"):
        loss.forward(ops, z, np.zeros((2, 3), dtype=int), np.ones((3, 2), bool))
    with pytest.raises(ShapeError, match="'mask' must be boolean"):
        loss.forward(ops, z, np.zeros((2, 3), dtype=int), np.ones((2, 3)))
    with pytest.raises(ShapeError, match="'logits' must be \\(T, B, V\\)"):
        loss.forward(ops, np.zeros(4), np.zeros(1, dtype=int))
    with pytest.raises(ValueError, match="in \\[0, 1\\] .*got 1.5"):
        SigmoidBCE().forward(ops, z, np.full((2, 3, 4), 1.5))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        SigmoidBCE().forward(ops, z, np.full((2, 3, 4), np.nan))


# --- gradients against finite differences ---------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSSES)
def test_backward_matches_finite_differences(name, reduction):
    rng = np.random.default_rng(0)
    logits, targets, mask = make_batch(name, 4, 3, 5, rng)
    loss = get_loss(name, reduction=reduction)
    d_loss = 0.7
    value, cache = loss.forward(ops, logits, targets, mask)
    assert value.shape == ()
    analytic = loss.backward(ops, cache, d_loss)
    numeric = fd_grad(lambda: d_loss * loss.forward(ops, logits, targets, mask)[0], logits)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@settings(deadline=None, max_examples=15)
@given(
    name=st.sampled_from(LOSSES),
    reduction=st.sampled_from(REDUCTIONS),
    T=st.integers(1, 4),
    B=st.integers(1, 3),
    V=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_backward_matches_finite_differences_any_shape(name, reduction, T, B, V, seed):
    logits, targets, mask = make_batch(name, T, B, V, np.random.default_rng(seed))
    loss = get_loss(name, reduction=reduction)
    _, cache = loss.forward(ops, logits, targets, mask)
    numeric = fd_grad(lambda: loss.forward(ops, logits, targets, mask)[0], logits)
    np.testing.assert_allclose(loss.backward(ops, cache), numeric, rtol=1e-6, atol=1e-8)


# --- values and gradients against PyTorch ------------------------------------------------------
def torch_reference(name, reduction, logits, targets, mask):
    """The loss written directly with torch.nn.functional, and its gradient by autograd."""
    z = torch.tensor(logits, requires_grad=True)
    m = torch.tensor(mask)
    if name == "softmax_cross_entropy":
        total = F.cross_entropy(z[m], torch.tensor(targets)[m], reduction="sum")
    else:
        total = F.binary_cross_entropy_with_logits(z[m], torch.tensor(targets)[m], reduction="sum")
    divisor = {"sum": 1, "batch_mean": logits.shape[1], "token_mean": max(int(mask.sum()), 1)}
    value = total / divisor[reduction]
    value.backward()
    return value.item(), z.grad.numpy()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", LOSSES)
def test_matches_torch(name, reduction):
    rng = np.random.default_rng(1)
    logits, targets, mask = make_batch(name, 5, 4, 6, rng)
    loss = get_loss(name, reduction=reduction)
    value, cache = loss.forward(ops, logits, targets, mask)
    want_value, want_grad = torch_reference(name, reduction, logits, targets, mask)
    np.testing.assert_allclose(float(value), want_value, rtol=1e-12)
    np.testing.assert_allclose(loss.backward(ops, cache), want_grad, rtol=1e-10, atol=1e-14)


def test_sum_is_the_seeds_definition():
    """sigmoid_bce "sum" is -y log y^ - (1 - y) log(1 - y^) summed over steps, outputs, batch."""
    rng = np.random.default_rng(2)
    logits, targets, _ = make_batch("sigmoid_bce", 3, 2, 2, rng, all_valid=True)
    y_hat = 1 / (1 + np.exp(-logits))
    seed = np.sum(-targets * np.log(y_hat) - (1 - targets) * np.log(1 - y_hat))
    value, _ = SigmoidBCE().forward(ops, logits, targets)
    np.testing.assert_allclose(float(value), seed, rtol=1e-12)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ids = rng.integers(0, 2, size=(3, 2))
    seed_ce = -np.sum(np.log(np.take_along_axis(p, ids[..., None], -1)))
    np.testing.assert_allclose(float(SoftmaxCrossEntropy().forward(ops, logits, ids)[0]), seed_ce)


@pytest.mark.parametrize("name", LOSSES)
def test_forward_is_autograd_safe(name):
    """The same forward on torch leaf tensors gives the hand-written gradient via autograd."""
    tops = TorchOps("float64")
    rng = np.random.default_rng(3)
    logits, targets, mask = make_batch(name, 4, 3, 5, rng)
    loss = get_loss(name, reduction="token_mean")
    z = torch.tensor(logits, requires_grad=True)
    value, _ = loss.forward(tops, z, targets, mask)
    value.backward()
    _, cache = loss.forward(ops, logits, targets, mask)
    np.testing.assert_allclose(z.grad.numpy(), loss.backward(ops, cache), rtol=1e-10, atol=1e-14)
    assert z._version == 0  # not modified in place


# --- masks --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", LOSSES)
def test_padded_steps_add_nothing(name):
    rng = np.random.default_rng(4)
    logits, targets, mask = make_batch(name, 5, 3, 4, rng)
    mask[:, 0] = [True, True, False, False, False]
    loss = get_loss(name)
    value, cache = loss.forward(ops, logits, targets, mask)
    grad = loss.backward(ops, cache)
    assert np.all(grad[~mask] == 0)
    # garbage targets and other logits at padded steps change nothing
    logits2, targets2 = logits.copy(), targets.copy()
    logits2[~mask] = rng.normal(size=logits2[~mask].shape) * 50
    if name == "softmax_cross_entropy":
        targets2[~mask] = -100
    else:
        targets2[~mask] = 7.0
    value2, _ = loss.forward(ops, logits2, targets2, mask)
    assert float(value2) == pytest.approx(float(value), rel=1e-14)
    # and equal the loss of the unpadded steps alone
    valid = loss.forward(ops, logits[mask][None], targets[mask][None])[0]
    assert float(value) == pytest.approx(float(valid), rel=1e-12)


@pytest.mark.parametrize("name", LOSSES)
def test_reductions_scale_the_sum(name):
    rng = np.random.default_rng(5)
    logits, targets, mask = make_batch(name, 4, 3, 2, rng)
    total = float(get_loss(name).forward(ops, logits, targets, mask)[0])
    batch = float(get_loss(name, reduction="batch_mean").forward(ops, logits, targets, mask)[0])
    token = float(get_loss(name, reduction="token_mean").forward(ops, logits, targets, mask)[0])
    assert batch == pytest.approx(total / 3, rel=1e-14)
    assert token == pytest.approx(total / mask.sum(), rel=1e-14)


def test_no_unmasked_step_gives_zero():
    z = np.ones((2, 2, 3))
    loss = SoftmaxCrossEntropy(reduction="token_mean")
    value, cache = loss.forward(ops, z, np.zeros((2, 2), dtype=int), np.zeros((2, 2), bool))
    assert float(value) == 0.0 and not loss.backward(ops, cache).any()


# --- many-to-one ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", LOSSES)
def test_one_step_shorthand(name):
    rng = np.random.default_rng(6)
    logits, targets, mask = make_batch(name, 1, 4, 3, rng)
    mask[0, 1] = False
    loss = get_loss(name, reduction="batch_mean")
    v3, c3 = loss.forward(ops, logits, targets, mask)
    v2, c2 = loss.forward(ops, logits[0], targets[0], mask[0])
    assert float(v2) == float(v3)
    g2 = loss.backward(ops, c2)
    assert g2.shape == (4, 3)
    np.testing.assert_array_equal(g2, loss.backward(ops, c3)[0])


# --- stability ---------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e3, 1e8, 1e300])
def test_huge_logits_are_finite(scale):
    z = np.array([[[1.0, -1.0, 0.5], [-1.0, 1.0, -1.0]]]) * scale  # (1, 2, 3)
    ce = SoftmaxCrossEntropy()
    value, cache = ce.forward(ops, z, np.array([[0, 0]]))
    grad = ce.backward(ops, cache)
    assert np.isfinite(float(value)) and np.isfinite(grad).all()
    assert float(value) == pytest.approx(2 * scale, rel=1e-12)  # right, then wrong by 2 * scale
    np.testing.assert_allclose(grad, [[[0, 0, 0], [-1, 1, 0]]], atol=1e-12)

    bce = SigmoidBCE()
    y = np.array([[[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]])
    value, cache = bce.forward(ops, z, y)
    grad = bce.backward(ops, cache)
    assert np.isfinite(float(value)) and np.isfinite(grad).all()
    # a saturated wrong output costs |z|: two of them in the second sequence, the rest are right
    assert float(value) == pytest.approx(2 * scale, rel=1e-12)
    np.testing.assert_allclose(grad, [[[0, 0, 0], [-1, 1, 0]]], atol=1e-12)


def test_float32_backend_values():
    ops32 = NumpyOps("float32")
    rng = np.random.default_rng(7)
    logits, targets, mask = make_batch("softmax_cross_entropy", 3, 2, 4, rng)
    v32, _ = SoftmaxCrossEntropy().forward(ops32, ops32.asarray(logits), targets, mask)
    v64, _ = SoftmaxCrossEntropy().forward(ops, logits, targets, mask)
    assert v32.dtype == np.float32
    assert float(v32) == pytest.approx(float(v64), rel=1e-5)
