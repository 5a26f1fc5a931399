"""Video frames -> facial action units and expression of the main face -> F-cues.

Two small models, both from PyPI wheels through the registry (:mod:`affect_llm.models`):

* ``face-landmarker``: MediaPipe's Face Landmarker (detector + 478 3-D landmarks + 52 ARKit-style
  blendshapes), run in VIDEO mode so it tracks between frames instead of re-detecting every face.
* ``fer-mini``: a 7-class FER-2013 CNN (64x64 gray) on a square crop around the main face.

**Action units.** Blendshape scores (0-1) are mapped to FACS action units on OpenFace's 0-5 intensity scale
with a per-AU linear ramp (:data:`BLENDSHAPE_AUS`): a floor ``lo`` below which the blendshape is resting-face
noise (neutral faces read 0.05-0.3 on several of them) and a ceiling ``hi`` where the AU counts as maximal.
Two AUs cannot be read from blendshapes: ``cheekSquint`` stays ~0 on real faces, and there is no "lips part"
blendshape; they come from landmark geometry instead (:func:`geometric_aus`), normalised by the inter-ocular
distance so face size and distance to the camera cancel out.

**Main face.** Faces are tracked across frames by box overlap; the main face is the track that is largest and
visible longest or, when speech spans are given, the one whose mouth moves most while someone speaks (the
speaker, not the listener the camera cuts to). The cue says which face was chosen and why.

Numbers are heuristics calibrated on a few real faces (``skimage``'s astronaut, matplotlib's Grace Hopper,
hamilton.mp4), not a trained AU regressor: treat intensities as ordinal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from .. import models
from ..config import FaceOptions
from ..media import Frame
from ..runtime import quiet_native_stderr
from ..types import Cue, Modality

#: FACS names of the action units we report (Ekman & Friesen; the names OpenFace uses)
AU_NAMES: dict[str, str] = {
    "AU1": "inner brow raiser",
    "AU2": "outer brow raiser",
    "AU4": "brow lowerer",
    "AU5": "upper lid raiser",
    "AU6": "cheek raiser",
    "AU7": "lid tightener",
    "AU9": "nose wrinkler",
    "AU10": "upper lip raiser",
    "AU12": "lip corner puller",
    "AU14": "dimpler",
    "AU15": "lip corner depressor",
    "AU17": "chin raiser",
    "AU20": "lip stretcher",
    "AU25": "lips part",
    "AU26": "jaw drop",
    "AU45": "blink",
}

#: AU -> (blendshapes averaged, lo, hi): intensity = 5 * clip((mean - lo) / (hi - lo), 0, 1).
#: ``lo`` is about the highest value we saw on resting faces; ``hi`` a strong but not extreme activation.
#: Left/right pairs are averaged: FACS scores an AU once, and one-sided blendshapes are noisy.
BLENDSHAPE_AUS: dict[str, tuple[tuple[str, ...], float, float]] = {
    "AU1": (("browInnerUp",), 0.10, 0.85),
    "AU2": (("browOuterUpLeft", "browOuterUpRight"), 0.15, 0.75),
    "AU4": (("browDownLeft", "browDownRight"), 0.10, 0.70),
    "AU5": (("eyeWideLeft", "eyeWideRight"), 0.10, 0.60),
    "AU7": (("eyeSquintLeft", "eyeSquintRight"), 0.25, 0.85),
    "AU9": (("noseSneerLeft", "noseSneerRight"), 0.05, 0.60),
    "AU10": (("mouthUpperUpLeft", "mouthUpperUpRight"), 0.10, 0.80),
    "AU12": (("mouthSmileLeft", "mouthSmileRight"), 0.05, 0.95),
    "AU14": (("mouthDimpleLeft", "mouthDimpleRight"), 0.10, 0.60),
    "AU15": (("mouthFrownLeft", "mouthFrownRight"), 0.05, 0.60),
    "AU17": (("mouthShrugLower",), 0.10, 0.80),
    "AU20": (("mouthStretchLeft", "mouthStretchRight"), 0.05, 0.60),
    "AU26": (("jawOpen",), 0.05, 0.70),
    "AU45": (("eyeBlinkLeft", "eyeBlinkRight"), 0.30, 0.80),
}

#: fer-mini's output order (FER-2013)
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

#: an AU counts as active in a cue from this mean intensity (OpenFace: 1 = trace, 2 = slight, 3 = marked ...)
ACTIVE = 1.0
#: intensity words: "strong" from 3.0 (FACS level C, "marked"), "moderate" from 2.0 ("slight", B), else "slight"
STRONG, MODERATE = 3.0, 2.0
#: at most this many AUs are named per cue
TOP_AUS = 3
#: cue windows when no speech spans are given (seconds)
WINDOW_S = 3.0

# Face-mesh landmark indices (MediaPipe canonical face model; "right" = the subject's right = image left).
_EYE_R = (33, 133)  # outer, inner corner
_EYE_L = (263, 362)
_LOWER_LID_R, _LOWER_LID_L = 145, 374
_MOUTH_R, _MOUTH_L = 61, 291
_INNER_LIP_PAIRS = ((82, 87), (13, 14), (312, 317))  # upper / lower inner lip, left of centre to right

# Geometric calibration (see geometric_aus): ratios to the inter-ocular distance.
LIP_GAP_RANGE = (0.03, 0.25)  # closed lips read 0.01-0.035; an open singing mouth 0.2-0.27
CHEEK_RANGE = (1.00, 0.78)  # resting faces 1.00-1.07; the astronaut's broad smile 0.78
JAW_CORRECTION = 0.5  # the lid-to-mouth-corner distance grows by about half the lip gap when the jaw drops


# --- pure functions: blendshapes and landmarks -> AUs -----------------------------------------------------


def _ramp(x: float, lo: float, hi: float) -> float:
    return float(5.0 * min(1.0, max(0.0, (x - lo) / (hi - lo))))


def blendshape_aus(blendshapes: dict[str, float]) -> dict[str, float]:
    """AU intensities (0-5) from MediaPipe blendshape scores (0-1); missing blendshapes count as 0."""
    out = {}
    for au, (names, lo, hi) in BLENDSHAPE_AUS.items():
        mean = sum(float(blendshapes.get(n, 0.0)) for n in names) / len(names)
        out[au] = _ramp(mean, lo, hi)
    return out


def geometric_aus(points: np.ndarray) -> dict[str, float]:
    """AU6 and AU25 (0-5) from face-mesh landmarks ``points`` (N x 3, pixels; z in the same units as x).

    Everything is divided by the inter-ocular distance (IOD, between the two eye centres, each the midpoint
    of its corners), so the numbers do not depend on face size; 3-D distances make them tolerant of head turns.

    * **AU25 lips part** = the inner-lip gap (mean of three upper/lower inner-lip landmark pairs) / IOD,
      ramped from 0.03 (closed lips read 0.01-0.035) to 0.25 (an open, singing mouth reads 0.2-0.27).
    * **AU6 cheek raiser**: a raised cheek pushes the lower eyelid up and bunches the skin towards the lip
      corner, so the distance from the lower-eyelid midpoint to the mouth corner (both sides averaged) / IOD
      shrinks: 1.00-1.07 on resting faces (Grace Hopper 1.02, hamilton.mp4's neutral frames), 0.86 on the
      astronaut's broad smile, 0.78 after the jaw correction. Dropping the jaw lengthens it by about half the
      lip gap, so ``r' = r - 0.5 * gap``, and AU6 ramps from r' = 1.00 (0) to 0.78 (5). The lip corner rising
      (AU12) shortens the same distance, so this AU6 co-varies with AU12 more than true AU6 does -- it reads
      a Duchenne-like cheek lift, not AU6 in isolation -- and faces whose resting proportions differ from the
      calibration set shift it by up to about one intensity point.
    """
    p = np.asarray(points, dtype=np.float64)
    eye_r = p[list(_EYE_R)].mean(axis=0)
    eye_l = p[list(_EYE_L)].mean(axis=0)
    iod = float(np.linalg.norm(eye_l - eye_r))
    if iod <= 1e-6:
        return {"AU6": 0.0, "AU25": 0.0}
    gap = float(np.mean([np.linalg.norm(p[a] - p[b]) for a, b in _INNER_LIP_PAIRS])) / iod
    cheek = (
        np.linalg.norm(p[_LOWER_LID_R] - p[_MOUTH_R]) + np.linalg.norm(p[_LOWER_LID_L] - p[_MOUTH_L])
    ) / 2
    r = float(cheek) / iod - JAW_CORRECTION * gap
    return {"AU6": _ramp(r, *CHEEK_RANGE), "AU25": _ramp(gap, *LIP_GAP_RANGE)}


def face_aus(blendshapes: dict[str, float], points: np.ndarray) -> dict[str, float]:
    """All AUs of one face, in :data:`AU_NAMES` order."""
    both = {**blendshape_aus(blendshapes), **geometric_aus(points)}
    return {au: round(both[au], 3) for au in AU_NAMES}


def moving_median(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving median along axis 0; the window shrinks at the ends (no padding values invented).

    A median, not a mean: one mis-tracked frame (a blink misread as a squint, a hand over the mouth) is dropped
    rather than smeared over its neighbours, while a real change that lasts longer than half the window stays.
    """
    x = np.asarray(x, dtype=np.float64)
    if window <= 1 or len(x) <= 1:
        return x.copy()
    h = window // 2
    lo_pad, hi_pad = h, window - 1 - h
    return np.stack([np.median(x[max(0, i - lo_pad) : i + hi_pad + 1], axis=0) for i in range(len(x))])


# --- tracking and main-face choice ------------------------------------------------------------------------


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Detection:
    """One face in one sampled frame, before the main face is known."""

    frame: int  # index of the sampled frame
    t: float
    bbox: Box
    aus: dict[str, float]  # raw (unsmoothed)
    expression: dict[str, float] | None = None
    track: int = -1


def assign_tracks(
    dets_per_frame: Sequence[Sequence[Detection]], max_gap_s: float = 1.0, min_iou: float = 0.2
) -> int:
    """Link detections into tracks in place (``Detection.track``); return the number of tracks.

    Greedy matching, best overlap first, to tracks last seen at most ``max_gap_s`` ago; a box matches by IoU
    at least ``min_iou`` or, failing that, by its centre lying within half a face size of the track's last box
    (fast head motion at a low sampling rate). A camera cut starts new tracks, which is what we want: the
    speaker filmed from two angles are two shots, and presence is counted per shot.
    """
    last: dict[int, Detection] = {}
    n = 0
    for dets in dets_per_frame:
        if not dets:
            continue
        t = dets[0].t
        live = {k: d for k, d in last.items() if t - d.t <= max_gap_s}
        pairs = []
        for i, d in enumerate(dets):
            for k, prev in live.items():
                o = iou(d.bbox, prev.bbox)
                size = math.sqrt(max(1e-6, (prev.bbox[2] - prev.bbox[0]) * (prev.bbox[3] - prev.bbox[1])))
                dc = math.dist(_centre(d.bbox), _centre(prev.bbox)) / size
                if o >= min_iou or dc <= 0.5:
                    pairs.append((o - dc, i, k))
        used_d: set[int] = set()
        used_k: set[int] = set()
        for _, i, k in sorted(pairs, reverse=True):
            if i in used_d or k in used_k:
                continue
            dets[i].track = k
            used_d.add(i)
            used_k.add(k)
        for d in dets:
            if d.track < 0:
                d.track = n
                n += 1
            last[d.track] = d
    return n


def _centre(b: Box) -> tuple[float, float]:
    return ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)


