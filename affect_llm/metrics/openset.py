"""Emotion-wheel metrics (MER-UniBench / AffectGPT style): HIT rate on basic-emotion datasets, set-level
precision/recall/F on open-vocabulary emotion words (OV-MERD), sentiment from emotion labels, and whether an
explanation's emotion words agree with its label.

Every metric maps words to groups with :meth:`affect_llm.metrics.wheel.WheelSet.group` (the MER "case3"
mapping), computes a score on each wheel of the set and averages the scores over the wheels.

Inputs that are word lists (a gold label set, an open-vocabulary prediction) may be given as

* a list/tuple of words: each word is lower-cased and stripped and looked up as is (AffectGPT's reading; a
  word not in the vocabulary maps to nothing), or
* a string: passed to the extractor (default :class:`~affect_llm.metrics.emotion_words.LexiconExtractor`),
  which reads list-like strings (``"['happy', 'excited']"``) as lists and free text as text.

To score AffectGPT-style CSV cells exactly as AffectGPT does, parse them with
:func:`~affect_llm.metrics.wheel.parse_word_list` (or :func:`read_openset_csv`) and pass the lists.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from ..errors import InputError
from .classification import accuracy, weighted_f1
from .emotion_words import EmotionWordExtractor, LexiconExtractor
from .wheel import Level, WheelSet, _check_level, _norm, builtin_wheels, parse_word_list

WordsLike = str | Sequence[str] | None

#: gold labels that :func:`hit_rate` leaves out by default (MER-UniBench scores non-neutral samples only)
NEUTRAL_LABELS: tuple[str, ...] = ("neutral",)

SENTIMENTS: tuple[str, ...] = ("positive", "negative", "neutral")

#: the sentiment of the labels of MELD, EmoryNLP, FER-2013, IEMOCAP and MER (label -> sentiment; None = no
#: fixed sentiment). MELD annotates sentiment per utterance and its ``surprise`` utterances are positive or
#: negative case by case, so ``surprise`` has none here: use the dataset's own sentiment column when it has one.
LABEL_SENTIMENT: Mapping[str, str | None] = {
    "neutral": "neutral",
    "joy": "positive", "joyful": "positive", "happy": "positive", "happiness": "positive",
    "peaceful": "positive", "powerful": "positive", "excited": "positive", "excitement": "positive",
    "anger": "negative", "angry": "negative", "mad": "negative",
    "disgust": "negative", "disgusted": "negative", "contempt": "negative",
    "fear": "negative", "fearful": "negative", "scared": "negative", "worried": "negative",
    "sadness": "negative", "sad": "negative", "frustrated": "negative", "frustration": "negative",
    "surprise": None, "surprised": None,
}

#: the sentiment of the level-1 groups of the built-in and the MER wheels, for words not in
#: :data:`LABEL_SENTIMENT` (None: the group has no single sentiment, e.g. surprise, confusion, anticipation)
GROUP_SENTIMENT: Mapping[str, str | None] = {
    "happy": "positive", "joy": "positive", "joyful": "positive", "peaceful": "positive", "powerful": "positive",
    "trust": "positive", "genius": "positive",
    "sad": "negative", "sadness": "negative", "angry": "negative", "anger": "negative", "mad": "negative",
    "fearful": "negative", "fear": "negative", "scared": "negative", "disgusted": "negative",
    "disgust": "negative", "bad": "negative",
    "neutral": "neutral",
    "surprised": None, "surprise": None, "confused": None, "anticipation": None,
}


def _extractor(wheels: WheelSet, extractor: EmotionWordExtractor | Callable[[str], list[str]] | None):
    return extractor if extractor is not None else LexiconExtractor(wheels)


def _words(x: WordsLike, extract: Callable[[str], list[str]]) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return list(extract(x))
    return [w for w in (_norm(v) for v in x if v is not None) if w]


def _same_length(a: Sequence, b: Sequence, what: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} {what} but {len(b)} predictions")


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else 0.0


# -- HIT rate ------------------------------------------------------------------------------------------------


def hit_rate(
    gold_labels: Sequence[str],
    predictions: Sequence[WordsLike],
    wheels: WheelSet,
    level: Level = "level1",
    extractor: EmotionWordExtractor | Callable[[str], list[str]] | None = None,
    neutral_labels: Iterable[str] = NEUTRAL_LABELS,
) -> dict:
    """MER-UniBench's HIT rate for datasets with one basic-emotion label per sample (MER2023/2024, MELD,
    IEMOCAP, …).

    A prediction (free text or a word list, see the module docstring) becomes a set of wheel groups; on each
    wheel, a sample *hits* when the group of its gold label is in that set. Per wheel,
    ``hit_rate = hits / n`` over the samples whose gold label maps to a group on that wheel; the result is the
    mean over the wheels that scored at least one sample (0.0 when none did).

    Samples whose gold label is neutral (``neutral_labels``, compared lower-cased) are EXCLUDED, as
    MER-UniBench does (neutral is on no MER wheel, and an open-vocabulary answer cannot "hit" it);
    samples whose gold label maps to no group are excluded too, and both are counted.

    Returns ``{"hit_rate", "per_wheel": {wheel: {"hit_rate", "n", "excluded_unmapped"}}, "n",
    "excluded_neutral", "excluded_unmapped", "level"}``; ``n`` counts the samples scored on at least one wheel
    and ``excluded_unmapped`` the non-neutral samples whose gold maps on no wheel."""
    level = _check_level(level)
    _same_length(gold_labels, predictions, "gold labels")
    extract = _extractor(wheels, extractor)
    neutral = {_norm(x) for x in neutral_labels}
    kept: list[tuple[str, list[str]]] = []
    excluded_neutral = 0
    for g, p in zip(gold_labels, predictions):
        g = _norm(g) if g is not None else ""
        if g in neutral:
            excluded_neutral += 1
            continue
        kept.append((g, _words(p, extract)))
    per_wheel: dict[str, dict] = {}
    scored_any = [False] * len(kept)
    for wheel in wheels.wheels:
        hits, n, unmapped = 0, 0, 0
        for i, (g, words) in enumerate(kept):
            gg = wheels.group(g, wheel, level) if g else None
            if gg is None:
                unmapped += 1
                continue
            n += 1
            scored_any[i] = True
            hits += gg in wheels.groups(words, wheel, level)
        per_wheel[wheel.name] = {"hit_rate": hits / n if n else 0.0, "n": n, "excluded_unmapped": unmapped}
    rates = [v["hit_rate"] for v in per_wheel.values() if v["n"]]
    n_used = sum(scored_any)
    return {
        "hit_rate": _mean(rates),
        "per_wheel": per_wheel,
        "n": n_used,
        "excluded_neutral": excluded_neutral,
        "excluded_unmapped": len(kept) - n_used,
        "level": level,
    }


# -- open-vocabulary set scores -------------------------------------------------------------------------------


def openset_scores(
    gold_sets: Sequence[WordsLike],
    pred_sets: Sequence[WordsLike],
    wheels: WheelSet,
    level: Level = "level1",
    extractor: EmotionWordExtractor | Callable[[str], list[str]] | None = None,
) -> dict:
    """Set-level scores of open-vocabulary emotion predictions (OV-MERD, AffectGPT's emotion-wheel metric).

    On each wheel: every word of a sample's gold set and of its predicted set is mapped to its group, giving
    group sets G and P (unmapped words are dropped); samples with an empty G are skipped; per sample
    ``precision = |G ∩ P| / |P|`` (0 when P is empty) and ``recall = |G ∩ P| / |G|``; precision and recall are
    averaged over the samples, and ``F = 2·P·R / (P + R)`` of those averages (0 when both are 0). The result
    averages F, precision and recall over the wheels that scored at least one sample.

    Returns ``{"f", "precision", "recall", "per_wheel": {wheel: {"f", "p", "r", "n"}}, "n", "level"}``; ``n``
    counts the samples scored on at least one wheel."""
    level = _check_level(level)
    _same_length(gold_sets, pred_sets, "gold sets")
    extract = _extractor(wheels, extractor)
    golds = [_words(g, extract) for g in gold_sets]
    preds = [_words(p, extract) for p in pred_sets]
    per_wheel: dict[str, dict] = {}
    scored_any = [False] * len(golds)
    for wheel in wheels.wheels:
        ps, rs = [], []
        for i, (g, p) in enumerate(zip(golds, preds)):
            gg = wheels.groups(g, wheel, level)
            if not gg:
                continue
            scored_any[i] = True
            pp = wheels.groups(p, wheel, level)
            inter = len(gg & pp)
            ps.append(inter / len(pp) if pp else 0.0)
            rs.append(inter / len(gg))
        prec, rec = _mean(ps), _mean(rs)
        f = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_wheel[wheel.name] = {"f": f, "p": prec, "r": rec, "n": len(ps)}
    used = [v for v in per_wheel.values() if v["n"]]
    return {
        "f": _mean([v["f"] for v in used]),
        "precision": _mean([v["p"] for v in used]),
        "recall": _mean([v["r"] for v in used]),
        "per_wheel": per_wheel,
        "n": sum(scored_any),
        "level": level,
    }


def openset_report(
    gold_sets: Sequence[WordsLike],
    pred_sets: Sequence[WordsLike],
    wheels: WheelSet,
    extractor: EmotionWordExtractor | Callable[[str], list[str]] | None = None,
) -> dict:
    """:func:`openset_scores` at both levels: ``{"level1": {...}, "level2": {...}}``."""
    extract = _extractor(wheels, extractor)
    golds = [_words(g, extract) for g in gold_sets]
    preds = [_words(p, extract) for p in pred_sets]
    return {lv: openset_scores(golds, preds, wheels, lv) for lv in ("level1", "level2")}


def vocabulary_coverage(words: Iterable[str], wheels: WheelSet) -> dict:
    """How much of a word list the wheel set can score: ``coverage`` = share of the distinct words (lower-cased,
    stripped) that map to a group on at least one wheel; ``all_wheels`` = share that maps on every wheel;
    ``token_coverage`` = the same share counting repeats. Also ``distinct``, ``covered`` and ``uncovered``
    (sorted)."""
    toks = [w for w in (_norm(x) for x in words if x is not None) if w]
    distinct = sorted(set(toks))
    covered = {w for w in distinct if wheels.maps(w)}
    everywhere = {w for w in covered if all(wheels.group(w, wh) is not None for wh in wheels.wheels)}
    n = len(distinct)
    return {
        "coverage": len(covered) / n if n else 0.0,
        "all_wheels": len(everywhere) / n if n else 0.0,
        "token_coverage": sum(w in covered for w in toks) / len(toks) if toks else 0.0,
        "distinct": n,
        "covered": len(covered),
        "uncovered": [w for w in distinct if w not in covered],
    }


def read_openset_csv(path: str | Path, column: str = "openset", key: str = "name") -> dict[str, list[str]]:
    """An AffectGPT/OV-MERD CSV (columns ``name`` and ``openset``, the latter a list-like string) -> name ->
    words (:func:`~affect_llm.metrics.wheel.parse_word_list`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: missing")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if key not in (reader.fieldnames or []) or column not in (reader.fieldnames or []):
                raise InputError(f"{path}: expected columns {key}, {column} (got {reader.fieldnames})")
            return {row[key]: parse_word_list(row[column]) for row in reader}
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: not a readable CSV ({e})") from e


# -- sentiment -----------------------------------------------------------------------------------------------


def sentiment_of(label: str, wheels: WheelSet | None = None) -> str | None:
    """The sentiment (``"positive"``, ``"negative"``, ``"neutral"``) of an emotion label, or None when it has no
    fixed one.

    ``positive``/``negative``/``neutral`` are returned as they are; a label in :data:`LABEL_SENTIMENT` (the
    labels of MELD, EmoryNLP, FER-2013, …) takes the sentiment given there (MELD: joy positive; anger, disgust,
    fear, sadness negative; neutral neutral; surprise None, because MELD's own sentiment column annotates
    surprise as positive or negative per utterance). Any other word is mapped to its level-1 group on each
    wheel of ``wheels`` (default: the built-in taxonomy) and takes the sentiment of the groups
    (:data:`GROUP_SENTIMENT`) by majority vote over the wheels that give one; a tie or no vote -> None."""
    w = _norm(label) if label is not None else ""
    if not w:
        return None
    if w in SENTIMENTS:
        return w
    if w in LABEL_SENTIMENT:
        return LABEL_SENTIMENT[w]
    ws = wheels if wheels is not None else builtin_wheels()
    votes: dict[str, int] = {}
    for wheel in ws.wheels:
        g = ws.group(w, wheel, "level1")
        s = GROUP_SENTIMENT.get(g) if g is not None else None
        if s is not None:
            votes[s] = votes.get(s, 0) + 1
    if not votes:
        return None
    best = max(votes.values())
    top = [s for s, v in votes.items() if v == best]
    return top[0] if len(top) == 1 else None


def sentiment_scores(gold: Sequence[str], pred: Sequence[str], wheels: WheelSet | None = None) -> dict:
    """Accuracy and weighted F1 (:mod:`affect_llm.metrics.classification`) of sentiments. Each gold and
    predicted item is a sentiment or an emotion label turned into one by :func:`sentiment_of`. Samples whose
    gold has no sentiment are excluded (``excluded``); a prediction with none counts as the class
    ``"unknown"`` (always wrong). Returns ``{"accuracy", "weighted_f1", "n", "excluded"}``."""
    _same_length(gold, pred, "gold labels")
    g_out, p_out, excluded = [], [], 0
    for g, p in zip(gold, pred):
        gs = sentiment_of(g, wheels)
        if gs is None:
            excluded += 1
            continue
        g_out.append(gs)
        p_out.append(sentiment_of(p, wheels) or "unknown")
    return {
        "accuracy": accuracy(g_out, p_out),
        "weighted_f1": weighted_f1(g_out, p_out),
        "n": len(g_out),
        "excluded": excluded,
    }


# -- label / explanation agreement ----------------------------------------------------------------------------


def label_explanation_consistency(
    labels: Sequence[str],
    explanations: Sequence[str],
    wheels: WheelSet,
    extractor: EmotionWordExtractor | Callable[[str], list[str]] | None = None,
) -> dict:
    """Whether each explanation names an emotion of its predicted label's level-1 group.

    The explanation's emotion words come from the extractor (default: the deterministic
    :class:`~affect_llm.metrics.emotion_words.LexiconExtractor`, which drops negated words: "she is not angry"
    names no anger). On each wheel, a sample is *consistent* when the label's level-1 group is among the groups
    of those words; ``consistency`` per wheel = consistent / scored and the result is the mean over the wheels
    that scored a sample. Not scored, and counted: explanations with no emotion word at all
    (``no_emotion_words``, the same on every wheel), and per wheel labels that map to no group
    (``unmapped_label``) or explanations whose words map to no group on that wheel (``no_groups``).

    Returns ``{"consistency", "per_wheel": {wheel: {"consistency", "n", "unmapped_label", "no_groups"}}, "n",
    "no_emotion_words"}``; ``n`` counts the samples scored on at least one wheel."""
    _same_length(labels, explanations, "labels")
    extract = _extractor(wheels, extractor)
    samples: list[tuple[str, list[str]]] = []
    no_words = 0
    for label, text in zip(labels, explanations):
        words = _words(text, extract)
        if not words:
            no_words += 1
            continue
        samples.append((_norm(label) if label is not None else "", words))
    per_wheel: dict[str, dict] = {}
    scored_any = [False] * len(samples)
    for wheel in wheels.wheels:
        ok, n, unmapped, no_groups = 0, 0, 0, 0
        for i, (label, words) in enumerate(samples):
            lg = wheels.group(label, wheel, "level1") if label else None
            if lg is None:
                unmapped += 1
                continue
            groups = wheels.groups(words, wheel, "level1")
            if not groups:
                no_groups += 1
                continue
            n += 1
            scored_any[i] = True
            ok += lg in groups
        per_wheel[wheel.name] = {
            "consistency": ok / n if n else 0.0, "n": n, "unmapped_label": unmapped, "no_groups": no_groups,
        }
    return {
        "consistency": _mean([v["consistency"] for v in per_wheel.values() if v["n"]]),
        "per_wheel": per_wheel,
        "n": sum(scored_any),
        "no_emotion_words": no_words,
    }
