"""Prosody on synthetic voices whose pitch, loudness and timing we set, so the descriptions can be checked."""

import numpy as np
import pytest

from affect_llm.cues import prosody
from affect_llm.media import Audio
from affect_llm.types import Segment, Transcript, Word

SR = 16_000


def voice(f0_start, f0_end, dur, amp=0.3):
    """A glottal-like harmonic tone with a linear F0 glide (Praat tracks it like a voiced vowel)."""
    t = np.arange(int(dur * SR)) / SR
    f0 = np.linspace(f0_start, f0_end, t.size)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    return (amp * x / np.max(np.abs(x))).astype(np.float32)


def silence(dur):
    return np.zeros(int(dur * SR), np.float32)


def words(start, end, n):
    edges = np.linspace(start, end, n + 1)
    return [Word(start=float(a), end=float(b), word=f"w{i}", probability=0.9) for i, (a, b) in enumerate(zip(edges, edges[1:]))]


def seg(start, end, n_words, ws=None):
    return Segment(start=start, end=end, text="x " * n_words, words=ws or words(start, end, n_words))


def test_relative_pitch_loudness_rate():
    # segment 1: 120 Hz, quiet, 2 words/s; segment 2: 190 Hz (+8 st), 4x amplitude (+12 dB), 5 words/s
    audio = np.concatenate([voice(120, 120, 2.0, amp=0.05), silence(0.5), voice(190, 190, 2.0, amp=0.2)])
    tr = Transcript(text="", segments=[seg(0.0, 2.0, 4), seg(2.5, 4.5, 10)])
    m = prosody.measure(Audio(audio), tr)
    assert len(m) == 2
    assert m[1].pitch_st - m[0].pitch_st == pytest.approx(12 * np.log2(190 / 120), abs=0.5)
    assert m[1].loudness_db - m[0].loudness_db == pytest.approx(12.0, abs=1.5)
    assert m[0].f0_median_hz == pytest.approx(120, rel=0.03)
    assert m[1].rate_ratio > 1.4 > m[0].rate_ratio
    cues = prosody.prosody_cues(m)
    assert [c.id for c in cues] == ["P1", "P2"]
    assert "higher pitch than the speaker's usual" in cues[1].text
    assert "louder than the rest of the clip" in cues[1].text
    assert "lower pitch" in cues[0].text and "softer" in cues[0].text
    assert "faster speech than usual" in cues[1].text
    assert cues[1].value["pitch_st"] > 0 and cues[1].start == 2.5


def test_rising_and_falling_glides():
    audio = np.concatenate([voice(110, 220, 1.5), silence(0.3), voice(220, 110, 1.5)])
    tr = Transcript(text="", segments=[seg(0.0, 1.5, 4), seg(1.8, 3.3, 4)])
    m = prosody.measure(Audio(audio), tr)
    # an octave in 1.5 s = 12 st / 1.5 s = 8 st/s
    assert m[0].pitch_slope_st_s == pytest.approx(8.0, abs=1.5)
    assert m[1].pitch_slope_st_s == pytest.approx(-8.0, abs=1.5)
    c = prosody.prosody_cues(m)
    assert "pitch rises sharply" in c[0].text and "rising ending" in c[0].text
    assert "pitch falls sharply" in c[1].text


def test_pauses_and_monotone_single_segment_is_absolute():
    audio = np.concatenate([voice(150, 150, 1.0), silence(0.8), voice(150, 150, 1.0)])
    ws = words(0.0, 1.0, 2) + words(1.8, 2.8, 2)
    tr = Transcript(text="", segments=[seg(0.0, 2.8, 4, ws)])
    (m,) = prosody.measure(Audio(audio), tr)
    assert m.pauses == 1 and m.pause_total_s == pytest.approx(0.8, abs=0.01)
    assert m.rate_wps == pytest.approx(4 / 2.0, rel=0.01)  # pause excluded from articulation time
    text = prosody.describe(m, relative=False)
    assert "median pitch 150 Hz" in text and "monotone" in text and "1 pause inside (0.8 s)" in text
    assert "usual" not in text  # one segment: no baseline to compare against


def test_unvoiced_segment_and_empty_transcript():
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    tr = Transcript(text="", segments=[seg(0.0, 1.0, 2)])
    (m,) = prosody.measure(Audio(noise), tr)
    assert m.f0_median_hz is None
    assert "no voiced pitch" in prosody.describe(m, relative=False)
    assert prosody.measure(Audio(noise), Transcript(text="")) == []


def test_the_timeline_contour_is_binned_medians_with_unvoiced_gaps():
    """10 ms frames → 50 ms points: each point the median of its frames; pitch None where most frames are
    unvoiced; loudness None where no frame has a finite value."""
    times = np.arange(0.005, 0.3, 0.01)  # 30 frames, 6 bins of 5
    f0 = np.array([100, 110, 120, 130, 140] + [0, 0, 0, 200, 210] + [150] * 5 + [0] * 5 + [90, 0, 95, 0, 100] + [180] * 5, float)
    db = np.array([60.0] * 25 + [np.nan] * 5)
    pts = prosody.track_timeline(prosody.ProsodyTrack(times=times, f0_hz=f0, intensity_db=db))
    assert [p["t"] for p in pts] == [0.025, 0.075, 0.125, 0.175, 0.225, 0.275]
    assert [p["pitch_hz"] for p in pts] == [120.0, None, 150.0, None, 95.0, 180.0]
    assert [p["loudness_db"] for p in pts] == [60.0] * 5 + [None]


def test_a_clip_contour_follows_a_rising_tone():
    sr = 16000
    t = np.arange(0, 1.0, 1 / sr)
    freq = 120 + 80 * t  # 120 → 200 Hz
    audio = Audio(samples=(0.3 * np.sin(2 * np.pi * np.cumsum(freq) / sr)).astype(np.float32), sample_rate=sr)
    pts = prosody.track_timeline(prosody.extract_track(audio))
    pitched = [(p["t"], p["pitch_hz"]) for p in pts if p["pitch_hz"] is not None]
    assert len(pitched) >= 15
    assert pitched[0][1] < 140 and pitched[-1][1] > 180
    assert all(b[1] >= a[1] - 2 for a, b in zip(pitched, pitched[1:]))  # rising throughout
