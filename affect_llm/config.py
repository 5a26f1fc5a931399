"""Options, one frozen model per stage (like whisper's ``DecodingOptions``), gathered in :class:`PipelineConfig`;
and :class:`PipelineOptions`, the flat options every front door takes (the CLI commands, ``serve``, the Python
API, LangChain), which build a ``PipelineConfig`` in one place (:meth:`PipelineOptions.config`).

Each stage takes only its own options. Options are immutable: a changed copy comes from
:meth:`PipelineConfig.updated` (or pydantic's ``model_copy``), never from assigning to a field.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .types import Modality

MELD_LABELS = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
EMORYNLP_LABELS = ["neutral", "joyful", "peaceful", "powerful", "scared", "mad", "sad"]
#: the label set of each dataset with a shipped context model (adapters/context-NAME)
DATASET_LABELS: dict[str, list[str]] = {"meld": MELD_LABELS, "emorynlp": EMORYNLP_LABELS}


class _Options(BaseModel):
    """Immutable, and a misspelt option is an error rather than silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class MediaOptions(_Options):
    max_duration: float = Field(600.0, gt=0, description="refuse media longer than this many seconds")
    sample_rate: int = 16_000


class SpeechOptions(_Options):
    model: str = Field("whisper-tiny.en", description="registry name, Whisper size, local path or HF id")
    backend: Literal["auto", "faster-whisper", "openai-whisper", "fake"] = Field(
        "auto", description="fake: a deterministic stand-in with no model (voiced stretches as placeholder words), "
        "for tests")
    language: Optional[str] = None
    beam_size: int = 5
    vad_filter: bool = Field(True, description="drop non-speech with Silero VAD before decoding")
    compute_type: str = "int8"
    cpu_threads: int = Field(0, description="0 = the cores free when the model loads (affect_llm.threads)")
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0


class ProsodyOptions(_Options):
    pitch_floor: float = 75.0
    pitch_ceiling: float = 600.0
    time_step: float = 0.01
    min_pause: float = Field(0.25, description="silences between words at least this long count as pauses")


class FaceOptions(_Options):
    enabled: bool = True
    fps: float = Field(5.0, gt=0, description="frames per second sampled for face tracking")
    max_faces: int = Field(4, ge=1, description="faces tracked per frame; the main face is chosen among them")
    max_side: int = Field(640, description="frames are downscaled so their longer side is at most this")
    smooth: int = Field(3, ge=1, description="moving-median window (frames) over AU intensities")
    expression: bool = Field(True, description="run the 7-class facial expression model on the main face")
    landmarker: str = "face-landmarker"
    expression_model: str = "fer-mini"


class SceneOptions(_Options):
    """CLIP label matching. No CLIP weights ship on PyPI: with ``model=None`` the stage is skipped with a note."""

    model: Optional[str] = Field(None, description="CLIP by HF id or local path, e.g. openai/clip-vit-base-patch32")
    fps: float = Field(1.0, gt=0)
    labels: Optional[list[str]] = Field(None, description="default: the reasoner's label set")


