"""seqkit.testing: its strategies draw what they say, and its checks catch a wrong cell."""

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqkit
from seqkit.cells import LSTM
from seqkit.testing import (
    AgreementError,
    check_backends_agree,
    check_cell_gradients,
    check_layer_agrees,
    make_batch,
)
from tests.strategies import lengths, recurrent_layers, sequence_batches, small_layers


@attrs.frozen
class ForgetGateOffLSTM(LSTM):
    """An LSTM whose hand-written forget-gate derivative is 1% too large: a subtle bug."""

    name = "lstm_forget_off"

    def step_backward(self, ops, d_state, cache, params, grads):
        d_z, d_hg, d_prev = super().step_backward(ops, d_state, cache, params, grads)
        H = d_z.shape[1] // 4
        d_z[:, H : 2 * H] *= 1.01  # d_z and d_hg are the same array: scaled once
        return d_z, d_hg, d_prev


class WrongCellPlugin:
    @seqkit.hookimpl
    def seqkit_register_cells(self):
        return [ForgetGateOffLSTM]


@pytest.fixture
def wrong_cell():
    name = seqkit.register_plugin(WrongCellPlugin(), name="test-wrong-lstm")
    try:
        yield ForgetGateOffLSTM.name
    finally:
        seqkit.unregister_plugin(name)
    assert ForgetGateOffLSTM.name not in seqkit.list_cells()


PARAM = r"parameter '(weight|bias)_(ih|hh)_l0'"


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_wrong_backward_is_caught_with_parameter_step_and_index(wrong_cell, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    with pytest.raises(AgreementError) as info:
        check_cell_gradients(
            wrong_cell, backend=backend, num_layers=1, bidirectional=False, with_lengths=False
        )
    message = str(info.value)
    assert "lstm_forget_off" in message
    for pattern in [
        PARAM,
        r"at index \(\d+(, \d+)?,?\)",
        r"time step \d",
        r"numerical -?\d",
        r"analytical -?\d",
    ]:
        assert any(True for _ in __import__("re").finditer(pattern, message)), (pattern, message)


@pytest.fixture
def falsely_summed_cell():
    """A GRU that declares sums_projections: its reset gate multiplies hg's last block."""

    @attrs.frozen
    class SummedGRU(seqkit.cells.GRU):
        name = "gru_falsely_summed"
        sums_projections = True

    class Plugin:
        @seqkit.hookimpl
        def seqkit_register_cells(self):
            return [SummedGRU]

    name = seqkit.register_plugin(Plugin(), name="test-falsely-summed")
    try:
        yield SummedGRU.name
    finally:
        seqkit.unregister_plugin(name)


def test_a_false_sums_projections_is_caught_naming_the_declaration(falsely_summed_cell):
    with pytest.raises(AgreementError, match=r"gru_falsely_summed.*sums_projections = True"):
        check_cell_gradients(falsely_summed_cell, num_layers=1, bidirectional=False)


def test_error_is_an_assertion_error():
    assert issubclass(AgreementError, AssertionError)


def test_correct_cells_pass_finite_differences_on_numpy():
    for cell in ["rnn", "gru", "gru_simple", "lstm"]:
        check_cell_gradients(cell, num_layers=(1, 2), bidirectional=True, with_lengths=True)


class ShiftedBackend(seqkit.Backend):
    """A broken backend: the NumPy reference with one output entry nudged."""

    name = "shifted"

    def __init__(self, *, dtype="float64", device="cpu"):
        from seqkit_numpy import NumpyOps

        super().__init__(dtype=dtype, device=device)
        self.ops = NumpyOps(dtype)

    def _recurrent_forward(self, layer, params, x, state0, lengths):
        out, final, cache = super()._recurrent_forward(layer, params, x, state0, lengths)
        out[1, 0, 2] += 1e-3
        return out, final, cache


def test_disagreeing_backend_is_named_with_index_and_time_step():
    layer = seqkit.Recurrent("gru", 2, 3)
    with pytest.raises(
        AgreementError, match=r"backend 'shifted'.*output 'out' at index \(1, 0, 2\), time step 1"
    ):
        check_layer_agrees(layer, make_batch(layer, 3, 2), backends=[ShiftedBackend()])


def test_float32_tolerance_still_catches_a_one_percent_error(wrong_cell):
    layer = seqkit.Recurrent(wrong_cell, 2, 3)
    data = make_batch(layer, 3, 2, seed=1)
    with pytest.raises(AgreementError, match="on the gradient of"):
        check_layer_agrees(
            layer, data, backends=["numpy"], dtype="float32", reference=_TrueLSTMNumpy()
        )


class _TrueLSTMNumpy(seqkit.Backend):
    """The NumPy reference running the correct LSTM whatever LSTM subclass it is given."""

    name = "true-lstm"

    def __init__(self):
        from seqkit_numpy import NumpyOps

        super().__init__(dtype="float64", device="cpu")
        self.ops = NumpyOps("float64")

    def _recurrent_forward(self, layer, params, x, state0, lengths):
        layer = attrs.evolve(layer, cell=LSTM())
        return super()._recurrent_forward(layer, params, x, state0, lengths)


@settings(max_examples=20)
@given(layer=small_layers, data=st.data())
def test_sequence_batches_fit_their_layer(layer, data):
    batch = data.draw(sequence_batches(layer, max_steps=4, max_batch=3))
    T, B, I = batch.x.shape
    assert 1 <= T <= 4 and 1 <= B <= 3 and I == layer.input_size
    LD, H = layer.num_layers * layer.num_directions, layer.hidden_size
    parts = (
        batch.initial_state if isinstance(batch.initial_state, tuple) else (batch.initial_state,)
    )
    assert len(parts) == len(layer.state_names)
    assert all(p.shape == (LD, B, H) and np.any(p != 0) for p in parts)
    assert batch.d_out.shape == (T, B, layer.output_size)
    if batch.lengths is not None:
        assert batch.lengths.shape == (B,) and batch.lengths.min() >= 1 and batch.lengths.max() <= T
    assert np.all(np.abs(batch.x) <= 1.0)


@settings(max_examples=10)
@given(steps=st.integers(1, 5), batch=st.integers(1, 4), data=st.data())
def test_lengths_lie_in_range(steps, batch, data):
    lens = data.draw(lengths(steps, batch))
    assert lens.shape == (batch,) and lens.dtype == np.int64
    assert lens.min() >= 1 and lens.max() <= steps


def test_recurrent_layers_respect_their_bounds():
    strategy = recurrent_layers(["gru"], max_layers=2, bidirectional=True)

    @settings(max_examples=10)
    @given(layer=strategy)
    def inner(layer):
        assert layer.cell.name == "gru" and layer.bidirectional and layer.num_layers <= 2

    inner()


def test_check_backends_agree_on_a_cell_instance():
    check_backends_agree(
        seqkit.get_cell("rnn", nonlinearity="relu"), backends=["numpy"], num_layers=1
    )
