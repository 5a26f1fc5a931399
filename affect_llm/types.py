"""The types that carry the flow: media -> cues -> evidence -> LLM -> :class:`Analysis`.

Everything a stage hands to the next is one of these pydantic models, so each stage can be used, serialised
and tested alone. ``Analysis`` is the single result shape: the ``--json`` output, the Python API's return
value, and what a batch line and the server's ``affect`` field hold (:meth:`Analysis.summary`).
"""

from __future__ import annotations

from enum import Enum
from typing import Optional

from pydantic import BaseModel, Field


class Modality(str, Enum):
    """What a cue was read from. The cue id prefix is the first letter (S1, P2, F3, C4, T1; D1 for dialogue context)."""

    speech = "speech"  # what was said (ASR transcript)
    prosody = "prosody"  # how it was said (pitch, loudness, rate, pauses)
    face = "face"  # facial action units and expression
    scene = "scene"  # CLIP label matching over frames
    text = "text"  # text given directly, no media
    context = "context"  # the conversation-context model's reading of the dialogue (id prefix D)

    @property
    def prefix(self) -> str:
        return {"speech": "S", "prosody": "P", "face": "F", "scene": "C", "text": "T", "context": "D"}[self.value]


class Word(BaseModel):
    start: float
    end: float
    word: str
    probability: float


class Segment(BaseModel):
    """One ASR segment (roughly a sentence or phrase)."""

    start: float
    end: float
    text: str
    words: list[Word] = Field(default_factory=list)
    avg_logprob: Optional[float] = None
    no_speech_prob: Optional[float] = None


class Transcript(BaseModel):
    text: str
    language: Optional[str] = None
    segments: list[Segment] = Field(default_factory=list)

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]


class Cue(BaseModel):
    """One piece of evidence. ``text`` is what the LLM reads; ``value`` holds the numbers behind it."""

    id: str
    modality: Modality
    start: Optional[float] = None
    end: Optional[float] = None
    text: str
    value: dict[str, float] = Field(default_factory=dict)

    def span(self) -> str:
        if self.start is None or self.end is None:
            return ""
        return f"{self.start:.1f}–{self.end:.1f} s"


class MediaInfo(BaseModel):
    path: str
    duration: float
    has_audio: bool
    has_video: bool
    audio_codec: Optional[str] = None
    video_codec: Optional[str] = None
    sample_rate: Optional[int] = None
    channels: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None


class Analysis(BaseModel):
    """The result of analysing one clip or text."""

    source: str = Field(description="the media path, or 'text' for text input")
    label: str
    probabilities: dict[str, float] = Field(description="label -> probability; sums to 1")
    distributions: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="per-modality label distributions before fusion: 'llm', 'context', 'face' (FER), 'facs' (the AU pattern), 'scene'",
    )
    fusion: dict[str, float] = Field(
        default_factory=dict, description="modality -> its mean weight in the fused probabilities (empty: no fusion)"
    )
    decision: str = Field("", description="why the label is what it is: what was fused or decided alone, and what "
                          "was left out and why (affect_llm.decision)")
    label_method: Optional[str] = Field(
        None, description="how the LLM's distribution was obtained: scored (each label's likelihood as the answer), "
        "logprobs (a chat API's top log-probabilities of the answer), json_schema / json / text (a structured or "
        "plain answer's label and confidence); None: the LLM did not score (no words)")
    open_vocabulary: Optional[list[str]] = Field(
        None, description="the LLM's free emotion words, strongest first (--open-vocab; EMER / OV-MER style), "
        "scored by eval over the emotion wheels; None: not asked")
    explanation: str = ""
    explained_label: Optional[str] = Field(
        None, description="the label the explanation justifies when it is not the decided one (rationale mode, "
        "batch --explain-gold: the dataset's gold label); None: the explanation is of `label`")
    cited_cues: list[str] = Field(default_factory=list, description="cue ids the explanation cites that exist")
    uncited_ids: list[str] = Field(
        default_factory=list, description="ids the explanation mentions that are not in the evidence"
    )
    transcript: Optional[Transcript] = None
    cues: list[Cue] = Field(default_factory=list)
    evidence: str = Field("", description="the evidence block exactly as the LLM read it")
    missing_modalities: list[Modality] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="why a modality is missing, and other caveats")
    media: Optional[MediaInfo] = None
    timeline: dict[str, list[dict]] = Field(
        default_factory=dict,
        description='per-frame signals: {"face": [{"t": s, "aus": {"AU12": 0-5}, "expression": {label: p} | None}], '
        '"prosody": [{"t": s, "pitch_hz": F0 | None (unvoiced), "loudness_db": dB | None}] every 50 ms}',
    )
    models: dict[str, str] = Field(default_factory=dict, description="stage -> model used")
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per stage")

    def cue(self, cue_id: str) -> Cue | None:
        return next((c for c in self.cues if c.id == cue_id), None)

    def summary(self) -> dict:
        """The analysis without the bulky parts (timeline, evidence block, word-level transcript, cue values):
        what a batch line and the server's ``affect`` field hold."""
        return {
            "label": self.label,
            "probabilities": self.probabilities,
            "distributions": self.distributions,
            "fusion": self.fusion,
            "decision": self.decision,
            "label_method": self.label_method,
            "open_vocabulary": self.open_vocabulary,
            "explanation": self.explanation,
            "explained_label": self.explained_label,
            "cited_cues": self.cited_cues,
            "uncited_ids": self.uncited_ids,
            "cues": [c.model_dump(mode="json", include={"id", "modality", "start", "end", "text"}) for c in self.cues],
            "transcript": self.transcript.text if self.transcript else None,
            "missing_modalities": [m.value for m in self.missing_modalities],
            "notes": self.notes,
            "timings": self.timings,
        }
