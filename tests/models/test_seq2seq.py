import itertools

import numpy as np
import pytest

from seqkit.models import Seq2Seq, load
from seqkit.vocab import Vocabulary
from tests.helpers import numeric_grad

SOURCES = ["abcab", "bca", "", "cabbac", "a"]  # an empty source: the encoder still reads <EOS>
TARGETS = ["xy", "yyxz", "z", "", "xzzyx"]  # T_x != T_y, an empty target: predict <EOS> first


def small(cell="gru", **kwargs):
    src = Vocabulary.build(SOURCES, level="char")
    tgt = Vocabulary.build(TARGETS, level="char")
    kwargs.setdefault("hidden_size", 3)
    return Seq2Seq(src, tgt, cell=cell, backend="numpy", dtype="float64", seed=0, **kwargs)


def grads_and_batch(model):
    batch = model.batch(SOURCES, TARGETS)
    _, grads = model.loss_and_grads(batch)
    return grads, batch


@pytest.mark.parametrize(
    "cell, layers, embedding, head",
    [
        ("lstm", 1, None, ()),
        ("gru", 2, None, ()),
        ("lstm", 2, 2, (3,)),
        ("rnn", 1, 2, ()),
    ],
)
def test_whole_model_gradients_match_finite_differences(cell, layers, embedding, head):
    model = small(cell, num_layers=layers, embedding_size=embedding, head_sizes=head)
    grads, batch = grads_and_batch(model)
    assert set(grads) == set(model.params)
    for name, arr in model.params.items():
        expected = numeric_grad(lambda: model.loss(batch), arr)
        np.testing.assert_allclose(grads[name], expected, rtol=1e-5, atol=1e-8, err_msg=name)
    # the encoder learns only through the decoder's initial state
    assert np.abs(grads["encoder.rnn.weight_ih_l0"]).max() > 1e-6


def test_log_prob_is_the_chain_rule_given_the_source():
    model = small("lstm", num_layers=2)
    per = model.token_log_probs(SOURCES, TARGETS)
    assert [len(p) for p in per] == [len(t) + 1 for t in TARGETS]  # <EOS> counted
    for s, t, p in zip(SOURCES, TARGETS, per, strict=True):
        assert model.log_prob(s, t) == pytest.approx(p.sum(), rel=1e-12)
        assert np.all(p < 0)
    # the source matters
    assert model.log_prob("abc", "xy") != pytest.approx(model.log_prob("cba", "xy"), rel=1e-6)


def _brute_force_best(model, source, tokens, max_len, alpha):
    best, best_rank = None, -np.inf
    for n in range(max_len + 1):
        for combo in itertools.product(tokens, repeat=n):
            text = "".join(combo)
            rank = model.log_prob(source, text) / (n + 1) ** alpha
            if rank > best_rank:
                best, best_rank = text, rank
    return best, best_rank


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_wide_beam_is_exact_search(alpha):
    # with as many beams as prefixes, beam search must find the best of all targets up to max_len
    model = small("gru", hidden_size=4)
    unk = model.tgt_vocab.unk_id
    model.params["decoder.head.0.bias"][unk] -= 50.0  # keep <UNK> out of the brute force
    model.params["decoder.head.0.bias"][model.tgt_vocab.eos_id] -= 1.0  # make length matter
    tokens = model.tgt_vocab.tokens[3:]  # x, y, z
    for source in ["ab", "cab"]:
        best, best_rank = _brute_force_best(model, source, tokens, 3, alpha)
        (got,) = model.translate([source], beam_size=27, max_len=3, length_penalty=alpha)
        rank = model.log_prob(source, got) / (len(got) + 1) ** alpha
        assert rank == pytest.approx(best_rank, rel=1e-12), (got, best)


def test_beam_search_scores_at_least_greedy_and_beam_one_is_greedy():
    model = small("lstm", hidden_size=6, num_layers=2, embedding_size=3)
    sources = ["ab", "cab", "", "bbbcca", "c"]
    greedy = model.translate(sources, max_len=8)
    assert model.translate(sources, beam_size=1, max_len=8) == greedy
    for k in (2, 3, 5):
        for s, g, b in zip(
            sources, greedy, model.translate(sources, beam_size=k, max_len=8), strict=True
        ):
            assert model.log_prob(s, b) >= model.log_prob(s, g) - 1e-12


