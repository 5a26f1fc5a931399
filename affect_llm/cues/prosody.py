"""Voice -> P-cues: pitch, loudness, speaking rate and pauses per transcript segment.

Pitch and intensity come from Praat (praat-parselmouth). Every segment is described **relative to the
speaker's own baseline in the clip** -- pitch in semitones from the clip's median F0, loudness in dB from the
clip's mean speech intensity, rate as a ratio to the clip's words per second -- because absolute values mean
little across speakers and recordings. With a single segment there is no baseline to compare against, so only
absolute descriptions are given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..config import ProsodyOptions
from ..media import Audio
from ..types import Cue, Modality, Transcript

# Thresholds of the verbal scale; chosen from common prosody practice (1 semitone is a just-noticeable
# pitch change in running speech, 3 dB a clearly audible loudness change, ~20% a clear tempo change).
PITCH_ST = (1.0, 3.0)  # slightly / much higher or lower, semitones
LOUD_DB = (2.0, 6.0)  # slightly / much louder or softer, dB
RATE_RATIO = (1.15, 1.4)  # faster / much faster (and reciprocal for slower)
SLOPE_ST_S = (2.0, 6.0)  # rises / rises sharply, semitones per second
RANGE_ST = (3.0, 8.0)  # narrow (monotone) below, wide above
ABS_RATE_WPS = (1.8, 3.6)  # slow below, fast above (English conversational ~2.5 words/s)


@dataclass
class SegmentProsody:
    start: float
    end: float
    f0_median_hz: float | None  # None: no voiced frames
    pitch_st: float | None  # median pitch, semitones re the clip's median F0
    pitch_range_st: float | None  # 10th-90th percentile spread, semitones
    pitch_slope_st_s: float | None  # least-squares slope over the segment
    final_slope_st_s: float | None  # slope over the last 40% (rising / falling ending)
    loudness_db: float  # mean intensity, dB re the clip's mean speech intensity
    intensity_db: float  # absolute mean intensity (dB, uncalibrated)
    rate_wps: float | None  # words per second of articulation (pauses excluded)
    rate_ratio: float | None  # rate / the clip's rate
    pause_before_s: float  # silence before the segment's first word
    pauses: int  # pauses of at least min_pause between words inside the segment
    pause_total_s: float
    voiced_fraction: float


@dataclass
class ProsodyTrack:
    """Frame-level curves, kept for plotting and later fusion."""

    times: np.ndarray
    f0_hz: np.ndarray  # 0 where unvoiced
    intensity_db: np.ndarray


def extract_track(audio: Audio, opts: ProsodyOptions | None = None) -> ProsodyTrack:
    import parselmouth

    o = opts or ProsodyOptions()
    snd = parselmouth.Sound(audio.samples.astype(np.float64), sampling_frequency=audio.sample_rate)
    pitch = snd.to_pitch_ac(time_step=o.time_step, pitch_floor=o.pitch_floor, pitch_ceiling=o.pitch_ceiling)
    f0 = pitch.selected_array["frequency"]
    times = pitch.xs()
    inten = snd.to_intensity(minimum_pitch=o.pitch_floor, time_step=o.time_step)
    idb = np.interp(times, inten.xs(), inten.values[0]) if inten.values.size else np.full_like(times, np.nan)
    return ProsodyTrack(times=np.asarray(times), f0_hz=np.asarray(f0), intensity_db=np.asarray(idb))


def track_timeline(track: ProsodyTrack, step: float = 0.05) -> list[dict]:
    """The pitch and loudness contour for a timeline (one point per ``step`` seconds, the median of the frames
    in it): ``{"t": s, "pitch_hz": F0 or None where unvoiced, "loudness_db": dB or None}``."""
    out: list[dict] = []
    if track.times.size == 0:
        return out
    bins = np.floor(track.times / step).astype(np.int64)
    for b in np.unique(bins):
        sel = bins == b
        f0 = track.f0_hz[sel]
        db = track.intensity_db[sel]
        voiced, finite = f0[f0 > 0], db[np.isfinite(db)]
        out.append({"t": round(float((b + 0.5) * step), 3),
                    "pitch_hz": round(float(np.median(voiced)), 1) if voiced.size * 2 >= f0.size else None,
                    "loudness_db": round(float(np.median(finite)), 1) if finite.size else None})  # fmt: skip
    return out


def _slope(t: np.ndarray, y: np.ndarray) -> float | None:
    if len(t) < 5 or np.ptp(t) < 0.1:
        return None
    return float(np.polyfit(t, y, 1)[0])


def measure(
    audio: Audio, transcript: Transcript, opts: ProsodyOptions | None = None, track: ProsodyTrack | None = None
) -> list[SegmentProsody]:
    """Per-segment prosody measures relative to the clip baseline (``track``: the clip's
    :func:`extract_track`, when it was already computed with these options)."""
    o = opts or ProsodyOptions()
    if not transcript.segments:
        return []
    tr = track if track is not None else extract_track(audio, o)
    in_speech = np.zeros_like(tr.times, dtype=bool)
    for s in transcript.segments:
        in_speech |= (tr.times >= s.start) & (tr.times <= s.end)
    voiced = tr.f0_hz > 0
    # The speaker's usual pitch: the median over segments of each segment's median F0 (in the log domain), so
    # that every segment counts once whatever its length and a few octave errors do not move it.
    seg_medians = [
        np.median(np.log2(tr.f0_hz[(tr.times >= s.start) & (tr.times <= s.end) & voiced]))
        for s in transcript.segments
        if np.any((tr.times >= s.start) & (tr.times <= s.end) & voiced)
    ]
    base_f0 = float(2 ** np.median(seg_medians)) if seg_medians else None
    finite = np.isfinite(tr.intensity_db)
    base_db = float(np.mean(tr.intensity_db[in_speech & finite])) if np.any(in_speech & finite) else 0.0

    def articulation(seg) -> tuple[float, int, float]:
        words = seg.words
        pauses = [b.start - a.end for a, b in zip(words, words[1:]) if b.start - a.end >= o.min_pause]
        span = (words[-1].end - words[0].start) if words else (seg.end - seg.start)
        return max(span - sum(pauses), 1e-3), len(pauses), float(sum(pauses))

    total_words = sum(len(s.words) for s in transcript.segments)
    total_art = sum(articulation(s)[0] for s in transcript.segments if s.words)
    base_rate = total_words / total_art if total_art > 0 and total_words else None

    out = []
    prev_end = 0.0
    for s in transcript.segments:
        m = (tr.times >= s.start) & (tr.times <= s.end)
        v = m & voiced
        f0 = tr.f0_hz[v]
        t = tr.times[v]
        if f0.size and base_f0:
            st = 12 * np.log2(f0 / base_f0)
            pitch_st = float(np.median(st))
            prange = float(np.percentile(st, 90) - np.percentile(st, 10))
            slope = _slope(t, st)
            cut = s.start + 0.6 * (s.end - s.start)
            final = _slope(t[t >= cut], st[t >= cut])
            f0_med = float(np.median(f0))
        else:
            pitch_st = prange = slope = final = f0_med = None
        idb = tr.intensity_db[m & finite]
        mean_db = float(np.mean(idb)) if idb.size else base_db
        art, n_pauses, pause_total = articulation(s)
        rate = len(s.words) / art if s.words else None
        first = s.words[0].start if s.words else s.start
        out.append(
            SegmentProsody(
                start=s.start,
                end=s.end,
                f0_median_hz=f0_med,
                pitch_st=pitch_st,
                pitch_range_st=prange,
                pitch_slope_st_s=slope,
                final_slope_st_s=final,
                loudness_db=mean_db - base_db,
                intensity_db=mean_db,
                rate_wps=rate,
                rate_ratio=(rate / base_rate) if rate and base_rate else None,
                pause_before_s=max(0.0, first - prev_end),
                pauses=n_pauses,
                pause_total_s=pause_total,
                voiced_fraction=float(v.sum() / max(m.sum(), 1)),
            )
        )
        prev_end = s.words[-1].end if s.words else s.end
    return out


def _graded(x: float, cuts: tuple[float, float], up: str, down: str) -> str:
    """'slightly higher' / 'higher' / 'much higher' for |x| at or above cuts[0]; see the scale constants."""
    a, word = abs(x), (up if x > 0 else down)
    if a >= cuts[1]:
        return f"much {word}"
    return word if a >= (cuts[0] + cuts[1]) / 2 else f"slightly {word}"


def describe(p: SegmentProsody, relative: bool) -> str:
    """Words for one segment. ``relative``: compare with the clip baseline (needs two or more segments)."""
    parts: list[str] = []
    if p.f0_median_hz is None:
        parts.append("no voiced pitch (whispered, noisy or very short)")
    else:
        if relative and p.pitch_st is not None:
            if abs(p.pitch_st) < PITCH_ST[0]:
                parts.append("pitch at the speaker's usual level")
            else:
                g = _graded(p.pitch_st, PITCH_ST, "higher", "lower")
                parts.append(f"{g} pitch than the speaker's usual ({p.pitch_st:+.1f} st)")
        else:
            parts.append(f"median pitch {p.f0_median_hz:.0f} Hz")
        if p.pitch_range_st is not None:
            r = p.pitch_range_st
            parts.append(
                f"monotone ({r:.1f} st range)" if r < RANGE_ST[0]
                else f"wide, animated pitch range ({r:.1f} st)" if r >= RANGE_ST[1]
                else f"moderate pitch variation ({r:.1f} st)"
            )  # fmt: skip
        if p.pitch_slope_st_s is not None and abs(p.pitch_slope_st_s) >= SLOPE_ST_S[0]:
            how = "sharply " if abs(p.pitch_slope_st_s) >= SLOPE_ST_S[1] else ""
            d = "rises" if p.pitch_slope_st_s > 0 else "falls"
            parts.append(f"pitch {d} {how}across the phrase ({p.pitch_slope_st_s:+.1f} st/s)")
        if p.final_slope_st_s is not None and abs(p.final_slope_st_s) >= SLOPE_ST_S[1]:
            parts.append("rising ending" if p.final_slope_st_s > 0 else "falling ending")
    if relative:
        if abs(p.loudness_db) < LOUD_DB[0]:
            parts.append("about as loud as the rest of the clip")
        else:
            g = _graded(p.loudness_db, LOUD_DB, "louder", "softer")
            parts.append(f"{g} than the rest of the clip ({p.loudness_db:+.1f} dB)")
    if p.rate_wps is not None:
        if relative and p.rate_ratio is not None:
            r = p.rate_ratio
            if r >= RATE_RATIO[1]:
                parts.append(f"much faster speech than usual ({p.rate_wps:.1f} words/s)")
            elif r >= RATE_RATIO[0]:
                parts.append(f"faster speech than usual ({p.rate_wps:.1f} words/s)")
            elif r <= 1 / RATE_RATIO[1]:
                parts.append(f"much slower speech than usual ({p.rate_wps:.1f} words/s)")
            elif r <= 1 / RATE_RATIO[0]:
                parts.append(f"slower speech than usual ({p.rate_wps:.1f} words/s)")
            else:
                parts.append(f"usual speaking rate ({p.rate_wps:.1f} words/s)")
        else:
            w = p.rate_wps
            pace = "slow" if w < ABS_RATE_WPS[0] else "fast" if w > ABS_RATE_WPS[1] else "moderate"
            parts.append(f"{pace} speech ({w:.1f} words/s)")
    if p.pause_before_s >= 1.0:
        parts.append(f"long pause before ({p.pause_before_s:.1f} s)")
    if p.pauses:
        parts.append(f"{p.pauses} pause{'s' if p.pauses > 1 else ''} inside ({p.pause_total_s:.1f} s)")
    return ", ".join(parts)


def prosody_cues(measures: list[SegmentProsody]) -> list[Cue]:
    relative = len(measures) >= 2
    cues = []
    for i, p in enumerate(measures, 1):
        value = {k: round(float(v), 4) for k, v in asdict(p).items() if v is not None and k not in ("start", "end")}
        cues.append(
            Cue(id=f"P{i}", modality=Modality.prosody, start=p.start, end=p.end, text=describe(p, relative), value=value)
        )
    return cues
