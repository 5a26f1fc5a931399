"""Speech -> transcript with word timestamps -> S-cues.

Backends: faster-whisper (default; any size by registry name, Whisper size, local CTranslate2 folder or HF id)
and openai-whisper (when the package is installed and a local checkpoint exists; it is never downloaded).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import models
from ..config import SpeechOptions
from ..errors import ModelNotFound
from ..threads import default_threads
from ..types import Cue, Modality, Segment, Transcript, Word

FASTER_WHISPER_SIZES = {
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en",
    "large-v1", "large-v2", "large-v3", "large", "distil-large-v3", "large-v3-turbo", "turbo",
}  # fmt: skip


class Transcriber(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray) -> Transcript: ...


class FasterWhisper:
    def __init__(self, opts: SpeechOptions):
        from faster_whisper import WhisperModel

        self.opts = opts
        ref = opts.model
        try:
            location = models.resolve(ref, kind="asr").location
        except ModelNotFound:
            if ref not in FASTER_WHISPER_SIZES:
                raise
            # a plain Whisper size that is not in our registry: faster-whisper's own (cached) download
            from faster_whisper.utils import download_model

            try:
                location = download_model(ref, local_files_only=not models.downloads_allowed())
            except Exception:
                raise ModelNotFound(
                    f"Whisper {ref!r} is not in the local cache and downloads are off; set "
                    "AFFECT_LLM_ALLOW_DOWNLOAD=1, or use whisper-tiny.en / whisper-base (affect-llm models pull)"
                ) from None
        self.name = ref
        self.model = WhisperModel(
            location, device="cpu", compute_type=opts.compute_type, cpu_threads=default_threads(opts.cpu_threads)
        )

    def transcribe(self, audio: np.ndarray) -> Transcript:
        o = self.opts
        segments, info = self.model.transcribe(
            audio,
            language=o.language,
            beam_size=o.beam_size,
            word_timestamps=True,
            vad_filter=o.vad_filter,
            no_speech_threshold=o.no_speech_threshold,
            log_prob_threshold=o.logprob_threshold,
            condition_on_previous_text=False,
        )
        segs = [
            Segment(
                start=float(s.start),
                end=float(s.end),
                text=s.text.strip(),
                words=[
                    Word(start=float(w.start), end=float(w.end), word=w.word.strip(), probability=float(w.probability))
                    for w in (s.words or [])
                ],
                avg_logprob=float(s.avg_logprob),
                no_speech_prob=float(s.no_speech_prob),
            )
            for s in segments
        ]
        return _finish(segs, info.language, o)


class OpenAIWhisper:
    """openai-whisper backend. Loads only a local checkpoint: a path, or one already in openai-whisper's own
    cache (``$XDG_CACHE_HOME/whisper`` or ``~/.cache/whisper``, under the file name openai-whisper gives it,
    e.g. ``turbo`` -> ``large-v3-turbo.pt``). Nothing is downloaded."""

    def __init__(self, opts: SpeechOptions):
        try:
            import whisper
        except ImportError:
            raise ModelNotFound("the openai-whisper backend needs `pip install affect-llm[whisper]`") from None
        ref = opts.model
        ckpt = Path(ref).expanduser()
        if not ckpt.is_file():
            cache = Path(os.getenv("XDG_CACHE_HOME") or Path.home() / ".cache") / "whisper"
            url = getattr(whisper, "_MODELS", {}).get(ref)
            ckpt = cache / (url.rsplit("/", 1)[-1] if url else f"{ref}.pt")
        if not ckpt.is_file():
            raise ModelNotFound(
                f"no openai-whisper checkpoint for {ref!r} (looked for a file path and {ckpt}); "
                "openai-whisper checkpoints are not downloaded by affect-llm"
            )
        self.opts = opts
        self.name = ref
        # a path is loaded as-is (whisper.load_model only downloads for a bare size name)
        self.model = whisper.load_model(str(ckpt), device="cpu")
        # load_model() sets the word-timing cross-attention heads only when given a size name; for an
        # official checkpoint given by path, set them here (else word timestamps use all heads of the upper half)
        heads = getattr(whisper, "_ALIGNMENT_HEADS", {})
        dump = heads.get(ref) or heads.get(ckpt.name.removesuffix(".pt"))
        if dump is not None:
            try:
                self.model.set_alignment_heads(dump)
            except (ValueError, RuntimeError):
                pass  # a custom checkpoint named like an official one, with other dimensions

    def transcribe(self, audio: np.ndarray) -> Transcript:
        o = self.opts
        result = self.model.transcribe(
            np.ascontiguousarray(audio, dtype=np.float32),  # float64 breaks its mel filterbank matmul
            language=o.language,
            word_timestamps=True,
            fp16=False,
            beam_size=o.beam_size if o.beam_size > 1 else None,
            no_speech_threshold=o.no_speech_threshold,
            logprob_threshold=o.logprob_threshold,
            condition_on_previous_text=False,
        )
        segs = [
            Segment(
                start=float(s["start"]),
                end=float(s["end"]),
                text=s["text"].strip(),
                words=[
                    Word(
                        start=float(w["start"]),
                        end=float(w["end"]),
                        word=w["word"].strip(),
                        probability=float(w.get("probability", 0.0)),
                    )
                    for w in s.get("words", [])
                ],
                avg_logprob=float(s["avg_logprob"]),
                no_speech_prob=float(s["no_speech_prob"]),
            )
            for s in result["segments"]
        ]
        return _finish(segs, result.get("language"), o)


def _finish(segs: list[Segment], language: str | None, o: SpeechOptions) -> Transcript:
    # Whisper's own silence rule: likely no speech AND low confidence -> drop (hallucinations on silence/noise).
    kept = [
        s for s in segs
        if s.text and not (
            (s.no_speech_prob or 0) > o.no_speech_threshold and (s.avg_logprob or 0) < o.logprob_threshold
        )
    ]  # fmt: skip
    return Transcript(text=" ".join(s.text for s in kept).strip(), language=language, segments=kept)


class FakeTranscriber:
    """A deterministic stand-in (``backend="fake"``): no model, for tests of the media path. Each voiced stretch
    of the audio (20 ms frames whose RMS is over a tenth of the loudest frame's, gaps under 0.3 s bridged) is a
    segment of placeholder words ``la``, one per started 0.4 s, evenly timed. It hears no words: the transcript
    says nothing about what was said."""

    name = "fake"
    FRAME = 0.02
    GAP = 0.3
    WORD = 0.4

    def __init__(self, opts: SpeechOptions | None = None, sample_rate: int = 16_000):
        self.sr = sample_rate

    def transcribe(self, audio: np.ndarray) -> Transcript:
        n = int(self.FRAME * self.sr)
        samples = np.asarray(audio, dtype=np.float64)
        frames = samples[: len(samples) // n * n].reshape(-1, n)
        rms = np.sqrt((frames**2).mean(axis=1)) if len(frames) else np.zeros(0)
        voiced = rms > max(1e-3, 0.1 * float(rms.max(initial=0.0)))
        spans: list[list[float]] = []
        for i in np.flatnonzero(voiced):
            t0, t1 = i * self.FRAME, (i + 1) * self.FRAME
            if spans and t0 - spans[-1][1] < self.GAP:
                spans[-1][1] = t1
            else:
                spans.append([t0, t1])
        segments = []
        for start, end in spans:
            k = max(1, math.ceil((end - start) / self.WORD - 1e-9))
            step = (end - start) / k
            words = [Word(start=round(start + j * step, 3), end=round(start + (j + 1) * step, 3), word=" la",
                          probability=1.0) for j in range(k)]  # fmt: skip
            segments.append(Segment(start=round(start, 3), end=round(end, 3), text=" ".join(["la"] * k), words=words))
        return Transcript(text=" ".join(s.text for s in segments), language="en", segments=segments)


@lru_cache(maxsize=4)
def _load(opts_json: str) -> Transcriber:
    opts = SpeechOptions.model_validate_json(opts_json)
    backend = opts.backend
    if backend == "fake":
        return FakeTranscriber(opts)
    if backend == "openai-whisper":
        return OpenAIWhisper(opts)
    if backend == "auto" and opts.model.endswith(".pt"):
        return OpenAIWhisper(opts)
    return FasterWhisper(opts)


def load_transcriber(opts: SpeechOptions | None = None) -> Transcriber:
    """A cached transcriber for these options (loading a model once per process)."""
    return _load((opts or SpeechOptions()).model_dump_json())


def speech_cues(transcript: Transcript) -> list[Cue]:
    """One S-cue per segment: the words, with the recogniser's confidence."""
    cues = []
    for i, s in enumerate(transcript.segments, 1):
        conf = math.exp(s.avg_logprob) if s.avg_logprob is not None else None
        text = f'"{s.text}"'
        if conf is not None:
            text += f" (ASR confidence {conf:.2f})"
        value = {"n_words": float(len(s.words))}
        if conf is not None:
            value["confidence"] = round(conf, 4)
        if s.no_speech_prob is not None:
            value["no_speech_prob"] = round(s.no_speech_prob, 4)
        cues.append(Cue(id=f"S{i}", modality=Modality.speech, start=s.start, end=s.end, text=text, value=value))
    return cues


def transcribe(audio: np.ndarray, opts: SpeechOptions | None = None) -> Transcript:
    return load_transcriber(opts).transcribe(audio)
