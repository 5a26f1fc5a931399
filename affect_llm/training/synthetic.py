"""Media-shaped training examples: face and voice cues written by the project's own textualizers
(:func:`affect_llm.cues.face.describe`, :func:`affect_llm.cues.prosody.describe`) from sampled action-unit and
prosody patterns, alone or joined with real utterances, with a label only where the evidence determines one.

No labelled emotional audio or video ships here, so the reasoner has never seen a face or voice cue in training.
These examples show it the cue texts it meets on media:

* **prototype** faces: one EMFACS prototype (:data:`affect_llm.cues.face.FACS_PROTOTYPES`) at a moderate to
  strong intensity, with resting-face noise on the other AUs -> that emotion;
* **neutral** faces: every AU at resting-face noise -> neutral;
* **low** intensity prototypes and **blends** of two prototypes -> no label (the face does not determine one;
  the example only teaches the explanation to describe what is there);
* **voices**: aroused (louder, higher, faster, wider range) or subdued (softer, lower, slower, monotone)
  segments, never a label on their own (arousal does not say which emotion);
* **joined** with an utterance and its gold label: a face that agrees with the words, or one that contradicts
  them (the label stays the words': MELD's annotators labelled the utterance, and the explanation says the face
  and the words do not point the same way).

:func:`media_examples` returns :class:`SyntheticExample` records: the evidence, the label (or None) and the
silver explanation (:func:`affect_llm.training.silver.silver_explanation` plus the agreement sentence). Deterministic
for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..cue_sentences import agreement_sentence
from ..cues import face as face_stage
from ..cues import prosody as prosody_stage
from ..evidence import Evidence
from ..types import Cue, Modality
from .silver import silver_explanation

#: resting-face noise: what neutral faces read on each AU (0-5 scale)
REST = (0.0, 0.8)
#: a prototype's AUs at a determining intensity, and at a low one
STRONG_RANGE, LOW_RANGE = (2.2, 4.6), (1.0, 1.6)
#: FER-style expression probabilities that go with a face, per emotion (FER's class names)
FER_NAME = {v: k for k, v in face_stage.FER_TO_MELD.items()}


@dataclass(frozen=True)
class SyntheticExample:
    evidence: Evidence
    label: str | None
    explanation: str
    kind: str  # prototype | neutral | low | blend | voice | agree | contradict


def _aus(rng: random.Random, emotions: list[str], lo: float, hi: float) -> dict[str, float]:
    aus = {a: round(rng.uniform(*REST), 2) for a in face_stage.AU_NAMES}
    for e in emotions:
        units = list(face_stage.FACS_PROTOTYPES[e])
        if e == "disgust":  # AU9 or AU10 with AU15
            units = [rng.choice(["AU9", "AU10"]), "AU15"]
        for a in units:
            aus[a] = round(max(aus[a], rng.uniform(lo, hi)), 2)
    return aus


def _expression(rng: random.Random, emotion: str | None, strength: float) -> dict[str, float]:
    """FER-style probabilities peaking on ``emotion`` (neutral when None) with ``strength`` of the mass."""
    top = FER_NAME.get(emotion or "neutral", "neutral")
    rest = [k for k in face_stage.EXPRESSIONS if k != top]
    weights = [rng.random() for _ in rest]
    z = sum(weights) or 1.0
    out = {k: (1 - strength) * w / z for k, w in zip(rest, weights)}
    out[top] = strength
    return {k: round(out[k], 4) for k in face_stage.EXPRESSIONS}


def face_cue(aus: dict[str, float], expression: dict[str, float] | None, cue_id: str = "F1",
             span: tuple[float, float] = (0.0, 3.0)) -> Cue:  # fmt: skip
    """An F-cue exactly as :func:`affect_llm.cues.face.face_cues` writes one for these mean AUs."""
    value = {k: round(v, 3) for k, v in aus.items()} | {k: round(v, 4) for k, v in (expression or {}).items()}
    value["visible"] = 1.0
    text = face_stage.describe(aus, expression)
    if cue_id == "F1":
        text = f"main face (the only face in view): {text}"
    return Cue(id=cue_id, modality=Modality.face, start=span[0], end=span[1], text=text, value=value)


def voice_cue(rng: random.Random, aroused: bool, cue_id: str = "P1", span: tuple[float, float] = (0.0, 3.0)) -> Cue:
    """A P-cue as :func:`affect_llm.cues.prosody.prosody_cues` writes one for an aroused or subdued segment."""
    sign = 1 if aroused else -1
    p = prosody_stage.SegmentProsody(
        start=span[0], end=span[1], f0_median_hz=round(rng.uniform(110, 240), 1),
        pitch_st=round(sign * rng.uniform(1.5, 5.0), 2), pitch_range_st=round(rng.uniform(8, 12) if aroused else rng.uniform(1.5, 3), 2),
        pitch_slope_st_s=round(rng.uniform(-1.5, 1.5), 2), final_slope_st_s=None,
        loudness_db=round(sign * rng.uniform(2.5, 8.0), 2), intensity_db=round(rng.uniform(55, 75), 2),
        rate_wps=round(rng.uniform(3.6, 5.0) if aroused else rng.uniform(1.2, 2.0), 2),
        rate_ratio=round(rng.uniform(1.2, 1.6) if aroused else rng.uniform(0.55, 0.8), 3),
        pause_before_s=0.0, pauses=0 if aroused else rng.randint(1, 2), pause_total_s=0.0 if aroused else 0.6,
        voiced_fraction=0.7,
    )  # fmt: skip
    return prosody_stage.prosody_cues([p, p])[0].model_copy(update={"id": cue_id})


def _example(cues: list[Cue], label: str | None, kind: str, face_label: str | None,
             words_label: str | None, missing: list[Modality]) -> SyntheticExample:  # fmt: skip
    ev = Evidence.build(cues, missing)
    shown = label or face_label or "neutral"
    text = silver_explanation(ev, shown)
    dists = {}
    if words_label:
        dists["llm"] = {words_label: 1.0}
    if face_label:
        dists["face"] = {face_label: 1.0}
    agree = agreement_sentence(dists)
    if agree:
        head, tail = text.rsplit(" Therefore", 1)
        text = f"{head} {agree} Therefore{tail}"
    return SyntheticExample(ev, label, text, kind)


def media_examples(n: int, utterances: list[tuple[str, str]] = (), seed: int = 0) -> list[SyntheticExample]:
    """``n`` examples; ``utterances`` (text, gold label) pairs are joined with faces (agreeing or contradicting)
    when given. The mix: a quarter face-only prototypes, a tenth neutral faces, a tenth low-intensity and a tenth
    blends, a tenth voice with a face, the rest joined with utterances (or more prototypes without them)."""
    rng = random.Random(seed)
    emotions = sorted(face_stage.FACS_PROTOTYPES)
    no_audio = [Modality.speech, Modality.prosody]
    out: list[SyntheticExample] = []
    kinds = ["prototype"] * 25 + ["neutral"] * 10 + ["low"] * 10 + ["blend"] * 10 + ["voice"] * 10
    kinds += (["agree"] * 20 + ["contradict"] * 15) if utterances else ["prototype"] * 35
    rng.shuffle(kinds)  # any n gets the mix, not the first kinds of the list
    for i in range(n):
        kind = kinds[i % len(kinds)]
        e = rng.choice(emotions)
        if kind == "neutral":
            aus, expr, flab, label = _aus(rng, [], 0, 0), _expression(rng, None, rng.uniform(0.5, 0.9)), "neutral", "neutral"
        elif kind == "low":
            aus, expr, flab, label = _aus(rng, [e], *LOW_RANGE), _expression(rng, None, rng.uniform(0.35, 0.6)), e, None
        elif kind == "blend":
            other = rng.choice([x for x in emotions if x != e])
            aus, expr, flab, label = _aus(rng, [e, other], *STRONG_RANGE), _expression(rng, e, 0.4), e, None
        else:
            aus = _aus(rng, [e], *STRONG_RANGE)
            while face_stage.facs_reading(aus)[0] != e:  # the face must determine its label: resample until it does
                aus = _aus(rng, [e], *STRONG_RANGE)
            expr, flab, label = _expression(rng, e, rng.uniform(0.5, 0.95)), e, e
        cues = [face_cue(aus, expr)]
        if kind == "voice":
            cues.append(voice_cue(rng, aroused=e in ("anger", "joy", "surprise", "fear")))
            out.append(_example(cues, None, kind, flab, None, [Modality.speech]))
            continue
        if kind in ("agree", "contradict"):
            text, gold = rng.choice(utterances)
            if kind == "contradict":
                others = [x for x in emotions if x != gold] if gold in emotions else emotions
                aus, expr = _aus(rng, [rng.choice(others)], *STRONG_RANGE), None
                cues = [face_cue(aus, expr)]
                flab = face_stage.facs_reading(aus)[0]
            else:
                if gold in emotions:
                    aus, expr = _aus(rng, [gold], *STRONG_RANGE), _expression(rng, gold, 0.8)
                    flab = gold
                else:
                    aus, expr, flab = _aus(rng, [], 0, 0), _expression(rng, None, 0.8), "neutral"
                cues = [face_cue(aus, expr)]
            words = Cue(id="T1", modality=Modality.text, text=f'"{text}"')
            out.append(_example([words, *cues], gold, kind, flab, gold, []))
            continue
        out.append(_example(cues, label, kind, flab, None, no_audio))
    return out
