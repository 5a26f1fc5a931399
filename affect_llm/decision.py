"""The label decision: which modality distributions count for an input, how they are combined, and why.

A distribution counts only for evidence of the kind its model was trained and fitted on:

* ``llm`` (the reasoner's label scores) and ``context`` (the dialogue model) were trained on MELD's words. They
  count only when the evidence holds words (an S- or T-cue). On a silent clip their output is a guess about an
  empty transcript -- a text-trained model's prior, mostly neutral -- so they are left out, and said so.
* ``face`` (the FER model's expression probabilities) and ``facs`` (the FACS reading of the action-unit
  pattern, :func:`affect_llm.cues.face.facs_distribution`) are pooled into one face distribution, their
  normalised geometric mean, before fusion: two readings of the same face, neither fitted on labelled video.
* ``scene`` (CLIP) counts as it is.

What remains goes to the fitted :class:`~affect_llm.fusion.ProbabilityFusion`, whose weights are a softmax over
the modalities present, so leaving some out renormalises the others: with words, the weights fitted on MELD dev
(text) decide, and the face and scene join at the fusion's prior for unfitted modalities; without words, the
face (and scene) are all there is, and each unfitted input gets an equal share. Without a fusion file the
pooled face decides a wordless input, and the LLM one with words.

:func:`decide` is pure (no models): the pipeline calls it, and the tests call it with made-up distributions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .fusion import ProbabilityFusion

#: distributions of models trained on words: they count only when the evidence holds words
VERBAL = ("llm", "context")
#: what each distribution is, for the sentence that says why the decision went as it did
SOURCE_NAMES = {"llm": "the LLM's label scores", "context": "the dialogue context model",
                "face": "the face (FER expression and FACS reading of the AUs, pooled)",
                "scene": "the scene (CLIP)"}  # fmt: skip


@dataclass(frozen=True)
class Decision:
    """The decided label, its probabilities, the fusion weights (empty: no fusion), which distributions went
    in, which were left out and why, and one sentence saying all that."""

    label: str
    probabilities: dict[str, float]
    weights: dict[str, float] = field(default_factory=dict)
    used: tuple[str, ...] = ()
    left_out: dict[str, str] = field(default_factory=dict)
    reason: str = ""


def pool_face(face: dict[str, float] | None, facs: dict[str, float] | None) -> dict[str, float] | None:
    """The normalised geometric mean of the FER and FACS distributions (either alone when the other is None or
    on another label set: the FER one, when both are but differ)."""
    if face is None or facs is None:
        return face or facs
    if set(face) != set(facs):
        return face
    labels = list(face)
    g = np.sqrt(np.clip([face[k] for k in labels], 1e-6, 1) * np.clip([facs.get(k, 0.0) for k in labels], 1e-6, 1))
    return {k: float(v) for k, v in zip(labels, g / g.sum())}


def decide(distributions: dict[str, dict[str, float]], labels: list[str], *, has_words: bool,
           fusion: ProbabilityFusion | None = None) -> Decision:  # fmt: skip
    """Decide the label from the per-modality ``distributions`` (``llm``, ``context``, ``face``, ``facs``,
    ``scene``; any may be absent) on ``labels``; ``has_words``: whether the evidence holds speech or text."""
    left_out: dict[str, str] = {}
    if not has_words:  # the LLM always could have scored; say why it did not count (the pipeline skips it)
        left_out["llm"] = "trained on words, and there are none"
    inputs: dict[str, dict[str, float]] = {}
    for name, dist in distributions.items():
        if name in ("face", "facs"):
            continue
        if name in VERBAL and not has_words:
            left_out[name] = "trained on words, and there are none"
            continue
        inputs[name] = dist
    fer, facs = distributions.get("face"), distributions.get("facs")
    on_labels = [d for d in (fer, facs) if d is not None and set(d) == set(labels)]
    if len(on_labels) == 1 and fer is not None and facs is not None:  # one of the two is on another label set
        left_out["facs" if on_labels[0] is fer else "face"] = "not on the label set"
        face = on_labels[0]
    else:
        face = pool_face(fer, facs)
    if face is not None:
        inputs["face"] = face
    if not inputs:
        raise InputError("no distribution to decide from")
    weights: dict[str, float] = {}
    probs: dict[str, float] | None = None
    if fusion is not None:
        try:
            fused = fusion.fuse(inputs)
        except InputError as e:
            left_out["fusion"] = str(e)
        else:
            left_out.update(fused.ignored)
            if set(fused.distribution) == set(labels):
                probs, weights = fused.distribution, fused.weights
                inputs = {m: inputs[m] for m in fused.used}
    if probs is None:  # no (usable) fusion: one distribution decides, the LLM's with words, else the face's
        order = ["llm", "face", "context", "scene"] if has_words else ["face", "scene"]
        name = next((m for m in order if m in inputs and set(inputs[m]) == set(labels)), None)
        if name is None:
            raise InputError("no distribution on the label set to decide from")
        probs, inputs = inputs[name], {name: inputs[name]}
    label = max(probs, key=probs.__getitem__)
    return Decision(label, dict(probs), weights, tuple(inputs), left_out, _reason(label, inputs, weights, left_out))


def _reason(label: str, used: dict, weights: dict[str, float], left_out: dict[str, str]) -> str:
    if weights:
        parts = ", ".join(f"{SOURCE_NAMES.get(m, m)} {weights[m]:.2f}" for m in sorted(weights, key=lambda m: -weights[m]))
        text = f"{label}: fused from {parts}"
    else:
        (m,) = used
        text = f"{label}: from {SOURCE_NAMES.get(m, m)} alone"
    skipped = [f"{SOURCE_NAMES.get(m, m)} ({why})" for m, why in left_out.items() if m in SOURCE_NAMES]
    if skipped:
        text += "; left out: " + "; ".join(skipped)
    return text + "."
