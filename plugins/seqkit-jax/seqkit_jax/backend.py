"""The JAX backend: arrays on a CPU or a GPU, the time loop in ``jax.lax.scan``, gradients by
``jax.vjp``.

jax is imported when a :class:`JaxBackend` is built, not when this module is, so the plugin
registers (and ``seqkit plugins`` lists it) on a machine without jax.

float64 needs JAX's ``jax_enable_x64`` flag, which is global to the process: building a float64
backend turns it on, and it stays on. float32 backends are unaffected, before and after: every
array this backend creates or converts carries its dtype explicitly, and Python scalars are weakly
typed in JAX, so float32 arithmetic stays float32 with the flag on. Only code of your own that
relies on JAX's 32-bit defaults (``jnp.arange`` giving int32, ``jnp.zeros`` float32) sees the
flag; set it yourself at startup (``jax.config.update("jax_enable_x64", True)``) to have one
behaviour from the start.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from seqkit import bptt
from seqkit.backend import Backend
from seqkit.errors import ConfigError, PluginError
from seqkit.ops import OneHotIds
from seqkit.recurrent import Recurrent

__all__ = ["JaxBackend", "JaxCache"]

_INSTALL = "pip install seqkit-jax (or pip install jax; jax[cuda12] for an NVIDIA GPU)"
_DEVICE = re.compile(r"^(cpu|auto|(gpu|cuda)(:\d+)?)$")
_DEVICE_CHOICES = "'cpu', 'gpu', 'gpu:N', 'cuda', 'cuda:N', 'auto'"


def _import_jax():
    try:
        import jax
    except ImportError as exc:
        raise PluginError(
            f"backend 'jax' needs JAX, which is not installed ({exc}); install it with {_INSTALL}"
        ) from None
    return jax


def _gpus(jax) -> list:
    try:
        return jax.devices("gpu")
    except RuntimeError:  # JAX raises when no GPU platform is present
        return []


def _resolve_device(jax, device: str):
    """``(name, jax.Device)`` for ``device``: ``"cuda"`` is an alias of ``"gpu"``, ``"auto"``
    the first GPU when JAX sees one, else the CPU."""
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ConfigError(
            f"backend 'jax': 'device' must be one of {_DEVICE_CHOICES} (got {device!r})"
        )
    gpus = _gpus(jax)
    if device == "auto":
        return ("gpu:0", gpus[0]) if gpus else ("cpu", jax.devices("cpu")[0])
    if device == "cpu":
        return "cpu", jax.devices("cpu")[0]
    index = int(device.split(":")[1]) if ":" in device else 0
    if not gpus:
        platforms = ", ".join(sorted({d.platform for d in jax.devices()}))
        raise ConfigError(
            f"backend 'jax': device {device!r} needs a GPU, but JAX {jax.__version__} sees only: "
            f"{platforms}; install jax[cuda12] for an NVIDIA GPU, or use device 'cpu' or 'auto'"
        )
    if index >= len(gpus):
        raise ConfigError(
            f"backend 'jax': device {device!r} does not exist; JAX sees {len(gpus)} GPU(s): "
            f"{', '.join(f'gpu:{i}' for i in range(len(gpus)))}"
        )
    return f"gpu:{index}", gpus[index]


@attrs.define(eq=False)
class JaxCache:
    """What :meth:`JaxBackend.recurrent_backward` needs: the stack's ``jax.vjp`` function."""

    vjp: Any  # jax.tree_util.Partial: (d_out, d_final) -> (d_params, d_x, d_state0)
    final: tuple  # the final state, for zero gradients when none is given
    steps: int  # T
    batch: int  # B
    vjp_steps: int  # T padded to the backend's time bucket (T without lengths)


