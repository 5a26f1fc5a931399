"""Faithfulness of explanations to their evidence: do the cited ids exist, and does each claim stay with the cues
it cites.

Inputs are, per sample, the explanation text and the cues it was given (``list[Cue]``; an
:class:`~affect_llm.evidence.Evidence` or cue dicts from an ``Analysis`` JSON work too). Cited ids are found with
:func:`affect_llm.evidence.cited_ids` (``[S1]``, ``P2``, …). All shares are on 0–1; a share with nothing to count
(no ids cited at all, no claim sentences) is None. Use :func:`faithfulness_scores`.

**Sentences.** The text is cut after ``.``, ``!`` or ``?`` (and any closing quote/bracket) followed by whitespace
and a capital letter, a digit, ``[`` ``(`` or a quote — but not inside a double-quoted span (when the text's
double quotes pair up) and not after ``Mr.``/``Dr.``/``e.g.``/…; line breaks always cut. A sentence is a
**conclusion** when it cites no id and has no content words (``The speaker feels joy.``, ``Therefore, the
speaker's emotional state is joy.``), or when it cites no id and has the shape of
:func:`affect_llm.cue_sentences.agreement_sentence` ("Over the whole clip, the words and the face both lean to
joy: they point the same way.", drawn from the per-modality distributions): it makes no claim about a cue and
is not counted. Every other sentence is a **claim**.

**Content words** (:func:`content_words`): lowercased word and decimal-number tokens of the sentence with the cue
ids removed (``AU12`` stays one token), minus English stop words, generic words (speaker, feels, emotional,
state, therefore, suggests, evidence, …: words any explanation uses; and voice, face, pitch, expression, clip,
usual, earlier, strong, …: words every cue of one kind uses), emotion words (the MELD, EmoryNLP and EMER labels
and ~150 common emotion words and their forms, plus any ``labels`` given), one-letter tokens and one-digit
integers (the "/5" of every AU reading); then stemmed by :func:`stem` (Snowball English, Porter2), and a few everyday words for facial actions mapped to the words of the AU names
(:data:`FACS_ALIASES`: smile/grin -> puller, frown -> lowerer, eyebrow -> brow). Two stems **match** when equal,
or when the shorter (≥ 4 letters) starts the longer and the longer has at most 3 more letters (loud~louder,
rais~raiser).

**Supported claim**: the sentence cites at least one cue that exists in its sample's evidence, and one of
  1. *quote*: a double-quoted span of the sentence (punctuation and case ignored, a trailing "..." dropped)
     occurs word for word in a cited cue's text;
  2. *overlap*: at least :data:`LEXICAL_MIN_SHARE` (1/3) of the sentence's content words match content words
     of the cited cues' texts;
  3. *embedding* (only with ``embed=True``): the MiniLM cosine between the sentence (ids removed) and the best
     of its cited **speech/text** cues' texts is ≥ :data:`SIMILARITY_THRESHOLD` (0.35). Voice, face, scene and
     dialogue cues are not compared this way: their texts are formulaic descriptions that MiniLM cannot tell
     apart (see below).
What this cannot see: a claim that reuses a cue's words but inverts them ("[P1] not loud at all" for "much
louder …") counts as supported, and a claim whose only content is an emotion label ("[D1] points to joy")
is unsupported (numbers such as "(joy 0.61)" do count).

**Calibration** of the 1/3 overlap share and the 0.35 cosine: ``scripts/calibrate_faithfulness.py`` measures
them; the measurement and its table are in ``docs/evaluation.md`` (Faithfulness calibration).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import snowballstemmer

from ..cue_sentences import AGREEMENT
from ..evidence import Evidence, cited_ids
from ..textnorm import normalize
from ..types import Cue, Modality

#: MiniLM cosine at or above which a claim sentence counts as supported by its best cited speech/text cue (see
#: the module docstring for the measurement behind it)
SIMILARITY_THRESHOLD = 0.35
#: the overlap rule: at least this share of the sentence's content words must match the cited cues' words
LEXICAL_MIN_SHARE = 1 / 3
#: the embedding rule only compares with cues whose text is words somebody said: MiniLM cannot tell the
#: project's measured descriptions apart ("much higher pitch ... much louder" vs "much lower ... much softer": 0.8+)
EMBED_MODALITIES = frozenset({Modality.speech, Modality.text})
#: everyday words for facial actions -> the word the AU names in F-cues use (AU12 lip corner puller, AU4 brow
#: lowerer, ...), applied to sentence words after stemming
_FACS_ALIAS_WORDS = {
    "eyebrow": "brow", "eyelid": "lid", "smile": "puller", "grin": "puller", "frown": "lowerer",
    "squint": "tightener", "dimple": "dimpler", "wrinkle": "wrinkler",
}  # fmt: skip

_STOP_WORDS = """
a about above after again against all also am an and any are aren't as at be because been before being below
between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
either even ever every few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here
here's hers herself him himself his how how's however i i'd i'll i'm i've if in into is isn't it it's its itself
just let's like many may me might more most much must mustn't my myself neither no nor not now of off on once one
only or other ought our ours ourselves out over own quite rather really same several shan't she she'd she'll
she's should shouldn't since so some such than that that's the their theirs them themselves then there there's
these they they'd they'll they're they've this those though through thus to too under until up upon us very via
was wasn't we we'd we'll we're we've were weren't what what's when when's where where's whether which while who
who's whom whose why why's will with within without won't would wouldn't yet you you'd you'll you're you've your
yours yourself yourselves s t st s' db hz given
"""
_STOP = frozenset(_STOP_WORDS.split())

#: words every explanation, or every cue of one kind, uses: they say nothing about a particular cue
_GENERIC = """
speaker speakers person people someone somebody man woman guy girl character
feel feels felt feeling feelings emotion emotions emotional emotionally state states mood overall
therefore hence thus conclusion conclude concluded inferred infer inference inferring deduce deduced
suggest suggests suggested suggesting indicate indicates indicated indicating indication show shows showed
showing shown seem seems seemed appear appears appeared point points pointed pointing way reflect reflects
reveal reveals express expresses expressed expressing likely probably clearly evidently possibly
evidence cue cues label labels sign signs signal signals overall tone toned
say says said saying speak speaks spoke speaking talk talks talking word words wording utterance utterances
sentence phrase
voice vocal face facial expression expressions video clip scene frame frames audio speech pitch
conversation dialogue context model
usual level rest main far earlier range variation across visible moved often largest mixed
strong moderate slight slightly
"""

#: emotion labels (MELD, EmoryNLP, EMER) and common emotion words: a claim must be about more than the label
_EMOTION = """
neutral neutrality joy joyful joyous joyfully surprise surprised surprising surprisingly anger angry angrily
sadness sad sadly disgust disgusted disgusting fear fearful afraid scared scary mad peaceful peace powerful
happy happiness happily glad pleased pleasure delight delighted cheerful contented contentment excited
excitement enthusiastic enthusiasm amused amusement love loving affection grateful gratitude thankful proud
pride relief relieved hope hopeful optimistic calm calmness relaxed satisfied satisfaction anticipation eager
curious curiosity interested confident confidence
worried worry worrying anxious anxiety nervous nervousness tense tension uneasy unease concerned concern
panic panicked terrified terror frightened fright dread alarmed
frustrated frustration irritated irritation annoyed annoyance furious fury rage enraged hostile hostility
resentful resentment contempt contemptuous hatred bitter outraged indignant
unhappy sorrow sorrowful grief upset depressed depression disappointed disappointment lonely loneliness hurt
miserable despair regret guilty guilt ashamed shame embarrassed embarrassment shy shyness reluctant
reluctance helpless hopeless
astonished astonishment amazed amazement shocked shock startled stunned
bored boredom tired indifferent doubt doubtful confused confusion sarcastic sarcasm jealous jealousy envy
positive negative positivity negativity sentiment emotive affect affective
"""


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """The Snowball English (Porter2) stem of ``word``, lowercased (snowballstemmer: the Snowball project's own
    stemmers; pause/pauses/paused -> paus, smiling/smiled -> smile). :func:`_match` tolerates what differs
    between forms it leaves apart (rais~raiser)."""
    with _STEM_LOCK:  # a Snowball stemmer object keeps its state while it works: one word at a time
        return _STEMMER.stemWord(word.lower().replace("\u2019", "'"))


_STEMMER = snowballstemmer.stemmer("english")
_STEM_LOCK = threading.Lock()


def _stems(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in text.split())


_GENERIC_STEMS = _stems(_GENERIC)
_EMOTION_STEMS = _stems(_EMOTION)
#: everyday words for facial actions -> the AU-name word they stand for, both as stems
FACS_ALIASES = {stem(k): stem(v) for k, v in _FACS_ALIAS_WORDS.items()}
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+\d+|[a-z]+(?:'[a-z]+)?")
_ID_SPAN = re.compile(r"\[?\b[SPFCTD]\d{1,3}\b\]?")
#: a quotation in an explanation: the words between straight double quotes
QUOTED = re.compile(r'"([^"]+)"')
_PLAIN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _strip_ids(text: str) -> str:
    return " ".join(_ID_SPAN.sub(" ", text).split())


def content_words(text: str, labels: Iterable[str] = ()) -> set[str]:
    """The content-word stems of ``text`` (see the module docstring); cue ids are removed first."""
    extra = {stem(w) for lab in labels for w in str(lab).lower().split()}
    out = set()
    for tok in _TOKEN.findall(normalize(_strip_ids(text)).lower()):
        if tok[0].isdigit():
            if "." in tok or len(tok) > 1:
                out.add(tok)
            continue
        if len(tok) < 2 or tok in _STOP:
            continue
        s = stem(tok)
        if len(s) < 2 or s in _GENERIC_STEMS or s in _EMOTION_STEMS or s in extra:
            continue
        out.add(FACS_ALIASES.get(s, s))
    return out


def _match(a: str, b: str) -> bool:
    if a == b:
        return True
    if a[0].isdigit() or b[0].isdigit():
        return False
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    return len(short) >= 4 and long_.startswith(short) and len(long_) - len(short) <= 3


def _overlap(sentence_words: set[str], cue_words: set[str]) -> list[str]:
    return sorted(w for w in sentence_words if any(_match(w, c) for c in cue_words))


_ABBREV = re.compile(r"(?:\b(?:mr|mrs|ms|dr|prof|vs|etc|approx|e\.g|i\.e))\.$", re.IGNORECASE)
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*(?=\s+[\"'(\[]?[A-Z0-9\[])")


def split_sentences(text: str) -> list[str]:
    """Cut ``text`` into sentences (rules in the module docstring); empty pieces are dropped."""
    out: list[str] = []
    for line in normalize_lines(text):
        balanced = line.count('"') % 2 == 0
        start = 0
        for m in _BOUNDARY.finditer(line):
            end = m.end()
            if balanced and line[:end].count('"') % 2:
                continue  # inside a quotation
            if _ABBREV.search(line[start : m.start() + 1]):
                continue
            piece = line[start:end].strip()
            if piece:
                out.append(piece)
            start = end
        piece = line[start:].strip()
        if piece:
            out.append(piece)
    return out


def normalize_lines(text: str) -> list[str]:
    """The non-empty lines of ``text``, each normalised (ASCII quotes, collapsed spaces) and stripped of a leading
    list marker ("- ", "* ", "1. ")."""
    lines = []
    for raw in str(text or "").splitlines():
        line = normalize(raw)
        line = re.sub(r"^(?:[-*\u2022]|\d+[.)])\s+", "", line)
        if line:
            lines.append(line)
    return lines


def plain_words(text: str) -> str:
    """``text`` lowercased, as its words and numbers only, single-spaced (how quotes are compared with cues)."""
    return " ".join(_PLAIN.findall(normalize(text).lower()))


def quotes_in(sentence: str, cue_texts: Iterable[str]) -> list[str]:
    """The double-quoted spans of ``sentence`` that occur word for word in one of ``cue_texts``."""
    cues = [f" {plain_words(t)} " for t in cue_texts]
    found = []
    for q in QUOTED.findall(normalize(sentence)):
        p = plain_words(q.rstrip(". "))
        if p and any(f" {p} " in c for c in cues):
            found.append(q)
    return found


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class SentenceCheck:
    """One sentence of an explanation and the verdict on it."""

    text: str
    kind: str  # "claim" | "conclusion"
    cited: list[str] = field(default_factory=list)  # ids it mentions, existing or not
    existing: list[str] = field(default_factory=list)  # those that are in the evidence
    supported: bool = False
    by: str | None = None  # "quote" | "overlap" | "embedding"
    overlap: list[str] = field(default_factory=list)  # the matching content-word stems
    similarity: float | None = None  # best cosine with a cited cue (embed=True only)


def _as_cues(evidence: Any) -> list[Cue]:
    if evidence is None:
        return []
    if isinstance(evidence, Evidence):
        return list(evidence.cues)
    return [c if isinstance(c, Cue) else Cue.model_validate(c) for c in evidence]


def check_sentences(
    explanation: str,
    cues: Sequence[Cue],
    *,
    labels: Iterable[str] = (),
    similarities: dict[tuple[str, str], float] | None = None,
    threshold: float = SIMILARITY_THRESHOLD,
) -> list[SentenceCheck]:
    """Split ``explanation`` and judge each sentence against ``cues`` (rules in the module docstring).

    ``similarities``: (sentence without ids, cue text) -> cosine, for the embedding rule; None turns it off.
    """
    by_id = {c.id: c for c in cues}
    labels = list(labels)
    out = []
    for sentence in split_sentences(explanation):
        cited = cited_ids(sentence)
        words = content_words(sentence, labels)
        if not cited and (not words or AGREEMENT.fullmatch(sentence.strip())):
            out.append(SentenceCheck(sentence, "conclusion"))
            continue
        check = SentenceCheck(sentence, "claim", cited=cited, existing=[i for i in cited if i in by_id])
        if check.existing:
            texts = [by_id[i].text for i in check.existing]
            cue_words = set().union(*(content_words(t, labels) for t in texts))
            check.overlap = _overlap(words, cue_words)
            said = [by_id[i].text for i in check.existing if by_id[i].modality in EMBED_MODALITIES]
            if similarities is not None and said:
                bare = _strip_ids(sentence)
                check.similarity = max(similarities.get((bare, t), float("-inf")) for t in said)
            if quotes_in(sentence, texts):
                check.supported, check.by = True, "quote"
            elif words and len(check.overlap) >= LEXICAL_MIN_SHARE * len(words):
                check.supported, check.by = True, "overlap"
            elif check.similarity is not None and check.similarity >= threshold:
                check.supported, check.by = True, "embedding"
        out.append(check)
    return out


def _pairs_to_embed(explanations: Sequence[str], cue_lists: Sequence[list[Cue]]) -> set[tuple[str, str]]:
    pairs = set()
    for text, cues in zip(explanations, cue_lists):
        by_id = {c.id: c for c in cues}
        for sentence in split_sentences(text or ""):
            for i in cited_ids(sentence):
                if i in by_id and by_id[i].modality in EMBED_MODALITIES:
                    pairs.add((_strip_ids(sentence), by_id[i].text))
    return pairs


def similarity_table(pairs: Iterable[tuple[str, str]], encoder: Encoder | None = None) -> dict[tuple[str, str], float]:
    """Cosine for each (text, text) pair, every distinct text embedded once in one batched call (MiniLM)."""
    pairs = list(pairs)
    if not pairs:
        return {}
    if encoder is None:
        from ..embeddings import load_encoder

        encoder = load_encoder()
    texts = list(dict.fromkeys(t for p in pairs for t in p))
    v = np.asarray(encoder.encode(texts), dtype=np.float64)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    idx = {t: k for k, t in enumerate(texts)}
    return {(a, b): float(v[idx[a]] @ v[idx[b]]) for a, b in pairs}


def _share(num: int, den: int) -> float | None:
    return num / den if den else None


#: the truth checks' names, as :func:`faithfulness_scores` reports their shares
TRUTH_CHECKS = ("misquote", "non_word", "flat", "invented_speech", "invented_conversation", "other_feeling",
                "strongest_cited")  # fmt: skip


def truth_checks(explanation: str, cues: Sequence[Cue], label: str | None, labels: Sequence[str]) -> dict:
    """The checks of :mod:`affect_llm.explanation` on one explanation: whether it misquotes, holds a non-word,
    calls a non-neutral ``label`` flat, claims speech where there is none, speaks of a conversation that was not
    given, names another feeling than ``label``, and whether it cites the strongest cue of every present
    modality. The label-dependent checks are None without a label."""
    from ..explanation import (
        CONVERSATION_CLAIM,
        SPEECH_CLAIM,
        contradicts,
        has_dialogue,
        has_words,
        is_flat,
        misquotes,
        non_words,
        strongest_cues,
    )  # fmt: skip

    sentences = split_sentences(explanation)
    cited = set(cited_ids(explanation))
    words = has_words(cues)
    return {
        "misquote": any(misquotes(x, cues) for x in sentences),
        "non_word": any(non_words(x, cues, labels) for x in sentences),
        "flat": None if label is None else label != "neutral" and any(is_flat(x) for x in sentences),
        "invented_speech": not words and any(SPEECH_CLAIM.search(x) for x in sentences),
        "invented_conversation": not has_dialogue(cues) and any(CONVERSATION_CLAIM.search(x) for x in sentences),
        "other_feeling": None if label is None else any(contradicts(x, label, labels) for x in sentences),
        "strongest_cited": None if label is None else all(c.id in cited for c in strongest_cues(cues, label).values()),
    }


def faithfulness_scores(
    explanations: Sequence[str | None],
    evidence: Sequence[Sequence[Cue] | Evidence | None],
    *,
    embed: bool = False,
    threshold: float = SIMILARITY_THRESHOLD,
    labels: Iterable[str] = (),
    encoder: Encoder | None = None,
    decided: Sequence[str | None] | None = None,
) -> dict:
    """How well each explanation sticks to the evidence it was given (definitions in the module docstring).

    - ``cited_ids_exist``: (cited ids that are in that sample's evidence) / (cited ids), summed over all samples
      (micro; each id counted once per explanation); None when nothing is cited anywhere.
    - ``cites_share``: share of explanations that are non-empty and cite at least one existing cue.
    - ``sentence_support``: supported claim sentences / claim sentences, over all samples (micro); None when
      there are no claim sentences. Conclusion sentences are counted apart and not scored.

    - the shares of non-empty explanations that fail a truth check (:func:`truth_checks`): ``misquote``,
      ``non_word``, ``invented_speech``, ``invented_conversation`` and, given each explanation's ``decided``
      label, ``flat`` (flat wording for a non-neutral label; over the non-neutral ones), ``other_feeling``, and
      ``strongest_cited`` (the share that cites the strongest cue of every present modality).

    ``embed`` turns on the MiniLM rule (loads the model; ``encoder`` can supply another); ``labels`` adds words
    (e.g. a dataset's labels) to the emotion words that do not count as content. Returns the totals above,
    ``"support_by"`` (how many claims each rule supported) and ``"per_sample"`` (per explanation: its cited,
    unknown ids, the three values, and every sentence's :class:`SentenceCheck` as a dict).
    """
    if isinstance(explanations, str):
        raise TypeError("explanations is a sequence of strings, not a string")
    if len(explanations) != len(evidence):
        raise ValueError(f"{len(explanations)} explanations but {len(evidence)} evidence lists")
    cue_lists = [_as_cues(e) for e in evidence]
    texts = ["" if t is None else str(t) for t in explanations]
    labels = list(labels)
    sims = similarity_table(_pairs_to_embed(texts, cue_lists), encoder) if embed else None
    per = []
    decided = list(decided) if decided is not None else [None] * len(texts)
    if len(decided) != len(texts):
        raise ValueError(f"{len(texts)} explanations but {len(decided)} decided labels")
    truth_labels = list(dict.fromkeys([*labels, *(d for d in decided if d)]))
    truth: dict[str, list[bool]] = {}
    n_cited = n_exist = n_citing = n_claims = n_supported = n_conclusions = n_empty = 0
    support_by = {"quote": 0, "overlap": 0, "embedding": 0}
    for text, cues, label in zip(texts, cue_lists, decided):
        ids = {c.id for c in cues}
        empty = not text.strip()
        checks_t = truth_checks(text, cues, label, truth_labels) if not empty else {}
        for k, v in checks_t.items():
            if v is not None and not (k == "flat" and label == "neutral"):
                truth.setdefault(k, []).append(bool(v))
        n_empty += empty
        cited = cited_ids(text)
        existing = [i for i in cited if i in ids]
        checks = check_sentences(text, cues, labels=labels, similarities=sims, threshold=threshold)
        claims = [c for c in checks if c.kind == "claim"]
        supported = [c for c in claims if c.supported]
        for c in supported:
            support_by[c.by] += 1  # type: ignore[index]
        n_cited += len(cited)
        n_exist += len(existing)
        n_citing += bool(existing) and not empty
        n_claims += len(claims)
        n_supported += len(supported)
        n_conclusions += len(checks) - len(claims)
        per.append(
            {
                "empty": empty,
                "cited": cited,
                "unknown": [i for i in cited if i not in ids],
                "cited_ids_exist": _share(len(existing), len(cited)),
                "cites": bool(existing) and not empty,
                "sentence_support": _share(len(supported), len(claims)),
                "claim_sentences": len(claims),
                "supported_sentences": len(supported),
                "sentences": [asdict(c) for c in checks],
                "truth": checks_t,
            }
        )
    n = len(texts)
    return {
        "n": n,
        "empty": n_empty,
        "cited_ids_exist": _share(n_exist, n_cited),
        "ids_cited": n_cited,
        "ids_unknown": n_cited - n_exist,
        "cites_share": _share(n_citing, n),
        "sentence_support": _share(n_supported, n_claims),
        "claim_sentences": n_claims,
        "supported_sentences": n_supported,
        "conclusion_sentences": n_conclusions,
        "support_by": support_by,
        **{k: _share(sum(truth.get(k, [])), len(truth.get(k, []))) for k in TRUTH_CHECKS},
        "embed": embed,
        "threshold": threshold if embed else None,
        "per_sample": per,
    }
