"""Media decoding with PyAV: probe once, then audio as 16 kHz mono float32 and frames as a bounded stream.

Every failure is a :class:`~affect_llm.errors.MediaError` naming the file and the cause. A file with no audio
or no video stream is not an error: :func:`probe` says which streams exist and the pipeline reports the
missing modality. Inputs longer than ``max_duration`` are refused before decoding (or as soon as decoding
passes the limit when the container does not state its duration), so memory stays bounded.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import MediaError, MediaTooLong
from .types import MediaInfo

SAMPLE_RATE = 16_000

#: default refusal threshold (seconds); the CLI's --max-duration changes it
DEFAULT_MAX_DURATION = 600.0


@dataclass
class Audio:
    samples: np.ndarray  # float32, mono, [-1, 1]
    sample_rate: int = SAMPLE_RATE
    warnings: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass
class Frame:
    t: float  # seconds from the start
    rgb: np.ndarray  # H x W x 3 uint8


def _open(path: str | Path):
    import av

    p = Path(path)
    if not p.exists():
        raise MediaError(p, "no such file")
    if p.is_dir():
        raise MediaError(p, "is a directory, not a media file")
    if p.stat().st_size == 0:
        raise MediaError(p, "empty file (0 bytes)")
    if not os.access(p, os.R_OK):
        raise MediaError(p, "permission denied")
    try:
        return av.open(str(p), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise MediaError(p, f"not a readable media file ({_ffmpeg_reason(e)})") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise MediaError(p, f"not a readable media file ({e})") from None


def _ffmpeg_reason(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return " ".join(str(msg).split()) or type(e).__name__


def _codec_name(stream) -> str | None:
    try:
        return stream.codec_context.name
    except Exception:
        return None


def probe(path: str | Path, max_duration: float | None = None) -> MediaInfo:
    """Read the container header: duration and which streams exist. With ``max_duration``, a longer stated
    duration raises :class:`MediaTooLong` here, before anything is decoded."""
    with _open(path) as c:
        a = c.streams.audio[0] if c.streams.audio else None
        v = c.streams.video[0] if c.streams.video else None
        if a is None and v is None:
            raise MediaError(path, "has no audio or video stream")
        _check_duration(path, c, max_duration)
        duration = _duration(c)
        fps = None
        if v is not None and v.average_rate:
            fps = float(v.average_rate)
        return MediaInfo(
            path=str(path),
            duration=duration if duration is not None else float("nan"),
            has_audio=a is not None,
            has_video=v is not None,
            audio_codec=_codec_name(a) if a is not None else None,
            video_codec=_codec_name(v) if v is not None else None,
            sample_rate=a.codec_context.sample_rate if a is not None else None,
            channels=a.codec_context.channels if a is not None else None,
            width=v.codec_context.width if v is not None else None,
            height=v.codec_context.height if v is not None else None,
            fps=fps,
        )


def _duration(container) -> float | None:
    if container.duration:
        return container.duration / 1_000_000
    best = None
    for s in container.streams:
        if s.duration and s.time_base:
            d = float(s.duration * s.time_base)
            best = d if best is None else max(best, d)
    return best


def _check_duration(path, container, max_duration: float | None) -> None:
    d = _duration(container)
    if max_duration is not None and d is not None and d > max_duration:
        raise MediaTooLong(path, d, max_duration)


def _first_stream(container, path, kind: str, max_duration: float | None):
    """The first ``kind`` ("audio" / "video") stream, after the duration check, set to decode threaded."""
    streams = getattr(container.streams, kind)
    if not streams:
        raise MediaError(path, f"has no {kind} stream")
    _check_duration(path, container, max_duration)
    stream = streams[0]
    stream.thread_type = "AUTO"
    return stream


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, max_duration: float | None = DEFAULT_MAX_DURATION) -> Audio:
    """Decode the first audio stream to mono float32 at ``sample_rate``.

    A stream that breaks off part-way (a truncated file) keeps what decoded and says so in ``warnings``;
    one that yields nothing at all is an error.
    """
    import av

    with _open(path) as c:
        stream = _first_stream(c, path, "audio", max_duration)
        # mono and stereo are averaged here: FFmpeg's own stereo->mono downmix adds 3 dB (L+R at -3 dB each),
        # so identical channels near full scale came out beyond [-1, 1]; wider layouts keep FFmpeg's matrix,
        # which weights the centre (dialogue) channel properly, and are clipped
        mix_here = (stream.codec_context.channels or 1) <= 2
        resampler = av.AudioResampler(format="fltp", layout=None if mix_here else "mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        n = 0
        limit = None if max_duration is None else int(max_duration * sample_rate)
        warnings: list[str] = []
        try:
            for frame in c.decode(stream):
                for out in resampler.resample(frame):
                    arr = _to_mono(out)
                    chunks.append(arr)
                    n += arr.size
                if limit is not None and n > limit:
                    raise MediaTooLong(path, n / sample_rate, max_duration)  # type: ignore[arg-type]
            for out in resampler.resample(None):
                chunks.append(_to_mono(out))
        except av.error.FFmpegError as e:
            if not chunks:
                raise MediaError(path, f"audio could not be decoded ({_ffmpeg_reason(e)})") from None
            warnings.append(f"audio decoding stopped at {n / sample_rate:.1f} s ({_ffmpeg_reason(e)}); file truncated?")
        except (av.codec.codec.UnknownCodecError, NotImplementedError) as e:  # pragma: no cover - codec-specific
            raise MediaError(path, f"unsupported audio codec ({e})") from None
        stated = _stated_audio_duration(c, stream)
    if not chunks:
        raise MediaError(path, "audio stream holds no decodable samples")
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    np.clip(samples, -1.0, 1.0, out=samples)
    got = samples.size / sample_rate
    # a file cut short often decodes without any error (FLAC, WAV, faststart MP4): the samples just stop
    if not warnings and stated is not None and got < stated - max(0.5, 0.05 * stated):
        warnings.append(f"audio ends at {got:.1f} s but the file says {stated:.1f} s; file truncated?")
    return Audio(samples=samples, sample_rate=sample_rate, warnings=warnings)


def _to_mono(frame) -> np.ndarray:
    arr = frame.to_ndarray()  # planar: channels x samples
    return arr[0] if arr.shape[0] == 1 else arr.mean(axis=0, dtype=np.float32)


def _stated_audio_duration(container, stream) -> float | None:
    """The audio stream's length as the file states it; the container's only when nothing else could set it."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and not container.streams.video:
        return container.duration / 1_000_000
    return None


