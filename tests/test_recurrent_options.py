"""Recurrent dropout, input dropout and zoneout: host masks, the BPTT loop, torch's generic path.

Layer level (``seqkit.dropout.stack_forward``/``stack_backward`` on a ``Recurrent``); the model
level and the command line are in tests/models/test_recurrent_options.py.
"""

import attrs
import numpy as np
import pytest

import seqkit
from seqkit.context import Context
from seqkit.dropout import LoopMasks, stack_backward, stack_forward, stack_masks
from seqkit.errors import ConfigError, ShapeError
from seqkit.testing import make_batch
from tests.helpers import backend64, numeric_grad, state_parts

OPTIONS = {"recurrent_dropout": 0.5, "input_dropout": 0.3, "zoneout": 0.4}


def training(seed):
    return Context(training=True, rng=np.random.default_rng(seed))


def torch_backend64(path="auto"):
    pytest.importorskip("torch")
    from seqkit_torch import TorchBackend

    return TorchBackend(dtype="float64", path=path)


def layer_of(cell="lstm", *, num_layers=2, bidirectional=True, I=2, H=3, **options):
    return seqkit.Recurrent(
        cell, I, H, num_layers=num_layers, bidirectional=bidirectional, **options
    )


def run(be, layer, params, data, ctx):
    """Outputs, final state and every gradient of sum(out * d_out) + sum(final * d_final)."""
    out, final, cache = stack_forward(
        be, layer, params, data.x, data.initial_state, data.lengths, ctx=ctx
    )
    d_x, d_state, grads = stack_backward(be, cache, data.d_out, data.d_final)
    result = {"out": out, "d_x": d_x}
    result.update({f"final{i}": f for i, f in enumerate(state_parts(final))})
    result.update({f"d_state{i}": d for i, d in enumerate(state_parts(d_state))})
    result.update(grads)
    return {name: np.asarray(be.to_numpy(v)) for name, v in result.items()}


def assert_same(a, b, *, rtol, atol):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)


# --- gradients ------------------------------------------------------------------------------
CASES = [
    ("rnn", {"recurrent_dropout": 0.5}),
    ("gru", {"zoneout": 0.4}),
    ("lstm", {"zoneout": 0.4}),
    ("lstm", dict(OPTIONS, dropout=0.3)),
    ("lstm", dict(OPTIONS, proj_size=2)),
    ("gru_ln", OPTIONS),
    ("lstm_ln", OPTIONS),
    ("gru_simple", OPTIONS),
    ("lstm_peephole", OPTIONS),
]