def _in_spans(t: float, spans: Sequence[tuple[float, float]]) -> bool:
    return any(a <= t <= b for a, b in spans)


def choose_main(
    dets: Sequence[Detection],
    n_tracks: int,
    n_frames: int,
    speech_spans: Sequence[tuple[float, float]] | None = None,
    min_speech_frames: int = 3,
    min_mouth_sd: float = 0.25,
) -> tuple[int | None, str]:
    """Pick the main face's track and say why, e.g. ``main face (1 of 3 faces; largest, visible in 92% ...)``.

    Without speech: the track with the largest ``presence x mean box area`` -- the face the camera is about.
    With speech spans: the face whose mouth opening (AU25 + AU26) varies most over the frames inside the spans
    (sd at least ``min_mouth_sd``, over at least ``min_speech_frames`` frames) -- a speaker's mouth moves, a
    listener's mostly does not, however large the listener's face.
    """
    if n_tracks == 0 or not dets:
        return None, "no face visible"
    by: dict[int, list[Detection]] = {}
    for d in dets:
        by.setdefault(d.track, []).append(d)
    presence = {k: len({d.frame for d in v}) / max(n_frames, 1) for k, v in by.items()}
    area = {
        k: float(np.mean([(d.bbox[2] - d.bbox[0]) * (d.bbox[3] - d.bbox[1]) for d in v]))
        for k, v in by.items()
    }
    score = {k: presence[k] * area[k] for k in by}
    main = max(by, key=lambda k: score[k])
    why: list[str] = []
    if speech_spans:
        sd = {}
        for k, v in by.items():
            mouth = [
                d.aus.get("AU25", 0.0) + d.aus.get("AU26", 0.0) for d in v if _in_spans(d.t, speech_spans)
            ]
            if len(mouth) >= min_speech_frames:
                sd[k] = float(np.std(mouth))
        if sd and max(sd.values()) >= min_mouth_sd:
            main = max(sd, key=lambda k: sd[k])
            if len(by) > 1:
                why.append("its mouth moved most during speech")
            else:
                why.append("its mouth moved during speech")
    if len(by) > 1 and not why:
        if area[main] >= max(area.values()):
            why.append("largest")
        if presence[main] >= max(presence.values()):
            why.append("most often visible")
        if not why:
            why.append("largest x longest visible")
    pct = round(100 * presence[main])
    count = f"1 of {len(by)} faces" if len(by) > 1 else "the only face"
    return main, f"main face ({count}; {', '.join(why + [f'visible in {pct}% of frames'])})"


