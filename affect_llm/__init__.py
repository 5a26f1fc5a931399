"""affect-llm: what a person feels in a video, audio clip or text, why, and the evidence.

    >>> import affect_llm
    >>> result = affect_llm.analyze("clip.mp4")          # or analyze(text="I can't believe it!")
    >>> result.label, result.probabilities, result.explanation, result.cues

The flow runs one way: media -> cues -> evidence -> LLM -> :class:`Analysis`. Each stage is usable alone:
:mod:`affect_llm.media`, :mod:`affect_llm.cues.speech`, :mod:`affect_llm.cues.prosody`,
:mod:`affect_llm.evidence`, :mod:`affect_llm.llm.reasoner`; :mod:`affect_llm.models` is the model registry.
"""

from __future__ import annotations

from pathlib import Path

from .config import (
    MELD_LABELS,
    MediaOptions,
    PipelineConfig,
    PipelineOptions,
    ProsodyOptions,
    ReasonerOptions,
    SpeechOptions,
)
from .errors import AffectLLMError, InputError, MediaError, MediaTooLong, ModelIntegrityError, ModelNotFound
from .types import Analysis, Cue, MediaInfo, Modality, Segment, Transcript, Word

__version__ = "0.1.0"

def analyze(
    source: str | Path | None = None,
    *,
    text: str | None = None,
    config: PipelineConfig | PipelineOptions | dict | None = None,
    context: str | None = None,
    **options,
) -> Analysis:
    """Analyse a media file or a text.

    ``source`` may be a path (``str`` or ``Path``); a ``str`` that is not an existing file and does not look
    like a file name is taken as text. Use ``text=`` to be explicit. Options as the CLI's flags, by keyword
    (``analyze("clip.mp4", face=False, labels=["joy", "anger"])``: :class:`PipelineOptions`), or a whole
    ``config``. Models load once per process per config (:func:`affect_llm.pipeline.shared_pipeline`).
    """
    from .pipeline import shared_pipeline

    if source is not None and text is None and isinstance(source, str) and _looks_like_text(source):
        source, text = None, source
    return shared_pipeline(config, **options).analyze(source, text=text, context=context)


#: what a media path given as a string may end with (anything else that names no file is taken as text)
_MEDIA_SUFFIXES = {
    ".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts",
    ".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma", ".aiff", ".aif",
}  # fmt: skip


def _looks_like_text(s: str) -> bool:
    """Whether ``analyze("...")`` was given words rather than a media path: an existing file is a path; so is a
    string with a media extension and no whitespace (a missing file then fails as one); everything else --
    "U.S.A", "ok.sure", sentences -- is text."""
    p = Path(s)
    if p.exists():
        return False
    stripped = s.strip()
    return not (p.suffix.lower() in _MEDIA_SUFFIXES and not any(c.isspace() for c in stripped))


__all__ = [
    "analyze", "Analysis", "Cue", "MediaInfo", "Modality", "Segment", "Transcript", "Word",
    "PipelineConfig", "PipelineOptions", "MediaOptions", "SpeechOptions", "ProsodyOptions", "ReasonerOptions", "MELD_LABELS",
    "AffectLLMError", "MediaError", "MediaTooLong", "ModelNotFound", "ModelIntegrityError", "InputError",
]  # fmt: skip
