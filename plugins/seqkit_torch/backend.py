"""The PyTorch backend: tensors on a CPU or a GPU, gradients by autograd, fused RNN kernels.

torch is imported when a :class:`TorchBackend` is built, not when this module is, so the plugin
registers (and ``seqkit plugins`` lists it) on a machine without torch.
"""

from __future__ import annotations

import os
import re
from typing import Any

import attrs

from seqkit.backend import Backend
from seqkit.cells import LSTM
from seqkit.errors import ConfigError, PluginError
from seqkit.ops import OneHotIds
from seqkit.recurrent import Recurrent

__all__ = ["TorchBackend", "TorchCache", "PATHS"]

#: How a layer runs: ``"fused"`` (torch's RNN kernels), ``"compiled"`` (the cell's hand-written
#: BPTT inside one ``torch.autograd.Function``, its loops over time compiled ahead of time by
#: AOTInductor) or ``"generic"`` (the same, uncompiled); ``"auto"`` picks fused where there
#: is a kernel that beats the compiled loops, and compiled where that measured faster than the
#: rest (see layer_path).
PATHS = ("auto", "fused", "compiled", "generic")
#: On a CPU ``auto`` compiles a cell without a fused kernel from this hidden size on (measured).
_CPU_COMPILE_MIN_HIDDEN = 128
#: ... and the built-in ``gru`` and ``rnn``, whose fused path on a CPU is torch's per-step loop,
#: from this one on (below, the compiled loops were not faster in every case measured).
_CPU_COMPILE_BUILTIN_MIN_HIDDEN = 256

_INSTALL = "pip install 'seqkit[torch]' (or pip install torch)"
_DEVICE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")


def _import_torch():
    try:
        import torch
    except ImportError as exc:
        raise PluginError(
            f"backend 'torch' needs PyTorch, which is not installed ({exc}); "
            f"install it with {_INSTALL}"
        ) from None
    return torch


def _resolve_device(torch, device: str) -> str:
    """``device`` checked against this machine; ``"auto"`` becomes cuda when there is one."""
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ConfigError(
            "backend 'torch': 'device' must be one of 'cpu', 'cuda', 'cuda:N', 'auto' "
            f"(got {device!r})"
        )
    if device == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        # in a multi-process job (torchrun's variables) each rank takes the GPU of its local rank
        world, local = os.environ.get("WORLD_SIZE", "1"), os.environ.get("LOCAL_RANK", "0")
        return f"cuda:{local}" if world != "1" and local.isdigit() else "cuda"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"backend 'torch': device {device!r} needs CUDA, but torch.cuda.is_available() is "
                f"False (torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
                "use device 'cpu' or 'auto'"
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise ConfigError(
                f"backend 'torch': device {device!r} does not exist; this machine has {count} CUDA "
                f"device(s): {', '.join(f'cuda:{i}' for i in range(count))}"
            )
    return device


@attrs.define(eq=False)
class TorchCache:
    """What :meth:`TorchBackend.recurrent_backward` needs: the graph's ends and the path taken."""

    path: str  # "fused", "compiled" or "generic"
    outputs: tuple  # (out, *final)
    inputs: tuple  # (x, *state0, *params), each requiring grad; no x for one-hot ids
    steps: int
    batch: int
    ids: bool = False  # x was one-hot ids (OneHotIds), which have no gradient