@pytest.mark.parametrize(("cell", "options"), CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("training_pass", [True, False], ids=["training", "evaluation"])
def test_gradients_with_fixed_masks_equal_finite_differences(cell, options, training_pass):
    """With one seed the masks stay fixed while inputs move: BPTT through F2r, F3z and the
    input masks equals central differences (evaluation: zoneout's constant p)."""
    be = backend64()
    layer = layer_of(cell, **options)
    params = layer.init_params(3)
    data = make_batch(layer, 4, 2, seed=4, with_lengths=True)

    def ctx():
        return training(11) if training_pass else Context()

    def loss():
        out, final, _ = stack_forward(
            be, layer, params, data.x, data.initial_state, data.lengths, ctx=ctx()
        )
        total = float((out * data.d_out).sum())
        for f, w in zip(state_parts(final), state_parts(data.d_final)):
            total += float((f * w).sum())
        return total

    analytic = run(be, layer, params, data, ctx())
    tol = {"rtol": 1e-6, "atol": 1e-8}
    np.testing.assert_allclose(analytic["d_x"], numeric_grad(loss, data.x), **tol)
    for i, part in enumerate(state_parts(data.initial_state)):
        np.testing.assert_allclose(analytic[f"d_state{i}"], numeric_grad(loss, part), **tol)
    for name, value in params.items():
        np.testing.assert_allclose(analytic[name], numeric_grad(loss, value), **tol, err_msg=name)


# --- p = 0, evaluation, the formulas -------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_zero_probabilities_are_bit_for_bit_no_option_and_draw_nothing(cell):
    be = backend64()
    with_dropout = layer_of(cell, dropout=0.3)
    zeros = attrs.evolve(with_dropout, recurrent_dropout=0.0, input_dropout=0.0, zoneout=0.0)
    params = with_dropout.init_params(1)
    data = make_batch(with_dropout, 5, 3, seed=2, with_lengths=True)
    ctx_a, ctx_b = training(5), training(5)
    a = run(be, with_dropout, params, data, ctx_a)
    b = run(be, zeros, params, data, ctx_b)
    assert_same(a, b, rtol=0, atol=0)
    assert ctx_a.rng.bit_generator.state == ctx_b.rng.bit_generator.state
    plain = attrs.evolve(with_dropout, dropout=0.0)
    ctx = training(5)
    assert_same(
        run(be, plain, params, data, ctx), run(be, plain, params, data, Context()), rtol=0, atol=0
    )
    assert ctx.rng.bit_generator.state == training(5).rng.bit_generator.state


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_evaluation_ignores_recurrent_and_input_dropout(cell):
    be = backend64()
    layer = layer_of(cell, recurrent_dropout=0.5, input_dropout=0.5, dropout=0.5)
    plain = attrs.evolve(layer, recurrent_dropout=0.0, input_dropout=0.0, dropout=0.0)
    params = layer.init_params(0)
    data = make_batch(layer, 5, 3, seed=1, with_lengths=True)
    ctx = Context(rng=np.random.default_rng(0))  # a generator, but not training
    assert_same(
        run(be, layer, params, data, ctx), run(be, plain, params, data, Context()), rtol=0, atol=0
    )
    trained = run(be, layer, params, data, training(0))
    assert not np.array_equal(trained["out"], run(be, plain, params, data, Context())["out"])


def _stepwise(be, plain, params, x, state, keep):
    """The zoneout recursion written out: one plain step at a time, then mixed with weights
    ``keep(t, part)`` of the previous state (one layer, one direction)."""
    outs = []
    for t in range(x.shape[0]):
        _, fresh, _ = be.recurrent_forward(plain, params, x[t : t + 1], state)
        mixed = tuple(
            keep(t, i) * old + (1 - keep(t, i)) * new
            for i, (old, new) in enumerate(zip(state_parts(state), state_parts(fresh)))
        )
        state = mixed if isinstance(fresh, tuple) else mixed[0]
        outs.append(mixed[0][0])
    return np.stack(outs), state


@pytest.mark.parametrize("cell", ["gru", "lstm", "lstm_ln"])
def test_zoneout_in_evaluation_is_the_expectation(cell):
    """h<t> = p * h<t-1> + (1 - p) * h~<t> (and c) at every step, in evaluation."""
    be, p = backend64(), 0.3
    layer = layer_of(cell, num_layers=1, bidirectional=False, zoneout=p)
    plain = attrs.evolve(layer, zoneout=0.0)
    params = layer.init_params(2)
    data = make_batch(layer, 6, 3, seed=3)
    out, final, _ = stack_forward(be, layer, params, data.x, data.initial_state, ctx=Context())
    want_out, want_final = _stepwise(be, plain, params, data.x, data.initial_state, lambda t, i: p)
    np.testing.assert_allclose(out, want_out, rtol=0, atol=1e-14)
    for got, want in zip(state_parts(final), state_parts(want_final)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)


def test_zoneout_in_training_keeps_the_previous_value_where_the_mask_says():
    be, p = backend64(), 0.4
    layer = layer_of("lstm", num_layers=1, bidirectional=False, zoneout=p)
    plain = attrs.evolve(layer, zoneout=0.0)
    params = layer.init_params(2)
    data = make_batch(layer, 6, 3, seed=3)
    out, _, _ = stack_forward(be, layer, params, data.x, data.initial_state, ctx=training(9))
    z = stack_masks(training(9), layer, 6, 3).loop.zoneout[0]  # (h, c) masks of 0 and 1
    assert set(np.unique(z[0])) == {0.0, 1.0}
    want, _ = _stepwise(be, plain, params, data.x, data.initial_state, lambda t, i: z[i][t])
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-14)


