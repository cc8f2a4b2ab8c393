"""Dropout: host-drawn masks, the Dropout block, and dropout between stacked recurrent layers."""

import math

import numpy as np
import pytest

import seqkit
from seqkit.context import Context
from seqkit.dropout import Dropout, draw_mask, dropout_mask, stack_backward, stack_forward
from tests.helpers import backend64, numeric_grad, random_inputs, state_parts


def child(rng):
    """The child generator dropout_mask draws each mask from."""
    return np.random.default_rng(rng.integers(2**63))


def torch_backend64():
    pytest.importorskip("torch")
    from seqkit_torch import TorchBackend

    return TorchBackend(dtype="float64")


def training(seed):
    return Context(training=True, rng=np.random.default_rng(seed))


def rng_state(rng):
    return rng.bit_generator.state


def problem(cell, num_layers, bidirectional, with_lengths, *, p=0.4, T=5, B=3, I=3, H=4, seed=0):
    """A stack with dropout p, its parameters, inputs, a non-zero state and upstream gradients."""
    rng = np.random.default_rng(seed)
    layer = seqkit.Recurrent(
        cell, I, H, num_layers=num_layers, bidirectional=bidirectional, dropout=p
    )
    params = layer.init_params(seed + 1)
    x, state, lengths = random_inputs(layer, T, B, rng, lengths=with_lengths)
    w_out = rng.normal(size=(T, B, layer.output_size))
    w_fin = tuple(rng.normal(size=s.shape) for s in state_parts(state))
    w_fin = w_fin if isinstance(state, tuple) else w_fin[0]
    return layer, params, x, state, lengths, w_out, w_fin


def run(be, layer, params, x, state, lengths, w_out, w_fin, ctx):
    """Outputs, final state and every gradient of sum(out * w_out) + sum(final * w_fin), NumPy."""
    out, final, cache = stack_forward(be, layer, params, x, state, lengths, ctx=ctx)
    d_x, d_state, grads = stack_backward(be, cache, w_out, w_fin)
    result = {"out": out, "d_x": d_x}
    for i, f in enumerate(state_parts(final)):
        result[f"final{i}"] = f
    for i, d in enumerate(state_parts(d_state)):
        result[f"d_state{i}"] = d
    result.update(grads)
    return {name: be.to_numpy(v) for name, v in result.items()}


def assert_same(a: dict, b: dict, *, rtol: float, atol: float) -> None:
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)


