"""Optimizers through JaxOps: the functional update equals NumPy's in-place one, step by step."""

import numpy as np
import pytest

pytest.importorskip("jax")

from seqkit_numpy import NumpyOps  # noqa: E402

import seqkit  # noqa: E402

OPTIMIZERS = [
    ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ("adagrad", {"lr": 0.1}),
    ("adam", {"lr": 0.01, "betas": (0.8, 0.99)}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.1}),
]


@pytest.mark.parametrize(("name", "options"), OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_update_equals_numpy(name, options):
    """Four steps (the last two with a schedule's lr): parameters and state agree to 1e-12."""
    opt = seqkit.get_optimizer(name, **options)
    jops, nops = seqkit.get_backend("jax", dtype="float64").ops, NumpyOps("float64")
    rng = np.random.default_rng(3)
    start = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    p_np = {k: v.copy() for k, v in start.items()}
    p_jx = {k: jops.asarray(v) for k, v in start.items()}
    s_np, s_jx = opt.init_state(nops, p_np), opt.init_state(jops, p_jx)
    for lr in (None, None, 0.5 * options["lr"], 0.25 * options["lr"]):
        grads = {k: rng.standard_normal(v.shape) for k, v in start.items()}
        p_np, s_np = opt.update(nops, p_np, grads, s_np, lr=lr)
        jgrads = {k: jops.asarray(g) for k, g in grads.items()}
        p_jx, s_jx = opt.update(jops, p_jx, jgrads, s_jx, lr=lr)
        for k in start:
            np.testing.assert_allclose(np.asarray(p_jx[k]), p_np[k], rtol=1e-12, atol=1e-14)
        state_np, state_jx = opt.state_to_numpy(nops, s_np), opt.state_to_numpy(jops, s_jx)
        assert list(state_jx) == list(state_np)
        for k in state_np:
            np.testing.assert_allclose(state_jx[k], state_np[k], rtol=1e-12, atol=1e-14, err_msg=k)
    for k in start:
        assert not np.allclose(np.asarray(p_jx[k]), start[k])  # the update reached the caller