# --- the models -------------------------------------------------------------------------------------------


class ExpressionModel:
    """fer-mini on a square crop around the landmarks. Its output is already a softmax (sums to 1)."""

    def __init__(self, ref: str = "fer-mini", threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.path = models.resolve(ref, kind="fer").location
        self.interp = Interpreter(model_path=self.path, num_threads=threads)
        self.interp.allocate_tensors()
        self._in = self.interp.get_input_details()[0]["index"]
        self._out = self.interp.get_output_details()[0]["index"]

    @staticmethod
    def crop(rgb: np.ndarray, bbox: Box, margin: float = 0.2) -> np.ndarray:
        """64x64 float32 in [-1, 1]: a square of the box's longer side x (1 + margin), gray, as FER-2013 faces."""
        from PIL import Image

        cx, cy = _centre(bbox)
        half = max(bbox[2] - bbox[0], bbox[3] - bbox[1]) * (1 + margin) / 2
        box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
        g = Image.fromarray(rgb).convert("L").crop(box).resize((64, 64), Image.BILINEAR)
        return (np.asarray(g, np.float32) / 255.0 - 0.5) * 2.0

    def __call__(self, rgb: np.ndarray, bbox: Box) -> dict[str, float]:
        x = self.crop(rgb, bbox)[None, :, :, None]
        self.interp.set_tensor(self._in, x)
        self.interp.invoke()
        p = np.asarray(self.interp.get_tensor(self._out)[0], np.float64)
        if p.min() < 0 or abs(p.sum() - 1) > 1e-3:  # logits (another export of the model): normalise
            p = np.exp(p - p.max())
            p /= p.sum()
        return {label: round(float(v), 4) for label, v in zip(EXPRESSIONS, p)}


def _landmarker(ref: str, max_faces: int):
    from mediapipe.tasks.python import BaseOptions, vision

    path = models.resolve(ref, kind="face").location
    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(path)),
        running_mode=vision.RunningMode.VIDEO,
        output_face_blendshapes=True,
        num_faces=max_faces,
    )
    return vision.FaceLandmarker.create_from_options(opts), str(path)


