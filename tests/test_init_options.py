"""Initialisation: PyTorch's default kept bit for bit, recurrent_init, forget_bias, extra params."""

import math

import attrs
import numpy as np
import pytest

from seqkit import Recurrent
from seqkit.cells import LSTM

CELLS = ["rnn", "gru", "gru_simple", "lstm", "lstm_peephole"]


def _pytorch_default(layer, seed, dtype="float64"):
    """The initialisation seqkit always had: every parameter, in order, from one generator."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / math.sqrt(layer.hidden_size)
    return {
        name: rng.uniform(-bound, bound, size=shape).astype(dtype)
        for name, shape in layer.param_shapes().items()
    }


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_defaults_give_the_same_values_as_before(cell, dtype):
    layer = Recurrent(cell, 3, 4, num_layers=2, bidirectional=True)
    got = layer.init_params(11, dtype=dtype)
    want = _pytorch_default(layer, 11, dtype)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("cell, proj_size", [("rnn", 0), ("gru", 0), ("lstm", 0), ("lstm", 2)])
def test_orthogonal_gives_orthogonal_gate_blocks(cell, proj_size):
    H = 5
    layer = Recurrent(
        cell, 3, H, num_layers=2, bidirectional=True, recurrent_init="orthogonal",
        proj_size=proj_size,
    )  # fmt: skip
    params = layer.init_params(3)
    K = proj_size or H
    for name, value in params.items():
        if not name.startswith("weight_hh"):
            continue
        assert value.shape == (layer.cell.num_gates * H, K)
        for k in range(layer.cell.num_gates):
            block = value[k * H : (k + 1) * H]  # (H, K)
            np.testing.assert_allclose(block.T @ block, np.eye(K), rtol=0, atol=1e-12)
        blocks = [value[k * H : (k + 1) * H] for k in range(layer.cell.num_gates)]
        if len(blocks) > 1:
            assert not np.allclose(blocks[0], blocks[1])  # each gate draws its own matrix
    # the other parameters keep PyTorch's rule and bound
    bound = 1.0 / math.sqrt(H)
    assert all(np.abs(v).max() <= bound for n, v in params.items() if not n.startswith("weight_hh"))
    again = layer.init_params(3)
    assert all(np.array_equal(again[n], params[n]) for n in params)
    other = layer.init_params(4)
    assert not np.array_equal(other["weight_hh_l0"], params["weight_hh_l0"])


@pytest.mark.parametrize("cell", ["lstm", "lstm_peephole"])
@pytest.mark.parametrize("value", [1.0, -0.5, 0.0])
def test_forget_bias_sets_the_forget_block(cell, value):
    H = 4
    kwargs = {"num_layers": 2, "bidirectional": True}
    layer = Recurrent(cell, 3, H, forget_bias=value, **kwargs)
    got = layer.init_params(9)
    default = Recurrent(cell, 3, H, **kwargs).init_params(9)
    f = slice(H, 2 * H)  # i, f, g, o
    for name, v in got.items():
        if name.startswith("bias_ih"):
            np.testing.assert_array_equal(v[f], value)
        elif name.startswith("bias_hh"):
            np.testing.assert_array_equal(v[f], 0.0)
        else:
            np.testing.assert_array_equal(v, default[name], err_msg=name)
            continue
        rest = np.r_[0:H, 2 * H : 4 * H]  # the other gates keep their draws
        np.testing.assert_array_equal(v[rest], default[name][rest], err_msg=name)


@pytest.mark.parametrize("cell", ["rnn", "gru", "gru_simple"])
def test_forget_bias_needs_a_forget_gate(cell):
    with pytest.raises(ValueError, match=rf"'forget_bias' needs a cell with a forget gate.*{cell}"):
        Recurrent(cell, 3, 4, forget_bias=1.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"recurrent_init": "xavier"}, r"'recurrent_init' must be one of 'uniform', 'orthogonal'"),
        ({"forget_bias": float("nan")}, r"'forget_bias' must be a finite number \(got nan\)"),
        ({"forget_bias": "1"}, r"'forget_bias' must be None or a number \(got '1'\)"),
        ({"forget_bias": True}, r"'forget_bias' must be None or a number \(got True\)"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Recurrent("lstm", 3, 4, **kwargs)


# --- extra parameters choose their initialisation ----------------------------------------------
@attrs.frozen
class _ScaledLSTM(LSTM):
    """An LSTM with an extra gain that starts at 1 and a scale drawn from N(0, 1)."""

    name = "test_scaled_lstm"

    def extra_param_shapes(self, hidden_size):
        return {"gain": (hidden_size,), "scale": (2, hidden_size)}

    def init_extra_params(self, rng, hidden_size, input_size):
        return {
            "gain": np.ones(hidden_size),
            "scale": rng.standard_normal((2, hidden_size)) + input_size,
        }


@attrs.frozen
class _BrokenLSTM(_ScaledLSTM):
    def init_extra_params(self, rng, hidden_size, input_size):
        return {"gain": np.ones(hidden_size + 1)}


def test_extra_params_use_the_cells_initialiser():
    layer = Recurrent(_ScaledLSTM(), 3, 4, num_layers=2)
    params = layer.init_params(0)
    np.testing.assert_array_equal(params["gain_l0"], 1.0)
    np.testing.assert_array_equal(params["gain_l1"], 1.0)
    # input_size is what the layer reads: I = 3 for layer 0, H = 4 above
    assert abs(params["scale_l0"].mean() - 3) < 2 and abs(params["scale_l1"].mean() - 4) < 2
    assert not np.array_equal(params["scale_l0"], params["scale_l1"])
    again = layer.init_params(0)
    assert all(np.array_equal(again[n], params[n]) for n in params)


def test_extra_params_default_to_the_uniform_rule():
    """The peephole plugin declares shapes only: its weights keep PyTorch's uniform draws."""
    layer = Recurrent("lstm_peephole", 3, 4, bidirectional=True)
    want = _pytorch_default(layer, 5)
    got = layer.init_params(5)
    assert all(np.array_equal(got[n], want[n]) for n in want)


def test_a_wrong_extra_initialiser_is_named():
    with pytest.raises(ValueError, match=r"init_extra_params must return the names and shapes"):
        Recurrent(_BrokenLSTM(), 3, 4).init_params(0)
