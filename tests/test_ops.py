"""seqkit.ops: the xp defaults, the in-place option, and concat's zero-copy join on NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from seqkit_numpy import NumpyOps

from seqkit.ops import Ops

ops = NumpyOps("float64")
rng = np.random.default_rng(3)


class BareOps(Ops):
    """Only what :class:`Ops` cannot default: every other method is the base class's."""

    xp = np
    dtype = "float64"

    def asarray(self, a):
        return np.asarray(a, dtype=np.float64)

    def to_numpy(self, a):
        return np.asarray(a)

    def empty(self, shape):
        return np.empty(shape)

    def zeros(self, shape):
        return np.zeros(shape)

    def copy(self, a):
        return a.copy()

    def mask(self, lengths, steps):
        return (np.arange(steps)[:, None] < lengths[None, :])[:, :, None]


bare = BareOps()
x = rng.standard_normal((3, 2, 5)) * 4
ids = rng.integers(0, 5, size=(3, 2))
# (method, positional arguments): every default, called on the bare ops and the NumPy ops
CALLS = [
    ("sigmoid", (x,)),
    ("tanh", (x,)),
    ("relu", (x,)),
    ("add", (x, 2.5)),
    ("sub", (x, x[0])),
    ("mul", (x, -1.5)),
    ("exp", (x,)),
    ("log", (np.abs(x) + 0.1,)),
    ("sqrt", (np.abs(x),)),
    ("where", (x > 0, x, 0.0)),
    ("concat", ((x[..., :2], x, x[..., 1:]),)),
    ("matmul", (x, rng.standard_normal((5, 4)))),
    ("take_time", (x, np.array([[2, 0], [1, 1], [0, 2]]))),
    ("sum_leading", (x,)),
    ("sum", (x,)),
    ("logsumexp", (x,)),
    ("log_softmax", (x,)),
    ("softmax", (x,)),
    ("log_sigmoid", (x * 100,)),
    ("take_last", (x, ids)),
    ("one_hot", (ids, 5)),
    ("rows", (x[0], ids % 2)),
    ("add_rows", (np.ones((4, 5)), np.array([[1, 3], [1, 0]]), x[:2])),
    ("int_array", ([1, 2],)),
    ("empty_like", (x,)),
]


@pytest.mark.parametrize("name, args", CALLS, ids=[c[0] for c in CALLS])
def test_xp_defaults_equal_numpy_ops(name, args):
    expected = getattr(ops, name)(*args)
    got = getattr(bare, name)(*args)
    assert got.shape == expected.shape
    if name != "empty_like":
        np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)


INPLACE = [
    ("sigmoid", ()),
    ("tanh", ()),
    ("relu", ()),
    ("add", (0.5,)),
    ("sub", (0.5,)),
    ("mul", (3.0,)),
    ("add_rows", (np.array([0, 2, 0]), np.ones((3, 5)))),
]


@pytest.mark.parametrize("name, rest", INPLACE, ids=[c[0] for c in INPLACE])
def test_numpy_inplace_writes_into_its_argument_and_only_when_asked(name, rest):
    a = rng.standard_normal((4, 5))
    before = a.copy()
    fresh = getattr(ops, name)(a, *rest)
    np.testing.assert_array_equal(a, before)  # inplace=False leaves the argument alone
    assert not np.shares_memory(fresh, a)
    same = getattr(ops, name)(a, *rest, inplace=True)
    assert same is a
    np.testing.assert_allclose(same, fresh, rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "add", "mul"])
def test_numpy_results_keep_a_feature_major_layout(name):
    a = np.asfortranarray(rng.standard_normal((3, 8)))  # (B, G*H) stored feature-major
    args = (a,) if name in ("sigmoid", "tanh", "relu") else (a, 2.0)
    assert getattr(ops, name)(*args).flags.f_contiguous
    assert ops.concat((a[:, :2], a[:, 5:])).flags.f_contiguous


def test_numpy_sigmoid_is_finite_everywhere_and_agrees_with_the_default():
    z = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    np.testing.assert_allclose(ops.sigmoid(z), bare.sigmoid(z), rtol=1e-14, atol=1e-300)
    assert ops.sigmoid(z)[0] == 0.0 and ops.sigmoid(z)[-1] == 1.0