class ReasonerOptions(_Options):
    model: str = Field("smollm2-135m", description="registry name, local path or HF id of a causal LM")
    labels: list[str] = Field(default_factory=lambda: list(MELD_LABELS))
    explain: bool = True
    #: also ask the LLM for free emotion words (EMER / OV-MER style): Analysis.open_vocabulary
    open_vocab: bool = False
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
    backend: str = Field(
        "transformers", description="where the LLM runs (affect_llm.llm.backends): transformers (in this process), "
        "vllm (a vLLM OpenAI-compatible server: prompts sent as prompt_embeds, the adapter as a LoRA module or "
        "merged), openai (any OpenAI-compatible chat endpoint: no adapter, no soft prompt), fake (deterministic, no "
        "weights: for tests)"
    )
    backend_options: dict[str, Any] = Field(
        default_factory=dict, description="the chosen backend's own options, checked by its options model "
        "(affect_llm.llm.backends; vllm: url, lora, deterministic — affect_llm.llm.vllm.VLLMOptions; openai: url, "
        "model, api_key_env, timeout, retries, concurrency, label_method — affect_llm.llm.openai_chat.OpenAIOptions)"
    )
    check_explanations: bool = Field(
        True, description="check every sentence of an explanation against the evidence, drop one that misquotes, "
        "invents speech, holds a non-word, calls a non-neutral label flat, names another feeling or is unsupported, "
        "and add a sentence for each present modality's strongest cue it left out (affect_llm.explanation)"
    )
    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        from .llm.backends import names  # the registry (no model code is imported)

        if v not in names():
            raise ValueError(f"unknown LLM backend {v!r}; known: {', '.join(names())}")
        return v

    @model_validator(mode="after")
    def _backend_options(self) -> "ReasonerOptions":
        """Check the options against the backend's model (imported only for options given, or a backend other
        than the default, which may require some) and keep them typed (``"false"`` → False)."""
        if self.backend_options or self.backend != type(self).model_fields["backend"].default:
            from .llm.backends import get

            model = get(self.backend).options
            if model is None:
                if self.backend_options:
                    raise ValueError(f"backend {self.backend} takes no options (got {', '.join(self.backend_options)})")
                return self
            try:
                typed = model.model_validate(self.backend_options).model_dump(mode="json", exclude_unset=True)
            except ValidationError as e:  # said as the backend's options, not as fields of this model
                raise ValueError(f"backend {self.backend}: " + "; ".join(_option_error(model, err) for err in e.errors())) from None
            object.__setattr__(self, "backend_options", typed)  # frozen: validated in place, once
        return self

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        v = [s.strip().lower() for s in v if s.strip()]
        if len(v) < 2 or len(set(v)) != len(v):
            raise ValueError("need at least two distinct labels")
        return v


class ContextOptions(_Options):
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


class PipelineConfig(_Options):
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

    @model_validator(mode="before")
    @classmethod
    def _skip_left_out(cls, data: Any) -> Any:
        """Face tracking off and no CLIP model when ``modalities`` leaves them out: set in a copy of the input
        (the caller's option objects are never changed)."""
        if not isinstance(data, dict) or data.get("modalities") is None:
            return data
        kept = {Modality(m) for m in data["modalities"]}
        data = dict(data)
        for section, modality, off in (("face", Modality.face, {"enabled": False}),
                                       ("scene", Modality.scene, {"model": None})):  # fmt: skip
            if modality not in kept:
                given = data.get(section) or {}
                data[section] = given.model_copy(update=off) if isinstance(given, BaseModel) else {**given, **off}
        return data

    def updated(self, **sections: dict) -> "PipelineConfig":
        """A validated copy with some options changed, per section:
        ``cfg.updated(reasoner={"threads": 1}, speech={"cpu_threads": 1})``."""
        data = self.model_dump()
        for section, changes in sections.items():
            if section not in type(self).model_fields:
                raise ValueError(f"no option section {section!r}")
            data[section] = {**data[section], **changes} if isinstance(data[section], dict) else changes
        return type(self).model_validate(data)

    def key(self) -> str:
        """A string that is equal for equal configs (what a pipeline cache is keyed by)."""
        return self.model_dump_json()


def _option_error(model: type[BaseModel], err: dict) -> str:
    """One error of a backend's options model, named as the option (and what it is, when it is missing)."""
    name = ".".join(str(x) for x in err.get("loc", ())) or "options"
    field = model.model_fields.get(name)
    if err.get("type") == "missing" and field is not None and field.description:
        return f"option {name} is required ({field.description})"
    return f"option {name}: {err.get('msg')}"


def _listed(v: Any) -> Any:
    """``"a,b"`` → ``["a", "b"]`` (the CLI's form), a list as it is, ``None``/``""`` → ``None``."""
    if isinstance(v, str):
        v = [x.strip() for x in v.split(",") if x.strip()]
    return v or None


def _off(v: Any) -> Any:
    """``"none"`` (any case) → ``None``: how a model option is switched off on the command line."""
    return None if isinstance(v, str) and v.strip().lower() == "none" else v