# --- the track --------------------------------------------------------------------------------------------


@dataclass
class FaceFrame:
    """One sampled frame: how many faces, and the main face's box, AUs (smoothed) and expression if visible."""

    t: float
    n_faces: int
    bbox: Box | None = None
    aus: dict[str, float] = field(default_factory=dict)  # empty: main face not visible in this frame
    expression: dict[str, float] | None = None


@dataclass
class FaceTrack:
    frames: list[FaceFrame]
    fps: float
    n_tracks: int = 0  # distinct faces (tracks) over the clip
    main_track: int | None = None
    reason: str = "no face visible"  # which face was chosen and why
    models: dict[str, str] = field(default_factory=dict)

    @property
    def face_found(self) -> bool:
        """False: no face anywhere in the clip (the caller lists ``face`` in missing_modalities)."""
        return self.main_track is not None

    @property
    def duration(self) -> float:
        return self.frames[-1].t + 1.0 / self.fps if self.frames else 0.0


@dataclass
class Detections:
    """What the models saw, before any choice: every face in every sampled frame."""

    per_frame: list[list[Detection]]
    times: list[float]
    models: dict[str, str]


def track_faces(
    frames: Iterable[Frame],
    opts: FaceOptions | None = None,
    speech_spans: list[tuple[float, float]] | None = None,
) -> FaceTrack:
    """Run the landmarker (and the expression model) over ``frames``; choose the main face; smooth its AUs.

    ``frames`` are the sampled frames (``media.iter_frames(path, opts.fps, opts.max_side)``), in time order.
    Expressions are computed for every face (0.5 ms each) so that the main face can be chosen afterwards.
    """
    o = opts or FaceOptions()
    d = detect_faces(frames, o)
    return build_track(d.per_frame, d.times, o, speech_spans, d.models)