def test_concat_inplace_joins_adjacent_blocks_without_a_copy():
    z = np.asfortranarray(rng.standard_normal((3, 8)))
    blocks = (ops.mul(z[:, :2], 2.0, inplace=True), z[:, 2:5], z[:, 5:])
    joined = ops.concat(blocks, inplace=True)
    np.testing.assert_array_equal(joined, np.concatenate(blocks, axis=-1))
    assert np.shares_memory(joined, z) and joined.shape == z.shape
    # without inplace, and for blocks that do not tile one array, a new array
    assert not np.shares_memory(ops.concat(blocks), z)
    for apart in ((z[:, :2], z[:, 3:]), (z[:, 2:], z[:, :2]), (z[:, :2], z.copy(order="F")[:, 2:])):
        out = ops.concat(apart, inplace=True)
        np.testing.assert_array_equal(out, np.concatenate(apart, axis=-1))
        assert not np.shares_memory(out, z)


def test_torch_ops_honour_inplace_and_agree_with_numpy():
    torch = pytest.importorskip("torch")
    from seqkit_torch.ops import TorchOps

    tops = TorchOps("float64")
    for name in ("sigmoid", "tanh", "relu"):
        a = torch.tensor(x)
        fresh = getattr(tops, name)(a)
        np.testing.assert_allclose(fresh.numpy(), getattr(ops, name)(x), rtol=1e-14, atol=1e-15)
        np.testing.assert_array_equal(a.numpy(), x)
        assert getattr(tops, name)(a, inplace=True) is a
        np.testing.assert_array_equal(a.numpy(), fresh.numpy())
    dW = torch.ones((4, 5), dtype=torch.float64)
    rows = torch.tensor([[1, 3], [1, 0]])
    d = torch.tensor(x[:2])
    out = tops.add_rows(dW, rows, d)
    np.testing.assert_allclose(out.numpy(), ops.add_rows(np.ones((4, 5)), rows.numpy(), x[:2]))
    np.testing.assert_array_equal(dW.numpy(), np.ones((4, 5)))
    assert tops.add_rows(dW, rows, d, inplace=True) is dW
    joined = tops.concat((d[..., :2], d[..., 2:]))
    np.testing.assert_array_equal(joined.numpy(), x[:2])


@pytest.mark.parametrize("rows", [0, 1, 7, 300])
@pytest.mark.parametrize("layout", ["rows", "transposed view"])
def test_torch_add_rows_sums_repeated_ids_like_numpy(rows, layout):
    """The scatter-add of the one-hot and embedding gradients: every repeated id accumulates,
    into a plain (V, E) array or into the transposed view of a (E, V) one (a one-hot layer's
    weight gradient), in place, and with no rows at all."""
    torch = pytest.importorskip("torch")
    from seqkit_torch.ops import TorchOps

    tops = TorchOps("float64")
    V, E = 6, 5
    ids = rng.integers(0, V, size=(rows,))  # few ids for many rows: most repeat
    d = rng.normal(size=(rows, E))
    start = rng.normal(size=(V, E))
    want = ops.add_rows(start.copy(), ids, d)
    dW = torch.tensor(start) if layout == "rows" else torch.tensor(start.T.copy()).T
    out = tops.add_rows(dW, torch.tensor(ids), torch.tensor(d), inplace=True)
    assert out is dW
    np.testing.assert_allclose(dW.numpy(), want, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((64, 32), (32, 1024)),
        ((5, 6, 64), (64, 1024)),
        ((2048, 1024), (1024, 64)),
        ((3, 4), (4, 5)),
    ],
    ids=["rows", "leading axes", "tall", "too small for oneDNN"],
)
@pytest.mark.parametrize("layout", ["row-major", "transposed a", "transposed b", "out", "grad"])
def test_torch_matmul_in_float32_equals_torch_on_every_route(a_shape, b_shape, layout):
    """float32 products on a CPU go to oneDNN's inner product when ``a`` is row-major, big enough
    and outside autograd, to torch.matmul (MKL) otherwise: the same values either way, ``out``
    written, and a gradient where one is asked for."""
    torch = pytest.importorskip("torch")
    from seqkit_torch.ops import TorchOps

    tops = TorchOps("float32")
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(a_shape, generator=gen)
    b = torch.randn(b_shape, generator=gen)
    if layout == "transposed a" and a.ndim == 2:
        a = a.T.contiguous().T
    if layout == "transposed b":
        b = b.T.contiguous().T
    want = (a.double() @ b.double()).float()
    if layout == "grad":
        a.requires_grad_(True)
    out = torch.full(want.shape, float("nan")) if layout == "out" else None
    got = tops.matmul(a, b, out=out)
    if out is not None:
        assert got is out
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * a.shape[-1] ** 0.5)
    if layout == "grad":
        got.sum().backward()
        torch.testing.assert_close(a.grad, b.sum(1).expand_as(a), rtol=1e-4, atol=1e-4)
