"""Small numeric helpers shared by the numerics tests."""

import numpy as np

import seqkit


def random_inputs(layer, T, B, rng, *, lengths=False, scale=1.0):
    """x (T, B, I), a random non-zero initial state in the layer's form, and optional lengths."""
    LD = layer.num_layers * layer.num_directions
    x = rng.normal(size=(T, B, layer.input_size)) * scale
    parts = tuple(rng.normal(size=(LD, B, layer.hidden_size)) * 0.5 for _ in layer.state_names)
    state = parts[0] if len(parts) == 1 else parts
    lens = rng.integers(1, T + 1, size=B) if lengths else None
    if lengths:
        lens[0] = T
    return x, state, lens


def state_parts(state):
    return state if isinstance(state, tuple) else (state,)


def scalar_loss(be, layer, params, x, state, lengths, w_out, w_fin):
    """sum(out * w_out) + sum(final * w_fin): a loss whose upstream gradients are w_out, w_fin."""
    out, final, _ = be.recurrent_forward(layer, params, x, initial_state=state, lengths=lengths)
    total = float((be.to_numpy(out) * w_out).sum())
    for f, w in zip(state_parts(final), state_parts(w_fin)):
        total += float((be.to_numpy(f) * w).sum())
    return total


def numeric_grad(f, arr, eps=1e-6):
    """Central finite differences of scalar f() with respect to every entry of arr (in place)."""
    g = np.zeros_like(arr)
    it = np.nditer(arr, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = arr[i]
        arr[i] = old + eps
        hi = f()
        arr[i] = old - eps
        lo = f()
        arr[i] = old
        g[i] = (hi - lo) / (2 * eps)
    return g


def backend64():
    return seqkit.get_backend("numpy", dtype="float64")


def check_model_gradients(model, batch, ctx, rng, *, picks=2, eps=1e-6):
    """A model's gradients at ``picks`` random entries of every parameter against central
    differences of its training loss; ``ctx()`` gives the same masks on every call."""
    import pytest

    _, grads = model.loss_and_grads(batch, ctx=ctx())
    for name, value in model.numpy_params().items():
        for index in [tuple(rng.integers(0, n) for n in value.shape) for _ in range(picks)]:
            shifted = []
            for sign in (1, -1):
                params = dict(model.params)
                moved = value.copy()
                moved[index] += sign * eps
                params[name] = model.backend.asarray(moved)
                shifted.append(float(model._loss_forward(params, batch, ctx())[0]))
            numeric = (shifted[0] - shifted[1]) / (2 * eps)
            analytic = float(np.asarray(grads[name])[index])
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8), (name, index)
