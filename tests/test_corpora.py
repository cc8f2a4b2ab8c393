"""The built-in corpora: their tasks, sizes, contents, determinism and the train/dev split."""

import datetime
import zlib
from collections import Counter

import pytest

from seqkit._plugins import list_corpora
from seqkit.corpora import DATE_PATTERNS, get_corpus, in_dev, split_train_dev
from seqkit.errors import UnknownNameError
from seqkit.tasks import get_task


@pytest.mark.parametrize(
    "name, task, size",
    [
        ("surnames", "lm", 88_799),
        ("first-names", "lm", 5_163),
        ("name-sex", "classify", 4_832),
        ("surname-split", "tag", 20_000),
        ("dates", "translate", 20_000),
    ],
)
def test_corpora_are_registered_with_their_task_and_size(name, task, size):
    corpus = get_corpus(name)
    assert (corpus.task, corpus.size()) == (task, size)
    assert name in list_corpora()
    # every line is in its task's format: the task's reader parses the whole corpus
    examples = get_task(task).from_corpus(corpus)
    assert len(examples) == size


def test_unknown_corpus_lists_the_choices():
    with pytest.raises(UnknownNameError, match="unknown corpus 'klingon'; available: dates, "):
        get_corpus("klingon")


def test_a_corpus_refuses_another_task():
    with pytest.raises(ValueError, match="corpus 'dates' is for task 'translate', not 'classify'"):
        get_task("classify").from_corpus(get_corpus("dates"))


def test_name_sex_drops_names_on_both_lists():
    lines = get_corpus("name-sex").load()
    pairs = [line.split("\t") for line in lines]
    counts = Counter(label for _, label in pairs)
    assert counts == {"female": 3944, "male": 888}  # majority class 81.6%
    names = [n for n, _ in pairs]
    assert len(set(names)) == len(names)
    female = set(get_corpus("first-names").load()[:4275])  # the female list comes first
    assert "mary" in female and "mary" not in names  # mary is on the male list too
    assert ("linda", "female") in {tuple(p) for p in pairs}
    assert ("james", "male") not in {tuple(p) for p in pairs}  # james is on both lists


def test_surname_split_glues_frequent_surnames_with_word_start_tags():
    examples = get_task("tag").from_corpus(get_corpus("surname-split"))
    pool = set(get_corpus("surnames").load()[:5000])
    assert len(set(examples.inputs)) == len(examples)
    for text, tags in zip(examples.inputs[:500], examples.targets[:500]):
        starts = [i for i, t in enumerate(tags) if t == "B"] + [len(text)]
        assert starts[0] == 0 and set(tags) <= {"B", "I"}
        words = [text[a:b] for a, b in zip(starts, starts[1:])]
        assert 2 <= len(words) <= 3
        assert set(words) <= pool, (text, words)


def test_dates_are_cldr_formats_of_their_iso_date():
    from babel.dates import format_date

    lines = get_corpus("dates").load()
    used = Counter()
    for line in lines[:700]:
        source, target = line.split("\t")
        day = datetime.date.fromisoformat(target)
        assert datetime.date(1950, 1, 1) <= day <= datetime.date(2049, 12, 31)
        formats = [
            p
            for p in DATE_PATTERNS
            if format_date(day, format=p, locale="en_US").lower().replace(",", "") == source
        ]
        assert formats, f"{source!r} is no pattern of {target}"
        used.update(formats)
    assert set(used) == set(DATE_PATTERNS)  # all 14 patterns occur
    assert len(DATE_PATTERNS) == 14


def test_generated_corpora_are_pinned():
    # the generators hash (seed, index): these lines are the same on every machine and Python
    assert get_corpus("dates").load()[:2] == [
        "06 jul 2017\t2017-07-06",
        "wednesday 6 january 1971\t1971-01-06",
    ]
    assert get_corpus("surname-split").load()[0] == "huffbertrand\tB I I I B I I I I I I I"


def test_split_is_by_crc32_of_the_text():
    texts = [f"t{i}" for i in range(2000)]
    train, dev = split_train_dev(texts, 0.25)
    assert sorted(train + dev) == sorted(texts)
    assert dev == [t for t in texts if zlib.crc32(t.encode()) % 1_000_000 < 250_000]
    assert all(in_dev(t, 0.25) for t in dev) and not any(in_dev(t, 0.25) for t in train)
    # the order of the lines does not matter, and keyed items split by their key's text
    assert split_train_dev(texts[::-1], 0.25)[1] == dev[::-1]
    keyed = [(t, i) for i, t in enumerate(texts)]
    assert [t for t, _ in split_train_dev(keyed, 0.25, key=lambda p: p[0])[1]] == dev
    assert split_train_dev(texts, 0.0) == (texts, [])


@pytest.mark.parametrize("bad", [1.0, -0.1, True, "0.1"])
def test_split_refuses_bad_fractions(bad):
    with pytest.raises(ValueError, match=r"'dev_fraction' must be a number in \[0, 1\)"):
        split_train_dev(["a"], bad)


def test_task_corpora_split_about_a_tenth_with_equal_inputs_together():
    examples = get_task("translate").from_corpus(get_corpus("dates"))
    train, dev = examples.split(0.1)
    assert len(train) + len(dev) == len(examples)
    assert 0.08 < len(dev) / len(examples) < 0.12
    assert not set(train.inputs) & set(dev.inputs)