class PipelineOptions(_Options):
    """The pipeline's options as every front door takes them, flat and declared once: the CLI's ``chat``,
    ``eval``, ``batch`` and ``serve`` each offer every field as a flag (``--llm``, ``--no-face`` …: the
    ``cli`` entry of a field's ``json_schema_extra`` names its flags), :func:`affect_llm.analyze` and the
    LangChain runnable take them as keywords. :meth:`config` turns them into the nested
    :class:`PipelineConfig` the stages read, in one place. A model option given as ``"none"`` is switched off."""

    llm: str = Field("smollm2-135m", description="LLM: registry name, local path or HF id",
                     json_schema_extra={"cli": ["--llm", "--model"]})  # fmt: skip
    adapter: Optional[str] = Field("auto", description="reasoner LoRA adapter: auto (the shipped one over its base "
                                   "LLM) | a folder | none")  # fmt: skip
    backend: str = Field(
        "transformers", description="LLM backend: transformers (in process) | vllm (implied by --vllm-url) | openai "
        "(any OpenAI-compatible chat endpoint; implied by --llm-url) | fake (deterministic, no weights: tests)")  # fmt: skip
    device: str = Field("auto", description="in-process LLM device: auto (a CUDA GPU when there is one) | cpu | "
                        "cuda | cuda:N")  # fmt: skip
    vllm_url: Optional[str] = Field(None, description="backend vllm: attach to this server (…/v1); default: start "
                                    "one", json_schema_extra={"envvar": "AFFECT_LLM_VLLM_URL"})  # fmt: skip
    vllm_deterministic: bool = Field(
        True, description="a started vLLM server computes one sequence at a time (the same input, the same "
        "output, whatever else it serves); --vllm-batched: faster under concurrent load, not batch-invariant",
        json_schema_extra={"cli": ["--vllm-deterministic/--vllm-batched"]})  # fmt: skip
    llm_url: Optional[str] = Field(
        None, description="backend openai: the chat endpoint's base URL (…/v1): vLLM, llama.cpp, Ollama, LM "
        "Studio, OpenAI", json_schema_extra={"envvar": "AFFECT_LLM_URL"})  # fmt: skip
    llm_model: Optional[str] = Field(None, description="backend openai: the model name the endpoint serves",
                                     json_schema_extra={"envvar": "AFFECT_LLM_MODEL"})  # fmt: skip
    llm_api_key_env: str = Field("OPENAI_API_KEY", description="backend openai: the environment variable that "
                                 "holds the API key")  # fmt: skip
    llm_concurrency: int = Field(4, ge=1, description="backend openai: requests in flight at once")
    load_4bit: bool = Field(False, description="backend transformers: the LLM in 4-bit NF4 through bitsandbytes "
                            "(CUDA only; the adapter applied unmerged)")  # fmt: skip
    backend_option: list[str] = Field(
        default_factory=list, description="KEY=VALUE: an option of the chosen backend (repeat it; vllm: url, lora "
        "auto|module|merged, deterministic)", json_schema_extra={"cli": ["--backend-option"], "repeat": True})  # fmt: skip
    dtype: str = Field("auto", description="LLM dtype: auto | float32 | bfloat16")
    max_new_tokens: int = Field(48, gt=0, description="length limit of explanations and answers (tokens)")
    open_vocab: bool = Field(False, description="also ask the LLM for free emotion words (EMER / OV-MER style; "
                             "eval scores them over the emotion wheels)")  # fmt: skip
    labels: Optional[list[str]] = Field(None, description="comma-separated label set (default: the dataset's, "
                                        "else the context model's, else MELD's 7)")  # fmt: skip
    asr: str = Field("whisper-tiny.en", description="ASR: registry name, Whisper size, path or HF id")
    asr_backend: Literal["auto", "faster-whisper", "openai-whisper", "fake"] = Field(
        "auto", description="auto | faster-whisper | openai-whisper | fake (no model: tests)")
    language: Optional[str] = Field(None, description="spoken language (default: detect)")
    max_duration: float = Field(600.0, gt=0, description="refuse media longer than this (s)")
    face: bool = Field(True, description="track faces (--no-face: skip face tracking)",
                       json_schema_extra={"cli": ["--face/--no-face"]})  # fmt: skip
    face_fps: float = Field(5.0, gt=0, description="frames per second sampled for faces")
    clip: Optional[str] = Field(None, description="CLIP weights (HF id or path) for scene label matching")
    context_model: Optional[str] = Field(
        "auto", description="context model: auto (the dataset's own when shipped, else meld) | meld | emorynlp | "
        "a folder | none")  # fmt: skip
    fusion: Optional[str] = Field("auto", description="fusion weights: auto (the context model's) | meld | "
                                  "emorynlp | a JSON file | none")  # fmt: skip
    modalities: Optional[list[Modality]] = Field(
        None, description="use only these: comma-separated subset of speech,prosody,face,scene,text,context")

    _listed = field_validator("labels", "modalities", mode="before")(classmethod(lambda cls, v: _listed(v)))

    @field_validator("backend_option", mode="before")
    @classmethod
    def _backend_option(cls, v: Any) -> Any:
        """KEY=VALUE strings, one or a list; a dict (the Python API) gives its items."""
        if isinstance(v, dict):
            return [f"{k}={val}" for k, val in v.items()]
        v = [v] if isinstance(v, str) else v
        for o in v or []:
            _key_value(o)  # a malformed one fails here, as an invalid option
        return v
    _none = field_validator("adapter", "context_model", "fusion", "clip", mode="before")(
        classmethod(lambda cls, v: _off(v)))

    def config(self, dataset: Optional[str] = None) -> PipelineConfig:
        """The :class:`PipelineConfig` these options describe. ``dataset`` (``meld``, ``emorynlp``, or another
        name) is what is being analysed, when known: its shipped context model and label set are the defaults."""
        shipped = dataset if dataset in DATASET_LABELS else None
        context = (shipped or "meld") if self.context_model == "auto" else self.context_model
        labels = self.labels or DATASET_LABELS.get(shipped or context or "") or MELD_LABELS
        backend = "vllm" if self.vllm_url else ("openai" if self.llm_url and self.backend == "transformers" else self.backend)
        if backend != "openai" and (self.llm_url or self.llm_model):  # not silently dropped
            from .errors import InputError

            raise InputError(f"--llm-url and --llm-model are the openai backend's; the backend here is {backend}"
                             + (" (--vllm-url chooses vllm)" if self.vllm_url else ""))
        backend_options = dict(_key_value(o) for o in self.backend_option)
        if backend == "transformers" and self.load_4bit:
            backend_options.setdefault("load_4bit", True)
        if backend == "openai":  # the --llm-* flags are the openai backend's options
            given = {"url": self.llm_url, "model": self.llm_model}
            backend_options.update({k: v for k, v in given.items() if v is not None and k not in backend_options})
            backend_options.setdefault("api_key_env", self.llm_api_key_env)
            backend_options.setdefault("concurrency", self.llm_concurrency)
        if backend == "vllm":  # the vLLM flags are the vllm backend's url and deterministic options
            if self.vllm_url:
                backend_options.setdefault("url", self.vllm_url)
            if not self.vllm_deterministic:
                backend_options.setdefault("deterministic", False)
        return PipelineConfig.model_validate({
            "media": {"max_duration": self.max_duration},
            "speech": {"model": self.asr, "backend": self.asr_backend, "language": self.language},
            "face": {"enabled": self.face, "fps": self.face_fps},
            "scene": {"model": self.clip},
            "context": {"model": context, "fusion": self.fusion},
            "reasoner": {"model": self.llm, "adapter": self.adapter, "labels": list(labels),
                         "backend": backend, "backend_options": backend_options, "device": self.device,
                         "dtype": self.dtype,
                         "max_new_tokens": self.max_new_tokens, "open_vocab": self.open_vocab},
            "modalities": self.modalities,
        })  # fmt: skip


