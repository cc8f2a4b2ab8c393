"""Tests for seqkit.vocab: building, tokenizing, encoding, decoding and the checkpoint dict."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqkit.vocab import EOS, PAD, SPECIALS, UNK, Vocabulary

FAST = settings(max_examples=30, deadline=None)

SEED_SENTENCE = "Cats average 15 hours of sleep a day."

chars = st.text(alphabet="abcde .,!'\n", min_size=1, max_size=20)
words = st.sampled_from(["cats", "sleep", "a", "day", "15", "don't", "Cats"])
marks = st.sampled_from([".", ",", "!", "?", ";"])


@st.composite
def word_texts(draw):
    """Text in the canonical spacing decode writes: words spaced, marks glued to the left."""
    tokens = draw(st.lists(st.one_of(words, marks), min_size=1, max_size=12))
    out = ""
    for i, t in enumerate(tokens):
        out += t if i == 0 or t in ".,!?;" else " " + t
    return out


def test_specials_have_fixed_ids():
    v = Vocabulary.build(["ab"])
    assert SPECIALS == ("<PAD>", "<UNK>", "<EOS>")
    assert (v.pad_id, v.unk_id, v.eos_id) == (0, 1, 2)
    assert [v.token_to_id(t) for t in (PAD, UNK, EOS)] == [0, 1, 2]
    assert v.tokens[:3] == SPECIALS


def test_order_is_count_descending_then_token():
    v = Vocabulary.build(["b a c b", "c b d"], level="word")
    assert v.tokens == (*SPECIALS, "b", "c", "a", "d")
    assert len(v) == 7


@FAST
@given(st.lists(chars, min_size=1, max_size=5), st.randoms(use_true_random=False))
def test_build_is_deterministic_whatever_the_text_order(texts, random):
    shuffled = list(texts)
    random.shuffle(shuffled)
    assert Vocabulary.build(texts) == Vocabulary.build(shuffled)


@FAST
@given(st.lists(chars, min_size=1, max_size=5))
def test_char_round_trip(texts):
    v = Vocabulary.build(texts, level="char")
    for text in texts:
        ids = v.encode(text)
        assert len(ids) == len(text)
        assert v.unk_id not in ids and v.eos_id not in ids
        assert v.decode(ids) == text


@FAST
@given(st.lists(word_texts(), min_size=1, max_size=4))
def test_word_round_trip(texts):
    v = Vocabulary.build(texts, level="word")
    for text in texts:
        ids = v.encode(text)
        assert v.unk_id not in ids
        assert v.decode(ids) == text
        assert v.encode(v.decode(ids)) == ids


def test_seed_sentence_words_and_punctuation():
    v = Vocabulary.build([SEED_SENTENCE], level="word")
    assert v.tokenize(SEED_SENTENCE) == [
        "Cats",
        "average",
        "15",
        "hours",
        "of",
        "sleep",
        "a",
        "day",
        ".",
    ]
    assert v.decode(v.encode(SEED_SENTENCE)) == SEED_SENTENCE
    assert v.decode(v.encode(SEED_SENTENCE) + [v.eos_id]) == SEED_SENTENCE + " <EOS>"


def test_word_tokens_keep_inner_apostrophes_and_split_marks():
    v = Vocabulary.build(["x"], level="word")
    assert v.tokenize("Don't stop... (now)!") == [
        "Don't",
        "stop",
        ".",
        ".",
        ".",
        "(",
        "now",
        ")",
        "!",
    ]


def test_decode_spacing_around_brackets():
    text = "He said (quietly) no, then left."
    v = Vocabulary.build([text], level="word")
    assert v.decode(v.encode(text)) == text


def test_punctuation_option_drops_marks():
    v = Vocabulary.build([SEED_SENTENCE, "Yes, really!"], level="word", punctuation=False)
    assert "." not in v and "," not in v and "!" not in v
    assert v.tokenize("Yes, really!") == ["Yes", "really"]
    assert v.decode(v.encode(SEED_SENTENCE)) == SEED_SENTENCE[:-1]
    c = Vocabulary.build(["a, b!"], level="char", punctuation=False)
    assert c.decode(c.encode("a, b!")) == "a b"


def test_lowercase_option():
    v = Vocabulary.build(["Cats cats CATS"], level="word", lowercase=True)
    assert v.tokens == (*SPECIALS, "cats")
    assert v.encode("Cats") == [3]


def test_unknown_tokens_map_to_unk():
    v = Vocabulary.build(["cats sleep"], level="word")
    assert v.encode("cats eat") == [v.token_to_id("cats"), v.unk_id]
    assert v.token_to_id("dogs") == v.unk_id
    assert v.decode(v.encode("dogs sleep")) == "<UNK> sleep"
    c = Vocabulary.build(["ab"])
    assert c.encode("abz") == [c.token_to_id("a"), c.token_to_id("b"), c.unk_id]


def test_max_size_counts_the_specials_and_cuts_the_rarest():
    v = Vocabulary.build(["aaa bb c"], level="word", max_size=5)
    assert v.tokens == (*SPECIALS, "aaa", "bb")
    v = Vocabulary.build(["a a a b b c"], level="word", max_size=5)
    assert v.tokens == (*SPECIALS, "a", "b")
    assert v.encode("c") == [v.unk_id]
    assert Vocabulary.build(["abc"], max_size=3).tokens == SPECIALS
    assert len(Vocabulary.build(["abc"], max_size=100)) == 6


def test_min_count_drops_rare_tokens():
    v = Vocabulary.build(["a a a b b c"], level="word", min_count=2)
    assert v.tokens == (*SPECIALS, "a", "b")
    assert Vocabulary.build(["a b"], level="word", min_count=5).tokens == SPECIALS


@FAST
@given(st.lists(chars, min_size=1, max_size=5), st.integers(3, 12), st.integers(1, 3))
def test_max_size_and_min_count_bounds(texts, max_size, min_count):
    v = Vocabulary.build(texts, max_size=max_size, min_count=min_count)
    assert len(v) <= max_size
    full = "".join(texts)
    for token in v.tokens[3:]:
        assert full.count(token) >= min_count


def test_decode_skips_pad_and_accepts_numpy_ids():
    v = Vocabulary.build(["ab"])
    ids = np.array([v.pad_id, 3, v.pad_id, 4, v.eos_id, v.pad_id], dtype=np.int64)
    assert v.decode(ids) == v.tokens[3] + v.tokens[4] + "<EOS>"
    assert v.id_to_token(np.int64(3)) == v.tokens[3]


def test_id_errors():
    v = Vocabulary.build(["ab"])
    with pytest.raises(ValueError, match=r"id must be an integer in 0\.\.4 \(got 5\)"):
        v.id_to_token(5)
    with pytest.raises(ValueError, match="in 0..4"):
        v.decode([3, -1])
    with pytest.raises(TypeError, match=r"ids must be integers \(got float: 1.0\)"):
        v.decode([1.0])


def test_equality():
    a = Vocabulary.build(["abc"])
    assert a == Vocabulary.build(["cba"])
    assert a != Vocabulary.build(["abcd"])
    assert a != Vocabulary.build(["abc"], lowercase=True)
    assert a != Vocabulary(tokens=a.tokens, level="word")
    assert hash(a) == hash(Vocabulary.build(["cab"]))


@FAST
@given(
    st.lists(chars, min_size=1, max_size=4),
    st.sampled_from(["char", "word"]),
    st.booleans(),
    st.booleans(),
)
def test_dict_round_trip_through_json(texts, level, punctuation, lowercase):
    texts = [*texts, "z"]  # at least one token survives at every level and option
    v = Vocabulary.build(texts, level=level, punctuation=punctuation, lowercase=lowercase)
    d = json.loads(json.dumps(v.to_dict()))
    w = Vocabulary.from_dict(d)
    assert w == v
    assert w.to_dict() == v.to_dict()
    for text in texts:
        assert w.encode(text) == v.encode(text)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"texts": []}, ValueError, r"'texts' must hold at least one text \(got an empty corpus\)"),
        ({"texts": ["", "  "], "level": "word"}, ValueError, "hold no word tokens"),
        ({"texts": ["!?"], "level": "word", "punctuation": False}, ValueError, "punctuation"),
        ({"texts": "a string"}, TypeError, r"iterable of strings.*\(got str\)"),
        ({"texts": 3}, TypeError, r"iterable of strings.*\(got int\)"),
        ({"texts": ["ok", b"bytes"]}, TypeError, r"'texts'\[1\] must be a str \(got bytes"),
        (
            {"level": "sentence"},
            ValueError,
            r"'level' must be one of 'char', 'word' \(got 'sentence'\)",
        ),
        (
            {"max_size": 2},
            ValueError,
            r"'max_size' must be None or an integer >= 3.*<PAD>.*\(got 2\)",
        ),
        ({"max_size": 4.0}, ValueError, r"'max_size' .*\(got 4.0\)"),
        ({"min_count": 0}, ValueError, r"'min_count' must be an integer >= 1 \(got 0\)"),
        ({"min_count": 1.5}, ValueError, r"'min_count' .*\(got 1.5\)"),
        ({"punctuation": "no"}, TypeError, r"'punctuation' must be True or False \(got 'no'\)"),
    ],
)
def test_build_errors_name_the_argument(kwargs, error, match):
    kwargs = {"texts": ["abc"], **kwargs}
    with pytest.raises(error, match=match):
        Vocabulary.build(kwargs.pop("texts"), **kwargs)


GOOD = Vocabulary.build(["hello world"], level="word").to_dict()


@pytest.mark.parametrize(
    ("d", "error", "match"),
    [
        ([1, 2], TypeError, r"must be a mapping \(got list\)"),
        ({k: v for k, v in GOOD.items() if k != "tokens"}, ValueError, "missing: tokens"),
        ({**GOOD, "extra": 1}, ValueError, "unknown: extra"),
        ({**GOOD, "format": "other"}, ValueError, r"'format' must be 'seqkit.vocabulary'"),
        ({**GOOD, "version": 99}, ValueError, r"'version' 99 is not supported"),
        ({**GOOD, "level": "byte"}, ValueError, r"'level' must be one of 'char', 'word'"),
        ({**GOOD, "punctuation": 1}, TypeError, r"'punctuation' must be True or False"),
        ({**GOOD, "tokens": "abc"}, TypeError, r"'tokens' must be a list of strings \(got str\)"),
        ({**GOOD, "tokens": ["a", "b"]}, ValueError, "must start with the special tokens"),
        ({**GOOD, "tokens": [*SPECIALS, "a", 3]}, TypeError, r"'tokens'\[4\] must be a non-empty"),
        ({**GOOD, "tokens": [*SPECIALS, "a", "a"]}, ValueError, r"'a' twice: at ids 3 and 4"),
    ],
)
def test_from_dict_rejects_malformed_input(d, error, match):
    with pytest.raises(error, match=match):
        Vocabulary.from_dict(d)


def test_vocabulary_is_frozen():
    v = Vocabulary.build(["ab"])
    with pytest.raises(AttributeError):
        v.tokens = ()  # type: ignore[misc]


# --- Unicode: NFC, combining marks, byte-order marks, non-UTF-8 files ----------------------------


def test_words_keep_their_combining_marks():
    import unicodedata

    vocab = Vocabulary.build(["x"], level="word")
    assert vocab.tokenize("क्षत्रिय राजा") == ["क्षत्रिय", "राजा"]
    assert vocab.tokenize(unicodedata.normalize("NFD", "école")) == ["école"]
    assert vocab.tokenize("مَدْرَسَة.") == [unicodedata.normalize("NFC", "مَدْرَسَة"), "."]
    assert vocab.tokenize("don't, l’été") == ["don't", ",", "l’été"]


def test_text_is_nfc_normalised_at_both_levels():
    import unicodedata

    nfd = unicodedata.normalize("NFD", "café crème")
    for level in ("char", "word"):
        vocab = Vocabulary.build([nfd], level=level)
        assert all(unicodedata.is_normalized("NFC", t) for t in vocab.tokens)
        assert vocab.encode(nfd) == vocab.encode("café crème")
        assert vocab.unk_id not in vocab.encode("café crème")
    assert Vocabulary.build([nfd], level="char").tokenize(nfd)[:4] == ["c", "a", "f", "é"]


def test_combining_marks_are_not_punctuation():
    vocab = Vocabulary.build(["राजा!"], level="char", punctuation=False)
    assert vocab.tokenize("राजा!") == ["र", "ा", "ज", "ा"]  # the vowel signs stay, '!' goes
    words = Vocabulary.build(["राजा!"], level="word", punctuation=False)
    assert words.tokenize("राजा!") == ["राजा"]


def test_old_vocabularies_with_non_nfc_tokens_still_load_and_match():
    import unicodedata

    nfd = unicodedata.normalize("NFD", "café")
    old = {  # as a seqkit that did not normalise could have saved it
        "format": "seqkit.vocabulary",
        "version": 1,
        "level": "word",
        "punctuation": True,
        "lowercase": False,
        "tokens": ["<PAD>", "<UNK>", "<EOS>", nfd, "the"],
    }
    vocab = Vocabulary.from_dict(old)
    assert vocab.tokens[3] == nfd and vocab.to_dict() == old  # ids and tokens unchanged
    assert vocab.encode("café") == [3] and vocab.encode(nfd) == [3]
    assert "café" in vocab
    # both forms saved: each keeps its id, and normalised text finds the NFC one
    both = Vocabulary.from_dict({**old, "tokens": ["<PAD>", "<UNK>", "<EOS>", nfd, "café"]})
    assert both.encode(nfd) == [4] and both.token_to_id(nfd) == 3


def test_read_text_lines(tmp_path):
    from seqkit.vocab import read_text_lines

    path = tmp_path / "corpus.txt"
    path.write_bytes("\ufeffone\r\ntwo\n\nthree".encode())
    assert read_text_lines(path) == ["one", "two", "", "three"]
    path.write_bytes(b"abc\n")
    assert read_text_lines(path) == ["abc"]
    path.write_bytes(b"")
    assert read_text_lines(path) == []
    path.write_bytes("e\u0301\n".encode())
    assert read_text_lines(path) == ["\u00e9"]
    vocab = Vocabulary.build(read_text_lines(tmp_path / "corpus.txt"), level="char")
    assert "\ufeff" not in vocab


def test_non_utf8_file_names_the_file_and_byte_offset(tmp_path):
    from seqkit.errors import DataError
    from seqkit.vocab import read_text_lines

    path = tmp_path / "latin1.txt"
    path.write_bytes("ok\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(
        DataError, match=r"latin1\.txt: not UTF-8 text: byte 0xe9 at byte offset 6 \(line 2\)"
    ):
        read_text_lines(path)
    with pytest.raises(DataError, match=r"missing\.txt: no such file"):
        read_text_lines(tmp_path / "missing.txt")
    with pytest.raises(DataError, match=r"cannot read"):
        read_text_lines(tmp_path)