def test_greedy_takes_the_most_probable_token_at_every_step():
    model = small("gru", hidden_size=5)
    model.params["decoder.head.0.bias"][model.tgt_vocab.unk_id] -= 50.0
    tokens = model.tgt_vocab.tokens[3:]
    for source in SOURCES:
        (got,) = model.translate([source], max_len=4)
        prefix = ""
        for ch in [*got, None]:
            # ln P(next | prefix) = ln P(prefix + next, <EOS>) - ln P(<EOS> | prefix + next) - ...;
            # compare through token_log_probs of every one-token extension instead
            scores = {
                c: model.token_log_probs([source], [prefix + c])[0][len(prefix)] for c in tokens
            }
            eos = model.token_log_probs([source], [prefix])[0][-1]
            if ch is None:
                assert len(got) == 4 or eos >= max(scores.values())
            else:
                assert scores[ch] == max(scores.values()) and scores[ch] >= eos
                prefix += ch


def test_learns_to_reverse_a_short_string():
    rng = np.random.default_rng(0)

    def data(n):
        return ["".join(rng.choice(list("abcd"), size=int(rng.integers(1, 5)))) for _ in range(n)]

    sources = data(300)
    vocab = Vocabulary.build(sources, level="char")
    model = Seq2Seq(
        vocab, vocab, cell="gru", hidden_size=32, backend="numpy", dtype="float64", seed=0
    )
    model.fit(sources, [s[::-1] for s in sources], steps=300, batch_size=32, lr=0.02, seed=0)
    test = data(50)
    for beam_size in (1, 3):
        out = model.translate(test, beam_size=beam_size, max_len=8)
        assert np.mean([o == s[::-1] for o, s in zip(out, test, strict=True)]) >= 0.9


def test_save_and_load_round_trip(tmp_path):
    model = small("lstm", num_layers=2, embedding_size=2, head_sizes=(4,))
    path = tmp_path / "s2s.npz"
    model.save(path)
    back = load(path, backend="numpy", dtype="float64")
    assert isinstance(back, Seq2Seq) and back.config() == model.config()
    assert back.src_vocab == model.src_vocab and back.tgt_vocab == model.tgt_vocab
    assert back.log_prob("abc", "xyz") == model.log_prob("abc", "xyz")
    assert back.translate(SOURCES, beam_size=3, max_len=5) == model.translate(
        SOURCES, beam_size=3, max_len=5
    )


def test_torch_autograd_agrees_with_the_hand_written_backward(tmp_path):
    pytest.importorskip("torch")
    model = small("lstm", num_layers=2, embedding_size=2)
    grads, batch = grads_and_batch(model)
    path = tmp_path / "s2s.npz"
    model.save(path)
    torch_model = load(path, backend="torch", dtype="float64")
    be = torch_model.backend
    _, t_grads = torch_model.loss_and_grads(batch)
    for name in grads:
        np.testing.assert_allclose(
            be.to_numpy(t_grads[name]), grads[name], rtol=1e-9, atol=1e-12, err_msg=name
        )
    assert torch_model.translate(SOURCES, beam_size=3, max_len=5) == model.translate(
        SOURCES, beam_size=3, max_len=5
    )


def test_bad_arguments_are_named():
    model = small()
    with pytest.raises(
        ValueError, match=r"'targets' must hold one text per source: expected 5, got 2"
    ):
        model.fit(SOURCES, TARGETS[:2], steps=1)
    with pytest.raises(TypeError, match=r"'sources' must hold strings only \(item 1 is int\)"):
        model.fit(["a", 1], ["x", "y"], steps=1)
    with pytest.raises(TypeError, match=r"'src_vocab' must be a seqkit.Vocabulary \(got list\)"):
        Seq2Seq(["a"], model.tgt_vocab)
    for kwargs, match in [
        ({"beam_size": 0}, r"'beam_size' must be a positive integer \(got 0\)"),
        ({"max_len": 0}, r"'max_len' must be a positive integer \(got 0\)"),
        ({"length_penalty": -1}, r"'length_penalty' must be a number >= 0 \(got -1\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            model.translate(["ab"], **kwargs)
