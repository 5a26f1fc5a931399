"""Free text -> emotion words, deterministically, for the emotion-wheel metrics (:mod:`.openset`).

:func:`emotion_words` reads a text with the vocabulary of a :class:`~affect_llm.metrics.wheel.WheelSet` (every
word form that maps to a group on one of its wheels):

* the text is normalised (:func:`affect_llm.textnorm.normalize`: typographic quotes and dashes made ASCII)
  and lower-cased, then tokenised into words (letters/digits, keeping inner hyphens and apostrophes:
  ``self-deprecating``, ``don't``) and punctuation marks;
* vocabulary entries are matched longest first, so multi-word entries win (``at a loss for words`` before
  ``loss``); an entry written with a hyphen also matches with a space and vice versa;
* **negation**: a match preceded within :data:`NEGATION_WINDOW` (3) tokens by a negator (:data:`NEGATORS`, or
  any token ending in ``n't``), with no punctuation mark or contrast word (:data:`SCOPE_BREAKERS`: but, yet,
  though, …) in between, is dropped: "she is not angry" yields nothing, "not angry but sad" yields ``sad``.
  "not only"/"not just" do not negate. An entry that itself starts with a negator ("not interested",
  "don't care") is matched as a whole and kept;
* entries in the wheel set's ``text_stopwords`` (ordinary words such as "low", "content", "face") are not
  taken from running text;
* the result is the matched words (as written, lower-cased) in order of first appearance, without repeats.

List-like input is read as a list: a Python-list string (``"['happy', 'excited']"``) or a short comma- or
semicolon-separated list (``"happy, excited"``). Each item that is a vocabulary entry is kept as is (stopwords
included: a list item is meant as an emotion word); any other item is read as free text, so "very excited"
gives ``excited`` and "not angry" gives nothing. Unknown words are never returned.

An :class:`EmotionWordExtractor` is anything called as ``extractor(text) -> list[str]``; the metrics take one so
that a caller can plug in, e.g., an LLM that lists the emotions a text expresses. :class:`LexiconExtractor`
is the deterministic default.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..textnorm import normalize
from .wheel import WheelSet, _wordset, parse_word_list

#: tokens that negate an emotion word following them within :data:`NEGATION_WINDOW` tokens (and every token
#: that ends in ``n't``)
NEGATORS: frozenset[str] = _wordset(
    "not no never without hardly barely scarcely cannot nor neither none nobody nothing lack lacks lacking "
    "dont doesnt didnt isnt wasnt arent werent cant couldnt wont wouldnt shouldnt aint hasnt havent hadnt"
)
#: tokens that end a negation's scope, like punctuation does
SCOPE_BREAKERS: frozenset[str] = _wordset("but yet though although however instead rather whereas while")
#: how many tokens before a match a negator may stand
NEGATION_WINDOW = 3
#: "not only happy" does not negate "happy"
_NOT_NEGATING_AFTER_NOT = frozenset({"only", "just", "merely", "simply"})

_TOKEN = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*|[^\sa-z0-9]")
_WORD = re.compile(r"[a-z0-9]")
_LIST_SPLIT = re.compile(r"[,;\n]")
_SENTENCE_END = re.compile(r"[.!?](?=\s+\S)")
#: a list item longer than this many words makes the text free text, not a list
_MAX_LIST_ITEM_WORDS = 4


@runtime_checkable
class EmotionWordExtractor(Protocol):
    """Anything that lists the emotion words a text expresses: ``extractor(text) -> list[str]``."""

    def __call__(self, text: str) -> list[str]: ...


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens of ``text`` (see the module docstring)."""
    return _TOKEN.findall(normalize(str(text)).lower())


def _is_word(tok: str) -> bool:
    return bool(_WORD.match(tok))


def _is_negator(tok: str) -> bool:
    return tok in NEGATORS or tok.endswith("n't")


@dataclass(frozen=True)
class _Lexicon:
    phrases: dict[tuple[str, ...], str]  # token tuple -> vocabulary entry
    max_len: int
    stop: frozenset[str]


