"""Silver explanations: training targets for the reasoner, written from an example's own evidence.

Every sentence cites a cue that is in that example's evidence and says only what that cue shows
(:mod:`affect_llm.cue_sentences`): the words actually said, quoted with their emotion-bearing words, a voice,
face or scene cue in plain words, the dialogue model's reading. Nothing is cited that is not there. The closing
line follows EMER's gold explanations ("Therefore, it is inferred that ...").

    >>> silver_explanation(evidence, "joy")
    'In [T1] they say "Oh, that's great!", an exclamation; "great" sounds pleased. [D1] The conversation so far
     points the same way (joy 0.61). Therefore, the speaker's emotional state is joy.'
"""

from __future__ import annotations

from ..cue_sentences import context_sentence, cue_sentence, emotion_words, said_text, words_sentence
from ..evidence import Evidence
from ..types import Modality


def silver_explanation(evidence: Evidence, label: str, max_other: int = 2, max_spoken: int = 2) -> str:
    """A short explanation of ``label`` from ``evidence`` that cites only its cues (see the module docstring)."""
    sentences = []
    spoken = [c for c in evidence.cues if c.modality in (Modality.text, Modality.speech) and said_text(c)]
    with_words = [c for c in spoken if emotion_words(said_text(c), label)]
    for cue in (with_words or spoken)[:max_spoken]:
        sentences.append(words_sentence(cue, label, said_text(cue)))
    others = [c for c in evidence.cues if c.modality in (Modality.prosody, Modality.face, Modality.scene)]
    sentences += [cue_sentence(c, label) for c in others[:max_other]]
    sentences += [context_sentence(c, label) for c in evidence.cues if c.modality == Modality.context]
    sentences.append(f"Therefore, the speaker's emotional state is {label}.")
    return " ".join(sentences)
