"""End to end on real media and real models: the Python API and the `affect-llm chat` front door."""

import json
import os
import subprocess
import sys

import pytest

import affect_llm
from affect_llm.config import MELD_LABELS
from affect_llm.pipeline import Pipeline
from affect_llm.types import Analysis, Modality
from tests._synth import espeak, shared_media

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipe():
    return Pipeline()


def _cli(*args, stdin=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "affect_llm.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip


def _check(a: Analysis):
    assert a.label in MELD_LABELS
    assert set(a.probabilities) == set(MELD_LABELS)
    assert sum(a.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert a.label == max(a.probabilities, key=a.probabilities.get)
    ids = {c.id for c in a.cues}
    assert set(a.cited_cues) <= ids
    for c in a.cues:
        assert f"[{c.id}]" in a.evidence
    assert a.timings["total"] > 0


def test_hamilton_json_end_to_end(tmp_path):
    png = tmp_path / "timeline.png"
    r = _cli("chat", str(shared_media() / "hamilton.mp4"), "--json", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert r.stderr.strip() == ""  # no native-library log noise
    d = json.loads(r.stdout)
    a = Analysis.model_validate(d)
    _check(a)
    for key in ("label", "probabilities", "explanation", "transcript", "cues", "missing_modalities", "timings"):
        assert key in d
    assert a.media.has_video and a.media.has_audio and a.media.width == 640
    assert "harder" in a.transcript.text and "smarter" in a.transcript.text
    mods = {c["modality"] for c in d["cues"]}
    assert {"speech", "prosody"} <= mods
    for c in d["cues"]:
        assert set(c) >= {"id", "modality", "start", "end", "text"}
        if c["modality"] == "context":  # the dialogue-level cue (D1) has no time span
            assert c["start"] is None and c["end"] is None
        else:
            assert c["start"] <= c["end"]
    assert a.explanation and a.cited_cues
    assert {"asr", "prosody", "face", "label", "explain"} <= set(a.timings)
    assert "speech" not in d["missing_modalities"]
    # visual cues: F-cues aligned with the transcript segments, a face timeline, the face's distribution
    f_cues = [c for c in a.cues if c.modality == Modality.face]
    assert [(c.start, c.end) for c in f_cues] == [(s.start, s.end) for s in a.transcript.segments]
    assert "main face" in f_cues[0].text and "AU" in f_cues[0].text
    face = d["timeline"]["face"]
    ts = [f["t"] for f in face]
    assert ts == sorted(ts) and len(ts) >= 40  # 5 fps over 10 s
    assert all(0 <= v <= 5 for f in face for v in f["aus"].values())
    assert any(f["aus"] for f in face) and {"AU12", "AU6", "AU25"} <= set(next(f["aus"] for f in face if f["aus"]))
    assert set(a.distributions["face"]) == set(MELD_LABELS)
    assert d["missing_modalities"] == ["scene"] and any("CLIP" in n for n in a.notes)
    # the context model reads the transcript as a one-utterance dialogue; every modality's distribution is fused
    assert "utterance alone" in a.cue("D1").text
    assert set(a.fusion) == {"llm", "context", "face"} and set(a.distributions) == {"llm", "context", "face", "facs"}
    assert a.decision.startswith(f"{a.label}: fused from")  # the face input is FER and FACS pooled
    assert sum(a.fusion.values()) == pytest.approx(1, abs=1e-3)


def test_jfk_python_api(pipe):
    a = pipe.analyze(shared_media() / "jfk.flac")
    _check(a)
    assert a.missing_modalities == [Modality.face, Modality.scene]
    assert any("no video stream" in n for n in a.notes)
    assert [c.id for c in a.cues] == ["D1", "S1", "P1", "S2", "P2"]  # the untimed dialogue cue first
    assert a.cue("P2").modality == Modality.prosody and "than the speaker's usual" in a.evidence


def test_espeak_speech_through_the_pipeline(pipe, tmp_path):
    wav = espeak("I cannot believe you did this to me. Get out of my house right now!", tmp_path / "a.wav")
    a = pipe.analyze(wav, explain=False)
    _check(a)
    assert "house" in a.transcript.text.lower()
    assert a.explanation == "" and [c.id for c in a.cues][:2] == ["D1", "S1"]


def test_text_input_and_api_heuristic():
    a = affect_llm.analyze("I just got the job, I am so happy!")
    _check(a)
    assert a.source == "text" and a.cues[0].id == "T1" and a.media is None
    with pytest.raises(affect_llm.MediaError, match="no such file"):
        affect_llm.analyze("missing_clip.mp4")
    with pytest.raises(affect_llm.InputError):
        affect_llm.analyze(text="   ")


def test_ask_one_question():
    r = _cli("chat", "--text", "My dog died this morning.", "--ask", "What would help this person?")
    assert r.returncode == 0, r.stderr
    assert "emotion:" in r.stdout and "affect-llm" in r.stdout  # label panel and the answer panel


def test_interactive_chat_reads_turns_until_eof():
    r = _cli("chat", "--text", "Wow, you got me a puppy?", "--no-explain", stdin="Why?\nAnd the voice?\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("you>") == 3  # two questions, then EOF at the third prompt
    assert r.stdout.count("╭─ affect-llm") == 2


def test_video_without_face_or_audio(pipe, video_only_mp4):
    """A test pattern with no audio: face tracking runs, finds nothing, and says so."""
    a = pipe.analyze(video_only_mp4.path, explain=False)
    assert {Modality.speech, Modality.prosody, Modality.face, Modality.scene} <= set(a.missing_modalities)
    assert [c.id for c in a.cues] == ["F1"] and "no face was visible" in a.cues[0].text
    assert a.timeline["face"] and all(f["n_faces"] == 0 for f in a.timeline["face"])
    assert any("no face visible" in n for n in a.notes) and any("no audio stream" in n for n in a.notes)


def test_clip_scene_cues_through_the_pipeline(tmp_path):
    """CLIP label matching wired in: a tiny random CLIP (no real weights ship) gives C-cues and a distribution."""
    from affect_llm.config import PipelineConfig
    from tests.cues.test_clip import build_tiny_clip

    clip_dir = build_tiny_clip(tmp_path / "clip")
    cfg = PipelineConfig.model_validate({"scene": {"model": str(clip_dir), "fps": 2.0}, "face": {"enabled": False}})
    a = Pipeline(cfg).analyze(shared_media() / "hamilton.mp4", explain=False)
    c_cues = [c for c in a.cues if c.modality == Modality.scene]
    assert c_cues and all(c.id.startswith("C") for c in c_cues)
    assert set(a.distributions["scene"]) == set(MELD_LABELS)
    assert sum(a.distributions["scene"].values()) == pytest.approx(1.0, abs=1e-6)
    assert Modality.scene not in a.missing_modalities and Modality.face in a.missing_modalities


def test_plot_of_a_voice_only_clip_draws_its_contour(tmp_path):
    """No video: the plot is the pitch and loudness contour (the timeline's prosody points)."""
    png = tmp_path / "p.png"
    r = _cli("chat", str(shared_media() / "jfk.flac"), "--json", "--no-explain", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    a = Analysis.model_validate_json(r.stdout)
    voice = a.timeline["prosody"]
    assert "face" not in a.timeline and len(voice) > 100  # 11 s at 20 points a second
    assert [p["t"] for p in voice] == sorted(p["t"] for p in voice)
    pitched = [p["pitch_hz"] for p in voice if p["pitch_hz"] is not None]
    assert len(pitched) > 30 and 70 < sorted(pitched)[len(pitched) // 2] < 250  # a man's speaking pitch
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000


def test_plot_with_nothing_to_draw_keeps_the_analysis(tmp_path):
    r = _cli("chat", "--text", "I got the job!", "--json", "--no-explain", "--plot", str(tmp_path / "p.png"))
    assert r.returncode == 2
    assert Analysis.model_validate_json(r.stdout).label in MELD_LABELS  # the analysis was written first
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "nothing to plot" in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "p.png").exists()


def test_modality_selection_keeps_only_the_chosen_cues():
    """--modalities prosody,face: the words still time the voice cues, but no S- or D-cue reaches the LLM, and
    the LLM's distribution is the only one (no context model ran)."""
    r = _cli("chat", str(shared_media() / "hamilton.mp4"), "--json", "--no-explain", "--modalities", "prosody,face")
    assert r.returncode == 0, r.stderr
    a = Analysis.model_validate_json(r.stdout)
    mods = {c.modality for c in a.cues}
    assert mods == {Modality.prosody, Modality.face}
    assert "S1" not in a.evidence and "D1" not in a.evidence
    assert any(n.startswith("left out by the modality selection: speech") for n in a.notes)
    assert set(a.distributions) == {"face", "facs"}  # no words: the LLM's label scores are not evidence
    r = _cli("chat", str(shared_media() / "jfk.flac"), "--modalities", "speech,smell")
    assert r.returncode == 2 and r.stderr.startswith("error: invalid option: modalities.1")
