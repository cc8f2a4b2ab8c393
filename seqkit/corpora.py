"""Built-in corpora and the deterministic train/dev split.

A corpus is a list of lines in its task's file format (:mod:`seqkit.tasks`): one text for ``lm``,
``text<TAB>label`` for ``classify``, ``tokens<TAB>tags`` for ``tag``, ``source<TAB>target`` for
``translate``. Every built-in corpus is read or generated at run time from a PyPI package (a
dependency, never copied into this repository):

* ``surnames``, ``first-names`` (lm): the US census name lists of the ``names`` package, one
  lowercase name per line.
* ``name-sex`` (classify): first names labelled ``female`` or ``male`` from the census lists;
  names on both lists are dropped.
* ``surname-split`` (tag): 2 or 3 of the 5,000 most frequent census surnames glued together
  (``smithjones``), char-level tags ``B`` on the first letter of every surname, ``I`` elsewhere.
* ``dates`` (translate): human-readable English dates -> ISO 8601 (``9 mar 1993`` ->
  ``1993-03-09``), 14 CLDR patterns formatted by Babel.

Generated corpora draw their choices from a hash of ``(seed, index)``, not from a random-number
generator, so one package version gives the same lines on every machine and Python version.
Further corpora arrive through the ``seqkit_register_corpora`` hook.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import zlib
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any, TypeVar

import attrs

from seqkit.hookspecs import hookimpl

__all__ = ["Corpus", "DATE_PATTERNS", "get_corpus", "in_dev", "split_train_dev"]

_Item = TypeVar("_Item")


@attrs.frozen
class Corpus:
    """A named list of lines in one task's file format, loaded on demand.

    Attributes:
        name: registered name (``"surnames"``).
        description: one line for ``seqkit corpora`` and the docs.
        loader: returns the lines, one example each, in the format of ``task``.
        task: the registered task whose reader parses the lines (``"lm"``, ``"classify"``,
            ``"tag"``, ``"translate"``); ``"lm"`` by default.
    """

    name: str
    description: str
    loader: Callable[[], list[str]] = attrs.field(repr=False)
    task: str = "lm"

    def load(self) -> list[str]:
        """Every line of the corpus, in the source's order."""
        return list(self.loader())

    def size(self) -> int:
        """How many lines (examples) the corpus holds."""
        return len(self.load())


def _census(filename: str) -> Callable[[], list[str]]:
    @functools.cache
    def load() -> tuple[str, ...]:
        text = resources.files("names").joinpath(filename).read_text(encoding="ascii")
        # each line: NAME, frequency %, cumulative %, rank (most frequent first); keep the name
        return tuple(line.split()[0].lower() for line in text.splitlines() if line.strip())

    return lambda: list(load())


def _first_names() -> list[str]:
    seen: dict[str, None] = {}
    for filename in ("dist.female.first", "dist.male.first"):
        for name in _census(filename)():
            seen.setdefault(name, None)  # names on both lists once, first-seen order
    return list(seen)


def _name_sex() -> list[str]:
    """``name<TAB>female|male``: female names, then male names, each in census order."""
    female = _census("dist.female.first")()
    male = _census("dist.male.first")()
    both = set(female) & set(male)  # ambiguous: no label is right
    return [f"{n}\tfemale" for n in female if n not in both] + [
        f"{n}\tmale" for n in male if n not in both
    ]


def _draws(seed: str, index: int) -> Iterable[int]:
    """Endless 32-bit integers for example ``index`` of a generated corpus: BLAKE2b of
    ``seed:index:k`` for k = 0, 1, ... (the same on every machine and Python version)."""
    k = 0
    while True:
        digest = hashlib.blake2b(f"{seed}:{index}:{k}".encode(), digest_size=4).digest()
        yield int.from_bytes(digest, "big")
        k += 1


_SURNAME_POOL = 5000  # the most frequent census surnames: common, mostly short, real words
_SURNAME_EXAMPLES = 20_000


@functools.cache
def _surname_split() -> tuple[str, ...]:
    """``glued<TAB>tags``: 2 or 3 surnames glued, ``B`` at each surname's first letter."""
    pool = _census("dist.all.last")()[:_SURNAME_POOL]
    lines: dict[str, str] = {}
    index = 0
    while len(lines) < _SURNAME_EXAMPLES:
        draw = _draws("surname-split", index)
        index += 1
        words = [pool[next(draw) % len(pool)] for _ in range(2 + next(draw) % 2)]
        text = "".join(words)
        tags = " ".join("B" if i == 0 else "I" for w in words for i in range(len(w)))
        lines.setdefault(text, tags)  # a glued text seen again keeps its first segmentation
    return tuple(f"{text}\t{tags}" for text, tags in lines.items())


