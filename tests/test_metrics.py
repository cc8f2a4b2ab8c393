"""Every metric against values computed by hand (and span F1 against seqeval when installed)."""

import math

import numpy as np
import pytest

from seqkit.metrics import (
    ConfusionMatrix,
    accuracy,
    char_error_rate,
    confusion_matrix,
    exact_match,
    is_iob,
    levenshtein,
    macro_f1,
    nats_per_token,
    per_label_scores,
    per_tag_scores,
    perplexity,
    span_f1,
    spans,
    token_accuracy,
)

# 7 items, 3 classes. By hand:
#   a: true 3 (items 0,1,2), predicted 3 (0,1,4), hits 2 -> P 2/3, R 2/3, F1 2/3
#   b: true 2 (3,4), predicted 3 (2,3,5), hits 1 -> P 1/3, R 1/2, F1 2*(1/6)/(5/6) = 2/5
#   c: true 2 (5,6), predicted 1 (6), hits 1 -> P 1, R 1/2, F1 2/3
TRUE = ["a", "a", "a", "b", "b", "c", "c"]
PRED = ["a", "a", "b", "b", "a", "b", "c"]


def test_accuracy_by_hand():
    assert accuracy(TRUE, PRED) == pytest.approx(4 / 7, abs=1e-15)
    assert accuracy([1, 2], [1, 2]) == 1.0


def test_per_label_scores_by_hand():
    scores = per_label_scores(TRUE, PRED)
    assert list(scores) == ["a", "b", "c"]
    expected = {
        "a": (2 / 3, 2 / 3, 2 / 3, 3),
        "b": (1 / 3, 1 / 2, 2 / 5, 2),
        "c": (1.0, 1 / 2, 2 / 3, 2),
    }
    for label, (p, r, f, support) in expected.items():
        got = scores[label]
        assert got["precision"] == pytest.approx(p, abs=1e-15)
        assert got["recall"] == pytest.approx(r, abs=1e-15)
        assert got["f1"] == pytest.approx(f, abs=1e-15)
        assert got["support"] == support


def test_macro_f1_by_hand_and_with_a_label_never_seen():
    assert macro_f1(TRUE, PRED) == pytest.approx((2 / 3 + 2 / 5 + 2 / 3) / 3, abs=1e-15)
    # a label given but never true nor predicted counts with F1 0 (zero_division=0)
    assert macro_f1(TRUE, PRED, labels=["a", "b", "c", "d"]) == pytest.approx(
        (2 / 3 + 2 / 5 + 2 / 3) / 4, abs=1e-15
    )
    # a predicted label with no true items: precision 0, recall 0, F1 0
    assert per_label_scores(["x"], ["y"])["y"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }


def test_confusion_matrix_by_hand_and_its_text():
    cm = confusion_matrix(TRUE, PRED)
    assert cm.labels == ("a", "b", "c")
    np.testing.assert_array_equal(cm.matrix, [[2, 1, 0], [1, 1, 0], [0, 1, 1]])
    assert cm.matrix.dtype == np.int64
    assert cm.to_dict() == {"labels": ["a", "b", "c"], "matrix": [[2, 1, 0], [1, 1, 0], [0, 1, 1]]}
    assert cm.to_text().splitlines() == [
        "true \\ predicted  a  b  c",
        "a                 2  1  0",
        "b                 1  1  0",
        "c                 0  1  1",
    ]
    ordered = confusion_matrix(TRUE, PRED, labels=["c", "b", "a"])
    np.testing.assert_array_equal(ordered.matrix, [[1, 1, 0], [0, 1, 1], [0, 1, 2]])
    assert cm == ConfusionMatrix(("a", "b", "c"), cm.matrix.copy())


