"""Every registered cell agrees across backends: NumPy hand-written BPTT, torch autograd, finite
differences (float64), and float32 within seqkit.testing.FLOAT32_TOLERANCE.

The fixed-setting tests cover L in 1..3, both directions, with and without lengths, random
non-zero initial states; the Hypothesis tests draw the sizes, lengths and values.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seqkit
from seqkit.testing import (
    check_backends_agree,
    check_cell_gradients,
    check_layer_agrees,
    check_layer_gradients,
)
from tests.strategies import fd_layers, sequence_batches, small_layers

torch = pytest.importorskip("torch")
from seqkit_torch import TorchBackend  # noqa: E402

CELLS = seqkit.list_cells()
RELU = seqkit.get_cell("rnn", nonlinearity="relu")
ALL = [*CELLS, RELU]


def cell_id(c):
    return c if isinstance(c, str) else f"{c.name}-{c.nonlinearity}"


@pytest.mark.parametrize("cell", ALL, ids=cell_id)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_backends_agree(cell, dtype):
    """numpy and torch (its default path) against the NumPy float64 reference, L = 1..3."""
    check_backends_agree(cell, backends=("numpy", "torch"), dtype=dtype)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_generic_path_agrees_for_fused_cells(cell):
    """The cells' hand-written BPTT inside autograd.Function, on the cells that also run fused."""
    check_backends_agree(
        cell, backends=[TorchBackend(dtype="float64", path="generic")], num_layers=(1, 2)
    )


@pytest.mark.parametrize("cell", ALL, ids=cell_id)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_gradients_match_finite_differences(cell, backend):
    """Both backends against central differences; NumPy in every setting, torch in the two
    extremes (its agreement with NumPy covers the rest, and each torch entry costs two passes)."""
    if backend == "numpy":
        check_cell_gradients(cell, backend=backend, num_layers=(1, 2))
    else:
        check_cell_gradients(
            cell, backend=backend, num_layers=1, bidirectional=False, with_lengths=False
        )
        check_cell_gradients(
            cell, backend=backend, num_layers=2, bidirectional=True, with_lengths=True, seed=5
        )


@settings(max_examples=15)
@given(layer=small_layers, data=st.data())
def test_agreement_property_float64(layer, data):
    batch = data.draw(sequence_batches(layer, max_steps=4, max_batch=3))
    check_layer_agrees(layer, batch, backends=("torch",), seed=data.draw(st.integers(0, 2**16)))


@settings(max_examples=15)
@given(layer=small_layers, data=st.data())
def test_agreement_property_float32(layer, data):
    batch = data.draw(sequence_batches(layer, max_steps=4, max_batch=3))
    check_layer_agrees(layer, batch, backends=("numpy", "torch"), dtype="float32")


@settings(max_examples=5)
@given(layer=fd_layers, data=st.data())
def test_torch_gradients_property_finite_differences(layer, data):
    batch = data.draw(sequence_batches(layer, max_steps=3, max_batch=2))
    check_layer_gradients(layer, batch, backend="torch")