def detect_faces(frames: Iterable[Frame], opts: FaceOptions | None = None) -> Detections:
    """The model half of :func:`track_faces`; it needs no transcript, so it can run while ASR does."""
    import mediapipe as mp

    o = opts or FaceOptions()
    with quiet_native_stderr():  # MediaPipe / TFLite log their set-up from C++ straight to fd 2
        lm, lm_path = _landmarker(o.landmarker, o.max_faces)
        fer = ExpressionModel(o.expression_model) if o.expression else None
    used = {"face": lm_path}
    if fer is not None:
        used["expression"] = str(fer.path)
    per_frame: list[list[Detection]] = []
    times: list[float] = []
    last_ms = -1
    try:
        for i, f in enumerate(frames):
            rgb = np.ascontiguousarray(f.rgb)
            h, w = rgb.shape[:2]
            ms = max(round(f.t * 1000), last_ms + 1)  # VIDEO mode needs strictly increasing timestamps
            last_ms = ms
            with quiet_native_stderr(i == 0):  # the first inference logs too
                res = lm.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), ms)
            dets = []
            for k, marks in enumerate(res.face_landmarks):
                pts = np.array([(p.x * w, p.y * h, p.z * w) for p in marks], np.float64)
                bbox = (
                    float(pts[:, 0].min()),
                    float(pts[:, 1].min()),
                    float(pts[:, 0].max()),
                    float(pts[:, 1].max()),
                )
                shapes = (
                    {c.category_name: c.score for c in res.face_blendshapes[k]}
                    if res.face_blendshapes
                    else {}
                )
                d = Detection(frame=i, t=f.t, bbox=bbox, aus=face_aus(shapes, pts))
                if fer is not None:
                    d.expression = fer(rgb, bbox)
                dets.append(d)
            per_frame.append(dets)
            times.append(f.t)
    finally:
        lm.close()
    return Detections(per_frame, times, used)


