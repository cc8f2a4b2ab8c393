"""Bad input gets an error naming the argument, what was expected and what arrived."""

import numpy as np
import pytest

import seqkit


@pytest.fixture
def setup():
    be = seqkit.get_backend("numpy", dtype="float64")
    layer = seqkit.Recurrent("lstm", 3, 4, num_layers=2)
    return be, layer, layer.init_params(seed=0)


def test_wrong_rank(setup):
    be, layer, params = setup
    with pytest.raises(
        seqkit.ShapeError, match=r"x must be a \(T, B, I\) array \(got shape \(5, 3\)\)"
    ):
        be.recurrent_forward(layer, params, np.zeros((5, 3)))


def test_wrong_input_size(setup):
    be, layer, params = setup
    with pytest.raises(seqkit.ShapeError, match=r"input size I=3 .*\(got shape \(5, 2, 4\)\)"):
        be.recurrent_forward(layer, params, np.zeros((5, 2, 4)))


def test_initial_state_wrong_shape_and_form(setup):
    be, layer, params = setup
    x = np.zeros((5, 2, 3))
    with pytest.raises(
        seqkit.ShapeError,
        match=r"initial_state c must have shape \(L\*D, B, H\) = \(2, 2, 4\) \(got \(1, 2, 4\)\)",
    ):
        be.recurrent_forward(layer, params, x, (np.zeros((2, 2, 4)), np.zeros((1, 2, 4))))
    with pytest.raises(seqkit.ShapeError, match=r"must be a tuple \(h, c\)"):
        be.recurrent_forward(layer, params, x, np.zeros((2, 2, 4)))


@pytest.mark.parametrize(
    "lengths, match",
    [
        ([0, 5], r"lengths must lie in 1..T = 1..5 \(got min 0, max 5\)"),
        ([6, 1], r"lengths must lie in 1..T = 1..5 \(got min 1, max 6\)"),
        ([1, 2, 3], r"lengths must be \(B,\) = \(2,\) integers \(got shape \(3,\)"),
        ([1.5, 2], r"lengths must be \(B,\) = \(2,\) integers"),
    ],
)
def test_lengths(setup, lengths, match):
    be, layer, params = setup
    with pytest.raises(seqkit.ShapeError, match=match):
        be.recurrent_forward(layer, params, np.zeros((5, 2, 3)), lengths=lengths)


def test_params(setup):
    be, layer, params = setup
    bad = dict(params)
    del bad["bias_hh_l1"]
    with pytest.raises(seqkit.ShapeError, match=r"params is missing 'bias_hh_l1'"):
        be.recurrent_forward(layer, bad, np.zeros((5, 2, 3)))
    bad = dict(params, weight_ih_l0=np.zeros((16, 2)))
    with pytest.raises(
        seqkit.ShapeError,
        match=r"params\['weight_ih_l0'\] must have shape \(16, 3\) \(got \(16, 2\)\)",
    ):
        be.recurrent_forward(layer, bad, np.zeros((5, 2, 3)))


def test_d_out_shape(setup):
    be, layer, params = setup
    out, _, cache = be.recurrent_forward(layer, params, np.zeros((5, 2, 3)))
    with pytest.raises(
        seqkit.ShapeError,
        match=r"d_out must have shape \(T, B, D\*H\) = \(5, 2, 4\) \(got \(5, 2, 3\)\)",
    ):
        be.recurrent_backward(layer, cache, np.zeros((5, 2, 3)))


@pytest.mark.parametrize(
    "field, value",
    [("input_size", 0), ("hidden_size", -1), ("num_layers", 0), ("hidden_size", 2.5)],
)
def test_non_positive_sizes(field, value):
    kwargs = {"input_size": 3, "hidden_size": 4, field: value}
    with pytest.raises(ValueError, match=rf"'{field}' must be a positive integer \(got {value}\)"):
        seqkit.Recurrent("gru", **kwargs)


def test_cell_options_are_checked():
    with pytest.raises(ValueError, match=r"nonlinearity"):
        seqkit.get_cell("rnn", nonlinearity="sigmoid")
    with pytest.raises(
        TypeError,
        match=r"cell 'gru' got unknown options \['nonlinearity'\]; its options are: \(none\)",
    ):
        seqkit.get_cell("gru", nonlinearity="relu")


def test_numpy_backend_refuses_cuda():
    with pytest.raises(
        seqkit.ConfigError, match=r"backend 'numpy' runs on device 'cpu' only \(got device 'cuda'\)"
    ):
        seqkit.get_backend("numpy", device="cuda")
