"""Plain-word sentences about cues: what a cue shows, in words a reader checks against it.

Each sentence cites the cue it is written from and says only what that cue holds: the words actually said
(quoted, with the emotion-bearing words found in them), the dialogue model's reading, the face in plain words
("the cheeks rise and the lip corners pull up (AU6, AU12): a smile"), a voice or scene cue's own text; and
whether the modalities' distributions agree. The explanation check adds them for a modality an explanation
left out (:mod:`affect_llm.explanation`), follow-up answers use them (:mod:`affect_llm.answer`), and the
reasoner's silver training targets are composed of them (:mod:`affect_llm.training.silver`).

    >>> cue_sentence(cue, "joy")
    'In [T1] they say "Oh, that's great!", an exclamation; "great" sounds pleased.'
"""

from __future__ import annotations

import re

from .types import Cue, Modality

#: words that carry an emotion in conversational English (a small hand-made lexicon; matched as whole words)
LEXICON: dict[str, tuple[str, list[str]]] = {
    "joy": ("sounds pleased", ["great", "love", "happy", "glad", "awesome", "wonderful", "yay", "haha", "thanks",
                               "thank", "congratulations", "excited", "amazing", "fun", "nice", "beautiful", "cool",
                               "perfect", "fantastic", "hey", "ha"]),
    "surprise": ("sounds taken aback", ["what", "really", "wow", "whoa", "seriously", "oh my god", "my god", "no way",
                                        "huh", "what?!", "you did", "are you kidding"]),
    "anger": ("sounds irritated", ["hate", "stop", "shut up", "damn", "hell", "stupid", "idiot", "enough", "get out",
                                   "how dare", "sick of", "angry", "mad", "ridiculous", "crap"]),
    "sadness": ("sounds downcast", ["sorry", "miss", "sad", "cry", "lost", "alone", "hurt", "never", "unfortunately",
                                    "died", "wish", "lonely", "broke up"]),
    "disgust": ("sounds repelled", ["ew", "eww", "gross", "disgusting", "yuck", "sick", "nasty", "ugh"]),
    "fear": ("sounds worried", ["scared", "afraid", "oh no", "worried", "nervous", "terrified", "help", "panic",
                                "careful", "dangerous"]),
}  # fmt: skip

_DESCRIBE = {
    "neutral": "a matter-of-fact remark with no strong feeling in the words",
    "joy": "the wording is upbeat",
    "surprise": "the wording reacts to something unexpected",
    "anger": "the wording is sharp",
    "sadness": "the wording is subdued",
    "disgust": "the wording shows distaste",
    "fear": "the wording is uneasy",
}
_QUOTE_WORDS = 8


def emotion_words(text: str, label: str) -> list[str]:
    """The lexicon's words for ``label`` that occur in ``text`` (whole words, case-insensitive), in text order."""
    low = text.lower()
    found = []
    for w in LEXICON.get(label, ("", []))[1]:
        m = re.search(r"(?<![\w'])" + re.escape(w) + r"(?![\w'])", low)
        if m:
            found.append((m.start(), w))
    return [w for _, w in sorted(found)]


def _quote(text: str) -> str:
    words = text.strip().strip('"').split()
    return " ".join(words[:_QUOTE_WORDS]) + (" ..." if len(words) > _QUOTE_WORDS else "")


def _form(text: str) -> str | None:
    t = text.strip().strip('"').rstrip()
    if "!" in t and "?" in t:
        return "an exclamation and a question"
    if t.endswith("!") or "!" in t:
        return "an exclamation"
    if t.endswith("?"):
        return "a question"
    if t.endswith("..."):
        return "trailing off"
    return None


def words_sentence(cue: Cue, label: str, said: str) -> str:
    verb = "they say" if cue.modality == Modality.text else "the speaker says"
    parts = [f'In [{cue.id}] {verb} "{_quote(said)}"']
    form = _form(said)
    if form:
        parts[0] += f", {form}"
    words = emotion_words(said, label)
    if words:
        tone = LEXICON[label][0]
        listed = " and ".join(f'"{w}"' for w in words[:2])
        parts.append(f"{listed} {tone if len(words[:2]) == 1 else tone.replace('sounds', 'sound')}")
    else:
        parts.append(_DESCRIBE.get(label, f"the wording fits {label}"))
    return "; ".join(parts) + "."


def context_sentence(cue: Cue, label: str) -> str:
    dist = cue.value if isinstance(cue.value, dict) else {}
    # D1 reads the earlier utterances, or only the analysed one when no dialogue was given
    what = "The context model, reading the utterance alone," if "no dialogue given" in cue.text else "The conversation so far"
    if not dist:
        return f"[{cue.id}] {what} is taken into account."
    top = max(dist, key=dist.__getitem__)
    if top == label:
        return f"[{cue.id}] {what} points the same way ({label} {dist[top]:.2f})."
    return (f"[{cue.id}] {what} leans to {top} ({dist[top]:.2f}), "
            f"but the other evidence weighs more here.")  # fmt: skip


