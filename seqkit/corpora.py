"""Built-in text corpora and the deterministic train/dev split.

``surnames`` and ``first-names`` are the US census name lists shipped by the ``names`` package on
PyPI (a dependency, read through ``importlib.resources``, never copied into this repository),
one lowercase name per line. Further corpora arrive through the ``seqkit_register_corpora`` hook.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from importlib import resources

import attrs

from seqkit.hookspecs import hookimpl

__all__ = ["Corpus", "get_corpus", "split_train_dev"]


@attrs.frozen
class Corpus:
    """A named list of texts, loaded on demand.

    Attributes:
        name: registered name (``"surnames"``).
        description: one line for ``seqkit train --help`` and the docs.
        loader: returns the texts, one sequence each.
    """

    name: str
    description: str
    loader: Callable[[], list[str]] = attrs.field(repr=False)

    def load(self) -> list[str]:
        """Every text of the corpus, in the source's order."""
        return self.loader()


def _census(filename: str) -> Callable[[], list[str]]:
    def load() -> list[str]:
        text = resources.files("names").joinpath(filename).read_text(encoding="ascii")
        # each line: NAME, frequency %, cumulative %, rank; keep the name, lowercase
        return [line.split()[0].lower() for line in text.splitlines() if line.strip()]

    return load


def _first_names() -> list[str]:
    seen: dict[str, None] = {}
    for filename in ("dist.female.first", "dist.male.first"):
        for name in _census(filename)():
            seen.setdefault(name, None)  # names on both lists once, first-seen order
    return list(seen)


def get_corpus(name: str) -> Corpus:
    """A registered corpus by name; unknown names list the choices."""
    from seqkit._plugins import lookup

    return lookup("corpus", name)


def split_train_dev(texts: Sequence[str], dev_fraction: float) -> tuple[list[str], list[str]]:
    """Split by content: a text goes to dev when ``crc32(text) mod 10**6 < fraction * 10**6``.

    The rule looks at the text alone, so the split does not depend on the order of the lines, the
    machine or a seed, and a line always lands on the same side.
    """
    if (
        isinstance(dev_fraction, bool)
        or not isinstance(dev_fraction, int | float)
        or not 0 <= dev_fraction < 1
    ):
        raise ValueError(f"'dev_fraction' must be a number in [0, 1) (got {dev_fraction!r})")
    cut = int(round(dev_fraction * 1_000_000))
    train: list[str] = []
    dev: list[str] = []
    for text in texts:
        (dev if zlib.crc32(text.encode("utf-8")) % 1_000_000 < cut else train).append(text)
    return train, dev


@hookimpl
def seqkit_register_corpora():
    return [
        Corpus(
            "surnames",
            "88,799 US census surnames (names package), lowercase",
            _census("dist.all.last"),
        ),
        Corpus(
            "first-names",
            "5,163 US census first names (female and male lists merged), lowercase",
            _first_names,
        ),
    ]