def build_track(
    per_frame: list[list[Detection]],
    times: list[float],
    opts: FaceOptions,
    speech_spans: list[tuple[float, float]] | None = None,
    used: dict[str, str] | None = None,
) -> FaceTrack:
    """Tracks, main face, smoothing: everything after the models (pure; the tests feed it synthetic faces)."""
    n_tracks = assign_tracks(per_frame)
    flat = [d for ds in per_frame for d in ds]
    main, reason = choose_main(flat, n_tracks, len(times), speech_spans)
    out = [FaceFrame(t=t, n_faces=len(ds)) for t, ds in zip(times, per_frame)]
    if main is not None:
        mine = [d for d in flat if d.track == main]
        aus = np.array([[d.aus[a] for a in AU_NAMES] for d in mine])
        smooth = np.clip(moving_median(aus, opts.smooth), 0.0, 5.0)
        for d, row in zip(mine, smooth):
            fr = out[d.frame]
            fr.bbox = tuple(round(v, 1) for v in d.bbox)  # type: ignore[assignment]
            fr.aus = {a: round(float(v), 3) for a, v in zip(AU_NAMES, row)}
            fr.expression = d.expression
    return FaceTrack(
        frames=out, fps=opts.fps, n_tracks=n_tracks, main_track=main, reason=reason, models=used or {}
    )


# --- cues and timeline ------------------------------------------------------------------------------------


def _strength(v: float) -> str:
    return "strong" if v >= STRONG else "moderate" if v >= MODERATE else "slight"


def describe(aus: dict[str, float], expression: dict[str, float] | None) -> str:
    """Words for mean AUs (and expression probabilities) over a span: the top active AUs, then the expression."""
    active = sorted(((v, a) for a, v in aus.items() if v >= ACTIVE), reverse=True)[:TOP_AUS]
    if active:
        (v0, a0), rest = active[0], active[1:]
        text = f"{_strength(v0)} {a0} {AU_NAMES[a0]} ({v0:.1f}/5)"
        if rest:
            text += " with " + " and ".join(f"{a} {AU_NAMES[a]} ({v:.1f}/5)" for v, a in rest)
    else:
        text = f"no clear facial action (all AUs below {ACTIVE:.1f}/5)"
    if expression:
        ranked = sorted(expression.items(), key=lambda kv: -kv[1])
        if ranked[0][1] >= 0.5:
            text += f"; expression {ranked[0][0]} {ranked[0][1]:.2f}"
        else:
            text += "; expression mixed: " + ", ".join(f"{k} {p:.2f}" for k, p in ranked[:2])
    return text


def _windows(track: FaceTrack) -> list[tuple[float, float]]:
    if not track.frames:
        return []
    start, end = track.frames[0].t, track.duration
    n = max(1, round((end - start) / WINDOW_S))
    edges = np.linspace(start, end, n + 1)
    return [(round(float(a), 3), round(float(b), 3)) for a, b in pairwise(edges)]


def face_cues(track: FaceTrack, spans: list[tuple[float, float]] | None = None) -> list[Cue]:
    """F-cues: what the main face did during each span (each spoken sentence), or in ~3 s windows.

    The first cue names the main face and why it was chosen; a span in which the main face was not visible
    says so; ``value`` holds the mean AU intensities, the mean expression probabilities and ``visible`` (the
    fraction of the span's frames showing the main face).
    """
    if not track.face_found:
        end = track.duration
        n = len(track.frames)
        return [
            Cue(
                id="F1",
                modality=Modality.face,
                start=0.0 if n else None,
                end=round(end, 3) if n else None,
                text=f"no face was visible in the video ({n} frames sampled at {track.fps:g} fps)",
                value={"visible": 0.0},
            )
        ]
    half = 0.5 / track.fps
    cues = []
    for i, (a, b) in enumerate(spans if spans else _windows(track), 1):
        inside = [f for f in track.frames if a <= f.t <= b]
        if not inside:  # a span shorter than the sampling step: take the frames around it
            inside = [f for f in track.frames if a - half <= f.t <= b + half]
        seen = [f for f in inside if f.aus]
        if not seen:
            text, value = "main face not visible", {"visible": 0.0}
        else:
            aus = {au: float(np.mean([f.aus[au] for f in seen])) for au in AU_NAMES}
            exprs = [f.expression for f in seen if f.expression]
            expr = {k: float(np.mean([e[k] for e in exprs])) for k in EXPRESSIONS} if exprs else None
            visible = len(seen) / len(inside)
            text = describe(aus, expr)
            if visible < 0.5:
                text += f" (face visible in {round(100 * visible)}% of this span)"
            value = {k: round(v, 3) for k, v in aus.items()}
            value.update({k: round(v, 4) for k, v in (expr or {}).items()})
            value["visible"] = round(visible, 3)
        if i == 1:
            text = f"{track.reason}: {text}"
        cues.append(Cue(id=f"F{i}", modality=Modality.face, start=a, end=b, text=text, value=value))
    return cues