def _face_sentence(cue: Cue) -> str:
    """The face cue in plain words: its strongest action and the prototype it makes, and the expression model's
    reading, e.g. 'In [F1] the cheeks rise and the lip corners pull up (AU6, AU12): a smile; the expression
    model reads happy 0.58.'"""
    from .cues.face import AU_NAMES, EXPRESSIONS, plain_face

    value = cue.value if isinstance(cue.value, dict) else {}
    if not any(a in value for a in AU_NAMES):
        return _other_sentence(cue)
    # only the AUs the cue's text names (its strongest): the sentence says what the cue says
    aus = {a: float(value[a]) for a in AU_NAMES if a in value and re.search(rf"\b{a}\b", cue.text)}
    text = plain_face(aus) or "no clear facial action"
    expr = {k: float(value[k]) for k in EXPRESSIONS if k in value}
    if expr:
        top = max(expr, key=expr.__getitem__)
        text += f"; the expression model reads {top} {expr[top]:.2f}"
    return f"In [{cue.id}] {text}."


def _other_sentence(cue: Cue) -> str:
    name = {"prosody": "the voice", "face": "the face", "scene": "the scene"}.get(cue.modality.value, "it")
    return f"In [{cue.id}] {name}: {cue.text.rstrip('.')}."


def cue_sentence(cue: Cue, label: str) -> str:
    """One sentence that says what ``cue`` shows, citing it (the building block of silver explanations and of
    :func:`affect_llm.explanation.repair`)."""
    if cue.modality in (Modality.text, Modality.speech):
        return words_sentence(cue, label, said_text(cue))
    if cue.modality == Modality.face:
        return _face_sentence(cue)
    if cue.modality == Modality.context:
        return context_sentence(cue, label)
    return _other_sentence(cue)


#: which distributions speak for which kind of evidence, in the agreement sentence
_KINDS = (("the words", ("llm", "context")), ("the face", ("face", "facs")), ("the scene", ("scene",)))


#: the shape of :func:`agreement_sentence`'s sentence: a conclusion drawn from the per-modality distributions, not
#: a claim about one cue (the faithfulness check counts it as a conclusion)
AGREEMENT = re.compile(r"Over the whole clip, .+: they (?:do not )?point the same way\.")


def agreement_sentence(distributions: dict[str, dict[str, float]] | None) -> str | None:
    """Whether the kinds of evidence that have a distribution (the words, the face, the scene) lean the same way
    over the whole input, and to which labels — "Over the whole clip, the words lean to neutral and the face to
    fear: they do not point the same way." None with fewer than two kinds. It names each kind's pooled leaning,
    so a single cited moment that reads otherwise (one face cue reading fear in a mostly neutral clip) is not
    contradicted by it. The face's leaning is the one the decision used (:func:`affect_llm.decision.pool_face`,
    the FER and FACS readings' geometric mean), and when those two readings lean apart the sentence says so
    ("the face (its expression model reads joy, its action units neutral)"); the words' leaning is the LLM's and
    the context model's summed."""
    if not distributions:
        return None
    from .decision import pool_face

    tops: dict[str, str] = {}
    for name, keys in _KINDS:
        dists = [distributions[k] for k in keys if k in distributions]
        if name == "the face" and len(dists) == 2 and set(dists[0]) == set(dists[1]):
            fer, facs = (max(d, key=d.__getitem__) for d in dists)
            if fer != facs:  # the pooled leaning hides a split: say it
                name = f"the face (its expression model reads {fer}, its action units {facs})"
            dists = [pool_face(*dists)]  # the one face distribution the decision used
        if dists:
            pooled: dict[str, float] = {}
            for d in dists:
                for k, v in d.items():
                    pooled[k] = pooled.get(k, 0.0) + v
            tops[name] = max(pooled, key=pooled.__getitem__)
    if len(tops) < 2:
        return None
    names = list(tops)
    if len(set(tops.values())) == 1:
        both = "both" if len(names) == 2 else "all"
        return (f"Over the whole clip, {', '.join(names[:-1])} and {names[-1]} {both} lean to "
                f"{tops[names[0]]}: they point the same way.")  # fmt: skip
    parts = [f"{names[0]} lean to {tops[names[0]]}"] + [f"{n} to {tops[n]}" for n in names[1:]]
    return f"Over the whole clip, {', '.join(parts[:-1])} and {parts[-1]}: they do not point the same way."


def said_text(cue: Cue) -> str:
    """The words of a T- or S-cue (its quoted text, without the recogniser's confidence)."""
    m = re.match(r'\s*"(.*)"', cue.text, re.S)
    return (m.group(1) if m else cue.text).strip()
