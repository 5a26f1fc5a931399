"""Answers to follow-up questions about an analysis, held to the evidence like explanations are.

The instruct model (the reasoner's base LLM, *without* the label-tuned adapter: that one answers with a label
word) writes an answer with the evidence, the decision and the explanation in context. Each of its sentences is
checked as an explanation's are (:func:`affect_llm.explanation.sentence_problems` and the support rule); the
sentences that pass are kept. When what is left does not answer -- fewer than :data:`MIN_WORDS` words or no cue
cited, as the 135M model's answers mostly are -- the answer is built from the cues the question is about:

* a question about one kind of evidence (the face, the voice, the words, the conversation, the scene) gets that
  kind's strongest cue in plain words, or says that the input has none (and why) and what it has instead;
* "why" gets the cues the explanation cites and the decision;
* "what would change your mind" (or "are you sure", "could it be …") gets the runner-up label and what evidence
  would point to it, and names the modalities that are missing;
* anything else gets the label and the strongest cue of each modality.
"""

from __future__ import annotations

import re

from .evidence import cited_ids
from .explanation import CHECK_NOTES, sentence_problems, strongest_cues
from .types import Analysis, Modality

#: an answer shorter than this, or citing no cue, is completed from the evidence
MIN_WORDS = 8

#: question words -> the modality asked about
ASKED = {
    Modality.face: r"face|facial|smil\w*|expression|look(?:s|ed)?|eyes?|brows?|mouth|frown\w*|grin\w*",
    Modality.prosody: r"voice|tone|pitch|loud\w*|sound(?:s|ed)?|intonation|shout\w*|whisper\w*",
    Modality.speech: r"say|said|says|words?|wording|transcript|speech|spoken|mean",
    Modality.context: r"conversation|dialogue|context|before|earlier",
    Modality.scene: r"scene|background|setting|room|place",
}
NAMES = {Modality.face: "face", Modality.prosody: "voice", Modality.speech: "words", Modality.text: "words",
         Modality.context: "dialogue context", Modality.scene: "scene"}  # fmt: skip
_WHY = re.compile(r"\b(?:why|how do you know|what makes|what shows|reasons?)\b", re.IGNORECASE)
_DOUBT = re.compile(r"\b(?:change your mind|what would|what could|could it be|are you sure|sure|confident|instead|"
                    r"otherwise|alternatives?|else|wrong)\b", re.IGNORECASE)  # fmt: skip



def _asked(question: str) -> list[Modality]:
    q = question.lower()
    return [m for m, pat in ASKED.items() if re.search(rf"\b(?:{pat})\b", q)]


def checked_sentences(text: str, analysis: Analysis) -> list[str]:
    """The sentences of a model answer that pass every explanation check against ``analysis``' cues."""
    from .metrics.faithfulness import check_sentences

    labels = list(analysis.probabilities)
    kept = []
    for check in check_sentences(text, analysis.cues, labels=labels):
        if sentence_problems(check.text, analysis.cues, analysis.label, labels):
            continue
        if check.kind != "claim" or not check.supported:  # a conclusion adds nothing an answer needs
            continue
        kept.append(check.text)
    return kept


def _cue_lines(analysis: Analysis, ids: list[str]) -> list[str]:
    from .cue_sentences import cue_sentence

    by_id = {c.id: c for c in analysis.cues}
    return [cue_sentence(by_id[i], analysis.label) for i in ids if i in by_id]


def grounded(analysis: Analysis, question: str) -> str:
    """An answer to ``question`` built from the analysis' cues (the cases in the module docstring)."""
    label, probs = analysis.label, analysis.probabilities
    strongest = strongest_cues(analysis.cues, label)
    present = {Modality.speech if m == Modality.text else m: c for m, c in strongest.items()}
    lines: list[str] = []
    asked = _asked(question)
    if asked and not _DOUBT.search(question):  # a question about one kind of evidence: that kind first
        notes = [n for n in analysis.notes if not n.startswith(CHECK_NOTES)]
        for m in asked:
            if m in present:
                lines += _cue_lines(analysis, [present[m].id])
            else:
                why = next((n for n in notes if NAMES[m].split()[0] in n or m.value in n), None)
                lines.append(f"This input has no {NAMES[m]} evidence{f' ({why})' if why else ''}, so that cannot be "
                             f"told from it.")  # fmt: skip
        if not any(cited_ids(s) for s in lines) and present:
            first = next(iter(present.values()))
            lines.append(f"What the evidence does show: {_cue_lines(analysis, [first.id])[0]}")
        return " ".join(lines)
    ranked = sorted(probs, key=lambda k: -probs[k])
    if not present:  # no cue shows anything (e.g. only "no face was visible")
        cue = analysis.cues[0]
        return (f"The label {label} ({probs[label]:.2f}) has no cue behind it: the only evidence, [{cue.id}], says "
                f"{cue.text.rstrip('.')}.")  # fmt: skip
    if _DOUBT.search(question) and len(ranked) > 1:
        named = [w for w in re.findall(r"[a-z]+", question.lower()) if w in probs and w != label]
        second = named[0] if named else ranked[1]
        lines.append(f"The reading is {label} ({probs[label]:.2f}); " + (f"{second} has {probs[second]:.2f}." if named
                     else f"the next most likely is {second} ({probs[second]:.2f})."))  # fmt: skip
        lines.append(_would_change(analysis, second, present))
        basis = [c.id for c in present.values()][:2]
        lines.append("What holds it at " + label + " now: " + " ".join(_cue_lines(analysis, basis)))
        return " ".join(lines)
    ids = analysis.cited_cues[:2] or [c.id for c in present.values()][:2]
    lines.append(f"It reads {label} ({probs[label]:.2f}) from this evidence: " + " ".join(_cue_lines(analysis, ids)))
    if analysis.decision:
        lines.append(f"How the label was decided: {analysis.decision}")
    return " ".join(lines)


def _would_change(analysis: Analysis, other: str, present: dict[Modality, object]) -> str:
    from .cue_sentences import LEXICON
    from .cues.face import PROTOTYPE_WORDS

    parts = []
    if Modality.speech in present:
        words = LEXICON.get(other, ("", []))[1][:3]
        if words:
            # unquoted: a quote says these words were spoken, and they are only what would be evidence
            parts.append("words such as " + (", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]))
    if Modality.face in present and other in PROTOTYPE_WORDS:
        parts.append(PROTOTYPE_WORDS[other] + " on the face")
    missing = [NAMES[m] for m in analysis.missing_modalities if m in NAMES]
    if other == "neutral":
        text = f"It would move to neutral if the evidence showed no sign of {analysis.label}"
    else:
        text = f"It would move to {other} with evidence for it" + (": " + " or ".join(parts) if parts else "")
    if missing:
        text += f"; the {' and the '.join(dict.fromkeys(missing))}, not available here, could also tip it"
    return text + "."


def answer(model_text: str, analysis: Analysis, question: str) -> str:
    """The model's checked sentences when they answer (≥ :data:`MIN_WORDS` words, a cue cited), else the
    grounded answer followed by whichever of the model's sentences passed."""
    kept = checked_sentences(model_text, analysis) if analysis.cues else []
    text = " ".join(kept)
    if len(text.split()) >= MIN_WORDS and cited_ids(text):
        return text
    if not analysis.cues:
        return "There is no usable evidence for this input, so the question cannot be answered from it."
    return " ".join([grounded(analysis, question), *kept]).strip()

