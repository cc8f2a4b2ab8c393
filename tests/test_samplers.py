"""Tests for seqkit.samplers: exact distributions, sampling frequencies, options and errors."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import seqkit
from seqkit._plugins import lookup
from seqkit.errors import ShapeError, UnknownNameError
from seqkit.samplers import (
    GreedySampler,
    RandomSampler,
    Sampler,
    filtered_probs,
    get_sampler,
    log_softmax,
    softmax,
)

# chi-square critical values at p = 0.001 for df degrees of freedom (tables; scipy is not a dep)
CHI2_CRIT_001 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515, 6: 22.458, 7: 24.322}

FAST = settings(max_examples=25, deadline=None)


def logits_arrays(max_b=3, max_v=8):
    """(B, V) float64 logits, bounded so probabilities stay well away from underflow."""
    shapes = st.tuples(st.integers(1, max_b), st.integers(1, max_v))
    floats = st.floats(-8, 8, allow_nan=False, allow_infinity=False)
    return shapes.flatmap(lambda s: hnp.arrays(np.float64, s, elements=floats))


def distinct_logits(max_b=3, max_v=8):
    """(B, V) logits whose entries in a row differ by at least 0.5 (a unique argmax, no ties)."""

    def build(shape):
        B, V = shape
        perms = st.lists(st.permutations(range(V)), min_size=B, max_size=B)
        return perms.map(lambda rows: 0.5 * np.array(rows, dtype=np.float64) - V / 4)

    return st.tuples(st.integers(1, max_b), st.integers(1, max_v)).flatmap(build)


def chi_square(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic and degrees of freedom over the categories with probability > 0.

    Categories expecting fewer than 5 draws are pooled into one bin (into the smallest other bin
    if the pool itself stays under 5): one lucky draw of a 1-in-10^5 token would otherwise
    dominate the statistic, and the chi-square approximation needs expected counts >= 5.
    """
    n = counts.sum()
    expected = n * probs
    big = expected >= 5
    small = (probs > 0) & ~big
    obs, exp = list(counts[big].astype(float)), list(expected[big])
    if small.any():
        pooled_obs, pooled_exp = float(counts[small].sum()), float(expected[small].sum())
        if pooled_exp >= 5 or not exp:
            obs.append(pooled_obs)
            exp.append(pooled_exp)
        else:
            i = int(np.argmin(exp))
            obs[i] += pooled_obs
            exp[i] += pooled_exp
    obs_a, exp_a = np.array(obs), np.array(exp)
    return float(np.sum((obs_a - exp_a) ** 2 / exp_a)), len(exp) - 1


# --- softmax --------------------------------------------------------------------------------------


@FAST
@given(logits_arrays())
def test_softmax_is_a_distribution_and_matches_log_softmax(x):
    p = softmax(x)
    assert p.dtype == np.float64
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.exp(log_softmax(x)), p, rtol=1e-12, atol=1e-15)


def test_softmax_is_stable_for_huge_logits_and_masks_minus_inf():
    x = np.array([[1000.0, 999.0, -np.inf], [-1e4, -1e4 - math.log(3), -np.inf]])
    p = softmax(x)
    e = math.e
    np.testing.assert_allclose(p[0], [e / (e + 1), 1 / (e + 1), 0.0], rtol=1e-12)
    np.testing.assert_allclose(p[1], [0.75, 0.25, 0.0], rtol=1e-12)
    lp = log_softmax(x)
    assert lp[0, 2] == -np.inf and np.isfinite(lp[:, :2]).all()
    np.testing.assert_allclose(lp[1, :2], np.log([0.75, 0.25]), rtol=1e-12)


def test_softmax_works_along_another_axis():
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(softmax(x, axis=0), softmax(x.T).T)


# --- filtered_probs: exact distributions ----------------------------------------------------------

BASE = np.log(np.array([[0.5, 0.3, 0.2]]))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, [0.5, 0.3, 0.2]),
        ({"top_k": 1}, [1.0, 0.0, 0.0]),
        ({"top_k": 2}, [0.625, 0.375, 0.0]),
        ({"top_k": 3}, [0.5, 0.3, 0.2]),
        ({"top_k": 99}, [0.5, 0.3, 0.2]),
        ({"top_p": 0.5}, [1.0, 0.0, 0.0]),  # 0.5 alone reaches 0.5
        ({"top_p": 0.51}, [0.625, 0.375, 0.0]),
        ({"top_p": 0.8}, [0.625, 0.375, 0.0]),
        ({"top_p": 0.81}, [0.5, 0.3, 0.2]),
        ({"top_p": 1.0}, [0.5, 0.3, 0.2]),
        ({"top_p": 1e-9}, [1.0, 0.0, 0.0]),
        ({"temperature": 0.5}, np.array([0.25, 0.09, 0.04]) / 0.38),
        ({"temperature": 2.0}, np.sqrt([0.5, 0.3, 0.2]) / np.sqrt([0.5, 0.3, 0.2]).sum()),
        ({"top_k": 2, "top_p": 0.6}, [1.0, 0.0, 0.0]),  # top-p acts on the top-k renormalised
        ({"top_k": 2, "top_p": 0.7}, [0.625, 0.375, 0.0]),
    ],
)
def test_filtered_probs_exact(options, expected):
    np.testing.assert_allclose(filtered_probs(BASE, **options)[0], expected, rtol=1e-12, atol=1e-15)


