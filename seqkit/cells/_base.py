"""The cell interface: one time step of a recurrent layer and its hand-written backward."""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar

import numpy as np

from seqkit.ops import Ops
from seqkit.shapes import Array, State

__all__ = ["Cell"]


class Cell(abc.ABC):
    """One time step of a recurrent layer, defined once for every backend.

    A cell owns four matrices in PyTorch's layout, ``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``,
    ``bias_ih (G*H,)`` and ``bias_hh (G*H,)``, plus any extra parameters it declares in
    :meth:`extra_param_shapes`, which start as :meth:`init_extra_params` says (PyTorch's uniform
    rule unless the cell overrides it: a layer-norm gain starts at 1). The loop over time belongs
    to the backend (``seqkit.bptt``), which computes the two matrix products for the cell, so that
    they can be hoisted and batched:

    * ``xg = x<t> @ weight_ih.T + bias_ih`` for every step at once, before the loop;
    * ``hg = h<t-1> @ weight_hh.T + bias_hh`` once per step (``h`` is ``state[0]``).

    :meth:`step` combines them elementwise into the next state. :meth:`step_backward` undoes one
    step: it returns the gradients of ``xg`` and ``hg`` (the backend turns them into gradients of
    the weights, the input and ``h<t-1>`` with big matrix products) and of the previous state
    through every path that does not go through ``hg``.

    The contract is functional, so one definition runs on mutable (NumPy, torch) and immutable
    (JAX) arrays alike: :meth:`step` and :meth:`step_backward` use the return value of every
    operation and never depend on aliasing or on writing into their arguments. No ``x += y``,
    no assignment into a slice, no ignored return value. In-place work is an option of an
    operation (``ops.sigmoid(z, inplace=True)``, ``ops.add(a, b, inplace=True)``,
    ``ops.concat(blocks, inplace=True)``) that NumPy and torch honour and an immutable backend
    ignores; a cell passes it only for an array it does not read again, which may be the
    ``xg`` and ``hg`` it was given (the driver does not read them after the step), never
    ``state``, ``d_state`` or ``params``. A gate array is built from per-gate results with
    :meth:`~seqkit.ops.Ops.concat`; with ``inplace=True`` NumPy copies nothing when the blocks
    are adjacent views of one array, as they are when each was computed in place in it.

    Every per-step array the backend hands over is ``(B, features)``; the NumPy backend stores
    them feature-major (column-major), which makes each gate block ``z[:, k*H:(k+1)*H]`` one
    contiguous run of memory. Arithmetic keeps that layout by itself.

    Subclasses are attrs classes whose fields are the cell's options (``RNN(nonlinearity=...)``),
    and set the class variables below.
    """

    #: Registered name (``"lstm"``).
    name: ClassVar[str]
    #: G: number of gate blocks stacked in the rows of ``weight_ih`` and ``weight_hh``.
    num_gates: ClassVar[int]
    #: Names of the state tensors; ``state[0]`` is always the output ``h``.
    state_names: ClassVar[tuple[str, ...]] = ("h",)
    #: True when :meth:`step` uses ``xg`` and ``hg`` only through their sum ``xg + hg`` (rnn,
    #: lstm, gru_simple; not the GRU, whose reset gate multiplies ``hg_n``). The backend then adds
    #: ``bias_hh`` once to the hoisted input projection instead of once per step, and, since
    #: ``d hg`` is then ``d xg``, keeps only ``d xg`` for the weight-gradient products.
    sums_projections: ClassVar[bool] = False
    #: The index of the forget-gate block among the G blocks (1 for ``lstm``'s ``i, f, g, o``),
    #: or None for a cell without one; ``Recurrent(forget_bias=...)`` needs it.
    forget_gate: ClassVar[int | None] = None
    #: True when :meth:`step` reads ``h<t-1>`` only through ``hg`` and takes H from another state
    #: part, so that the driver may project ``h`` to P < H features after each step
    #: (``Recurrent(proj_size=P)``, as ``torch.nn.LSTM``); ``state[0]`` is then (B, P).
    projectable: ClassVar[bool] = False

    def extra_param_shapes(self, hidden_size: int) -> dict[str, tuple[int, ...]]:
        """Extra per-layer parameters beyond the four matrices: ``{name: shape}`` (default none)."""
        return {}

    def init_extra_params(
        self, rng: np.random.Generator, hidden_size: int, input_size: int
    ) -> dict[str, np.ndarray]:
        """Initial values of the parameters of :meth:`extra_param_shapes`, as float64 arrays.

        :meth:`seqkit.Recurrent.init_params` calls it once per layer and direction, after the
        four matrices were drawn from ``rng``. The default draws every extra parameter, in
        :meth:`extra_param_shapes` order, from PyTorch's U(-1/sqrt(H), 1/sqrt(H)); override it
        for parameters that must start elsewhere (a layer-norm gain starts at 1, see
        :class:`seqkit.cells.LayerNormLSTM`). Draw from ``rng`` only, so that a seed fixes the
        values.

        Args:
            rng: the generator :meth:`~seqkit.Recurrent.init_params` draws everything from.
            hidden_size: H.
            input_size: the features this layer reads per step (I for layer 0, D*H above).

        Returns:
            ``{name: array}`` with exactly the names and shapes of :meth:`extra_param_shapes`.
        """
        bound = 1.0 / math.sqrt(hidden_size)
        return {
            name: rng.uniform(-bound, bound, size=shape)
            for name, shape in self.extra_param_shapes(hidden_size).items()
        }

    @abc.abstractmethod
    def step(
        self, ops: Ops, xg: Array, hg: Array, state: State, params: dict[str, Array]
    ) -> tuple[State, Any]:
        """Advance one step.

        Args:
            ops: the backend's array operations.
            xg: (B, G*H) input projection of this step; the cell may pass it (or its blocks)
                to an operation with ``inplace=True``.
            hg: (B, G*H) recurrent projection of ``state[0]``; as ``xg``, and the cell keeps
                what its cache needs of it only through ``ops.copy``: the driver reuses its
                memory at the next step (the GRU keeps a copy of ``hg_n``).
            state: previous state, a tuple of (B, H) arrays; must not be modified.
            params: this layer-direction's parameters by short name (``"weight_hh"``, extras).

        Returns:
            ``(new_state, cache)``: the new state tuple (fresh arrays) and whatever
            :meth:`step_backward` needs.
        """

    @abc.abstractmethod
    def step_backward(
        self,
        ops: Ops,
        d_state: State,
        cache: Any,
        params: dict[str, Array],
        grads: dict[str, Array],
    ) -> tuple[Array, Array, State]:
        """Undo one step.

        Args:
            d_state: gradient of the loss with respect to the new state, a tuple of (B, H).
            cache: what :meth:`step` returned.
            params: as in :meth:`step`.
            grads: gradients of extra parameters by short name; the cell replaces each entry
                with the accumulated value, ``grads[k] = ops.add(grads[k], d, inplace=True)``.

        Returns:
            ``(d_xg, d_hg, d_prev)``: (B, G*H) gradients of ``xg`` and ``hg`` (may be the same
            array; the driver only reads them), and the gradient of the previous state through
            paths other than ``hg``, a tuple whose entries may be ``None`` for "no such path".
        """

    def options(self) -> dict[str, Any]:
        """The cell's options as a plain dict (what a checkpoint stores beside the name)."""
        import attrs

        return attrs.asdict(self) if attrs.has(type(self)) else {}  # type: ignore[arg-type]