def test_recurrent_dropout_masks_h_in_the_recurrent_product_only():
    """An rnn written out: h<t> = tanh(W_ih x + b_ih + W_hh (h<t-1> * m) + b_hh)."""
    be = backend64()
    layer = layer_of("rnn", num_layers=1, bidirectional=False, recurrent_dropout=0.5)
    params = layer.init_params(4)
    data = make_batch(layer, 5, 3, seed=5)
    out, _, _ = stack_forward(be, layer, params, data.x, data.initial_state, ctx=training(2))
    m = stack_masks(training(2), layer, 5, 3).loop.hidden[0]  # (B, H) of 0 and 2
    assert set(np.unique(m)) == {0.0, 2.0}
    p = {k[: -len("_l0")]: v for k, v in params.items()}
    h, want = data.initial_state[0], []
    for t in range(5):
        h = np.tanh(
            data.x[t] @ p["weight_ih"].T + p["bias_ih"] + (h * m) @ p["weight_hh"].T + p["bias_hh"]
        )
        want.append(h)
    np.testing.assert_allclose(out, np.stack(want), rtol=0, atol=1e-14)


def test_input_dropout_is_one_mask_per_sequence():
    be = backend64()
    layer = layer_of("gru", num_layers=1, bidirectional=False, input_dropout=0.5)
    plain = attrs.evolve(layer, input_dropout=0.0)
    params = layer.init_params(4)
    data = make_batch(layer, 5, 3, seed=5)
    out, _, _ = stack_forward(be, layer, params, data.x, data.initial_state, ctx=training(2))
    m = stack_masks(training(2), layer, 5, 3).inputs[0]
    assert m.shape == (1, 3, 2)  # the same at every step
    want, _, _ = be.recurrent_forward(plain, params, data.x * m, data.initial_state)
    np.testing.assert_array_equal(out, want)


def test_masks_are_drawn_in_the_documented_order():
    """Per layer: dropout of the layer below, input dropout, then per direction the recurrent
    dropout mask and the zoneout masks (h, then c), each from a child generator."""
    layer = layer_of("lstm", dropout=0.2, **OPTIONS)
    T, B = 4, 3
    got = stack_masks(training(6), layer, T, B)
    rng = np.random.default_rng(6)

    def child():
        return np.random.default_rng(rng.integers(2**63))

    for k in range(2):
        inp = np.ones((1, B, layer.layer_input_size(k)))
        if k:
            inp = seqkit.dropout.draw_mask(child(), (T, B, layer.output_size), 0.2) * inp
        inp = inp * seqkit.dropout.draw_mask(child(), (B, layer.layer_input_size(k)), 0.3)
        np.testing.assert_array_equal(got.inputs[k], inp)
        for d in range(2):
            hidden = seqkit.dropout.draw_mask(child(), (B, 3), 0.5)
            np.testing.assert_array_equal(got.loop.hidden[2 * k + d], hidden)
            for part in got.loop.zoneout[2 * k + d]:
                np.testing.assert_array_equal(
                    part, seqkit.dropout.draw_keep(child(), (T, B, 3), 0.4)
                )


# --- torch ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cell", "options"), CASES[:6], ids=lambda v: str(v))
def test_numpy_and_torch_agree_in_training(cell, options):
    tb = torch_backend64()
    layer = layer_of(cell, **options)
    params = layer.init_params(3)
    data = make_batch(layer, 6, 4, seed=4, with_lengths=True)
    want = run(backend64(), layer, params, data, training(21))
    got = run(tb, layer, params, data, training(21))
    assert_same(got, want, rtol=1e-10, atol=1e-10)


def test_torch_runs_loop_masks_on_the_generic_path():
    tb = torch_backend64()
    plain = layer_of("lstm")
    assert tb.layer_path(plain) == "fused"
    for options in ({"recurrent_dropout": 0.25}, {"zoneout": 0.1}):
        assert tb.layer_path(attrs.evolve(plain, **options)) == "generic"
    # input dropout acts between the calls: each layer stays on the fused kernel
    layer = attrs.evolve(plain, input_dropout=0.3)
    params = layer.init_params(0)
    data = make_batch(layer, 4, 2, seed=0)
    _, _, cache = stack_forward(tb, layer, params, data.x, data.initial_state, ctx=training(0))
    assert [c.path for c in cache.caches] == ["fused", "fused"]
    zoned = attrs.evolve(plain, zoneout=0.1)
    _, _, cache = stack_forward(tb, zoned, params, data.x, data.initial_state, ctx=training(0))
    assert [c.path for c in cache.caches] == ["generic"]
    with pytest.raises(ConfigError, match="inside the time loop"):
        torch_backend64("fused").layer_path(zoned)