def test_top_k_ties_keep_exactly_k_preferring_lower_ids():
    p = filtered_probs(np.zeros((1, 5)), top_k=2)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0, 0, 0])


def test_minus_inf_logits_are_never_kept():
    x = np.array([[0.0, -np.inf, 1.0, -np.inf]])
    for options in ({}, {"top_k": 3}, {"top_p": 1.0}, {"temperature": 1e-6}):
        p = filtered_probs(x, **options)
        assert p[0, 1] == 0 and p[0, 3] == 0
        np.testing.assert_allclose(p.sum(), 1.0)


@FAST
@given(
    logits_arrays(),
    st.floats(0.05, 10),
    st.none() | st.integers(1, 10),
    st.none() | st.floats(1e-6, 1.0),
)
def test_filtered_probs_is_a_distribution_within_top_k(x, temperature, top_k, top_p):
    p = filtered_probs(x, temperature=temperature, top_k=top_k, top_p=top_p)
    assert p.shape == x.shape and p.dtype == np.float64
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    if top_k is not None:
        assert np.all((p > 0).sum(axis=1) <= top_k)
        # every kept token is among the k largest logits (ties at the boundary allowed)
        kth = -np.sort(-x, axis=1)[:, min(top_k, x.shape[1]) - 1 : min(top_k, x.shape[1])]
        assert np.all(x[p > 0] >= np.broadcast_to(kth, x.shape)[p > 0])


@FAST
@given(logits_arrays(), st.floats(1e-6, 1.0))
def test_top_p_keeps_the_smallest_set_reaching_p(x, top_p):
    base = softmax(x)
    p = filtered_probs(x, top_p=top_p)
    for b in range(x.shape[0]):
        kept = p[b] > 0
        mass = base[b, kept].sum()
        # reaches p (up to rounding), and would not without its least likely member
        assert mass >= top_p - 1e-12
        assert mass - base[b, kept].min() < top_p + 1e-12
        # kept tokens are the most likely ones, and keep their relative odds
        assert base[b, kept].min() >= base[b, ~kept].max(initial=0.0)
        np.testing.assert_allclose(p[b, kept], base[b, kept] / mass, rtol=1e-9)


# --- sampling -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options", [{}, {"temperature": 0.7}, {"top_k": 3}, {"top_p": 0.9}, {"temperature": 2.0}]
)
def test_sampling_frequencies_match_the_distribution(options):
    logits = np.array([[2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0, -6.0]])
    sampler = RandomSampler(**options)
    probs = sampler.probs(logits)[0]
    n = 20_000
    ids = sampler.choose(np.repeat(logits, n, axis=0), np.random.default_rng(1234))
    assert ids.shape == (n,) and ids.dtype == np.int64
    counts = np.bincount(ids, minlength=probs.size)
    assert np.all(counts[probs == 0] == 0), "drew a token of probability 0"
    stat, df = chi_square(counts, probs)
    assert stat < CHI2_CRIT_001[df], f"chi-square {stat:.2f} >= {CHI2_CRIT_001[df]} (df {df})"


def test_sampling_draws_each_row_from_its_own_distribution():
    logits = np.log(np.array([[0.9, 0.1, 1e-300], [1e-300, 0.2, 0.8]]))
    rng = np.random.default_rng(7)
    ids = np.stack([RandomSampler().choose(logits, rng) for _ in range(4000)])  # (N, 2)
    for b, probs in enumerate(softmax(logits)):
        counts = np.bincount(ids[:, b], minlength=3)
        stat, df = chi_square(
            counts[:2] if b == 0 else counts[1:], probs[:2] if b == 0 else probs[1:]
        )
        assert stat < CHI2_CRIT_001[df]