# --- masks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_statistics(p):
    n = 200_000
    mask = draw_mask(np.random.default_rng(3), (n,), p)
    assert mask.dtype == np.float64
    assert set(np.unique(mask)) <= {0.0, 1.0 / (1.0 - p)}
    # a fraction of zeros is a binomial proportion; an entry's variance is p / (1 - p)
    assert abs((mask == 0).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert abs(mask.mean() - 1.0) < 5 * math.sqrt(p / (1 - p) / n)


def test_p_zero_mask_is_ones_and_draws_nothing():
    rng = np.random.default_rng(0)
    before = rng_state(rng)
    np.testing.assert_array_equal(draw_mask(rng, (4, 3), 0.0), np.ones((4, 3)))
    assert rng_state(rng) == before


def test_same_generator_state_gives_same_masks():
    a = draw_mask(np.random.default_rng(5), (6, 4, 3), 0.3)
    b = draw_mask(np.random.default_rng(5), (6, 4, 3), 0.3)
    c = draw_mask(np.random.default_rng(6), (6, 4, 3), 0.3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("bad", [1.0, -0.1, True, "0.5", None])
def test_bad_probability_is_named(bad):
    with pytest.raises(ValueError, match=r"'p' must be a probability in \[0, 1\)"):
        draw_mask(np.random.default_rng(0), (2, 2), bad)
    with pytest.raises(ValueError, match=r"'dropout' must be a probability in \[0, 1\)"):
        seqkit.Recurrent("gru", 2, 3, num_layers=2, dropout=bad)
    with pytest.raises(ValueError, match=r"'p' must be a probability"):
        Dropout(bad)


def test_draw_mask_needs_a_generator():
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        draw_mask(np.random.RandomState(0), (2, 2), 0.5)


def test_evaluation_draws_nothing():
    rng = np.random.default_rng(0)
    before = rng_state(rng)
    assert dropout_mask(Context(rng=rng), (3, 2, 4), 0.5) is None
    assert rng_state(rng) == before


def test_training_with_dropout_needs_a_generator():
    with pytest.raises(ValueError, match=r"needs ctx.rng, a numpy.random.Generator \(got None\)"):
        dropout_mask(Context(training=True), (3, 2, 4), 0.5)
    assert dropout_mask(Context(training=True), (3, 2, 4), 0.0) is None


@pytest.mark.parametrize("world", [2, 3])
def test_shards_take_their_rows_of_the_global_mask(world):
    """Each rank keeps rows rank::world of the global batch's mask; generators stay in step."""
    B = 7
    one = training(4)
    full = dropout_mask(one, (5, B, 3), 0.5)
    for rank in range(world):
        ctx = Context(
            training=True, rng=np.random.default_rng(4), rank=rank, world_size=world, global_batch=B
        )
        rows = len(range(rank, B, world))
        np.testing.assert_array_equal(dropout_mask(ctx, (5, rows, 3), 0.5), full[:, rank::world])
        assert rng_state(ctx.rng) == rng_state(one.rng)


def test_context_validation():
    with pytest.raises(ValueError, match=r"'rank' must lie in 0..world_size-1 = 0..1"):
        Context(rank=2, world_size=2, global_batch=4)
    with pytest.raises(ValueError, match="'global_batch' is needed with world_size=2"):
        Context(world_size=2)
    with pytest.raises(TypeError, match="'rng' must be a numpy.random.Generator"):
        Context(training=True, rng=0)
    with pytest.raises(TypeError, match="'training'"):
        Context(training=1)
    ctx = Context(training=True, rng=np.random.default_rng(0), world_size=2, global_batch=5)
    with pytest.raises(ValueError, match="is not rank 0's shard of a global batch of 5"):
        dropout_mask(ctx, (4, 2, 3), 0.5)


# --- the Dropout block ------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3, 5), (3, 5)])
def test_block_forward_and_backward(shape):
    ops = backend64().ops
    x = np.random.default_rng(0).normal(size=shape)
    dy = np.random.default_rng(1).normal(size=shape)
    block = Dropout(0.5)
    assert block.param_shapes() == {} and block.init_params(0) == {}
    y, cache = block.forward(ops, {}, x, ctx=training(2))
    mask = draw_mask(child(np.random.default_rng(2)), shape, 0.5)
    np.testing.assert_array_equal(y, x * mask)
    dx, grads = block.backward(ops, {}, cache, dy)
    assert grads == {}
    numeric = numeric_grad(
        lambda: float((block.forward(ops, {}, x, ctx=training(2))[0] * dy).sum()), x
    )
    np.testing.assert_allclose(dx, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_block_is_the_identity_in_evaluation_and_for_p_zero(p):
    ops = backend64().ops
    x = np.random.default_rng(0).normal(size=(4, 3, 5))
    rng = np.random.default_rng(1)
    before = rng_state(rng)
    for ctx in (Context(rng=rng), Context(training=True, rng=rng) if p == 0 else Context()):
        y, cache = Dropout(p).forward(ops, {}, x, ctx=ctx)
        assert y is x
        dy = np.ones_like(x)
        assert Dropout(p).backward(ops, {}, cache, dy)[0] is dy
    assert rng_state(rng) == before


def test_block_rejects_a_one_dimensional_input():
    with pytest.raises(seqkit.ShapeError, match=r"'x' must be \(T, B, F\) or \(B, F\)"):
        Dropout(0.5).forward(backend64().ops, {}, np.ones(3), ctx=training(0))


def test_block_numpy_equals_torch():
    tb = torch_backend64()
    x = np.random.default_rng(0).normal(size=(4, 3, 5))
    y_np, _ = Dropout(0.3).forward(backend64().ops, {}, x, ctx=training(8))
    y_t, _ = Dropout(0.3).forward(tb.ops, {}, tb.asarray(x), ctx=training(8))
    np.testing.assert_array_equal(y_np, tb.to_numpy(y_t))


# --- dropout between stacked layers -----------------------------------------------------------
def whole(be, layer, params, x, state, lengths, w_out, w_fin):
    """The backend's own whole-stack call, in the form of :func:`run`."""
    out, final, cache = be.recurrent_forward(layer, params, x, state, lengths)
    g = be.recurrent_backward(layer, cache, w_out, w_fin)
    result = {"out": out, "d_x": g["x"]}
    for i, f in enumerate(state_parts(final)):
        result[f"final{i}"] = f
    for i, n in enumerate(layer.state_names):
        result[f"d_state{i}"] = g[f"{n}0"]
    result.update({n: g[n] for n in layer.param_shapes()})
    return {name: be.to_numpy(v) for name, v in result.items()}


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_p_zero_equals_no_dropout_bit_for_bit(cell):
    be = backend64()
    args = problem(cell, 3, True, True, p=0.0)
    ctx = training(0)
    before = rng_state(ctx.rng)
    assert_same(run(be, *args, ctx), whole(be, *args), rtol=0, atol=0)
    assert rng_state(ctx.rng) == before


@pytest.mark.parametrize("p", [0.2, 0.7])
def test_evaluation_never_changes_outputs(p):
    be = backend64()
    args = problem("lstm", 3, True, True, p=p)
    assert_same(run(be, *args, Context()), whole(be, *args), rtol=0, atol=0)
    ctx = Context(rng=np.random.default_rng(0))  # a generator, but not training
    assert_same(run(be, *args, ctx), whole(be, *args), rtol=0, atol=0)


def test_training_with_dropout_differs_and_repeats_with_the_seed():
    be = backend64()
    args = problem("gru", 2, False, False, p=0.5)
    a, b, c = run(be, *args, training(1)), run(be, *args, training(1)), run(be, *args, training(2))
    assert_same(a, b, rtol=0, atol=0)
    assert not np.array_equal(a["out"], whole(be, *args)["out"])
    assert not np.array_equal(a["out"], c["out"])
    # the last layer's output is not dropped: its zeros are only where h is exactly zero
    assert np.count_nonzero(a["out"]) == a["out"].size


def test_draws_one_mask_per_layer_boundary_in_layer_order():
    be = backend64()
    layer, params, x, state, lengths, _, _ = problem("rnn", 3, True, False, p=0.3)
    ctx = training(5)
    _, _, cache = stack_forward(be, layer, params, x, state, lengths, ctx=ctx)
    rng = np.random.default_rng(5)
    T, B = x.shape[:2]
    expected = [draw_mask(child(rng), (T, B, layer.output_size), 0.3) for _ in range(2)]
    assert len(cache.masks) == 3 and cache.masks[0] is None  # one per layer input
    for got, want in zip(cache.masks[1:], expected):
        np.testing.assert_array_equal(got, want)
    assert rng_state(ctx.rng) == rng_state(rng)


@pytest.mark.parametrize("num_layers", [2, 3])
def test_padded_steps_stay_zero(num_layers):
    be = backend64()
    args = problem("lstm", num_layers, True, True, p=0.5, T=6, B=4)
    lengths = args[4]
    result = run(be, *args, training(3))
    pad = np.arange(6)[:, None] >= lengths[None, :]  # (T, B)
    assert pad.any()
    assert np.all(result["out"][pad] == 0)
    assert np.all(result["d_x"][pad] == 0)


def layer_cases():
    return [
        (cell, n, bi, lens)
        for cell in seqkit.list_cells()
        for n in (1, 2, 3)
        for bi in (False, True)
        for lens in (False, True)
    ]


@pytest.mark.parametrize(("cell", "num_layers", "bidirectional", "with_lengths"), layer_cases())
def test_numpy_equals_torch_with_dropout(cell, num_layers, bidirectional, with_lengths):
    tb = torch_backend64()
    args = problem(cell, num_layers, bidirectional, with_lengths, p=0.4, seed=num_layers)
    expected = run(backend64(), *args, training(11))
    assert_same(run(tb, *args, training(11)), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", ["gru_simple", "lstm"])
def test_torch_autograd_through_the_stack_equals_numpy_backward(cell):
    """A model on torch differentiates its loss by autograd, never calling stack_backward."""
    torch = pytest.importorskip("torch")
    tb = torch_backend64()
    layer, params, x, state, lengths, w_out, w_fin = problem(cell, 3, True, True, p=0.4)
    expected = run(backend64(), layer, params, x, state, lengths, w_out, w_fin, training(4))
    tensors = {n: torch.tensor(v, requires_grad=True) for n, v in params.items()}
    xt = torch.tensor(x, requires_grad=True)
    out, final, _ = stack_forward(tb, layer, tensors, xt, state, lengths, ctx=training(4))
    loss = (out * torch.from_numpy(w_out)).sum()
    for f, w in zip(state_parts(final), state_parts(w_fin)):
        loss = loss + (f * torch.from_numpy(w)).sum()
    names = list(tensors)
    grads = torch.autograd.grad(loss, [xt, *(tensors[n] for n in names)])
    np.testing.assert_allclose(grads[0].numpy(), expected["d_x"], rtol=1e-10, atol=1e-10)
    for name, g in zip(names, grads[1:]):
        np.testing.assert_allclose(g.numpy(), expected[name], rtol=1e-10, atol=1e-10, err_msg=name)


def test_torch_fused_path_is_taken_per_layer():
    tb = torch_backend64()
    layer, params, x, state, lengths, _, _ = problem("lstm", 3, True, True, p=0.4)
    _, _, cache = stack_forward(tb, layer, params, x, state, lengths, ctx=training(0))
    assert [c.path for c in cache.caches] == ["fused"] * 3
    assert [spec.num_layers for spec in cache.layers] == [1, 1, 1]
    assert [spec.input_size for spec in cache.layers] == [3, 8, 8]
    assert tb.layer_path(cache.layers[1]) == "fused"


@pytest.mark.parametrize("cell", seqkit.list_cells())
def test_gradients_with_fixed_masks_equal_finite_differences(cell):
    be = backend64()
    layer, params, x, state, lengths, w_out, w_fin = problem(
        cell, 3, True, True, p=0.5, T=4, B=2, I=2, H=2, seed=2
    )
    ctx_seed = 13

    def loss():
        # the same seed each time: the masks are fixed while the inputs move
        out, final, _ = stack_forward(be, layer, params, x, state, lengths, ctx=training(ctx_seed))
        total = float((out * w_out).sum())
        for f, w in zip(state_parts(final), state_parts(w_fin)):
            total += float((f * w).sum())
        return total

    analytic = run(be, layer, params, x, state, lengths, w_out, w_fin, training(ctx_seed))
    np.testing.assert_allclose(analytic["d_x"], numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    for i, part in enumerate(state_parts(state)):
        np.testing.assert_allclose(
            analytic[f"d_state{i}"], numeric_grad(loss, part), rtol=1e-6, atol=1e-8
        )
    for name, value in params.items():
        np.testing.assert_allclose(
            analytic[name], numeric_grad(loss, value), rtol=1e-6, atol=1e-8, err_msg=name
        )


def test_a_shard_equals_its_rows_of_one_process():
    """Rank r's stack on rows r::world equals those rows of the one-process run."""
    be = backend64()
    layer, params, x, state, lengths, _, _ = problem("gru", 3, True, True, p=0.5, B=5)
    full, _, _ = stack_forward(be, layer, params, x, state, lengths, ctx=training(7))
    world = 2
    for rank in range(world):
        ctx = Context(
            training=True, rng=np.random.default_rng(7), rank=rank, world_size=world, global_batch=5
        )
        rows = slice(rank, None, world)
        out, _, _ = stack_forward(
            be, layer, params, x[:, rows], state[:, rows], lengths[rows], ctx=ctx
        )
        np.testing.assert_allclose(out, full[:, rows], rtol=1e-12, atol=1e-12)


def test_stack_errors():
    be = backend64()
    layer, params, x, state, lengths, _, _ = problem("lstm", 2, False, False)
    with pytest.raises(TypeError, match="cache must be the third value returned by stack_forward"):
        stack_backward(be, object(), np.zeros((5, 3, 4)))
    del params["weight_hh_l1"]
    with pytest.raises(seqkit.ShapeError, match="params is missing 'weight_hh_l1'"):
        stack_forward(be, layer, params, x, state, lengths, ctx=training(0))
