"""The NumPy reference equals torch.nn.RNN/GRU/LSTM given the same weights, float64."""

import numpy as np
import pytest

import seqkit
from tests.helpers import backend64, random_inputs, state_parts

torch = pytest.importorskip("torch")

MODULES = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}


def torch_reference(cell, layer, params, x, state, lengths, w_out, w_fin, nonlinearity="tanh"):
    kwargs = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
    module = getattr(torch.nn, MODULES[cell])(
        layer.input_size,
        layer.hidden_size,
        num_layers=layer.num_layers,
        bidirectional=layer.bidirectional,
        **kwargs,
    ).double()
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(params[name]))
    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s, requires_grad=True) for s in state_parts(state))
    T = x.shape[0]
    inp = xt
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), enforce_sorted=False
        )
    out, final = module(inp, st if len(st) == 2 else st[0])
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    final = final if isinstance(final, tuple) else (final,)
    loss = (out * torch.from_numpy(w_out)).sum()
    for f, w in zip(final, state_parts(w_fin)):
        loss = loss + (f * torch.from_numpy(w)).sum()
    loss.backward()
    grads = {"x": xt.grad, **{f"{n}0": s.grad for n, s in zip(layer.state_names, st)}}
    grads.update({name: p.grad for name, p in module.named_parameters()})
    return (
        out.detach().numpy(),
        [f.detach().numpy() for f in final],
        {k: v.numpy() for k, v in grads.items()},
    )


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_matches_torch(cell, num_layers, bidirectional, with_lengths):
    rng = np.random.default_rng(7 + num_layers + 2 * bidirectional + 4 * with_lengths)
    be = backend64()
    layer = seqkit.Recurrent(cell, 4, 5, num_layers=num_layers, bidirectional=bidirectional)
    params = layer.init_params(seed=3)
    x, state, lengths = random_inputs(layer, 7, 3, rng, lengths=with_lengths)
    out, final, cache = be.recurrent_forward(layer, params, x, state, lengths)
    w_out = rng.normal(size=out.shape)
    w_fin = tuple(rng.normal(size=f.shape) for f in state_parts(final))
    w_fin = w_fin[0] if len(w_fin) == 1 else w_fin
    grads = be.recurrent_backward(layer, cache, w_out, w_fin)
    t_out, t_final, t_grads = torch_reference(cell, layer, params, x, state, lengths, w_out, w_fin)
    np.testing.assert_allclose(out, t_out, rtol=1e-12, atol=1e-13)
    for mine, theirs in zip(state_parts(final), t_final):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-13)
    assert set(grads) == set(t_grads)
    for name in grads:
        np.testing.assert_allclose(grads[name], t_grads[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_relu_rnn_matches_torch(rng):
    be = backend64()
    layer = seqkit.Recurrent(seqkit.get_cell("rnn", nonlinearity="relu"), 3, 4, num_layers=2)
    params = layer.init_params(seed=0)
    x, state, _ = random_inputs(layer, 5, 2, rng)
    out, final, cache = be.recurrent_forward(layer, params, x, state)
    w_out = rng.normal(size=out.shape)
    grads = be.recurrent_backward(layer, cache, w_out, np.zeros_like(final))
    t_out, _, t_grads = torch_reference(
        "rnn", layer, params, x, state, None, w_out, np.zeros_like(final), "relu"
    )
    np.testing.assert_allclose(out, t_out, rtol=1e-12, atol=1e-13)
    for name in grads:
        np.testing.assert_allclose(grads[name], t_grads[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_init_matches_torch_bounds_and_names():
    layer = seqkit.Recurrent("lstm", 3, 16, num_layers=2, bidirectional=True)
    module = torch.nn.LSTM(3, 16, num_layers=2, bidirectional=True)
    params = layer.init_params(seed=0)
    assert list(params) == [name for name, _ in module.named_parameters()]
    for name, p in module.named_parameters():
        assert params[name].shape == tuple(p.shape)
        assert np.abs(params[name]).max() <= 1 / 4
