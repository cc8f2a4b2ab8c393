"""LSTM projections, ``Recurrent("lstm", I, H, proj_size=P)``: torch.nn.LSTM(proj_size=P) parity."""

import attrs
import numpy as np
import pytest

from seqkit import Recurrent, get_backend
from seqkit.context import Context
from seqkit.dropout import stack_backward, stack_forward
from seqkit.errors import ShapeError
from seqkit.testing import check_layer_agrees, check_layer_gradients, make_batch

I, H, P, T, B = 3, 5, 2, 6, 4


def _layer(num_layers=1, bidirectional=False, **kw):
    return Recurrent(
        "lstm", I, H, proj_size=P, num_layers=num_layers, bidirectional=bidirectional, **kw
    )


def test_shapes_follow_pytorch():
    layer = _layer(num_layers=2, bidirectional=True)
    shapes = layer.param_shapes()
    assert shapes["weight_hr_l0"] == (P, H) and shapes["weight_hr_l1_reverse"] == (P, H)
    assert shapes["weight_hh_l0"] == (4 * H, P)
    assert shapes["weight_ih_l1"] == (4 * H, 2 * P)  # layer 1 reads D*P
    assert layer.output_size == 2 * P
    assert layer.state_sizes == (P, H)


def test_no_projection_has_no_weight_hr():
    layer = Recurrent("lstm", I, H)
    assert layer.proj_size == 0 and layer.state_sizes == (H, H)
    assert not any(name.startswith("weight_hr") for name in layer.param_shapes())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cell": "gru", "proj_size": 2}, "'proj_size' needs a cell that allows a projection"),
        ({"cell": "rnn", "proj_size": 2}, "cell 'rnn' does not"),
        ({"cell": "lstm", "proj_size": H}, "'proj_size' must be smaller than hidden_size=5"),
        ({"cell": "lstm", "proj_size": -1}, "'proj_size' must be a non-negative integer"),
        ({"cell": "lstm", "proj_size": 1.5}, "'proj_size' must be a non-negative integer"),
    ],
)
def test_bad_proj_size(kwargs, message):
    cell = kwargs.pop("cell")
    with pytest.raises(ValueError, match=message):
        Recurrent(cell, I, H, **kwargs)


def test_state_shapes_are_checked():
    layer = _layer()
    be = get_backend("numpy", dtype="float64")
    x = np.zeros((T, B, I))
    params = layer.init_params(0)
    with pytest.raises(ShapeError, match=r"initial_state h must have shape \(L\*D, B, P\)"):
        be.recurrent_forward(layer, params, x, (np.zeros((1, B, H)), np.zeros((1, B, H))))
    with pytest.raises(ShapeError, match=r"initial_state c must have shape \(L\*D, B, H\)"):
        be.recurrent_forward(layer, params, x, (np.zeros((1, B, P)), np.zeros((1, B, P))))
    out, (h, c), _ = be.recurrent_forward(layer, params, x)
    assert out.shape == (T, B, P) and h.shape == (1, B, P) and c.shape == (1, B, H)