# --- data parallel, errors, other backends -------------------------------------------------------
def test_a_shard_equals_its_rows_of_one_process():
    be = backend64()
    layer = layer_of("lstm", dropout=0.2, **OPTIONS)
    params = layer.init_params(1)
    data = make_batch(layer, 5, 5, seed=1, with_lengths=True)
    full, _, _ = stack_forward(
        be, layer, params, data.x, data.initial_state, data.lengths, ctx=training(7)
    )
    for rank in range(2):
        ctx = Context(
            training=True, rng=np.random.default_rng(7), rank=rank, world_size=2, global_batch=5
        )
        rows = slice(rank, None, 2)
        state = tuple(s[:, rows] for s in data.initial_state)
        out, _, _ = stack_forward(
            be, layer, params, data.x[:, rows], state, data.lengths[rows], ctx=ctx
        )
        np.testing.assert_allclose(out, full[:, rows], rtol=1e-12, atol=1e-12)


def test_bad_masks_are_one_line_errors():
    be = backend64()
    layer = layer_of("gru", num_layers=1, bidirectional=False, zoneout=0.5)
    params = layer.init_params(0)
    data = make_batch(layer, 4, 2, seed=0)
    with pytest.raises(TypeError, match="LoopMasks"):
        be.recurrent_forward(layer, params, data.x, masks={"zoneout": 0.5})
    with pytest.raises(ShapeError, match=r"zoneout mask must be a float or have shape"):
        be.recurrent_forward(
            layer, params, data.x, masks=LoopMasks((None,), ((np.zeros((3, 2, 3)),),))
        )
    with pytest.raises(ValueError, match="'zoneout' must be a probability"):
        attrs.evolve(layer, zoneout=1.0)
    with pytest.raises(ValueError, match="'learn_initial_state' must be True or False"):
        attrs.evolve(layer, learn_initial_state=1)


@pytest.mark.parametrize("training_pass", [True, False], ids=["training", "evaluation"])
def test_jax_runs_every_mask_as_numpy_does(training_pass):
    pytest.importorskip("jax")
    jb = seqkit.get_backend("jax", dtype="float64")
    layer = layer_of("lstm", dropout=0.2, proj_size=2, **OPTIONS)
    params = layer.init_params(0)
    data = make_batch(layer, 5, 3, seed=0, with_lengths=True)  # T = 5: padded to a time bucket

    def ctx():
        return training(3) if training_pass else Context()

    want = run(backend64(), layer, params, data, ctx())
    assert_same(run(jb, layer, params, data, ctx()), want, rtol=1e-9, atol=1e-9)


def test_a_backend_without_loop_masks_refuses_them_in_one_line():
    class NoMasks(type(backend64())):
        loop_masks = False

    be = NoMasks(dtype="float64")
    layer = layer_of("gru", input_dropout=0.4)
    params = layer.init_params(0)
    data = make_batch(layer, 4, 2, seed=0)
    run(be, layer, params, data, training(3))  # input dropout acts between calls: it runs
    for options in ({"zoneout": 0.1}, {"recurrent_dropout": 0.1}):
        zoned = attrs.evolve(layer, **options)
        with pytest.raises(ConfigError, match="cannot run recurrent_dropout or zoneout"):
            stack_forward(be, zoned, params, data.x, data.initial_state, ctx=training(0))


# --- seqkit.testing on layers with zoneout (its evaluation form runs through recurrent_forward) --
@pytest.mark.parametrize("cell", ["gru_ln", "lstm_ln", "lstm"])
def test_the_testing_kit_checks_zoneout_layers(cell):
    from seqkit.testing import check_layer_agrees, check_layer_gradients

    layer = layer_of(cell, zoneout=0.3, recurrent_dropout=0.2)
    data = make_batch(layer, 4, 2, seed=8, with_lengths=True)
    check_layer_gradients(layer, data, seed=1)
    backends = ["numpy"] + (["torch"] if _has_torch() else [])
    check_layer_agrees(layer, data, backends=backends, seed=1)


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True