class JaxBackend(Backend):
    """JAX arrays on ``device``, ``float32`` or ``float64``, gradients by JAX's autodiff.

    Args:
        dtype: ``"float32"`` or ``"float64"`` (turns on ``jax_enable_x64``; see the module).
        device: ``"cpu"``, ``"gpu"``/``"gpu:N"`` (``"cuda"``/``"cuda:N"`` are aliases), or
            ``"auto"`` (the first GPU when JAX sees one).
        time_bucket: a batch with lengths runs padded to the next multiple of this many steps
            (padded steps are masked, so results are the same), so that training on batches of
            varying T compiles once per bucket, not once per T; 1 turns it off.

    :meth:`recurrent_forward` runs every cell's own ``step`` in one compiled ``jax.lax.scan``
    per layer and direction and keeps the ``jax.vjp`` function in its cache;
    :meth:`recurrent_backward` applies it. The cells' ``step_backward`` is not used.
    """

    name = "jax"

    def __init__(
        self, *, dtype: str = "float32", device: str = "cpu", time_bucket: int = 16
    ) -> None:
        jax = _import_jax()
        if isinstance(time_bucket, bool) or not isinstance(time_bucket, int) or time_bucket < 1:
            raise ConfigError(
                f"backend 'jax': 'time_bucket' must be a positive integer (got {time_bucket!r})"
            )
        self.time_bucket = time_bucket
        name, jax_device = _resolve_device(jax, device)
        if dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        from seqkit_jax.ops import JaxOps

        self.ops = JaxOps(dtype, jax_device)  # validates dtype
        super().__init__(dtype=dtype, device=name)

    # --- recurrent stack ----------------------------------------------------------------------
    def _recurrent_forward(self, layer: Recurrent, params, x, state0, lengths, masks=None):
        from seqkit_jax import _scan

        T, B = x.shape[0], x.shape[1]
        lens = reverse = None
        hidden = zone = None
        if masks is not None:  # recurrent dropout, zoneout: constants of the scan
            hidden, zone = tuple(masks.hidden), tuple(masks.zoneout)
        if lengths is not None:
            # pad T up to its bucket: the padded steps lie past every length, so they are masked
            padded = -(-T // self.time_bucket) * self.time_bucket
            if padded != T:
                x = _pad_time(self.ops.xp, x, padded - T)
                if zone is not None:
                    zone = tuple(
                        None if z is None else tuple(self._pad(part, padded) for part in z)
                        for z in zone
                    )
            lens = self.ops.int_array(lengths)
            reverse = self.ops.int_array(bptt.reverse_index(padded, lengths, B))
        out, final, vjp = _scan.forward(
            self.ops, layer, params, x, state0, lens, reverse, hidden, zone
        )
        return out[:T], final, JaxCache(vjp, final, T, B, x.shape[0])

    def _pad(self, a, steps: int):
        """``a`` (T, B, F) padded with zeros to ``steps`` (a float, evaluation's p, unchanged)."""
        if isinstance(a, float):
            return a
        return self.ops.xp.pad(a, ((0, steps - a.shape[0]), (0, 0), (0, 0)))

    def _recurrent_backward(self, layer: Recurrent, cache: JaxCache, d_out, d_final):
        from seqkit_jax import _scan

        if d_final is None:
            d_final = tuple(self.ops.xp.zeros_like(f) for f in cache.final)
        padded = cache.vjp_steps
        if padded != cache.steps:  # the padded steps' outputs are zeros: constants
            d_out = self.ops.xp.pad(d_out, ((0, padded - cache.steps), (0, 0), (0, 0)))
        d_params, d_x, d_state0 = _scan.backward(cache.vjp, d_out, tuple(d_final))
        grads = {"x": None if d_x is None else d_x[: cache.steps]}
        grads.update({f"{n}0": g for n, g in zip(layer.state_names, d_state0, strict=True)})
        grads.update({name: d_params[name] for name in layer.param_shapes()})
        return grads

    def _cache_shape(self, cache) -> tuple[int, int]:
        if not isinstance(cache, JaxCache):
            # the NumPy backend's message, word for word
            raise TypeError("cache must be the third value returned by recurrent_forward")
        return cache.steps, cache.batch


def _pad_time(xp, x, steps: int):
    """``x`` (T, B, I) with ``steps`` more steps of zeros (of id 0 for one-hot ids: padded steps
    are masked)."""
    if isinstance(x, OneHotIds):
        scale = None if x.scale is None else _pad_time(xp, x.scale, steps)
        return OneHotIds(x.ops, xp.pad(x.ids, ((0, steps), (0, 0))), x.num_classes, scale)
    return xp.pad(x, ((0, steps), (0, 0), (0, 0)))
