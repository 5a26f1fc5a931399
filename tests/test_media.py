"""media.py on generated media (fast, no models) and on the shared real media (skipped when absent)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from affect_llm import media
from affect_llm.errors import AffectLLMError, MediaError, MediaTooLong

GOOD = ["av_mp4", "video_only_mp4", "silence_wav", "tone_wav", "tone_flac"]


def peak_hz(samples: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / sr)[int(np.argmax(spec))])


# -- probe ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD)
def test_probe_fields(request, name):
    made = request.getfixturevalue(name)
    info = media.probe(made.path)
    assert info.path == str(made.path)
    assert info.duration == pytest.approx(made.duration, abs=0.1)
    assert info.has_audio is made.has_audio
    assert info.has_video is made.has_video
    assert info.audio_codec == made.audio_codec
    assert info.video_codec == made.video_codec
    assert info.sample_rate == made.sample_rate
    assert info.channels == made.channels
    assert info.width == made.width
    assert info.height == made.height
    if made.has_video:
        assert info.fps == pytest.approx(made.fps, rel=0.01)
    else:
        assert info.fps is None


def test_probe_accepts_str_and_path(tone_flac):
    assert media.probe(str(tone_flac.path)) == media.probe(tone_flac.path)


# -- load_audio -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["av_mp4", "tone_wav", "tone_flac"])
def test_load_audio_tone(request, name):
    made = request.getfixturevalue(name)
    audio = media.load_audio(made.path)
    s = audio.samples
    assert s.dtype == np.float32
    assert s.ndim == 1  # mono
    assert audio.sample_rate == media.SAMPLE_RATE == 16_000
    assert s.size == pytest.approx(made.duration * 16_000, rel=0.01)
    assert audio.duration == pytest.approx(made.duration, rel=0.01)
    assert audio.warnings == []
    assert np.isfinite(s).all() and np.abs(s).max() <= 1.0
    # the tone was encoded at amplitude 0.5 (RMS 0.354) in every channel: the downmix and the resampler keep
    # its level (the middle half only: a lossy codec rings where the tone starts and stops)
    mid = s[s.size // 4 : 3 * s.size // 4]
    assert float(np.sqrt(np.mean(mid**2))) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert peak_hz(s, audio.sample_rate) == pytest.approx(made.tone_hz, abs=5)


def test_load_audio_stereo_full_scale_stays_in_range(loud_stereo_flac):
    """Identical channels near full scale: mono must stay within [-1, 1] (FFmpeg's downmix adds 3 dB)."""
    audio = media.load_audio(loud_stereo_flac.path)
    peak = float(np.abs(audio.samples).max())
    assert peak <= 1.0
    assert peak == pytest.approx(0.95, abs=0.02)


def test_load_audio_other_rate(tone_flac):
    audio = media.load_audio(tone_flac.path, sample_rate=8_000)
    assert audio.sample_rate == 8_000
    assert audio.samples.size == pytest.approx(tone_flac.duration * 8_000, rel=0.01)
    assert peak_hz(audio.samples, 8_000) == pytest.approx(tone_flac.tone_hz, abs=5)


def test_load_audio_silence(silence_wav):
    audio = media.load_audio(silence_wav.path)
    assert audio.samples.dtype == np.float32
    assert audio.samples.size == pytest.approx(2.0 * 16_000, rel=0.01)
    assert float(np.abs(audio.samples).max()) == 0.0
    assert audio.warnings == []


def test_load_audio_no_audio_stream(video_only_mp4):
    with pytest.raises(MediaError) as ei:
        media.load_audio(video_only_mp4.path)
    assert str(video_only_mp4.path) in str(ei.value)
    assert "no audio" in ei.value.cause


# -- iter_frames ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["av_mp4", "video_only_mp4"])
def test_iter_frames_rate_and_format(request, frame_red, name):
    made = request.getfixturevalue(name)
    frames = list(media.iter_frames(made.path, fps=2.0))
    # 3 s at 2 frames/s: ~6 frames, about 0.5 s apart, starting at 0
    assert 5 <= len(frames) <= 7
    ts = [f.t for f in frames]
    assert ts[0] == pytest.approx(0.0, abs=0.05)
    assert all(b > a for a, b in itertools.pairwise(ts))
    assert all(0.4 <= b - a <= 0.6 for a, b in itertools.pairwise(ts))
    assert ts[-1] <= made.duration
    for f in frames:
        assert isinstance(f, media.Frame)
        assert f.rgb.dtype == np.uint8
        assert f.rgb.shape == (made.height, made.width, 3)
        # the frame's own colour says which frame it is: right timestamp, RGB (not BGR) order
        i = round(f.t * made.fps)
        r, _g, b = (float(np.median(f.rgb[..., k])) for k in range(3))
        assert r == pytest.approx(frame_red(i), abs=8)
        assert b < 16


@pytest.mark.parametrize("fps", [0.5, 1.0, 5.0, 10.0])
def test_iter_frames_count_follows_fps(av_mp4, fps):
    ts = [f.t for f in media.iter_frames(av_mp4.path, fps=fps)]
    assert len(ts) == pytest.approx(av_mp4.duration * fps, abs=1)
    assert all(b - a >= 1 / fps - 0.05 for a, b in itertools.pairwise(ts))  # never faster than asked


def test_iter_frames_fps_above_source_rate(av_mp4):
    assert len(list(media.iter_frames(av_mp4.path, fps=60.0))) == 75  # every one of the 25/s source frames


def test_iter_frames_max_side(av_mp4):
    small = next(iter(media.iter_frames(av_mp4.path, max_side=160)))
    assert small.rgb.shape == (120, 160, 3)
    assert small.rgb.dtype == np.uint8
    full = next(iter(media.iter_frames(av_mp4.path, max_side=None)))
    assert full.rgb.shape == (240, 320, 3)
    same = next(iter(media.iter_frames(av_mp4.path, max_side=640)))  # never upscales
    assert same.rgb.shape == (240, 320, 3)


def test_iter_frames_is_lazy(av_mp4):
    it = media.iter_frames(av_mp4.path, fps=2.0)
    first = next(it)
    assert first.t == pytest.approx(0.0, abs=0.05)
    it.close()  # closing early releases the container without error


def test_iter_frames_no_video_stream(tone_wav):
    with pytest.raises(MediaError) as ei:
        next(iter(media.iter_frames(tone_wav.path)))
    assert str(tone_wav.path) in str(ei.value)
    assert "no video" in ei.value.cause


# -- max_duration -----------------------------------------------------------------------------------------


def test_error_hierarchy():
    assert issubclass(MediaError, AffectLLMError)
    assert issubclass(MediaTooLong, MediaError)


@pytest.mark.parametrize("name", ["av_mp4", "tone_wav", "tone_flac"])
def test_load_audio_too_long(request, name):
    made = request.getfixturevalue(name)
    with pytest.raises(MediaTooLong) as ei:
        media.load_audio(made.path, max_duration=1.0)
    e = ei.value
    assert str(made.path) in str(e)
    assert "max_duration" in str(e)
    assert e.max_duration == 1.0
    assert e.duration == pytest.approx(made.duration, abs=0.1)  # refused at probe time, from the header


@pytest.mark.parametrize("name", ["av_mp4", "video_only_mp4"])
def test_iter_frames_too_long(request, name):
    made = request.getfixturevalue(name)
    with pytest.raises(MediaTooLong) as ei:
        next(iter(media.iter_frames(made.path, max_duration=1.0)))
    assert str(made.path) in str(ei.value)
    assert "max_duration" in str(ei.value)
    assert ei.value.duration == pytest.approx(made.duration, abs=0.1)


def test_within_max_duration_is_fine(av_mp4):
    assert media.load_audio(av_mp4.path, max_duration=3.5).duration == pytest.approx(3.0, rel=0.01)
    assert len(list(media.iter_frames(av_mp4.path, max_duration=3.5))) >= 5
    assert media.load_audio(av_mp4.path, max_duration=None).duration == pytest.approx(3.0, rel=0.01)


def test_too_long_while_decoding_when_header_has_no_duration(monkeypatch, av_mp4):
    """A container that does not state its duration is stopped once decoding passes the limit."""
    monkeypatch.setattr(media, "_duration", lambda container: None)
    with pytest.raises(MediaTooLong) as ei:
        media.load_audio(av_mp4.path, max_duration=1.0)
    assert 1.0 < ei.value.duration < 1.5  # stopped soon after the limit, not after decoding everything
    frames = media.iter_frames(av_mp4.path, fps=2.0, max_duration=1.0)
    with pytest.raises(MediaTooLong) as ei:
        for _ in frames:
            pass
    assert 1.0 < ei.value.duration < 1.5


# -- shared real media ------------------------------------------------------------------------------------


def test_jfk_probe(jfk_flac):
    info = media.probe(jfk_flac)
    assert info.duration == pytest.approx(11.0, abs=0.2)
    assert info.has_audio and not info.has_video
    assert info.audio_codec == "flac"
    assert info.video_codec is None and info.width is None


def test_jfk_load_audio(jfk_flac):
    audio = media.load_audio(jfk_flac)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.duration == pytest.approx(11.0, abs=0.2)
    assert audio.warnings == []
    assert float(np.abs(audio.samples).max()) > 0.05  # speech, not silence


def test_hamilton_probe(hamilton_mp4):
    info = media.probe(hamilton_mp4)
    assert info.has_audio and info.has_video
    assert (info.width, info.height) == (640, 360)
    assert info.audio_codec and info.video_codec
    assert info.duration > 1.0
    assert info.fps and 20 < info.fps < 61


def test_hamilton_frames(hamilton_mp4):
    frames = list(itertools.islice(media.iter_frames(hamilton_mp4, fps=2.0), 4))
    assert len(frames) == 4
    assert all(f.rgb.shape == (360, 640, 3) and f.rgb.dtype == np.uint8 for f in frames)
    assert all(b.t > a.t for a, b in itertools.pairwise(frames))
    small = next(iter(media.iter_frames(hamilton_mp4, max_side=320)))
    assert small.rgb.shape == (180, 320, 3)
