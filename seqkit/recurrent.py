"""A recurrent layer's specification: cell, sizes, stacking, directions and parameters."""

from __future__ import annotations

import math

import attrs
import numpy as np

from seqkit.cells import Cell
from seqkit.dropout import probability

__all__ = ["Recurrent", "get_cell"]


def get_cell(name: str | Cell, **options) -> Cell:
    """A registered cell built with ``options``: ``get_cell("rnn", nonlinearity="relu")``."""
    from seqkit._plugins import build

    return build("cell", Cell, name, options)


def _positive(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{attribute.name!r} must be a positive integer (got {value!r})")


@attrs.frozen
class Recurrent:
    """A stack of recurrent layers: ``L`` layers of ``D`` directions of one cell.

    Args:
        cell: a registered cell name (``"rnn"``, ``"gru"``, ``"gru_simple"``, ``"lstm"``, ...)
            or a :class:`~seqkit.Cell` instance (``seqkit.get_cell("rnn", nonlinearity="relu")``).
        input_size: I, features per step of the input.
        hidden_size: H, features of each direction's state.
        num_layers: L, stacked layers; layer ``l > 0`` reads the ``D*H`` outputs of layer ``l-1``.
        bidirectional: D = 2 when true; the reverse direction reads each sequence's valid
            prefix back to front.
        dropout: p in [0, 1), ``torch.nn.LSTM(dropout=p)``'s meaning: in training, inverted
            dropout on the outputs of every layer but the last (nothing for L = 1). A backend's
            ``recurrent_forward`` has no training context and ignores it;
            :func:`seqkit.dropout.stack_forward` applies it with masks drawn on the host.

    Parameters are named as in ``torch.nn.RNN/GRU/LSTM``: ``weight_ih_l{k}``, ``weight_hh_l{k}``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}``, with ``_reverse`` for the second direction.
    """

    cell: Cell = attrs.field(converter=get_cell)
    input_size: int = attrs.field(validator=_positive)
    hidden_size: int = attrs.field(validator=_positive)
    num_layers: int = attrs.field(default=1, validator=_positive, kw_only=True)
    bidirectional: bool = attrs.field(
        default=False, kw_only=True, validator=attrs.validators.instance_of(bool)
    )
    dropout: float = attrs.field(default=0.0, kw_only=True, validator=probability)

    @property
    def num_directions(self) -> int:
        """D: 2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """D*H, the last axis of the output."""
        return self.num_directions * self.hidden_size

    @property
    def state_names(self) -> tuple[str, ...]:
        """``("h",)`` or ``("h", "c")``: the final state's parts."""
        return self.cell.state_names

    @staticmethod
    def suffix(layer: int, direction: int) -> str:
        """``_l{layer}`` plus ``_reverse`` for direction 1 (PyTorch's naming)."""
        return f"_l{layer}" + ("_reverse" if direction else "")

    def direction_shapes(self, layer: int) -> dict[str, tuple[int, ...]]:
        """Short parameter names and shapes of one direction of ``layer``."""
        G, H = self.cell.num_gates, self.hidden_size
        inp = self.input_size if layer == 0 else self.output_size
        shapes = {
            "weight_ih": (G * H, inp),
            "weight_hh": (G * H, H),
            "bias_ih": (G * H,),
            "bias_hh": (G * H,),
        }
        shapes.update(self.cell.extra_param_shapes(H))
        return shapes

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's full name and shape, in PyTorch's order."""
        return {
            short + self.suffix(layer, d): shape
            for layer in range(self.num_layers)
            for d in range(self.num_directions)
            for short, shape in self.direction_shapes(layer).items()
        }

    def direction_params(self, params: dict, layer: int, direction: int) -> dict:
        """The parameters of one direction of one layer, keyed by short name."""
        suffix = self.suffix(layer, direction)
        return {short: params[short + suffix] for short in self.direction_shapes(layer)}

    def init_params(
        self, seed: int | np.random.Generator | None = None, *, dtype: str = "float64"
    ) -> dict[str, np.ndarray]:
        """PyTorch's default initialisation, U(-1/sqrt(H), 1/sqrt(H)), as NumPy arrays.

        Args:
            seed: an integer or a ``numpy.random.Generator``; the same seed gives the same values.
            dtype: ``"float32"`` or ``"float64"``.
        """
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.hidden_size)
        return {
            name: rng.uniform(-bound, bound, size=shape).astype(dtype)
            for name, shape in self.param_shapes().items()
        }
