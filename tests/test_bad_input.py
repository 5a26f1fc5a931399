"""The corrupt-file corpus: every broken input is a MediaError naming the file and the cause, and at the CLI one
line on stderr and a non-zero exit, never a traceback. Inputs that lack a modality are not errors.

The CLI runs for the broken files do not load any model (they fail at probe), so they are fast; they run in
parallel once per session. The runs that succeed are marked slow: they go through the whole pipeline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from affect_llm import media
from affect_llm.errors import AffectLLMError, MediaError

REPO = Path(__file__).resolve().parents[1]

#: the cases of conftest's ``bad_files``; each must make probe() and load_audio() raise MediaError and the CLI
#: exit non-zero with one line. (The truncated flac is apart: it decodes partially, with a warning.)
BAD_CASES = [
    "missing",  # no such file (in a folder that does not exist either)
    "empty",  # 0 bytes
    "text_as_mp4",  # a text file named .mp4
    "random_wav",  # random bytes named .wav
    "truncated_mp4",  # the first 30 % of an mp4: no index (moov) at all
    "directory",  # a folder named .mp4
    "data_only",  # MPEG-TS with one data stream, no audio or video
    "subtitle_only",  # Matroska with one subtitle stream
    "bracket_name",  # not media, and a name with [markup-like] brackets, spaces and '#'
]


def test_corpus_is_complete(bad_files):
    assert set(bad_files) == set(BAD_CASES)


def _bad(bad_files, name: str) -> Path:
    p = bad_files[name]
    if p is None:
        pytest.skip(f"this PyAV cannot make the {name!r} case")
    return p


def _assert_media_error(e: BaseException, path: Path) -> None:
    assert isinstance(e, MediaError), f"{type(e).__name__}: {e}"
    assert isinstance(e, AffectLLMError)
    assert str(path) in str(e), f"the message does not name the file: {e}"
    assert e.path == str(path)
    assert e.cause and e.cause.strip(), "no cause given"
    assert e.cause in str(e)
    assert "\n" not in e.one_line()


# -- Python level ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", BAD_CASES)
@pytest.mark.parametrize("fn", ["probe", "load_audio", "iter_frames"])
def test_bad_file_raises_media_error(bad_files, case, fn):
    path = _bad(bad_files, case)
    call = {
        "probe": media.probe,
        "load_audio": media.load_audio,
        "iter_frames": lambda p: next(iter(media.iter_frames(p))),
    }[fn]
    try:
        call(path)
    except MediaError as e:
        _assert_media_error(e, path)
    except BaseException as e:  # noqa: BLE001 - any other type is the failure this test exists for
        pytest.fail(f"{fn}({case}) raised {type(e).__name__} instead of MediaError: {e}")
    else:
        pytest.fail(f"{fn}({case}) did not raise")


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_file_accepts_str_path(bad_files, case):
    path = _bad(bad_files, case)
    with pytest.raises(MediaError) as ei:
        media.load_audio(str(path))
    _assert_media_error(ei.value, path)


@pytest.mark.parametrize("case", ["data_only", "subtitle_only"])
def test_no_audio_or_video_stream_says_so(bad_files, case):
    path = _bad(bad_files, case)
    with pytest.raises(MediaError) as ei:
        media.probe(path)
    assert "no audio or video" in ei.value.cause


def test_missing_and_directory_causes(bad_files):
    with pytest.raises(MediaError, match="no such file"):
        media.probe(bad_files["missing"])
    with pytest.raises(MediaError, match="directory"):
        media.probe(bad_files["directory"])
    with pytest.raises(MediaError, match="empty"):
        media.probe(bad_files["empty"])


def test_truncated_flac_decodes_what_is_there_and_warns(truncated_flac, tone_flac):
    """Cut at 40 %: the part that decodes, and a warning that says the file was cut short."""
    audio = media.load_audio(truncated_flac)
    assert audio.samples.dtype == np.float32 and audio.samples.size > 0
    assert audio.duration < 0.6 * tone_flac.duration  # partial
    assert any("truncat" in w for w in audio.warnings), (
        f"{audio.duration:.2f} s of a {tone_flac.duration} s file decoded without a warning: {audio.warnings}"
    )


def test_garbled_payload_is_media_error_or_warned(garbled_mp4):
    """Valid header and index, random payload: never an exception other than MediaError."""
    for fn in (media.probe, media.load_audio, lambda p: list(media.iter_frames(p))):
        try:
            out = fn(garbled_mp4)
        except MediaError as e:
            _assert_media_error(e, garbled_mp4)
        except BaseException as e:  # noqa: BLE001
            pytest.fail(f"raised {type(e).__name__} instead of MediaError: {e}")
        else:
            if isinstance(out, media.Audio):
                assert np.isfinite(out.samples).all()


@pytest.mark.parametrize("case", BAD_CASES)
def test_pipeline_bad_file_loads_no_model(monkeypatch, bad_files, case):
    """A broken file fails at probe; it must not start loading the ASR model or the LLM first (in the CLI
    that would hold the one-line error until torch and the model had loaded, and waste the load)."""
    from affect_llm.pipeline import Pipeline

    path = _bad(bad_files, case)
    started: list[str] = []
    monkeypatch.setattr(Pipeline, "preload_reasoner", lambda self: started.append("llm"))
    monkeypatch.setattr(Pipeline, "reasoner", lambda self, timer=None: started.append("llm"))
    monkeypatch.setattr(Pipeline, "transcriber", lambda self, timer=None: started.append("asr"))
    with pytest.raises(MediaError) as ei:
        Pipeline().analyze(path)
    _assert_media_error(ei.value, path)
    assert started == [], f"{case}: started loading {started} before the file was found unusable"


# -- CLI level -------------------------------------------------------------------------------------------


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "affect_llm.cli", "chat", *args],
        env=env,
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def _assert_failed_cleanly(r: subprocess.CompletedProcess, *must_contain: str) -> str:
    assert r.returncode != 0, f"exit 0; stdout:\n{r.stdout}"
    line = _one_line(r.stderr)
    assert "internal error" not in line, f"not a typed error: {line}"
    assert r.stdout.strip() == "", f"output on stdout despite the error:\n{r.stdout}"
    for s in must_contain:
        assert s in line, f"{s!r} not in the error line: {line}"
    return line


@pytest.fixture(scope="module")
def cli_runs(bad_files, av_mp4, cli_env) -> dict[str, subprocess.CompletedProcess | None]:
    """Every fast CLI failure case, run once and in parallel (each is a ~0.6 s interpreter start)."""
    jobs: dict[str, list[str]] = {}
    for case in BAD_CASES:
        if bad_files[case] is not None:
            jobs[case] = [str(bad_files[case]), "--json"]
    jobs["max_duration"] = [str(av_mp4.path), "--max-duration", "1", "--json"]
    jobs["no_input"] = ["--json"]
    jobs["empty_text"] = ["--text", "", "--json"]
    jobs["blank_text"] = ["--text", "   \n ", "--json"]
    jobs["file_and_text"] = [str(av_mp4.path), "--text", "hello", "--json"]
    with ThreadPoolExecutor(max_workers=8) as ex:
        futures = {k: ex.submit(run_cli, v, cli_env) for k, v in jobs.items()}
        return {k: f.result() for k, f in futures.items()} | {c: None for c in BAD_CASES if c not in jobs}


@pytest.mark.parametrize("case", BAD_CASES)
def test_cli_bad_file_one_line(cli_runs, bad_files, case):
    _bad(bad_files, case)
    _assert_failed_cleanly(cli_runs[case], str(bad_files[case]))


def test_cli_max_duration(cli_runs, av_mp4):
    _assert_failed_cleanly(cli_runs["max_duration"], "max_duration", str(av_mp4.path))


@pytest.mark.parametrize("case", ["no_input", "empty_text", "blank_text", "file_and_text"])
def test_cli_bad_arguments_one_line(cli_runs, case):
    _assert_failed_cleanly(cli_runs[case])


# -- inputs that lack a modality: not errors (these go through the whole pipeline) -----------------------


def _analysis(r: subprocess.CompletedProcess) -> dict:
    assert r.returncode == 0, f"exit {r.returncode}; stderr:\n{r.stderr}"
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


@pytest.mark.slow
def test_cli_video_without_audio(video_only_mp4, cli_env):
    a = _analysis(run_cli([str(video_only_mp4.path), "--json"], cli_env, timeout=600))
    assert {"speech", "prosody"} <= set(a["missing_modalities"])
    assert any("no audio" in n for n in a["notes"]), a["notes"]
    assert a["media"]["has_audio"] is False and a["media"]["has_video"] is True
    assert a["label"] in a["probabilities"]
    assert sum(a["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.slow
def test_cli_silent_wav(silence_wav, cli_env):
    a = _analysis(run_cli([str(silence_wav.path), "--json"], cli_env, timeout=600))
    assert {"speech", "prosody", "face", "scene"} <= set(a["missing_modalities"])
    notes = " ".join(a["notes"])
    assert "no video" in notes, a["notes"]
    assert "silen" in notes, a["notes"]
    assert a["media"]["has_audio"] is True and a["media"]["has_video"] is False
    assert a["label"] in a["probabilities"]


@pytest.mark.slow
def test_cli_truncated_flac(truncated_flac, cli_env):
    """An analysis of the part that decodes, whose notes say the audio was cut short."""
    r = run_cli([str(truncated_flac), "--json"], cli_env, timeout=600)
    assert r.returncode == 0, r.stderr
    a = _analysis(r)
    assert any("truncat" in n for n in a["notes"]), a["notes"]


def _video_broken_part_way(path):
    """A 4 s mpeg4 mp4 (10 fps, noise frames) whose bytes from 50 % to 80 % are random: its index is intact,
    so decoding starts fine and fails in the middle."""
    av = pytest.importorskip("av")
    c = av.open(str(path), "w", format="mp4")
    s = c.add_stream("mpeg4", rate=10)
    s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
    for i in range(40):
        img = np.random.default_rng(i).integers(0, 255, (120, 160, 3), dtype=np.uint8)
        for pk in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            c.mux(pk)
    for pk in s.encode():
        c.mux(pk)
    c.close()
    data = bytearray(path.read_bytes())
    lo, k = len(data) // 2, int(len(data) * 0.3)
    data[lo : lo + k] = np.random.default_rng(1).bytes(k)
    path.write_bytes(bytes(data))
    return path


def test_video_that_breaks_part_way_keeps_its_frames_and_says_so(tmp_path):
    path = _video_broken_part_way(tmp_path / "broken.mp4")
    warnings: list[str] = []
    frames = list(media.iter_frames(path, fps=10, warnings=warnings))
    if not warnings:
        pytest.skip("this FFmpeg build decoded through the damage")
    assert 0 < len(frames) < 40
    assert len(warnings) == 1 and "video decoding stopped after" in warnings[0]
    assert f"{frames[-1].t:.1f} s" in warnings[0]


@pytest.mark.slow
def test_the_pipeline_notes_a_video_that_breaks_part_way(tmp_path):
    from affect_llm.pipeline import Pipeline

    path = _video_broken_part_way(tmp_path / "broken.mp4")
    if not _warned(path):
        pytest.skip("this FFmpeg build decoded through the damage")
    a = Pipeline().analyze(path, explain=False)
    assert any(n.startswith("video decoding stopped after") for n in a.notes)


def _warned(path) -> bool:
    w: list[str] = []
    list(media.iter_frames(path, fps=5, warnings=w))
    return bool(w)