def timeline(track: FaceTrack) -> list[dict]:
    """Per sampled frame: ``{"t", "n_faces", "aus": {AU: 0-5}, "expression": {label: p} | None}``.

    ``aus`` is empty in frames where the main face is not visible (plots show a gap there).
    """
    return [
        {"t": round(f.t, 3), "n_faces": f.n_faces, "aus": dict(f.aus), "expression": f.expression}
        for f in track.frames
    ]


#: the FER model's labels -> MELD's
FER_TO_MELD = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "joy", "sad": "sadness",
               "surprise": "surprise", "neutral": "neutral"}  # fmt: skip


def label_distribution(track: FaceTrack, labels: Sequence[str]) -> dict[str, float] | None:
    """The main face's mean expression probabilities over the clip, on ``labels`` when that is MELD's label
    set (None otherwise: mapping FER's classes onto another label set is learned in fusion)."""
    exprs = [f.expression for f in track.frames if f.expression]
    if not exprs or set(labels) != set(FER_TO_MELD.values()):
        return None
    mean = {FER_TO_MELD[k]: float(np.mean([e[k] for e in exprs])) for k in FER_TO_MELD}
    z = sum(mean.values())
    return {lab: mean[lab] / z for lab in labels}


# --- FACS reading: EMFACS-style prototypes --------------------------------------------------------------

#: Emotion prototypes as sets of action units (after Ekman & Friesen's EMFACS and Friesen & Ekman 1983; the
#: combinations FACS-based emotion coding uses for the six basic emotions). Only AUs this module measures are
#: listed: anger's AU23 (lip tightener) has no blendshape or landmark measure here, so anger reads from the brows
#: and lids alone; disgust takes AU9 or AU10 with AU15.
FACS_PROTOTYPES: dict[str, tuple[str, ...]] = {
    "joy": ("AU6", "AU12"),
    "sadness": ("AU1", "AU4", "AU15"),
    "surprise": ("AU1", "AU2", "AU5", "AU26"),
    "anger": ("AU4", "AU5", "AU7"),
    "disgust": ("AU9", "AU10", "AU15"),
    "fear": ("AU1", "AU2", "AU4", "AU5", "AU20", "AU26"),
}
#: plain words for what each AU does to a face (for explanations)
AU_PLAIN: dict[str, str] = {
    "AU1": "the inner brows rise", "AU2": "the outer brows rise", "AU4": "the brows draw down",
    "AU5": "the upper lids rise", "AU6": "the cheeks rise", "AU7": "the lids tighten",
    "AU9": "the nose wrinkles", "AU10": "the upper lip rises", "AU12": "the lip corners pull up",
    "AU14": "the cheeks dimple", "AU15": "the lip corners pull down", "AU17": "the chin pushes up",
    "AU20": "the lips stretch", "AU25": "the lips part", "AU26": "the jaw drops", "AU45": "the eyes blink",
}  # fmt: skip
#: what a prototype looks like, in one word or two
PROTOTYPE_WORDS = {"joy": "a smile", "sadness": "a downcast face", "surprise": "a startled face",
                   "anger": "a glare", "disgust": "a face of distaste", "fear": "a frightened face"}  # fmt: skip