def _lexicon(wheels: WheelSet) -> _Lexicon:
    lex = wheels._cache.get("lexicon")
    if lex is None:
        phrases: dict[tuple[str, ...], str] = {}
        variants: list[tuple[tuple[str, ...], str]] = []
        for entry in sorted(wheels.vocabulary):
            toks = tuple(tokenize(entry))
            if not toks or not all(_is_word(t) for t in toks):
                continue
            phrases.setdefault(toks, entry)
            spaced = tuple(p for t in toks for p in t.split("-"))
            if spaced != toks and len(spaced) <= 2:  # "burnt-out" ~ "burnt out", not "matter of fact"
                variants.append((spaced, entry))
            if len(toks) == 2:
                variants.append((("-".join(toks),), entry))
        for v, entry in variants:  # the entries as written win over the variants
            phrases.setdefault(v, entry)
        lex = _Lexicon(phrases, max((len(k) for k in phrases), default=1), frozenset(wheels.text_stopwords))
        wheels._cache["lexicon"] = lex
    return lex


def _negated(tokens: list[str], start: int) -> bool:
    seen = 0
    i = start - 1
    while i >= 0 and seen < NEGATION_WINDOW:
        tok = tokens[i]
        if not _is_word(tok) or tok in SCOPE_BREAKERS:
            return False
        if _is_negator(tok):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            if not (tok == "not" and nxt in _NOT_NEGATING_AFTER_NOT):
                return True
        seen += 1
        i -= 1
    return False


def _free_text(text: str, lex: _Lexicon, out: dict[str, None]) -> None:
    tokens = tokenize(text)
    i = 0
    n = len(tokens)
    while i < n:
        if not _is_word(tokens[i]):
            i += 1
            continue
        hit = None
        for length in range(min(lex.max_len, n - i), 0, -1):
            entry = lex.phrases.get(tuple(tokens[i : i + length]))
            if entry is not None:
                hit = (entry, length)
                break
        if hit is None:
            i += 1
            continue
        entry, length = hit
        if entry not in lex.stop and not _negated(tokens, i):
            out.setdefault(entry, None)
        i += length


def _as_entry(item: str, vocab: frozenset[str]) -> str | None:
    """The vocabulary entry a list item is, if it is one."""
    w = item.lower().strip()
    if w in vocab:
        return w
    w = " ".join(tokenize(item))
    return w if w in vocab else None


def _list_items(text: str, vocab: frozenset[str]) -> list[str] | None:
    """The items of a list-like text, or None when it reads as free text: a bracketed list; or a comma- or
    semicolon-separated text of one sentence whose items have at most 4 words each and more than half of which
    are vocabulary entries ("Fine, let's go" stays free text)."""
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        return parse_word_list(s)
    if not _LIST_SPLIT.search(s) or _SENTENCE_END.search(s):
        return None
    items = [x.strip().strip("'\"").strip().rstrip(".").strip() for x in _LIST_SPLIT.split(s)]
    items = [x for x in items if x]
    if not items:
        return None
    for x in items:
        if sum(1 for t in tokenize(x) if _is_word(t)) > _MAX_LIST_ITEM_WORDS:
            return None
    if 2 * sum(_as_entry(x, vocab) is not None for x in items) <= len(items):
        return None
    return items


def emotion_words(text: str | Sequence[str], wheels: WheelSet) -> list[str]:
    """The emotion words of ``text`` in the vocabulary of ``wheels`` (module docstring), in order of first
    appearance, without repeats. A list or tuple of strings is read as a word list."""
    if text is None:
        return []
    vocab = wheels.vocabulary
    lex = _lexicon(wheels)
    out: dict[str, None] = {}
    if isinstance(text, (list, tuple)):
        items: list[str] | None = [str(x) for x in text if x is not None]
    else:
        text = str(text)
        if not text.strip():
            return []
        items = _list_items(text, vocab)
        if items is None:
            _free_text(text, lex, out)
            return list(out)
    for item in items:
        entry = _as_entry(item, vocab)
        if entry is not None:
            out.setdefault(entry, None)
        else:
            _free_text(item, lex, out)
    return list(out)


class LexiconExtractor:
    """The deterministic :class:`EmotionWordExtractor`: :func:`emotion_words` over a fixed wheel set."""

    def __init__(self, wheels: WheelSet):
        self.wheels = wheels

    def __call__(self, text: str) -> list[str]:
        return emotion_words(text, self.wheels)

    def __repr__(self) -> str:
        return f"LexiconExtractor({self.wheels.name!r})"
