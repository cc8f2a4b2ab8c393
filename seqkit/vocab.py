"""A vocabulary: text <-> tokens <-> ids, built from a corpus.

Following the seed, a vocabulary is a list of tokens; token ``i`` is one-hot column ``i``. Three
special tokens always come first, with fixed ids, so that models and checkpoints can rely on them:

=====  =========  ===========================================================================
id     token      meaning
=====  =========  ===========================================================================
0      ``<PAD>``  padding after a sequence's end; masked out, never a real token
1      ``<UNK>``  any token outside the vocabulary (rare words, words cut by ``max_size``)
2      ``<EOS>``  end of sequence: a language model's last target of every sentence
=====  =========  ===========================================================================

The corpus tokens follow in a deterministic order: by count, most frequent first, ties broken
by the token itself, so one corpus always gives one vocabulary.

Text is normalised to Unicode NFC before it is tokenized, so a composed ``"é"`` and an ``"e"``
followed by a combining accent are one token. Two levels of token:

* ``"char"``: every character (code point of the NFC text) is a token; ``decode`` joins them
  with ``""``.
* ``"word"``: words (runs of letters, digits, ``_`` and combining marks, with inner apostrophes,
  ``don't``, ``"क्षत्रिय"``) and punctuation marks, each mark its own token (``"day."`` is
  ``"day"``, ``"."``). With ``punctuation=False`` the marks are dropped. ``decode`` joins with
  spaces and puts no space before a punctuation mark (nor after an opening bracket).

``punctuation=False`` drops punctuation characters at the char level too (combining marks are
not punctuation). ``lowercase=True`` lowercases text before tokenizing.

A vocabulary saved by an older seqkit may hold tokens that are not NFC; they keep their ids,
and normalised text finds them (unless an NFC token of the same text exists, which wins).
:func:`read_text_lines` reads a corpus file: UTF-8 only, a leading byte-order mark dropped.
"""

from __future__ import annotations

import functools
import itertools
import operator
import os
import re
import stat
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from seqkit.errors import DataError

__all__ = ["Vocabulary", "PAD", "UNK", "EOS", "SPECIALS", "LEVELS", "read_text_lines"]

PAD = "<PAD>"
UNK = "<UNK>"
EOS = "<EOS>"
#: The special tokens in id order: ``<PAD>`` = 0, ``<UNK>`` = 1, ``<EOS>`` = 2.
SPECIALS = (PAD, UNK, EOS)
#: The token levels :meth:`Vocabulary.build` accepts.
LEVELS = ("char", "word")

_FORMAT = "seqkit.vocabulary"
_VERSION = 1

_OPENING = frozenset("([{\u00bf\u00a1")


@functools.cache
def _combining_marks() -> str:
    """A regex class body of every combining mark (Unicode category M), built on first use.

    ``re``'s ``\\w`` leaves them out, which would cut words of Devanagari, Arabic or NFD text.
    Marks live only in planes 0, 1 and 14, so only those are scanned (50 ms, once).
    """
    planes = itertools.chain(range(0x20000), range(0xE0000, 0xE1000))
    marks = [cp for cp in planes if unicodedata.category(chr(cp))[0] == "M"]
    runs = []
    for _, group in itertools.groupby(enumerate(marks), lambda item: item[1] - item[0]):
        run = [cp for _, cp in group]
        runs.append(f"\\U{run[0]:08x}-\\U{run[-1]:08x}")
    return "".join(runs)


@functools.cache
def _patterns() -> tuple[re.Pattern, re.Pattern]:
    """``(word or punctuation mark, punctuation mark)``: a word is a run of word characters and
    combining marks with optional inner apostrophes; a punctuation mark is any other non-space
    character."""
    m = _combining_marks()
    word = rf"[\w{m}]+(?:['\u2019][\w{m}]+)*"
    mark = rf"[^\w\s{m}]"
    return re.compile(f"{word}|{mark}"), re.compile(mark)


def _is_mark(token: str) -> bool:
    return len(token) == 1 and _patterns()[1].match(token) is not None


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _as_id(value: Any) -> int:
    """``value`` as an int id; ``operator.index`` takes ints and NumPy integers, not floats."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise TypeError(f"ids must be integers (got {type(value).__name__}: {value!r})") from None


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name!r} must be True or False (got {value!r})")
    return value


def _check_level(value: Any) -> str:
    if value not in LEVELS:
        raise ValueError(f"'level' must be one of {', '.join(map(repr, LEVELS))} (got {value!r})")
    return value


def _check_tokens(value: Any) -> tuple[str, ...]:
    """The full token list: the specials in id order, then distinct non-empty strings."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"'tokens' must be a list of strings (got {type(value).__name__})")
    tokens = tuple(value)
    for i, token in enumerate(tokens):
        if not isinstance(token, str) or not token:
            raise TypeError(f"'tokens'[{i}] must be a non-empty string (got {token!r})")
    if tokens[: len(SPECIALS)] != SPECIALS:
        raise ValueError(
            f"'tokens' must start with the special tokens {list(SPECIALS)} "
            f"(got {list(tokens[: len(SPECIALS)])})"
        )
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token in seen:
            raise ValueError(f"'tokens' holds {token!r} twice: at ids {seen[token]} and {i}")
        seen[token] = i
    return tokens