#: an AU's contribution to a prototype match saturates at this intensity (FACS level C, "marked")
FACS_FULL = 3.0
#: how much a prototype's match drops per unit of activity in prototype AUs it does not hold (see facs_matches)
FACS_EXTRA = 0.2
_PROTOTYPE_AUS = frozenset(a for units in FACS_PROTOTYPES.values() for a in units)
#: sharpness of the FACS distribution: p(e) ∝ exp(FACS_SHARPNESS * match(e)), neutral's match = 1 - the best one
FACS_SHARPNESS = 4.0


def facs_matches(aus: dict[str, float]) -> dict[str, float]:
    """How well each prototype explains a face (0-1): its **coverage**, the mean over its AUs of
    ``min(intensity / 3, 1)`` (an AU below :data:`ACTIVE` counts as absent; for disgust AU9 and AU10 are
    alternatives), less :data:`FACS_EXTRA` times the activity of prototype AUs it does not hold, per AU it holds
    -- so a fear face (AU1+2+4+5+20+26) reads as fear, not as the surprise whose four AUs it also shows."""
    def part(au: str) -> float:
        v = float(aus.get(au, 0.0))
        return min(v / FACS_FULL, 1.0) if v >= ACTIVE else 0.0

    out = {}
    for emotion, units in FACS_PROTOTYPES.items():
        if emotion == "disgust":
            best = max(("AU9", "AU10"), key=part)
            held, cover = {"AU9", "AU10", "AU15"}, (part(best) + part("AU15")) / 2
            size = 2
        else:
            held, cover, size = set(units), sum(part(a) for a in units) / len(units), len(units)
        extra = sum(part(a) for a in _PROTOTYPE_AUS - held) / size
        out[emotion] = max(0.0, cover - FACS_EXTRA * extra)
    return out


def facs_reading(aus: dict[str, float]) -> tuple[str, float, list[str]] | None:
    """The prototype a face shows best: (emotion, match 0-1, its active AUs strongest first), or None when no
    prototype has an active AU."""
    matches = facs_matches(aus)
    # a tie goes to the larger prototype: fear (AU1+2+4+5+20+26) shown in full also shows all of surprise's AUs
    emotion = max(matches, key=lambda e: (matches[e], len(FACS_PROTOTYPES[e])))
    if matches[emotion] <= 0:
        return None
    units = [a for a in FACS_PROTOTYPES[emotion] if aus.get(a, 0.0) >= ACTIVE]
    return emotion, matches[emotion], sorted(units, key=lambda a: -aus[a])


def facs_distribution(track: FaceTrack, labels: Sequence[str]) -> dict[str, float] | None:
    """A label distribution from the AU pattern alone (no FER model): per frame showing the main face,
    ``softmax(4 * match)`` over the six prototypes and neutral (whose match is 1 minus the best prototype's),
    averaged over frames. Unfitted: there is no labelled video here to fit it on. None unless ``labels`` is
    MELD's set."""
    if set(labels) != set(FER_TO_MELD.values()):
        return None
    rows = []
    for f in track.frames:
        if not f.aus:
            continue
        m = facs_matches(f.aus)
        m["neutral"] = 1.0 - max(m.values())
        z = np.array([m[lab] for lab in labels]) * FACS_SHARPNESS
        e = np.exp(z - z.max())
        rows.append(e / e.sum())
    if not rows:
        return None
    mean = np.mean(rows, axis=0)
    return {lab: float(v) for lab, v in zip(labels, mean / mean.sum())}


def plain_face(aus: dict[str, float]) -> str | None:
    """The face's strongest action in plain words with its AU ids, and the prototype it makes, e.g.
    "the cheeks rise and the lip corners pull up (AU6, AU12): a smile"; None without an active AU."""
    reading = facs_reading(aus)
    if reading is not None and reading[1] >= 0.5:
        emotion, _, units = reading
        units = units[:3]
        return f"{_join([AU_PLAIN[a] for a in units])} ({', '.join(units)}): {PROTOTYPE_WORDS[emotion]}"
    active = sorted(((v, a) for a, v in aus.items() if v >= ACTIVE and a in AU_PLAIN), reverse=True)[:2]
    if not active:
        return None
    units = [a for _, a in active]
    return f"{_join([AU_PLAIN[a] for a in units])} ({', '.join(units)})"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