def iter_frames(
    path: str | Path,
    fps: float = 2.0,
    max_side: int | None = 640,
    max_duration: float | None = DEFAULT_MAX_DURATION,
    warnings: list[str] | None = None,
) -> Iterator[Frame]:
    """Yield RGB frames sampled at about ``fps`` with their timestamps; one frame in memory at a time. A stream
    that breaks off after some frames (a truncated or damaged file) ends there, with a line in ``warnings``."""
    import av

    with _open(path) as c:
        stream = _first_stream(c, path, "video", max_duration)
        step = 1.0 / fps if fps > 0 else 0.0
        next_t = 0.0
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        yielded, last_t = 0, 0.0
        try:
            for frame in c.decode(stream):
                if frame.time is None:
                    continue
                t = float(frame.time) - start
                if max_duration is not None and t > max_duration:
                    raise MediaTooLong(path, t, max_duration)
                if t + 1e-6 < next_t:
                    continue
                # the epsilon: t / step is often a hair under a whole number (0.6 / 0.1 = 5.999...), and
                # flooring that would schedule the next frame at t itself, sampling well above ``fps``
                next_t = (math.floor(t / step + 1e-6) + 1) * step if step else 0.0
                w, h = frame.width, frame.height
                if max_side and max(w, h) > max_side:
                    scale = max_side / max(w, h)
                    frame = frame.reformat(width=int(w * scale) // 2 * 2, height=int(h * scale) // 2 * 2)
                yield Frame(t=t, rgb=frame.to_ndarray(format="rgb24"))
                yielded += 1
                last_t = t
        except av.error.FFmpegError as e:
            if not yielded:
                raise MediaError(path, f"video could not be decoded ({_ffmpeg_reason(e)})") from None
            if warnings is not None:
                warnings.append(f"video decoding stopped after {last_t:.1f} s ({_ffmpeg_reason(e)}); file truncated? "
                                "face and scene cues cover only the frames before")