def _key_value(option: str) -> tuple[str, str]:
    key, sep, value = option.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"a backend option is KEY=VALUE, not {option!r}")
    return key.strip(), value.strip()


def as_config(config: "PipelineConfig | PipelineOptions | dict | None" = None, **options: Any) -> PipelineConfig:
    """What every front door calls: a :class:`PipelineConfig` from a config, :class:`PipelineOptions`, a dict
    of either, or keyword options (``as_config(llm="…", face=False)``); the defaults when given nothing."""
    if options:
        if config is not None:
            raise ValueError("give a config or keyword options, not both")
        return PipelineOptions.model_validate(options).config()
    if config is None:
        return PipelineConfig()
    if isinstance(config, PipelineOptions):
        return config.config()
    if isinstance(config, dict):
        # flat options ({"llm": …, "face": False}) or the nested config ({"reasoner": {…}, "face": {…}})
        flat = set(config) <= set(PipelineOptions.model_fields) and not any(
            isinstance(v, (dict, BaseModel)) for v in config.values())
        return PipelineOptions.model_validate(config).config() if flat else PipelineConfig.model_validate(config)
    if not isinstance(config, PipelineConfig):
        raise TypeError(f"expected a PipelineConfig, PipelineOptions or dict, not {type(config).__name__}")
    return config
