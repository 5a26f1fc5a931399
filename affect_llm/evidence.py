"""Evidence: the ordered cues with stable ids, the per-source label distributions, and what is missing.

It renders itself through ``prompts/evidence.j2``; the rendered text is exactly what the LLM reads and is
returned in :attr:`Analysis.evidence`, so a reader can check every citation against it.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from . import prompting
from .types import Cue, Modality

MODALITY_NAMES = {
    "speech": "speech", "prosody": "voice", "face": "face", "scene": "scene", "text": "text", "context": "dialogue",
}  # fmt: skip
_ORDER = {m: i for i, m in enumerate(Modality)}

#: a cue id as the explainer writes it: [S1], S1, [P12], [D1] ...
CUE_ID = re.compile(r"\b([SPFCTD])(\d{1,3})\b")


class Evidence(BaseModel):
    cues: list[Cue] = Field(default_factory=list)
    missing: list[Modality] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @classmethod
    def build(cls, cues: list[Cue], missing: list[Modality] = (), notes: list[str] = ()) -> "Evidence":
        """Order cues by time (untimed first), then modality; ids are kept as the stages gave them."""
        ordered = sorted(
            cues, key=lambda c: (c.start is not None, c.start or 0.0, _ORDER[c.modality], int(c.id[1:] or 0))
        )
        ids = [c.id for c in ordered]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate cue ids: {ids}")
        return cls(cues=ordered, missing=list(dict.fromkeys(missing)), notes=list(notes))

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.cues]

    def render(self) -> str:
        return prompting.render("evidence.j2", evidence=self, modality_names=MODALITY_NAMES)


def cited_ids(text: str) -> list[str]:
    """Cue ids mentioned in ``text``, in order of first mention."""
    return list(dict.fromkeys(a + b for a, b in CUE_ID.findall(text)))