#: The Babel (CLDR) date formats of the ``dates`` corpus, locale ``en_US``: four named CLDR
#: formats and ten patterns. Outputs are lowercased and commas dropped, as in the NMT exercise
#: of the course the seed follows (``"Tuesday, March 9, 1993"`` -> ``"tuesday march 9 1993"``).
DATE_PATTERNS = (
    "short",  # 3/9/93
    "medium",  # mar 9 1993
    "long",  # march 9 1993
    "full",  # tuesday march 9 1993
    "d MMM y",  # 9 mar 1993
    "d MMMM y",  # 9 march 1993
    "dd MMM y",  # 09 mar 1993
    "dd.MM.yy",  # 09.03.93
    "d.M.y",  # 9.3.1993
    "MM/dd/y",  # 03/09/1993
    "EEE d MMM y",  # tue 9 mar 1993
    "EEEE d MMMM y",  # tuesday 9 march 1993
    "EEE MMM d y",  # tue mar 9 1993
    "dd-MMM-yy",  # 09-mar-93
)
# 1950-01-01 .. 2049-12-31: a two-digit year names one century year (93 -> 1993, 07 -> 2007)
_FIRST_DATE = datetime.date(1950, 1, 1)
_DATE_DAYS = (datetime.date(2049, 12, 31) - _FIRST_DATE).days + 1
_DATE_EXAMPLES = 20_000


@functools.cache
def _dates() -> tuple[str, ...]:
    """``human-readable<TAB>iso``: a day of 1950-2049 in one of :data:`DATE_PATTERNS`."""
    from babel.dates import format_date  # a dependency; imported here to keep import time low

    lines = []
    for index in range(_DATE_EXAMPLES):
        draw = _draws("dates", index)
        day = _FIRST_DATE + datetime.timedelta(days=next(draw) % _DATE_DAYS)
        pattern = DATE_PATTERNS[next(draw) % len(DATE_PATTERNS)]
        text = format_date(day, format=pattern, locale="en_US").lower().replace(",", "")
        lines.append(f"{text}\t{day.isoformat()}")
    return tuple(lines)


def get_corpus(name: str) -> Corpus:
    """A registered corpus by name; unknown names list the choices."""
    from seqkit._plugins import lookup

    return lookup("corpus", name)


def in_dev(text: str, dev_fraction: float) -> bool:
    """Whether ``text`` is a dev text: ``crc32(utf-8 text) mod 10**6 < fraction * 10**6``."""
    return zlib.crc32(text.encode("utf-8")) % 1_000_000 < int(round(dev_fraction * 1_000_000))


def split_train_dev(
    items: Iterable[_Item], dev_fraction: float, *, key: Callable[[_Item], str] | None = None
) -> tuple[list[_Item], list[_Item]]:
    """Split by content: an item goes to dev when :func:`in_dev` holds for its text.

    Args:
        items: texts, or any items with ``key`` giving each one's text.
        dev_fraction: the share of dev texts to expect, in [0, 1).
        key: the text of an item; None when the items are the texts. Tasks split examples by
            their input text, so that equal inputs (a date drawn twice) land on one side.

    The rule looks at the text alone, so the split does not depend on the order of the lines, the
    machine or a seed, and a line always lands on the same side.
    """
    if (
        isinstance(dev_fraction, bool)
        or not isinstance(dev_fraction, int | float)
        or not 0 <= dev_fraction < 1
    ):
        raise ValueError(f"'dev_fraction' must be a number in [0, 1) (got {dev_fraction!r})")
    train: list[Any] = []
    dev: list[Any] = []
    for item in items:
        text = item if key is None else key(item)
        (dev if in_dev(text, dev_fraction) else train).append(item)  # type: ignore[arg-type]
    return train, dev


@hookimpl
def seqkit_register_corpora():
    return [
        Corpus(
            "surnames",
            "US census surnames (names package), lowercase",
            _census("dist.all.last"),
        ),
        Corpus(
            "first-names",
            "US census first names (female and male lists merged), lowercase",
            _first_names,
        ),
        Corpus(
            "name-sex",
            "US census first names labelled female or male (names on both lists dropped)",
            _name_sex,
            task="classify",
        ),
        Corpus(
            "surname-split",
            "glued census surnames tagged B/I per character (smithjones -> B I I I I B I I I I)",
            _surname_split,
            task="tag",
        ),
        Corpus(
            "dates",
            "English dates in 14 CLDR formats -> ISO 8601 (Babel), 9 mar 1993 -> 1993-03-09",
            _dates,
            task="translate",
        ),
    ]