class TorchBackend(Backend):
    """PyTorch tensors on ``device``, ``float32`` or ``float64``, gradients by autograd.

    Args:
        dtype: ``"float32"`` or ``"float64"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, or ``"auto"`` (cuda when available).
        path: ``"auto"`` (fused kernels for ``rnn``/``gru``/``lstm`` on CUDA, for ``lstm`` on
            a CPU, and for ``rnn``/``gru`` on a CPU below H = 256; for every other layer the
            compiled path on CUDA and on a CPU from H = 128 on, where it measured faster, else
            the generic path), ``"fused"`` (an error for a cell without a kernel), ``"compiled"``
            (any cell, its loops over time compiled by AOTInductor on a CPU and captured as
            CUDA graphs on a GPU; a cell that cannot be compiled warns once and runs on the
            generic path; on a CPU its tanh is computed from one exp, with an absolute error
            under 2e-7 in float32 and 4e-16 in float64) or ``"generic"`` (any cell,
            uncompiled). :meth:`layer_path` says
            which one a layer takes.
        tf32: on CUDA, let cuDNN and cuBLAS compute float32 in TF32 (faster, ~1e-3 relative
            error). Off by default so that float32 agrees with the reference; either way it sets
            ``torch.backends.cudnn.allow_tf32`` and ``torch.backends.cuda.matmul.allow_tf32``
            for the process.

    :meth:`recurrent_forward` builds an autograd graph from the caller's tensors (parameters
    that require grad get their gradients from ``loss.backward()`` as usual);
    :meth:`recurrent_backward` runs ``torch.autograd.grad`` on that graph.
    """

    name = "torch"

    def __init__(
        self, *, dtype: str = "float32", device: str = "cpu", path: str = "auto", tf32: bool = False
    ) -> None:
        torch = _import_torch()
        if path not in PATHS:
            raise ConfigError(
                f"backend 'torch': 'path' must be one of {', '.join(map(repr, PATHS))} "
                f"(got {path!r})"
            )
        from seqkit_torch.ops import TorchOps

        device = _resolve_device(torch, device)
        super().__init__(dtype=dtype, device=device)
        self.ops = TorchOps(dtype, device)
        self.path = path
        self._torch = torch
        if self.ops.device.type == "cuda":
            # PyTorch lets cuDNN compute float32 RNNs in TF32 (10-bit mantissa) by default, which
            # puts float32 results ~1e-3 away from the reference; the flag is global and read
            # again by the backward pass, so it is set for the process, and only when asked
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32

    # --- which path ---------------------------------------------------------------------------
    def layer_path(self, layer: Recurrent) -> str:
        """``"fused"``, ``"compiled"`` or ``"generic"``: how :meth:`recurrent_forward` runs it.

        A cell whose compilation failed (see :meth:`compile_stats`) reports ``"generic"`` from
        then on, which is what it runs (under ``"auto"``, a built-in ``gru`` or ``rnn`` goes
        back to ``"fused"``). A layer with ``recurrent_dropout`` or ``zoneout``
        (masks inside the time loop, ``layer.loop_options``) never takes the fused kernel:
        ``auto`` chooses for it as for a cell without one.
        """
        from seqkit_torch._fused import fused_kernel

        has_kernel = fused_kernel(layer) is not None
        if self.path == "fused" and layer.loop_options:
            raise ConfigError(
                "backend 'torch' with path 'fused': recurrent_dropout and zoneout act inside the "
                "time loop, which no fused kernel runs; use path 'auto', 'generic' or 'compiled'"
            )
        has_kernel = has_kernel and not layer.loop_options  # the loop's masks need our loop
        if self.path == "fused" and not has_kernel:
            raise ConfigError(
                f"backend 'torch' with path 'fused': cell {layer.cell.name!r} has no fused kernel; "
                "fused kernels exist for: gru, lstm, rnn (exact built-in classes)"
            )
        beaten = self._compiling_beats_kernel(layer)
        if has_kernel and self.path in ("auto", "fused") and not beaten:
            return "fused"
        if self.path == "generic" or (self.path == "auto" and not self._compiling_pays(layer)):
            return "generic"
        if self.compile_stats(layer).error is None:
            return "compiled"
        return "fused" if has_kernel and self.path == "auto" else "generic"

    def _compiling_beats_kernel(self, layer: Recurrent) -> bool:
        """Whether ``auto`` compiles a built-in cell that has a fused kernel.

        cuDNN on a GPU and oneDNN's LSTM primitive on a CPU beat the compiled loops; torch's
        ``gru`` and ``rnn`` on a CPU are a per-step loop of ATen calls, which the compiled loops
        beat (one layer forward and backward, lengths filling about 64% of the batch: 0.55-0.81x
        the fused time from H = 128 on, float32 and float64, one or two layers, both directions;
        docs/reference/performance.rst), except at H = 128 without padding (1.10x). So they
        compile from H = 256 on. End to end the gain is smaller (the language model at H = 256
        trains about 1.07x faster) and the first run on a machine pays the compile, about 20 s,
        as for any cell under ``auto``. A compile that fails leaves the layer on its fused
        kernel.
        """
        return (
            self.path == "auto"
            and self.ops.device.type == "cpu"
            and type(layer.cell) is not LSTM
            and layer.hidden_size >= _CPU_COMPILE_BUILTIN_MIN_HIDDEN
        )

    def _compiling_pays(self, layer: Recurrent) -> bool:
        """Whether ``auto`` compiles ``layer``'s cell: where the compiled path pays.

        On a CPU the compiled loops beat the generic one at every size measured, but they are
        compiled first: 20-30 s the first time a cell is compiled on a machine (a new process
        then loads them from the store in hundredths of a second). From
        H = 128 on a training step saves enough (about 5 ms of 13 for an LSTM at H = 128, batch
        64; 10 ms at H = 256) for a default run of 1,500 steps to win that back; below, the
        steps are too cheap to matter (docs/reference/performance.rst). On a GPU, where the
        loops are captured as CUDA graphs (milliseconds per shape), every saved kernel launch
        counts.
        """
        return self.ops.device.type == "cuda" or layer.hidden_size >= _CPU_COMPILE_MIN_HIDDEN

    def compile_stats(self, layer: Recurrent):
        """What compiling ``layer``'s cell on this dtype and device cost, for every layer of it.

        Returns:
            a :class:`~seqkit_torch._scan.CompileStats`: ``graphs`` (compiled packages in use,
            forward and backward), ``cached`` (how many of them came from the store of packages,
            compiled by an earlier process), ``seconds`` (spent loading or compiling them) and
            ``error`` (None, or why the cell fell back to the generic path). The cell is compiled
            on its first run.
        """
        from seqkit_torch._scan import scan_loop

        return scan_loop(layer.cell, self.ops).stats

    # --- recurrent stack ----------------------------------------------------------------------
    def _recurrent_forward(self, layer, params, x, state0, lengths, masks=None):
        from seqkit_torch._fused import fused_forward
        from seqkit_torch._generic import generic_forward

        torch = self._torch
        path = self.layer_path(layer)
        names = list(layer.param_shapes())
        grad = torch.is_grad_enabled()
        ids = isinstance(x, OneHotIds)
        if grad:
            # recurrent_backward asks autograd for d x, d state0 and every d param, so each must
            # be part of the graph; an alias (no copy) keeps the caller's tensor untouched
            x = x if ids else _track(x)
            state0 = tuple(_track(s) for s in state0)
            params = {name: _track(params[name]) for name in names}
        if path == "fused":
            out, final = fused_forward(layer, params, x, state0, lengths)
        else:
            from seqkit_torch._scan import scan_loop

            loop = scan_loop(layer.cell, self.ops) if path == "compiled" else None
            out, final = generic_forward(self.ops, layer, params, x, state0, lengths, masks, loop)
            if path == "compiled" and loop.failed:
                path = "generic"  # it fell back during this very call
        T, B = x.shape[0], x.shape[1]
        inputs = ((() if ids else (x,)) + (*state0, *(params[n] for n in names))) if grad else ()
        cache = TorchCache(path, (out, *final), inputs, T, B, ids)
        return out, final, cache

    def _recurrent_backward(self, layer, cache, d_out, d_final):
        torch = self._torch
        if not cache.inputs:
            raise RuntimeError(
                "recurrent_backward needs a forward run with autograd enabled; this cache came "
                "from recurrent_forward under torch.no_grad() or torch.inference_mode()"
            )
        n_state = len(layer.state_names)
        if d_final is None:
            d_final = tuple(torch.zeros_like(f) for f in cache.outputs[1:])
        grads = torch.autograd.grad(
            cache.outputs,
            cache.inputs,
            grad_outputs=(d_out, *d_final),
            retain_graph=True,  # like the NumPy cache, this one may be differentiated again
            allow_unused=True,
        )
        grads = [
            torch.zeros_like(i) if g is None else g
            for g, i in zip(grads, cache.inputs, strict=True)
        ]
        if cache.ids:
            grads.insert(0, None)  # one-hot ids have no gradient
        result = {"x": grads[0]}
        result.update(
            {f"{n}0": g for n, g in zip(layer.state_names, grads[1 : 1 + n_state], strict=True)}
        )
        result.update(zip(layer.param_shapes(), grads[1 + n_state :], strict=True))
        return result

    def _cache_shape(self, cache) -> tuple[int, int]:
        if not isinstance(cache, TorchCache):
            # the NumPy backend's message, word for word
            raise TypeError("cache must be the third value returned by recurrent_forward")
        return cache.steps, cache.batch

    # --- whole-model gradients --------------------------------------------------------------
    def loss_and_grads(self, forward, backward, params: dict, *args) -> tuple[float, dict]:
        """A model's loss and every parameter's gradient, by autograd (``backward`` is unused).

        ``forward(params, *args) -> (loss, cache)`` receives tensors on this backend that are
        part of the graph; the caller's tensors are not modified and their ``.grad`` is untouched.
        """
        torch = self._torch
        tracked = {name: _track(self.asarray(value)) for name, value in params.items()}
        with torch.enable_grad():
            loss, _ = forward(tracked, *args)
        names = list(tracked)
        grads = torch.autograd.grad(loss, [tracked[n] for n in names], allow_unused=True)
        return float(loss.detach()), {
            n: torch.zeros_like(tracked[n]) if g is None else g
            for n, g in zip(names, grads, strict=True)
        }

    # --- data-parallel training ---------------------------------------------------------------
    @property
    def data_parallel(self):
        """torch.distributed (gloo on the CPU, NCCL on CUDA): ``seqkit_torch.distributed``."""
        from seqkit_torch.distributed import TorchDataParallel

        return TorchDataParallel(self)

    # --- parameters ---------------------------------------------------------------------------
    def init_params(
        self, layer: Recurrent, seed: Any = None, *, requires_grad: bool = True
    ) -> dict:
        """``layer.init_params(seed)`` as leaf tensors on this device (see flatten_params)."""
        values = layer.init_params(seed, dtype=self.dtype)
        return self.flatten_params(layer, values, requires_grad=requires_grad)

    def flatten_params(self, layer: Recurrent, params: dict, *, requires_grad: bool = True) -> dict:
        """New leaf tensors with the values of ``params``, laid out for the fused kernels.

        On a GPU cuDNN wants every weight of a stack in one contiguous buffer and copies them
        there on every call otherwise (what ``torch.nn.LSTM.flatten_parameters`` avoids); the
        tensors returned are views into such a buffer. On a CPU they are plain tensors.
        """
        torch = self._torch
        names = list(layer.param_shapes())
        params = self._check_params(layer, params)
        tensors = [params[n].detach().clone() for n in names]
        if self.ops.device.type == "cuda" and self.layer_path(layer) == "fused":
            _flatten_cudnn(torch, layer, tensors)
        return {n: t.requires_grad_(requires_grad) for n, t in zip(names, tensors, strict=True)}


def _track(t):
    """``t`` itself when it is in the graph already, else an alias of it that requires grad."""
    if t.requires_grad:
        return t
    return t.detach().requires_grad_(True)


def _flatten_cudnn(torch, layer: Recurrent, tensors: list) -> None:
    """Point ``tensors`` (in ``param_shapes`` order) into one buffer in cuDNN's layout, in place."""
    mode = {"lstm": "LSTM", "gru": "GRU"}.get(layer.cell.name)
    if mode is None:
        mode = "RNN_TANH" if layer.cell.nonlinearity == "tanh" else "RNN_RELU"
    if not torch.backends.cudnn.is_acceptable(tensors[0]):
        return
    with torch.no_grad():
        torch._cudnn_rnn_flatten_weight(
            tensors,
            4,
            layer.input_size,
            _cudnn_mode(mode),
            layer.hidden_size,
            0,
            layer.num_layers,
            False,
            layer.bidirectional,
        )


def _cudnn_mode(mode: str) -> int:
    # the values of torch.backends.cudnn.rnn.get_cudnn_mode, which needs cuDNN to import
    return {"RNN_RELU": 0, "RNN_TANH": 1, "LSTM": 2, "GRU": 3}[mode]
