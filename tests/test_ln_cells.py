"""Layer-normalised cells ``lstm_ln`` and ``gru_ln``: the paper's equations, gradients, agreement."""

import numpy as np
import pytest

import seqkit
from seqkit import Recurrent, get_backend
from seqkit.cells import LayerNormGRU, LayerNormLSTM
from seqkit.testing import (
    check_backends_agree,
    check_cell_gradients,
    check_layer_agrees,
    check_layer_gradients,
    make_batch,
)

LN_CELLS = ["lstm_ln", "gru_ln"]


def _random_params(layer, seed):
    """Every parameter random, gains and shifts included (they start at 1 and 0)."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.uniform(0.5, 1.5, size=shape) if "ln_" in name and "weight" in name
        else rng.uniform(-0.5, 0.5, size=shape)
        for name, shape in layer.param_shapes().items()
    }  # fmt: skip


def test_registered_and_exported():
    assert {"lstm_ln", "gru_ln"} <= set(seqkit.list_cells())
    assert isinstance(seqkit.get_cell("lstm_ln"), LayerNormLSTM)
    assert isinstance(seqkit.get_cell("gru_ln", eps=1e-3), LayerNormGRU)
    assert not LayerNormLSTM.sums_projections and not LayerNormGRU.sums_projections


@pytest.mark.parametrize("cell, G", [("lstm_ln", 4), ("gru_ln", 3)])
def test_gains_start_at_one_and_shifts_at_zero(cell, G):
    layer = Recurrent(cell, 3, 4, num_layers=2, bidirectional=True)
    params = layer.init_params(0)
    ln = {n: v for n, v in params.items() if n.startswith("ln_")}
    assert len(ln) == (6 if cell == "lstm_ln" else 4) * 4  # per layer and direction
    for name, value in ln.items():
        size = 4 if name.startswith("ln_c_") else G * 4
        assert value.shape == (size,)
        np.testing.assert_array_equal(value, 1.0 if "_weight" in name else 0.0, err_msg=name)
    # the four matrices keep PyTorch's rule, drawn as for a plain cell of the same sizes
    plain = Recurrent(cell.removesuffix("_ln"), 3, 4, num_layers=2, bidirectional=True)
    want = plain.init_params(0)
    for name, value in want.items():
        np.testing.assert_array_equal(params[name], value, err_msg=name)


@pytest.mark.parametrize("eps", [0, -1.0, "1e-5", True])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match=r"'eps' must be a positive number"):
        LayerNormLSTM(eps=eps)


def test_options_for_the_lstm_ln():
    layer = Recurrent("lstm_ln", 3, 4, proj_size=2, forget_bias=1.0)
    params = layer.init_params(0)
    assert params["weight_hr_l0"].shape == (2, 4)
    np.testing.assert_array_equal(params["bias_ih_l0"][4:8], 1.0)
    with pytest.raises(ValueError, match=r"'proj_size' needs a cell.*'gru_ln'"):
        Recurrent("gru_ln", 3, 4, proj_size=2)
    with pytest.raises(ValueError, match=r"'forget_bias' needs a cell with a forget gate.*gru_ln"):
        Recurrent("gru_ln", 3, 4, forget_bias=1.0)


# --- the equations, written out in torch with autograd ------------------------------------------
def _torch_reference(torch, cell, params, x, state0, eps):
    """One layer, one direction, the paper's equations step by step with torch's layer_norm."""
    F = torch.nn.functional
    p = {k.removesuffix("_l0"): torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x = torch.tensor(x, requires_grad=True)
    state = [torch.tensor(s[0], requires_grad=True) for s in state0]
    leaves = [x, *state]

    def ln(a, name):
        return F.layer_norm(a, a.shape[-1:], p[name + "_weight"], p[name + "_bias"], eps)

    h, c = state if cell == "lstm_ln" else (state[0], None)
    outs = []
    for t in range(x.shape[0]):
        ax = ln(x[t] @ p["weight_ih"].T + p["bias_ih"], "ln_ih")
        ah = ln(h @ p["weight_hh"].T + p["bias_hh"], "ln_hh")
        if cell == "lstm_ln":
            i, f, g, o = (ax + ah).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(ln(c, "ln_c"))
        else:
            xr, xz, xn = ax.chunk(3, dim=1)
            hr, hz, hn = ah.chunk(3, dim=1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = (1 - z) * n + z * h
        outs.append(h)
    final = (h, c) if cell == "lstm_ln" else (h,)
    return torch.stack(outs), final, leaves, p


@pytest.mark.parametrize("cell", LN_CELLS)
def test_equals_the_equations_written_in_torch(cell):
    torch = pytest.importorskip("torch")
    T, B, I, H = 5, 3, 2, 4
    layer = Recurrent(cell, I, H)
    params = _random_params(layer, 1)
    data = make_batch(layer, T, B, seed=2)
    state0 = data.initial_state if isinstance(data.initial_state, tuple) else (data.initial_state,)
    be = get_backend("numpy", dtype="float64")
    out, final, cache = be.recurrent_forward(layer, params, data.x, data.initial_state)
    final = final if isinstance(final, tuple) else (final,)
    d_final = data.d_final if isinstance(data.d_final, tuple) else (data.d_final,)
    grads = be.recurrent_backward(layer, cache, data.d_out, data.d_final)

    ref_out, ref_final, leaves, p = _torch_reference(
        torch, cell, params, data.x, state0, layer.cell.eps
    )
    np.testing.assert_allclose(out, ref_out.detach().numpy(), rtol=0, atol=1e-12)
    for got, want in zip(final, ref_final, strict=True):
        np.testing.assert_allclose(got[0], want.detach().numpy(), rtol=0, atol=1e-12)
    loss = (ref_out * torch.tensor(data.d_out)).sum()
    loss = loss + sum((f * torch.tensor(d[0])).sum() for f, d in zip(ref_final, d_final))
    loss.backward()
    expected = {"x": leaves[0].grad.numpy()}
    expected.update({f"{n}0": s.grad.numpy()[None] for n, s in zip(layer.state_names, leaves[1:])})
    expected.update({name + "_l0": value.grad.numpy() for name, value in p.items()})
    assert set(expected) == set(grads)
    for name, value in expected.items():
        np.testing.assert_allclose(grads[name], value, rtol=0, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("cell", LN_CELLS)
def test_hand_written_gradients_equal_finite_differences(cell):
    check_cell_gradients(cell)


@pytest.mark.parametrize("cell", LN_CELLS)
@pytest.mark.parametrize("num_layers, bidirectional", [(1, True), (2, False)])
def test_finite_differences_with_random_gains(cell, num_layers, bidirectional):
    layer = Recurrent(cell, 2, 3, num_layers=num_layers, bidirectional=bidirectional)
    data = make_batch(layer, 4, 3, seed=7, with_lengths=True)
    check_layer_gradients(layer, data, params=_random_params(layer, 7))


def test_lstm_ln_with_a_projection_equals_finite_differences():
    layer = Recurrent("lstm_ln", 2, 3, proj_size=2, bidirectional=True)
    data = make_batch(layer, 3, 2, seed=4, with_lengths=True)
    check_layer_gradients(layer, data, params=_random_params(layer, 4))


@pytest.mark.parametrize("cell", LN_CELLS)
def test_numpy_and_torch_agree(cell):
    pytest.importorskip("torch")
    from seqkit_torch.backend import TorchBackend

    be = TorchBackend(dtype="float64")
    assert be.layer_path(Recurrent(cell, 2, 3)) == "generic"
    check_backends_agree(cell, num_layers=(1, 2), steps=4)
    layer = Recurrent(cell, 3, 4, num_layers=2, bidirectional=True)
    data = make_batch(layer, 5, 3, seed=9, with_lengths=True)
    check_layer_agrees(layer, data, params=_random_params(layer, 9))
