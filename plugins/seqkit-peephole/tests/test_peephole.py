"""The peephole LSTM against finite differences, against plain LSTM, and on both backends.

Everything numeric runs in float64 with random, non-zero initial states (a swapped h0/c0 or a
missing peephole path would pass with zeros).
"""

from __future__ import annotations

import numpy as np
import pytest
import seqkit_peephole

import seqkit


@pytest.fixture(scope="module", autouse=True)
def registered():
    """The cell as installed through its entry point, or registered by hand in a bare checkout."""
    if "lstm_peephole" in seqkit.list_cells():
        yield
        return
    seqkit.register_plugin(seqkit_peephole, name="peephole")
    yield
    seqkit.unregister_plugin("peephole")


def _torch_backend():
    if "torch" not in seqkit.list_backends():
        pytest.skip("the torch backend is not registered")
    pytest.importorskip("torch")
    return seqkit.get_backend("torch", dtype="float64")


def _problem(rng, *, num_layers=1, bidirectional=False, T=5, B=3, I=2, H=4, lengths=True):
    layer = seqkit.Recurrent(
        "lstm_peephole", I, H, num_layers=num_layers, bidirectional=bidirectional
    )
    params = layer.init_params(rng)
    for name in params:
        if "weight_c" in name:  # make the peepholes matter: default init is small
            params[name] = rng.uniform(-1.0, 1.0, size=params[name].shape)
    LD = num_layers * layer.num_directions
    x = rng.normal(size=(T, B, I))
    state = (rng.normal(size=(LD, B, H)) * 0.5, rng.normal(size=(LD, B, H)) * 0.5)
    lens = None
    if lengths:
        lens = rng.integers(1, T + 1, size=B)
        lens[0] = T
    w_out = rng.normal(size=(T, B, layer.output_size))
    w_fin = (rng.normal(size=(LD, B, H)), rng.normal(size=(LD, B, H)))
    return layer, params, x, state, lens, w_out, w_fin


def _loss(be, layer, params, x, state, lens, w_out, w_fin):
    """sum(out * w_out) + sum(h_n * w_h) + sum(c_n * w_c): upstream gradients w_out, w_fin."""
    out, (h_n, c_n), _ = be.recurrent_forward(layer, params, x, initial_state=state, lengths=lens)
    total = float((be.to_numpy(out) * w_out).sum())
    total += float((be.to_numpy(h_n) * w_fin[0]).sum())
    total += float((be.to_numpy(c_n) * w_fin[1]).sum())
    return total


