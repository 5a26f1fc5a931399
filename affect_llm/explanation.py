"""Explanations that are true by construction: every sentence the LLM wrote is checked against the evidence, a
sentence that fails is dropped, and a present modality whose strongest cue no kept sentence cites gets a
sentence written from that cue.

A sentence **fails** when it

* **misquotes**: a double-quoted span is not, word for word, in the text of a cue it cites (or of any cue, when
  it cites none);
* **invents speech**: it says someone says, said, mentions, shouts … something while the evidence has no words
  (no S- or T-cue);
* holds a **non-word**: an alphabetic token that is in neither the English word list (Debian's ``wamerican``,
  ``/usr/share/dict/american-english``), the evidence, the labels, nor :data:`DOMAIN_WORDS`;
* is **flat for a non-neutral label**: "no strong feeling", "matter-of-fact", "neutral tone", "does not indicate
  a particular feeling", … (:data:`FLAT`) while the decided label is not neutral;
* **speaks of a conversation** ("the conversation so far", "earlier") when no dialogue was given;
* **contradicts the label**: "the speaker feels X", "is X" (an adjective: angry, sad, happy …) or "X is the
  emotion" for another label X, not negated;
* cites an id the evidence does not have, or makes a claim none of its cited cues supports
  (:func:`affect_llm.metrics.faithfulness.check_sentences`, the rule the eval's "supported claim sentences"
  figure uses).

The **strongest cue** of a modality (:func:`strongest_cues`): the face cue whose AU pattern matches an EMFACS
prototype best (else the one with the strongest AU), the speech/text cue with the most emotion words for the
label (else the first), the voice cue that departs most from the speaker's usual (most graded words), the
first context and scene cues. :mod:`affect_llm.metrics.faithfulness` measures all of this on any explanation;
:func:`repair` is what the pipeline applies to the LLM's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .evidence import Evidence, cited_ids
from .metrics.faithfulness import QUOTED as _QUOTE  # one definition of a quote and of its plain words
from .metrics.faithfulness import plain_words
from .textnorm import normalize
from .types import Cue, Modality

#: where the English word list is looked for (Debian/Ubuntu ``wamerican``; ``words`` is its alternatives link)
WORD_LISTS = ("/usr/share/dict/american-english", "/usr/share/dict/words")
#: words an explanation may use that a general word list lacks
DOMAIN_WORDS = frozenset(["au", "aus", "facs", "emfacs", "fer", "clip", "meld", "emorynlp", "prosody", "prosodic", "semitone", "semitones", "db", "hz", "wps", "asr", "whisper", "llm", "lora", "mediapipe", "blendshape", "blendshapes", "dimpler", "puller", "lowerer", "raiser", "tightener", "wrinkler", "depressor", "stretcher", "ok", "okay"])
#: wording that calls an utterance emotionally flat (a failure for any label but neutral)
FLAT = re.compile(
    r"matter[- ]of[- ]fact|no (?:strong |particular |clear |real |obvious )?(?:feeling|emotion|emotional tone|sentiment)"
    r"(?! words?\b)|(?:sounds|is|seems) (?:emotionally )?neutral|neutral (?:tone|remark|statement|wording|expression)"
    r"|(?:do|does|did)(?: not|n't) (?:indicate|show|express|convey|carry) (?:a |any )?(?:particular |strong |clear )?"
    r"(?:feeling|emotion)|no sign of (?:any )?(?:feeling|emotion)|emotionally flat|flat (?:tone|remark|statement)"
    r"|\bemotionless\b|\bunemotional\b",
    re.IGNORECASE,
)
#: a claim about a conversation or another party to it (wrong when the context model read the utterance alone)
CONVERSATION_CLAIM = re.compile(
    r"\b(?:conversation|so far|before this|(?:earlier|previous|prior) (?:lines?|utterances?|turns?|remarks?|exchange)"
    r"|the other (?:side|person|speaker|party)|(?:the|a) listener)\b",
    re.IGNORECASE,
)
#: "says / said / mentions …": a claim that words were spoken
SPEECH_CLAIM = re.compile(
    r"\b(?:say|says|said|saying|mentions?|mentioned|tells?|told|asks?|asked|exclaim(?:s|ed)?|repl(?:y|ies|ied)"
    r"|speaks?|spoke|shout(?:s|ed)?|yell(?:s|ed)?|respond(?:s|ed)?|utters?|uttered)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_FEELS = re.compile(
    r"\b(not |n't |never |no longer )?(?:feels?|felt|feeling|is|seems|sounds|looks|emotion(?:al state)? is|emotion was)"
    r"\s+(?:clearly |really |very |quite |so |a |an |some )*([a-z]+)",
    re.IGNORECASE,
)
_IS_THE_EMOTION = re.compile(r"\b([a-z]+) is the (?:emotion|feeling)", re.IGNORECASE)
#: adjectives -> the label they name
ADJECTIVES = {"angry": "anger", "mad": "anger", "furious": "anger", "sad": "sadness", "unhappy": "sadness",
              "happy": "joy", "joyful": "joy", "glad": "joy", "scared": "fear", "afraid": "fear",
              "frightened": "fear", "fearful": "fear", "surprised": "surprise", "astonished": "surprise",
              "disgusted": "disgust", "calm": "neutral"}  # fmt: skip


@lru_cache(maxsize=1)
def word_list() -> frozenset[str] | None:
    """The lowercased English word list, or None when no list is installed (then no word is called a non-word;
    ``scripts/install.sh`` installs ``wamerican``)."""
    for p in WORD_LISTS:
        path = Path(p)
        if path.is_file():
            return frozenset(w.strip().lower() for w in path.read_text(errors="ignore").split())
    return None


def misquotes(sentence: str, cues: Sequence[Cue]) -> list[str]:
    """The double-quoted spans of ``sentence`` that are not word for word in a cited cue's text (any cue's when
    the sentence cites none). A trailing "..." of a shortened quote is ignored."""
    by_id = {c.id: c for c in cues}
    cited = [by_id[i] for i in cited_ids(sentence) if i in by_id] or list(cues)
    texts = [f" {plain_words(c.text)} " for c in cited]
    bad = []
    for q in _QUOTE.findall(normalize(sentence)):
        p = plain_words(q.replace("...", " ").replace("…", " "))
        if p and not any(f" {p} " in t for t in texts):
            bad.append(q)
    return bad


def non_words(sentence: str, cues: Sequence[Cue], labels: Iterable[str] = ()) -> list[str]:
    """Alphabetic tokens of ``sentence`` that no word list, cue, label or domain term holds."""
    words = word_list()
    if words is None:
        return []
    allowed = set(DOMAIN_WORDS) | {lab.lower() for lab in labels}
    for c in cues:
        allowed.update(w.lower() for w in _WORD.findall(c.text))
    out = []
    for tok in _WORD.findall(re.sub(r"\[[A-Z]+\d+\]", " ", sentence)):
        low = tok.lower()
        base = low.removesuffix("'s")
        if base in allowed or low in allowed or base in words or low in words:
            continue
        if len(base) <= 2 or tok.isupper():  # initials and acronyms (AU, FER) are not judged
            continue
        out.append(tok)
    return out


def is_flat(sentence: str) -> bool:
    return bool(FLAT.search(sentence))


def contradicts(sentence: str, label: str, labels: Iterable[str]) -> bool:
    """Whether the sentence says the feeling is another of ``labels`` than ``label`` ("feels neutral", "is
    angry", "Anger is the emotion"); a negated one ("does not feel anger") does not count."""
    others = {lab.lower() for lab in labels} - {label.lower()}
    named = [m.group(2) for m in _FEELS.finditer(sentence) if not m.group(1)]
    named += [m.group(1) for m in _IS_THE_EMOTION.finditer(sentence)]
    return any(ADJECTIVES.get(w.lower(), w.lower()) in others for w in named)


def has_words(cues: Sequence[Cue]) -> bool:
    return any(c.modality in (Modality.speech, Modality.text) for c in cues)


def has_dialogue(cues: Sequence[Cue]) -> bool:
    """Whether the context model read earlier utterances (its D-cue says "no dialogue given" when it did not)."""
    return any(c.modality == Modality.context and "no dialogue given" not in c.text for c in cues)


def sentence_problems(sentence: str, cues: Sequence[Cue], label: str, labels: Sequence[str]) -> list[str]:
    """Why a sentence of an explanation of ``label`` fails (empty: it passes), checks in the module docstring
    except support, which needs :func:`~affect_llm.metrics.faithfulness.check_sentences`."""
    problems = []
    ids = {c.id for c in cues}
    if any(i not in ids for i in cited_ids(sentence)):
        problems.append("cites an id not in the evidence")
    if bad := misquotes(sentence, cues):
        problems.append("misquote: " + ", ".join(f'"{q}"' for q in bad))
    if not has_words(cues) and SPEECH_CLAIM.search(sentence):  # (a quote not in a cue is a misquote)
        problems.append("speech claimed, but there are no words")
    if CONVERSATION_CLAIM.search(sentence) and not has_dialogue(cues):
        problems.append("speaks of a conversation, but no dialogue was given")
    if bad := non_words(sentence, cues, labels):
        problems.append("non-word: " + ", ".join(bad))
    if label != "neutral" and is_flat(sentence):
        problems.append(f"flat wording for {label}")
    if contradicts(sentence, label, labels):
        problems.append(f"names another feeling than {label}")
    return problems


# --- strongest cues -------------------------------------------------------------------------------------


def _face_strength(cue: Cue) -> float:
    from .cues.face import AU_NAMES, facs_matches

    value = cue.value if isinstance(cue.value, dict) else {}
    aus = {a: float(value[a]) for a in AU_NAMES if a in value}
    if not aus:
        return -1.0
    return max(facs_matches(aus).values()) * 5 + max(aus.values()) / 5


def _voice_strength(cue: Cue) -> float:
    t = cue.text.lower()
    return 2 * t.count("much ") + 2 * t.count("sharply") + t.count("slightly") * 0.5 + len(re.findall(r"higher|lower|louder|softer|faster|slower|rises|falls|wide|narrow", t))


def strongest_cues(cues: Sequence[Cue], label: str) -> dict[Modality, Cue]:
    """Per present modality, the cue an explanation of ``label`` must mention (see the module docstring). Cues
    that say a face was not visible do not count as a present face."""
    from .cue_sentences import emotion_words, said_text

    out: dict[Modality, Cue] = {}
    groups: dict[Modality, list[Cue]] = {}
    for c in cues:
        groups.setdefault(c.modality, []).append(c)
    for m, group in groups.items():
        if m == Modality.face:
            seen = [c for c in group if _face_strength(c) >= 0]
            if seen:
                out[m] = max(seen, key=_face_strength)
        elif m in (Modality.speech, Modality.text):
            spoken = [c for c in group if said_text(c)]
            if spoken:
                out[m] = max(spoken, key=lambda c: len(emotion_words(said_text(c), label)))
        elif m == Modality.prosody:
            out[m] = max(group, key=_voice_strength)
        else:
            out[m] = group[0]
    return out


# --- repair ---------------------------------------------------------------------------------------------


#: how the notes :meth:`Repaired.notes` writes begin (front ends show them with the explanation)
CHECK_NOTES = ("dropped from the explanation", "added to the explanation")


@dataclass
class Repaired:
    """An explanation after :func:`repair`, and what was changed: each dropped sentence with its problems, and
    the cue id of each sentence added for a modality the LLM left out."""

    text: str
    dropped: list[tuple[str, list[str]]] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        out = [f'dropped from the explanation: "{s}" ({"; ".join(p)})' for s, p in self.dropped]
        if self.added:
            out.append("added to the explanation: a sentence for " + ", ".join(self.added) + " (the LLM left it out)")
        return out


_ARTICLE = re.compile(r"\b([Aa]n?) ([a-z][a-z-]*)")
_QUOTED = re.compile(r'"[^"]*"|“[^”]*”')


def fix_articles(sentence: str) -> str:
    """"a"/"an" agreeing with the next word by its first letter ("an matter-of-fact remark" → "a …", "a angry
    tone" → "an …"), outside quotes (a quote is a cue's exact words). Only plain lowercase words: "an AU12",
    "a unique", "a one-off", "an hour" stay as written (the sound, not the letter, decides there)."""

    def fix(m: re.Match) -> str:
        art, word = m.group(1), m.group(2)
        if word[0] in "aeio" and art.lower() == "a" and not word.startswith("one"):
            return f"{art}n {word}"
        if word[0] not in "aeiouh" and art.lower() == "an":
            return f"{art[0]} {word}"
        return m.group(0)

    parts, last = [], 0
    for q in _QUOTED.finditer(sentence):
        parts += [_ARTICLE.sub(fix, sentence[last : q.start()]), q.group(0)]
        last = q.end()
    parts.append(_ARTICLE.sub(fix, sentence[last:]))
    return "".join(parts)


def repair(text: str, evidence: Evidence, label: str, labels: Sequence[str], opening: str,
           distributions: dict[str, dict[str, float]] | None = None) -> Repaired:  # fmt: skip
    """Keep the sentences of ``text`` that pass every check (and the support rule), then add a sentence from
    each present modality's strongest cue that no kept sentence cites. ``opening`` ("The speaker feels joy.")
    is kept as the first sentence; ``distributions`` (per modality) say whether the kinds of evidence agree."""
    from .cue_sentences import agreement_sentence, cue_sentence
    from .metrics.faithfulness import check_sentences

    cues = list(evidence.cues)
    body = text.strip()
    if body.startswith(opening):
        body = body[len(opening):].strip()
    kept, dropped = [], []
    for check in check_sentences(body, cues, labels=labels):
        problems = sentence_problems(check.text, cues, label, labels)
        if check.kind == "claim" and not check.supported and not problems:
            problems.append("no cited cue supports it")
        if problems:
            dropped.append((check.text, problems))
        elif check.kind == "claim" and check.text not in kept:  # conclusions only repeat the opening
            kept.append(fix_articles(check.text))
    mentioned = {i for s in kept for i in cited_ids(s)}
    added = []
    for cue in strongest_cues(cues, label).values():
        if cue.id not in mentioned:
            kept.append(cue_sentence(cue, label))
            added.append(cue.id)
            mentioned.add(cue.id)
    agree = agreement_sentence(distributions)
    if agree:
        kept.append(agree)
    return Repaired(" ".join([opening, *kept]).strip(), dropped, added)
