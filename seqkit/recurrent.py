"""A recurrent layer's specification: cell, sizes, stacking, directions and parameters."""

from __future__ import annotations

import math

import attrs
import numpy as np

from seqkit.cells import Cell
from seqkit.dropout import probability

__all__ = ["RECURRENT_INITS", "RECURRENT_OPTIONS", "Recurrent", "get_cell"]

#: The choices of ``Recurrent(recurrent_init=...)``.
RECURRENT_INITS = ("uniform", "orthogonal")


def get_cell(name: str | Cell, **options) -> Cell:
    """A registered cell built with ``options``: ``get_cell("rnn", nonlinearity="relu")``."""
    from seqkit._plugins import build

    return build("cell", Cell, name, options)


def _positive(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{attribute.name!r} must be a positive integer (got {value!r})")


def _non_negative(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{attribute.name!r} must be a non-negative integer (got {value!r})")


def _option(text: str, choices: tuple[str, ...] | None = None) -> dict:
    """Field metadata of a stack option every model takes and ``seqkit train`` offers."""
    return {"help": text} if choices is None else {"help": text, "choices": choices}


def _probability(text: str) -> float:
    """A stack option that is a probability in [0, 1), 0 by default (nothing drawn)."""
    return attrs.field(default=0.0, kw_only=True, validator=probability, metadata=_option(text))


def _bool(instance, attribute, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name!r} must be True or False (got {value!r})")


def _optional_finite(instance, attribute, value) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{attribute.name!r} must be None or a number (got {value!r})")
    if not math.isfinite(float(value)):
        raise ValueError(f"{attribute.name!r} must be a finite number (got {value!r})")


@attrs.frozen
class Recurrent:
    """A stack of recurrent layers: ``L`` layers of ``D`` directions of one cell.

    Args:
        cell: a registered cell name (``"rnn"``, ``"gru"``, ``"gru_simple"``, ``"lstm"``, ...)
            or a :class:`~seqkit.Cell` instance (``seqkit.get_cell("rnn", nonlinearity="relu")``).
        input_size: I, features per step of the input.
        hidden_size: H, features of each direction's state.
        num_layers: L, stacked layers; layer ``l > 0`` reads the ``D*H`` outputs of layer ``l-1``
            (``D*P`` with a projection).
        bidirectional: D = 2 when true; the reverse direction reads each sequence's valid
            prefix back to front.
        dropout: p in [0, 1), ``torch.nn.LSTM(dropout=p)``'s meaning: in training, inverted
            dropout on the outputs of every layer but the last (nothing for L = 1). A backend's
            ``recurrent_forward`` has no training context and ignores it;
            :func:`seqkit.dropout.stack_forward` applies it with masks drawn on the host.
        proj_size: P, ``torch.nn.LSTM(proj_size=P)``'s projection (Sak et al. 2014): 0 for none,
            else ``0 < P < H``, for cells that allow it (``lstm``, ``lstm_ln``). After each step
            ``h<t> = (o * tanh(c<t>)) @ weight_hr^T``, with ``weight_hr_l{k}`` (P, H); then h is
            (B, P), ``weight_hh`` is (G*H, P), the output (T, B, D*P), the final and initial
            h (L*D, B, P), c still (L*D, B, H).
        recurrent_init: how :meth:`init_params` starts ``weight_hh``: ``"uniform"`` (PyTorch's
            U(-1/sqrt(H), 1/sqrt(H)), the default) or ``"orthogonal"``: each of the G gate blocks
            ``weight_hh[k*H:(k+1)*H]`` (H, H) is a random orthogonal matrix, (H, P) with
            orthonormal columns under a projection (flax's choice, one orthogonal kernel per
            gate; Keras instead makes the whole (H, G*H) kernel semi-orthogonal, which leaves no
            single gate's map orthogonal). Drawn as in Keras and flax: Q of the QR decomposition
            of a standard normal matrix, its columns' signs fixed by diag(R).
        forget_bias: None (the default: no change), or the value the forget-gate block of every
            ``bias_ih`` starts at, that of ``bias_hh`` starting at 0, so that the gate's bias is
            the value (Jozefowicz et al. 2015; Keras' ``unit_forget_bias`` is 1.0). Only for
            cells with a forget gate (``lstm``, ``lstm_ln``).
        recurrent_dropout: p in [0, 1), variational dropout of the recurrent connection (Gal
            and Ghahramani 2016): in training, one inverted-dropout mask per sequence, layer and
            direction, (B, H) ((B, P) under a projection), multiplies h<t-1> where it enters the
            recurrent product, ``hg<t> = (h<t-1> * m) @ W_hh^T + b_hh``, at every step; the
            state itself (what a GRU's update mixes, what the next layer reads) is not masked.
            Nothing in evaluation.
        input_dropout: p in [0, 1), one inverted-dropout mask per sequence and layer, (B, I_l),
            on each layer's input at every step, in training only (Gal and Ghahramani's input
            mask; both directions of a layer read the same masked input).
        zoneout: p in [0, 1), zoneout (Krueger et al. 2016) of every state part: in training
            each unit of h (and c) keeps its previous value with probability p, a fresh 0/1 mask
            z (T, B, F) per part, layer and direction, ``s<t> = z * s<t-1> + (1 - z) * s~<t>``
            with s~ the cell's new state (after a projection); in evaluation z is p itself,
            the expectation ``s<t> = p * s<t-1> + (1 - p) * s~<t>``. The output is the zoned
            h<t>.
        learn_initial_state: the initial state becomes parameters ``h0`` (L*D, H) ((L*D, P)
            under a projection) and ``c0`` (L*D, H) for an LSTM, starting at 0 and broadcast
            over the batch wherever no initial state is given (see
            :meth:`initial_state_shapes`); :class:`~seqkit.blocks.Stack` holds them (a backend's
            ``recurrent_forward`` takes whatever state it is given, zeros for None).

    The masks of ``recurrent_dropout``, ``input_dropout`` and ``zoneout`` come from the host's
    training random state, drawn by :func:`seqkit.dropout.stack_masks`; ``p = 0`` draws nothing
    and runs bit for bit as the option left out. ``recurrent_dropout`` and ``zoneout`` act
    inside the time loop (:attr:`loop_options`), so on torch such a layer takes the generic or
    compiled path, not the fused kernel; ``input_dropout`` and ``dropout`` act between calls
    and keep it.

    Parameters are named as in ``torch.nn.RNN/GRU/LSTM``: ``weight_ih_l{k}``, ``weight_hh_l{k}``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` (and ``weight_hr_l{k}``), with ``_reverse`` for the second
    direction.
    """

    cell: Cell = attrs.field(converter=get_cell)
    input_size: int = attrs.field(validator=_positive)
    hidden_size: int = attrs.field(validator=_positive)
    num_layers: int = attrs.field(default=1, validator=_positive, kw_only=True)
    bidirectional: bool = attrs.field(
        default=False, kw_only=True, validator=attrs.validators.instance_of(bool)
    )
    dropout: float = attrs.field(default=0.0, kw_only=True, validator=probability)
    # the fields with metadata are the stack options every model takes and seqkit train offers
    proj_size: int = attrs.field(
        default=0,
        kw_only=True,
        validator=_non_negative,
        metadata=_option("LSTM projection size P < H (0: none; lstm, lstm_ln)."),
    )
    recurrent_init: str = attrs.field(
        default="uniform",
        kw_only=True,
        metadata=_option("How weight_hh starts.", RECURRENT_INITS),
    )
    forget_bias: float | None = attrs.field(
        default=None,
        kw_only=True,
        validator=_optional_finite,
        metadata=_option("Initial forget-gate bias (lstm, lstm_ln; unset: uniform)."),
    )
    recurrent_dropout: float = _probability(
        "Variational dropout of h<t-1> in the recurrent product (training)."
    )
    input_dropout: float = _probability(
        "One dropout mask per sequence on each layer's input (training)."
    )
    zoneout: float = _probability("Zoneout: each state unit keeps its value with this probability.")
    learn_initial_state: bool = attrs.field(
        default=False,
        kw_only=True,
        validator=_bool,
        metadata=_option("Learn h0 (and c0) as parameters, broadcast over the batch."),
    )

    def __attrs_post_init__(self) -> None:
        name = self.cell.name
        if self.proj_size:
            if not self.cell.projectable:
                raise ValueError(
                    f"'proj_size' needs a cell that allows a projection of h (lstm, lstm_ln); "
                    f"cell {name!r} does not (got proj_size={self.proj_size})"
                )
            if self.proj_size >= self.hidden_size:
                raise ValueError(
                    f"'proj_size' must be smaller than hidden_size={self.hidden_size} "
                    f"(got {self.proj_size}); 0 turns the projection off"
                )
        if self.recurrent_init not in RECURRENT_INITS:
            raise ValueError(
                f"'recurrent_init' must be one of {', '.join(map(repr, RECURRENT_INITS))} "
                f"(got {self.recurrent_init!r})"
            )
        if self.forget_bias is not None and self.cell.forget_gate is None:
            raise ValueError(
                f"'forget_bias' needs a cell with a forget gate (lstm, lstm_ln); cell {name!r} "
                f"has none (got forget_bias={self.forget_bias!r}); leave it None"
            )

    @property
    def num_directions(self) -> int:
        """D: 2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def loop_options(self) -> bool:
        """Whether masks act inside the time loop (``recurrent_dropout`` or ``zoneout``), so
        that a backend's fused kernel cannot run this layer."""
        return self.recurrent_dropout > 0 or self.zoneout > 0

    def initial_state_shapes(self) -> dict[str, tuple[int, ...]]:
        """The learned initial state's parameters (``learn_initial_state``), else ``{}``:
        ``{"h0": (L*D, H), "c0": (L*D, H)}`` for an LSTM (h0 (L*D, P) under a projection),
        ``{"h0": (L*D, H)}`` for a cell with one state part; named after ``state_names``."""
        if not self.learn_initial_state:
            return {}
        LD = self.num_layers * self.num_directions
        return {f"{name}0": (LD, n) for name, n in zip(self.state_names, self.state_sizes)}

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """Features of each state part, in ``state_names`` order: H each, but P for h under a
        projection (``(P, H)`` for an ``lstm`` with ``proj_size=P``)."""
        H = self.hidden_size
        return tuple((self.proj_size or H) if i == 0 else H for i in range(len(self.state_names)))

    @property
    def output_size(self) -> int:
        """D*H, the last axis of the output (D*P with a projection)."""
        return self.num_directions * (self.proj_size or self.hidden_size)

    @property
    def state_names(self) -> tuple[str, ...]:
        """``("h",)`` or ``("h", "c")``: the final state's parts."""
        return self.cell.state_names

    @staticmethod
    def suffix(layer: int, direction: int) -> str:
        """``_l{layer}`` plus ``_reverse`` for direction 1 (PyTorch's naming)."""
        return f"_l{layer}" + ("_reverse" if direction else "")

    def layer_input_size(self, layer: int) -> int:
        """The features ``layer`` reads per step: I for layer 0, :attr:`output_size` above."""
        return self.input_size if layer == 0 else self.output_size

    def direction_shapes(self, layer: int) -> dict[str, tuple[int, ...]]:
        """Short parameter names and shapes of one direction of ``layer``, in PyTorch's order."""
        G, H, P = self.cell.num_gates, self.hidden_size, self.proj_size
        shapes = {
            "weight_ih": (G * H, self.layer_input_size(layer)),
            "weight_hh": (G * H, P or H),
            "bias_ih": (G * H,),
            "bias_hh": (G * H,),
        }
        if P:
            shapes["weight_hr"] = (P, H)
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
        """Initial parameters as NumPy arrays, drawn in :meth:`param_shapes` order.

        Every weight and bias starts at PyTorch's U(-1/sqrt(H), 1/sqrt(H)) unless
        ``recurrent_init`` or ``forget_bias`` say otherwise; extra cell parameters start as
        :meth:`seqkit.Cell.init_extra_params` says (uniform by default).

        Args:
            seed: an integer or a ``numpy.random.Generator``; the same seed gives the same values.
            dtype: ``"float32"`` or ``"float64"``.
        """
        rng = np.random.default_rng(seed)
        H = self.hidden_size
        bound = 1.0 / math.sqrt(H)
        values = {}
        for layer in range(self.num_layers):
            shapes = self.direction_shapes(layer)
            extras = self.cell.extra_param_shapes(H)
            for d in range(self.num_directions):
                p = {}
                for short, shape in shapes.items():
                    if short in extras:
                        continue
                    if short == "weight_hh" and self.recurrent_init == "orthogonal":
                        p[short] = _orthogonal_blocks(rng, self.cell.num_gates, shape)
                    else:
                        p[short] = rng.uniform(-bound, bound, size=shape)
                if self.forget_bias is not None:
                    f = slice(self.cell.forget_gate * H, (self.cell.forget_gate + 1) * H)
                    p["bias_ih"][f] = self.forget_bias
                    p["bias_hh"][f] = 0.0
                p.update(self._extra_params(rng, layer, extras))
                suffix = self.suffix(layer, d)
                values.update({short + suffix: p[short].astype(dtype) for short in shapes})
        return values

    def _extra_params(self, rng: np.random.Generator, layer: int, extras: dict) -> dict:
        """The cell's extra parameters for one direction, their names and shapes checked."""
        values = self.cell.init_extra_params(rng, self.hidden_size, self.layer_input_size(layer))
        got = {name: tuple(np.shape(v)) for name, v in values.items()}
        if got != extras:
            raise ValueError(
                f"cell {self.cell.name!r}: init_extra_params must return the names and shapes of "
                f"extra_param_shapes, {extras} (got {got})"
            )
        return {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}


def _orthogonal_blocks(rng: np.random.Generator, blocks: int, shape: tuple[int, int]) -> np.ndarray:
    """A (G*H, K) matrix whose G blocks of H rows each have orthonormal columns (K <= H).

    Each block is Q of the reduced QR decomposition of an (H, K) standard normal matrix, with the
    signs of its columns set by diag(R), so that Q is uniformly (Haar) distributed.
    """
    rows, cols = shape
    H = rows // blocks
    parts = []
    for _ in range(blocks):
        q, r = np.linalg.qr(rng.standard_normal((H, cols)))
        parts.append(q * np.where(np.diag(r) < 0, -1.0, 1.0))
    return np.concatenate(parts, axis=0)


#: The names of the stack options (fields of :class:`Recurrent` with ``metadata["help"]``) that
#: every model constructor takes, its config saves and ``seqkit train`` offers as ``--name``.
RECURRENT_OPTIONS = tuple(f.name for f in attrs.fields(Recurrent) if "help" in f.metadata)