# --- torch.nn.LSTM(proj_size=P) with copied weights -------------------------------------------
def _torch_reference(torch, layer, params, x, h0, c0, lengths, d_out, d_h, d_c):
    """torch.nn.LSTM's outputs and gradients on packed sequences, as float64 NumPy arrays."""
    module = torch.nn.LSTM(
        I,
        H,
        num_layers=layer.num_layers,
        bidirectional=layer.bidirectional,
        proj_size=P,
    ).double()
    assert [n for n, _ in module.named_parameters()] == list(layer.param_shapes())
    with torch.no_grad():
        for name, value in module.named_parameters():
            value.copy_(torch.as_tensor(params[name]))
    xt, h0t, c0t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.as_tensor(lengths), enforce_sorted=False
    )
    out, (h, c) = module(packed, (h0t, c0t))
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    loss = (
        (out * torch.as_tensor(d_out)).sum()
        + (h * torch.as_tensor(d_h)).sum()
        + (c * torch.as_tensor(d_c)).sum()
    )
    loss.backward()
    grads = {"x": xt.grad, "h0": h0t.grad, "c0": c0t.grad}
    grads.update({name: value.grad for name, value in module.named_parameters()})
    values = {"out": out, "h": h, "c": c}
    return (
        {k: v.detach().numpy() for k, v in values.items()},
        {k: v.numpy() for k, v in grads.items()},
    )


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("backend", ["numpy", "torch-fused", "torch-generic"])
def test_equals_torch_nn_lstm(num_layers, bidirectional, backend):
    torch = pytest.importorskip("torch")
    if backend == "numpy":
        be = get_backend("numpy", dtype="float64")
    else:
        from seqkit_torch.backend import TorchBackend

        be = TorchBackend(dtype="float64", path=backend.split("-")[1])
        assert be.layer_path(_layer()) == backend.split("-")[1]
    layer = _layer(num_layers, bidirectional)
    rng = np.random.default_rng(num_layers + 10 * bidirectional)
    params = layer.init_params(rng)
    LD = num_layers * layer.num_directions
    x = rng.normal(size=(T, B, I))
    h0, c0 = rng.normal(size=(LD, B, P)), rng.normal(size=(LD, B, H))
    lengths = np.array([T, 3, 5, 1])
    d_out = rng.normal(size=(T, B, layer.output_size))
    d_h, d_c = rng.normal(size=(LD, B, P)), rng.normal(size=(LD, B, H))
    expected, expected_grads = _torch_reference(
        torch, layer, params, x, h0, c0, lengths, d_out, d_h, d_c
    )
    out, (h, c), cache = be.recurrent_forward(layer, params, x, (h0, c0), lengths)
    grads = be.recurrent_backward(layer, cache, d_out, (d_h, d_c))
    got = {"out": out, "h": h, "c": c}
    for name, value in expected.items():
        np.testing.assert_allclose(be.to_numpy(got[name]), value, rtol=0, atol=1e-9, err_msg=name)
    assert set(grads) == set(expected_grads)
    for name, value in expected_grads.items():
        np.testing.assert_allclose(be.to_numpy(grads[name]), value, rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_hand_written_gradients_equal_finite_differences(num_layers, bidirectional, with_lengths):
    layer = Recurrent("lstm", 2, 3, proj_size=2, num_layers=num_layers, bidirectional=bidirectional)
    data = make_batch(layer, 3, 2, seed=num_layers, with_lengths=with_lengths)
    check_layer_gradients(layer, data, seed=num_layers)


@pytest.mark.parametrize("num_layers, bidirectional", [(1, True), (3, False)])
def test_numpy_and_torch_agree_through_the_kit(num_layers, bidirectional):
    pytest.importorskip("torch")
    layer = _layer(num_layers, bidirectional)
    data = make_batch(layer, T, B, seed=3, with_lengths=True)
    check_layer_agrees(layer, data, seed=3)


def test_dropout_between_projected_layers_runs_layer_by_layer():
    """Dropout between layers reads D*P features: the layer-by-layer stack with p -> 0 masks
    (all ones, ``p`` tiny) equals the whole-stack call, gradients included."""
    layer = _layer(num_layers=2, bidirectional=True, dropout=1e-12)
    whole = attrs.evolve(layer, dropout=0.0)
    be = get_backend("numpy", dtype="float64")
    data = make_batch(layer, T, B, seed=5, with_lengths=True)
    params = layer.init_params(5)
    ctx = Context(training=True, rng=np.random.default_rng(0))
    out, final, cache = stack_forward(
        be, layer, params, data.x, data.initial_state, data.lengths, ctx=ctx
    )
    assert len(cache.caches) == 2  # one call per layer, a mask in between
    ref_out, ref_final, ref_cache = be.recurrent_forward(
        whole, params, data.x, data.initial_state, data.lengths
    )
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-10)
    for got, want in zip(final, ref_final, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    d_x, d_state, grads = stack_backward(be, cache, data.d_out, data.d_final)
    ref = be.recurrent_backward(whole, ref_cache, data.d_out, data.d_final)
    np.testing.assert_allclose(d_x, ref["x"], rtol=0, atol=1e-10)
    for got, name in zip(d_state, ("h0", "c0"), strict=True):
        np.testing.assert_allclose(got, ref[name], rtol=0, atol=1e-10)
    for name, value in grads.items():
        np.testing.assert_allclose(value, ref[name], rtol=0, atol=1e-10, err_msg=name)