@FAST
@given(logits_arrays(max_b=4), st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_top_k_never_emits_a_token_outside_the_top_k(x, k, seed):
    ids = RandomSampler(top_k=k).choose(np.repeat(x, 50, axis=0), np.random.default_rng(seed))
    rows = np.repeat(x, 50, axis=0)
    kth = -np.sort(-rows, axis=1)[:, min(k, x.shape[1]) - 1]
    assert np.all(rows[np.arange(len(ids)), ids] >= kth)


@FAST
@given(distinct_logits(), st.integers(0, 2**32 - 1))
def test_temperature_towards_zero_equals_greedy(x, seed):
    cold = RandomSampler(temperature=1e-6)
    greedy = GreedySampler()
    np.testing.assert_array_equal(cold.probs(x), greedy.probs(x))
    np.testing.assert_array_equal(cold.choose(x, np.random.default_rng(seed)), greedy.choose(x))
    np.testing.assert_array_equal(greedy.choose(x), np.argmax(x, axis=1))


@FAST
@given(logits_arrays(), st.integers(0, 2**32 - 1))
def test_same_seed_same_result(x, seed):
    sampler = RandomSampler(temperature=0.9, top_p=0.95)
    a = [sampler.choose(x, rng) for rng in [np.random.default_rng(seed)] for _ in range(5)]
    b = [sampler.choose(x, rng) for rng in [np.random.default_rng(seed)] for _ in range(5)]
    np.testing.assert_array_equal(np.stack(a), np.stack(b))


def test_choose_draws_one_uniform_per_row():
    # a documented contract, so that generation loops can be reasoned about and replayed
    rng, twin = np.random.default_rng(3), np.random.default_rng(3)
    RandomSampler().choose(np.zeros((4, 6)), rng)
    twin.random(4)
    assert rng.random() == twin.random()


def test_greedy_ties_pick_the_lowest_id_and_ignore_rng():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert GreedySampler().choose(np.array([[1.0, 3.0, 3.0]]), rng).tolist() == [1]
    assert rng.bit_generator.state == state


def test_float32_and_int_logits_are_accepted():
    x = np.array([[0.0, 5.0, 1.0]], dtype=np.float32)
    assert GreedySampler().choose(x).tolist() == [1]
    assert RandomSampler(temperature=1e-3).choose(x.astype(np.int32), np.random.default_rng(0)) == 1


# --- registry and options -------------------------------------------------------------------------


def test_samplers_are_registered_through_the_hook():
    assert {"greedy", "random"} <= set(seqkit.list_samplers())
    assert lookup("sampler", "random") is RandomSampler
    assert lookup("sampler", "greedy") is GreedySampler
    assert issubclass(RandomSampler, Sampler) and issubclass(GreedySampler, Sampler)


def test_get_sampler_builds_by_name_with_options():
    s = get_sampler("random", temperature=0.5, top_k=3, top_p=0.9)
    assert s == RandomSampler(temperature=0.5, top_k=3, top_p=0.9)
    assert get_sampler("greedy") == GreedySampler()
    assert get_sampler(s) is s


def test_get_sampler_unknown_name_lists_the_choices():
    with pytest.raises(
        UnknownNameError, match=r"unknown sampler 'beem'; available: .*greedy.*random"
    ):
        get_sampler("beem")


def test_get_sampler_unknown_option_lists_the_options():
    with pytest.raises(
        TypeError, match=r"'random' got unknown options \['topk'\].*temperature, top_k"
    ):
        get_sampler("random", topk=3)
    with pytest.raises(TypeError, match=r"'greedy' got unknown options.*\(none\)"):
        get_sampler("greedy", temperature=1.0)
    with pytest.raises(TypeError, match="sampler instance"):
        get_sampler(GreedySampler(), temperature=1.0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"temperature": 0}, r"'temperature' must be a finite number > 0 \(got 0\)"),
        ({"temperature": -1.0}, r"'temperature' must be .* \(got -1.0\)"),
        ({"temperature": float("nan")}, "'temperature' must be"),
        ({"temperature": float("inf")}, "'temperature' must be"),
        ({"temperature": "1"}, "'temperature' must be"),
        ({"top_k": 0}, r"'top_k' must be an integer >= 1 or None \(got 0\)"),
        ({"top_k": -3}, "'top_k' must be"),
        ({"top_k": 2.5}, "'top_k' must be"),
        ({"top_k": True}, "'top_k' must be"),
        ({"top_p": 0}, r"'top_p' must be a number in \(0, 1\] or None \(got 0\)"),
        ({"top_p": 1.01}, "'top_p' must be"),
        ({"top_p": -0.5}, "'top_p' must be"),
        ({"top_p": float("nan")}, "'top_p' must be"),
    ],
)
def test_bad_options_are_clear_errors(options, match):
    with pytest.raises(ValueError, match=match):
        RandomSampler(**options)
    with pytest.raises(ValueError, match=match):
        get_sampler("random", **options)
    with pytest.raises(ValueError, match=match):
        filtered_probs(np.zeros((1, 3)), **options)


def test_options_are_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        RandomSampler(0.5)  # type: ignore[misc]
    s = RandomSampler()
    with pytest.raises(AttributeError):
        s.temperature = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("logits", "error", "match"),
    [
        (np.zeros(3), ShapeError, r"\(B, V\).*got shape \(3,\)"),
        (np.zeros((2, 0)), ShapeError, "V >= 1"),
        (np.array([["a", "b"]]), ShapeError, "real array"),
        (np.array([[0.0, np.nan]]), ValueError, "NaN"),
        (np.array([[0.0, np.inf]]), ValueError, r"\+inf"),
        (np.array([[0.0, 1.0], [-np.inf, -np.inf]]), ValueError, r"rows \[1\] are all -inf"),
    ],
)
def test_bad_logits_are_clear_errors(logits, error, match):
    for sampler in (RandomSampler(), GreedySampler()):
        with pytest.raises(error, match=match):
            sampler.choose(logits, np.random.default_rng(0))


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError, match=r"numpy.random.Generator \(got int\).*default_rng"):
        RandomSampler().choose(np.zeros((1, 3)), 0)  # type: ignore[arg-type]
