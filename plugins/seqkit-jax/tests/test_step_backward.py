"""Every cell's hand-written step_backward against JAX's autodiff of its own step (float64)."""

import attrs
import pytest

pytest.importorskip("jax")

from seqkit_jax.testing import check_step_backward  # noqa: E402

import seqkit  # noqa: E402
from seqkit.cells import RNN  # noqa: E402
from seqkit.testing import AgreementError  # noqa: E402

CELLS = [*seqkit.list_cells(), seqkit.get_cell("rnn", nonlinearity="relu")]


def cell_id(c):
    return c if isinstance(c, str) else f"{c.name}-{c.nonlinearity}"


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_step_backward_is_the_derivative_of_step(cell, seed):
    check_step_backward(cell, seed=seed, scale=1.5)


@attrs.frozen
class _WrongTanhDerivative(RNN):
    """tanh' written as 1 - h instead of 1 - h^2: NumPy and torch's generic path agree on it."""

    name = "rnn_wrong_backward"

    def step_backward(self, ops, d_state, cache, params, grads):
        (d_h,) = d_state
        d_z = d_h * (1 - cache)
        return d_z, d_z, (None,)


@attrs.frozen
class _LostExtraGradient(RNN):
    """A cell with an extra parameter whose hand-written gradient is never accumulated."""

    name = "rnn_lost_extra_gradient"

    def extra_param_shapes(self, hidden_size):
        return {"scale": (hidden_size,)}

    def step(self, ops, xg, hg, state, params):
        h = ops.tanh(xg + hg + params["scale"] * state[0])
        return (h,), h

    def step_backward(self, ops, d_state, cache, params, grads):
        (d_h,), h = d_state, cache
        d_z = d_h * (1 - h * h)
        return d_z, d_z, (d_z * params["scale"],)  # forgets grads["scale"] += ...


def test_a_wrong_backward_is_caught():
    with pytest.raises(AgreementError, match=r"gradient of xg at index .* autodiff"):
        check_step_backward(_WrongTanhDerivative())


def test_a_missing_extra_parameter_gradient_is_caught():
    with pytest.raises(AgreementError, match=r"gradient of scale at index"):
        check_step_backward(_LostExtraGradient())