def test_confusion_matrix_refuses_labels_it_would_drop():
    with pytest.raises(ValueError, match=r"labels \['c'\] occur in the items but not in 'labels'"):
        confusion_matrix(TRUE, PRED, labels=["a", "b"])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: accuracy([1, 2], [1]), "one length \\(got 2 and 1\\)"),
        (lambda: accuracy([], []), "at least one item"),
        (lambda: accuracy("ab", "ab"), "'y_true' must be a sequence \\(got str\\)"),
        (lambda: token_accuracy([["B", "I"]], [["B"]]), "sequence 0 has 2 true tags and 1"),
        (lambda: token_accuracy([[]], [[]]), "at least one tag"),
        (lambda: spans(["B-X", "Q"]), "tag 1 must be O, B, I, B-TYPE or I-TYPE \\(got 'Q'\\)"),
        (lambda: nats_per_token([]), "at least one token"),
    ],
)
def test_bad_inputs_name_the_problem(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_token_accuracy_and_per_tag_scores_by_hand():
    true = [["B", "I", "I"], ["B", "I"]]
    pred = [["B", "I", "B"], ["B", "B"]]
    assert token_accuracy(true, pred) == pytest.approx(3 / 5, abs=1e-15)
    scores = per_tag_scores(true, pred)
    # B: true 2, predicted 4, hits 2 -> P 1/2, R 1, F1 2/3; I: true 3, predicted 1, hits 1
    assert scores["B"]["precision"] == pytest.approx(0.5, abs=1e-15)
    assert scores["B"]["recall"] == 1.0
    assert scores["B"]["f1"] == pytest.approx(2 / 3, abs=1e-15)
    assert scores["I"]["precision"] == 1.0
    assert scores["I"]["recall"] == pytest.approx(1 / 3, abs=1e-15)
    assert scores["I"]["f1"] == pytest.approx(0.5, abs=1e-15)


def test_spans_read_iob1_and_iob2():
    # IOB2: every span opens with B
    assert spans(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]
    # IOB1: I opens a span after O or another type; B separates two adjacent spans of one type
    assert spans(["I-PER", "I-PER", "B-PER", "I-LOC"]) == [
        ("PER", 0, 2),
        ("PER", 2, 3),
        ("LOC", 3, 4),
    ]
    # bare B/I: the word segmentation of the surname task
    assert spans(list("BIIBIB")) == [("", 0, 3), ("", 3, 5), ("", 5, 6)]
    assert spans(["O", "O"]) == []
    assert spans([]) == []


def test_span_f1_by_hand():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG"]]
    # true spans: PER(0,2), LOC(3,4), ORG(0,1); predicted: PER(0,2), ORG(3,4), ORG(0,2)
    # one hit (PER) -> precision 1/3, recall 1/3, F1 1/3
    result = span_f1(true, pred)
    assert result["precision"] == pytest.approx(1 / 3, abs=1e-15)
    assert result["recall"] == pytest.approx(1 / 3, abs=1e-15)
    assert result["f1"] == pytest.approx(1 / 3, abs=1e-15)
    assert (result["true_spans"], result["predicted_spans"]) == (3, 3)
    # no spans at all: 0, not a division by zero
    assert span_f1([["O"]], [["O"]])["f1"] == 0.0


def test_span_f1_equals_seqeval():
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = np.random.default_rng(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
    true = [list(rng.choice(tags, size=int(rng.integers(1, 12)))) for _ in range(200)]
    pred = [[t if rng.random() < 0.7 else str(rng.choice(tags)) for t in seq] for seq in true]
    ours = span_f1(true, pred)
    assert ours["precision"] == pytest.approx(seqeval.precision_score(true, pred), abs=1e-12)
    assert ours["recall"] == pytest.approx(seqeval.recall_score(true, pred), abs=1e-12)
    assert ours["f1"] == pytest.approx(seqeval.f1_score(true, pred), abs=1e-12)


def test_is_iob():
    assert is_iob(["B", "I"])
    assert is_iob(["B-PER", "I-PER", "O"])
    assert not is_iob(["O"])  # no span tag: nothing to score
    assert not is_iob(["NOUN", "VERB"])
    assert not is_iob(["O-X", "B"])


def test_exact_match_levenshtein_and_char_error_rate_by_hand():
    assert exact_match(["1993-03-09", "2001-01-01"], ["1993-03-09", "2001-01-02"]) == 0.5
    assert levenshtein("kitten", "sitting") == 3  # k->s, e->i, +g
    assert levenshtein("", "abc") == 3
    assert levenshtein("abc", "abc") == 0
    assert levenshtein("flaw", "lawn") == 2
    # edits 1 + 3 = 4 over reference length 10 + 3 = 13
    assert char_error_rate(["1993-03-09", "abc"], ["1993-03-08", ""]) == pytest.approx(4 / 13)
    assert char_error_rate([""], [""]) == 0.0
    assert char_error_rate([""], ["x"]) == math.inf


def test_nats_per_token_and_perplexity_by_hand():
    per_token = [np.log([0.5, 0.25]), np.log([0.125])]
    # -(ln 1/2 + ln 1/4 + ln 1/8) / 3 = (1 + 2 + 3) ln 2 / 3 = 2 ln 2
    nats = nats_per_token(per_token)
    assert nats == pytest.approx(2 * math.log(2), abs=1e-15)
    assert perplexity(nats) == pytest.approx(4.0, abs=1e-12)
    assert perplexity(1e6) == math.inf  # overflow
    assert perplexity(0.0) == 1.0
