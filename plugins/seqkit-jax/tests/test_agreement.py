"""Every registered cell (and the peephole plugin's) on JAX against the NumPy reference: outputs,
final states and every gradient to 1e-9 in float64, float32 within FLOAT32_TOLERANCE, with random
non-zero initial states; fixed settings and Hypothesis-drawn ones."""

import pytest

pytest.importorskip("jax")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import seqkit  # noqa: E402
from seqkit.testing import (  # noqa: E402
    check_backends_agree,
    check_layer_agrees,
    recurrent_layers,
    sequence_batches,
)


def cell_id(c):
    return c if isinstance(c, str) else f"{c.name}-{c.nonlinearity}"


#: every registered cell (built-in, the peephole plugin's when installed) and rnn with relu
CELLS = [*seqkit.list_cells(), seqkit.get_cell("rnn", nonlinearity="relu")]


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_agrees_with_numpy_float64(cell):
    """L = 1, 2; one and two directions; with and without lengths: 1e-9 (FLOAT64_TOLERANCE)."""
    check_backends_agree(cell, backends=("jax",), dtype="float64", num_layers=(1, 2))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_agrees_with_numpy_float32(cell):
    check_backends_agree(cell, backends=("jax",), dtype="float32", num_layers=2, bidirectional=True)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_agrees_with_numpy_drawn(data):
    """Drawn cell, sizes, L (1..2), D, lengths and values; every cell, every gradient."""
    layer = data.draw(recurrent_layers(max_layers=2), label="layer")
    batch = data.draw(sequence_batches(layer), label="batch")
    check_layer_agrees(layer, batch, backends=("jax",), dtype="float64")