@attrs.frozen(kw_only=True)
class Vocabulary:
    """Tokens with fixed ids; usually made by :meth:`build` or :meth:`from_dict`.

    Args:
        tokens: every token in id order; must start with ``<PAD>``, ``<UNK>``, ``<EOS>``.
        level: ``"char"`` or ``"word"``.
        punctuation: keep punctuation marks as tokens (``True``) or drop them.
        lowercase: lowercase text before tokenizing.

    ``len(vocab)`` is V, the one-hot size. Two vocabularies are equal when their tokens and
    options are equal.
    """

    tokens: tuple[str, ...] = attrs.field(converter=_check_tokens)
    level: str = attrs.field(default="char", validator=lambda _i, _a, v: _check_level(v))
    punctuation: bool = attrs.field(default=True, validator=lambda _i, a, v: _check_bool(a.name, v))
    lowercase: bool = attrs.field(default=False, validator=lambda _i, a, v: _check_bool(a.name, v))
    _index: dict[str, int] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # frozen: the lookup table is derived once, here. Tokens of vocabularies saved before
        # text was normalised may be non-NFC: normalised text finds them through an alias,
        # unless an NFC token of the same text exists (it keeps its own id).
        index = {t: i for i, t in enumerate(self.tokens)}
        for i, t in enumerate(self.tokens):
            index.setdefault(_nfc(t), i)
        object.__setattr__(self, "_index", index)

    # --- construction -----------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        *,
        level: str = "char",
        max_size: int | None = None,
        min_count: int = 1,
        punctuation: bool = True,
        lowercase: bool = False,
    ) -> Vocabulary:
        """Count the tokens of a corpus and keep the frequent ones.

        Args:
            texts: the corpus, an iterable of strings (sentences, lines, documents).
            level: ``"char"`` or ``"word"``.
            max_size: the most tokens to keep, the three specials included (so at least 3), or
                ``None`` for no cap. The least frequent tokens are cut first.
            min_count: keep only tokens seen at least this many times (>= 1).
            punctuation: keep punctuation marks as tokens, or drop them.
            lowercase: lowercase text before counting.

        Returns:
            the :class:`Vocabulary`: specials, then tokens by count descending, then by token.
        """
        level = _check_level(level)
        _check_bool("punctuation", punctuation)
        _check_bool("lowercase", lowercase)
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < len(SPECIALS)
        ):
            raise ValueError(
                f"'max_size' must be None or an integer >= {len(SPECIALS)}, room for the special "
                f"tokens {', '.join(SPECIALS)} (got {max_size!r})"
            )
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"'min_count' must be an integer >= 1 (got {min_count!r})")
        if isinstance(texts, str) or not isinstance(texts, Iterable):
            # a lone string would be iterated character by character: almost surely a mistake
            raise TypeError(
                f"'texts' must be an iterable of strings, such as a list of sentences "
                f"(got {type(texts).__name__})"
            )

        # an empty token list is a valid vocabulary to tokenize with before counting
        probe = cls(tokens=SPECIALS, level=level, punctuation=punctuation, lowercase=lowercase)
        counts: Counter[str] = Counter()
        n_texts = 0
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"'texts'[{i}] must be a str (got {type(text).__name__}: {text!r})")
            counts.update(probe.tokenize(text))
            n_texts += 1
        if n_texts == 0:
            raise ValueError("'texts' must hold at least one text (got an empty corpus)")
        if not counts:
            raise ValueError(
                f"'texts' hold no {level} tokens (got {n_texts} texts, all empty or blank"
                + ("" if punctuation else " once punctuation is dropped")
                + ")"
            )
        for special in SPECIALS:  # cannot be produced by the tokenizers, but never duplicate one
            counts.pop(special, None)

        kept = [t for t, c in counts.items() if c >= min_count]
        kept.sort(key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max_size - len(SPECIALS)]
        return cls(
            tokens=SPECIALS + tuple(kept), level=level, punctuation=punctuation, lowercase=lowercase
        )

    # --- ids of the specials ----------------------------------------------------------------------

    @property
    def pad_id(self) -> int:
        """0: the id of ``<PAD>``."""
        return 0

    @property
    def unk_id(self) -> int:
        """1: the id of ``<UNK>``."""
        return 1

    @property
    def eos_id(self) -> int:
        """2: the id of ``<EOS>``."""
        return 2

    def __len__(self) -> int:
        """V: the number of tokens, specials included."""
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    # --- tokens <-> ids ---------------------------------------------------------------------------

    def token_to_id(self, token: str) -> int:
        """The id of ``token``; ``unk_id`` when it is not in the vocabulary."""
        return self._index.get(token, self.unk_id)

    def id_to_token(self, id: int) -> str:
        """The token with id ``id`` in ``0..V-1`` (a Python or NumPy integer)."""
        i = _as_id(id)
        if not 0 <= i < len(self.tokens):
            raise ValueError(f"id must be an integer in 0..{len(self.tokens) - 1} (got {id!r})")
        return self.tokens[i]

    # --- text <-> tokens <-> ids ------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into this vocabulary's tokens (known or not), following its options."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str (got {type(text).__name__})")
        if self.lowercase:
            text = text.lower()
        text = _nfc(text)
        if self.level == "char":
            tokens = list(text)
        else:
            tokens = _patterns()[0].findall(text)
        if not self.punctuation:
            tokens = [t for t in tokens if not _is_mark(t)]
        return tokens

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``'s tokens, ``unk_id`` for unknown ones; no ``<EOS>`` is added.

        Args:
            text: one string.

        Returns:
            a list of T ids in ``0..V-1``.
        """
        index, unk = self._index, self.unk_id
        return [index.get(t, unk) for t in self.tokenize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``: every id is written out (``<EOS>`` and ``<UNK>`` as themselves,
        nothing stops early) except ``<PAD>``, which is skipped.

        Args:
            ids: T ids in ``0..V-1``: a list, or a 1-D integer array.

        Returns:
            char level: the tokens joined with ``""``; word level: joined with spaces, with no
            space before a punctuation mark or after an opening bracket.
        """
        tokens = [self.id_to_token(i) for i in ids if _as_id(i) != self.pad_id]
        if self.level == "char":
            return "".join(tokens)
        parts: list[str] = []
        for k, token in enumerate(tokens):
            closing = _is_mark(token) and token not in _OPENING
            glued = k == 0 or closing or tokens[k - 1] in _OPENING
            parts.append(token if glued else " " + token)
        return "".join(parts)

    # --- checkpoints ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict that :meth:`from_dict` reads back (a checkpoint stores it)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "level": self.level,
            "punctuation": self.punctuation,
            "lowercase": self.lowercase,
            "tokens": list(self.tokens),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Vocabulary:
        """The vocabulary :meth:`to_dict` wrote; malformed input raises an error naming the key."""
        if not isinstance(d, Mapping):
            raise TypeError(f"vocabulary dict must be a mapping (got {type(d).__name__})")
        keys = ("format", "version", "level", "punctuation", "lowercase", "tokens")
        missing = [k for k in keys if k not in d]
        extra = sorted(map(str, set(d) - set(keys)))
        if missing or extra:
            raise ValueError(
                "vocabulary dict must have exactly the keys "
                f"{', '.join(keys)} (missing: {', '.join(missing) or 'none'}; "
                f"unknown: {', '.join(extra) or 'none'})"
            )
        if d["format"] != _FORMAT:
            raise ValueError(f"vocabulary dict 'format' must be {_FORMAT!r} (got {d['format']!r})")
        if d["version"] != _VERSION or isinstance(d["version"], bool):
            raise ValueError(
                f"vocabulary dict 'version' {d['version']!r} is not supported; "
                f"this seqkit reads version {_VERSION}"
            )
        tokens = d["tokens"]
        if not isinstance(tokens, Sequence) or isinstance(tokens, str):
            raise TypeError(
                f"vocabulary dict 'tokens' must be a list of strings (got {type(tokens).__name__})"
            )
        try:
            return cls(
                tokens=tokens,
                level=d["level"],
                punctuation=d["punctuation"],
                lowercase=d["lowercase"],
            )
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"vocabulary dict: {exc}") from None


def read_text_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file, NFC-normalised, without their line ends.

    A byte-order mark at the start of the file is dropped (it is not text); ``\\r\\n`` and
    ``\\n`` both end a line; a last line without a line end counts.

    Raises:
        DataError: the file is missing or unreadable, or is not UTF-8; the message names the
            file, the byte offset and the line of the first bad byte.
    """
    path = Path(path)
    try:
        if stat.S_ISCHR(kind := path.stat().st_mode) or stat.S_ISBLK(kind):
            # /dev/zero, /dev/urandom: an endless read, never a text file (a pipe is let through)
            raise DataError(f"{path}: a device, not a text file; give a file or a pipe")
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at byte offset {exc.start} "
            f"(line {line}) is {exc.reason}; save the file as UTF-8"
        ) from None
    lines = _nfc(text.removeprefix("\ufeff")).split("\n")
    if lines[-1] == "":
        lines.pop()  # the file ends with a line end
    return [line.removesuffix("\r") for line in lines]