def _numeric_grad(f, arr, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to every entry of ``arr``."""
    g = np.zeros_like(arr)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + eps
        hi = f()
        arr[i] = old - eps
        lo = f()
        arr[i] = old
        g[i] = (hi - lo) / (2 * eps)
    return g


def test_registers_through_the_hook():
    assert "lstm_peephole" in seqkit.list_cells()
    cell = seqkit.get_cell("lstm_peephole")
    assert isinstance(cell, seqkit_peephole.PeepholeLSTM)
    layer = seqkit.Recurrent(cell, 3, 5)
    shapes = layer.param_shapes()
    assert shapes["weight_ih_l0"] == (20, 3)
    assert shapes["weight_ci_l0"] == shapes["weight_cf_l0"] == shapes["weight_co_l0"] == (5,)
    assert layer.state_names == ("h", "c")


def test_zero_peepholes_give_the_plain_lstm(rng):
    be = seqkit.get_backend("numpy", dtype="float64")
    layer, params, x, state, lens, _, _ = _problem(rng, num_layers=2, bidirectional=True)
    for name in params:
        if "weight_c" in name:
            params[name][:] = 0.0
    plain = seqkit.Recurrent("lstm", 2, 4, num_layers=2, bidirectional=True)
    plain_params = {name: params[name] for name in plain.param_shapes()}
    out, (h, c), _ = be.recurrent_forward(layer, params, x, state, lens)
    out2, (h2, c2), _ = be.recurrent_forward(plain, plain_params, x, state, lens)
    np.testing.assert_allclose(out, out2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(h, h2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c, c2, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, True)])
def test_hand_written_gradients_match_finite_differences(rng, num_layers, bidirectional):
    be = seqkit.get_backend("numpy", dtype="float64")
    layer, params, x, state, lens, w_out, w_fin = _problem(
        rng, num_layers=num_layers, bidirectional=bidirectional
    )
    _, _, cache = be.recurrent_forward(layer, params, x, state, lens)
    grads = be.recurrent_backward(layer, cache, w_out, w_fin)

    def f():
        return _loss(be, layer, params, x, state, lens, w_out, w_fin)

    for name in params:
        num = _numeric_grad(f, params[name])
        np.testing.assert_allclose(grads[name], num, rtol=1e-5, atol=1e-7, err_msg=f"d {name}")
    np.testing.assert_allclose(grads["x"], _numeric_grad(f, x), rtol=1e-5, atol=1e-7, err_msg="d x")
    for key, part in zip(("h0", "c0"), state, strict=True):
        num = _numeric_grad(f, part)
        np.testing.assert_allclose(grads[key], num, rtol=1e-5, atol=1e-7, err_msg=f"d {key}")


def test_torch_backend_agrees_with_numpy(rng):
    tb = _torch_backend()
    nb = seqkit.get_backend("numpy", dtype="float64")
    layer, params, x, state, lens, w_out, w_fin = _problem(rng, num_layers=2, bidirectional=True)
    out_n, fin_n, cache_n = nb.recurrent_forward(layer, params, x, state, lens)
    grads_n = nb.recurrent_backward(layer, cache_n, w_out, w_fin)
    out_t, fin_t, cache_t = tb.recurrent_forward(layer, params, x, state, lens)
    grads_t = tb.recurrent_backward(layer, cache_t, w_out, w_fin)
    np.testing.assert_allclose(tb.to_numpy(out_t), out_n, rtol=1e-10, atol=1e-12)
    for a, b in zip(fin_t, fin_n, strict=True):
        np.testing.assert_allclose(tb.to_numpy(a), b, rtol=1e-10, atol=1e-12)
    assert set(grads_t) == set(grads_n)
    for name, g in grads_n.items():
        np.testing.assert_allclose(
            tb.to_numpy(grads_t[name]), g, rtol=1e-9, atol=1e-11, err_msg=f"d {name}"
        )


def test_hand_written_backward_matches_torch_autograd(rng):
    """The cell's equations written directly in torch, differentiated by autograd."""
    _torch_backend()
    import torch

    be = seqkit.get_backend("numpy", dtype="float64")
    layer, params, x, state, _, w_out, w_fin = _problem(rng, lengths=False)
    _, _, cache = be.recurrent_forward(layer, params, x, state)
    grads = be.recurrent_backward(layer, cache, w_out, w_fin)

    t = {name: torch.tensor(v, requires_grad=True) for name, v in params.items()}
    xt = torch.tensor(x, requires_grad=True)
    h, c = (torch.tensor(s[0], requires_grad=True) for s in state)
    h0, c0 = h, c
    outs = []
    for step in range(x.shape[0]):
        z = xt[step] @ t["weight_ih_l0"].T + t["bias_ih_l0"]
        z = z + h @ t["weight_hh_l0"].T + t["bias_hh_l0"]
        zi, zf, zg, zo = z.chunk(4, dim=1)
        i = torch.sigmoid(zi + t["weight_ci_l0"] * c)
        f = torch.sigmoid(zf + t["weight_cf_l0"] * c)
        c = f * c + i * torch.tanh(zg)
        o = torch.sigmoid(zo + t["weight_co_l0"] * c)
        h = o * torch.tanh(c)
        outs.append(h)
    loss = (torch.stack(outs) * torch.tensor(w_out)).sum()
    loss = loss + (h * torch.tensor(w_fin[0][0])).sum() + (c * torch.tensor(w_fin[1][0])).sum()
    loss.backward()
    for name, tensor in t.items():
        np.testing.assert_allclose(
            grads[name], tensor.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"d {name}"
        )
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["h0"][0], h0.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads["c0"][0], c0.grad.numpy(), rtol=1e-10, atol=1e-12)


# --- seqkit's own test kit: the checks every cell plugin should run -----------------------
try:
    from seqkit import testing
except ImportError:  # a seqkit older than its test kit: the checks above still run
    testing = None

needs_kit = pytest.mark.skipif(testing is None, reason="this seqkit has no seqkit.testing kit")


@needs_kit
def test_seqkit_testing_gradients_numpy():
    testing.check_cell_gradients("lstm_peephole")


@needs_kit
def test_seqkit_testing_gradients_torch_autograd():
    _torch_backend()
    testing.check_cell_gradients("lstm_peephole", backend="torch", num_layers=1)


@needs_kit
def test_seqkit_testing_backends_agree():
    _torch_backend()
    testing.check_backends_agree("lstm_peephole", num_layers=(1, 2))
    testing.check_backends_agree("lstm_peephole", dtype="float32", num_layers=1)
