"""Shared fixtures: small media made with PyAV (no ffmpeg CLI), a corpus of broken files, the shared real media.

Everything generated is session-scoped and tiny (a few seconds, 320x240), so making it all takes well under a
second. Each generated file comes as a :class:`Made` that also says what it should contain, so the tests check
the decoders against what was encoded rather than against hard-coded numbers.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests._synth import shared_media as _shared_media_dir

#: the repository root (tests/..)
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Made:
    """A generated media file and what was put in it."""

    path: Path
    duration: float
    has_audio: bool
    has_video: bool
    tone_hz: float | None = None  # the sine in the audio track (None: silence or no audio)
    sample_rate: int | None = None
    channels: int | None = None
    audio_codec: str | None = None
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: int | None = None

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


# -- generators -------------------------------------------------------------------------------------------


def _video_codec(av) -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


#: the red channel of frame i is RED0 + RED_STEP * i (blue stays 0; a green bar grows left to right), so a
#: decoded frame says which frame it is, and that the channels come out in RGB order
RED0, RED_STEP = 40, 2


def frame_image(i: int, n: int, w: int, h: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = RED0 + RED_STEP * i
    img[:, : (i * w) // max(n, 1), 1] = 255
    return img


def _encode_audio(container, stream, x: np.ndarray, sr: int, fmt: str) -> None:
    """Mux ``x`` (channels x samples, already in ``fmt``'s dtype) through ``stream``."""
    import av

    layout = "mono" if x.shape[0] == 1 else "stereo"
    hop = 1024
    for i in range(0, x.shape[1], hop):
        chunk = np.ascontiguousarray(x[:, i : i + hop])
        if fmt in ("s16", "flt"):  # packed formats want one interleaved row
            chunk = np.ascontiguousarray(chunk.T.reshape(1, -1))
        f = av.AudioFrame.from_ndarray(chunk, format=fmt, layout=layout)
        f.sample_rate = sr
        f.pts = i
        for p in stream.encode(f):
            container.mux(p)
    for p in stream.encode():
        container.mux(p)


def make_av(
    path: Path,
    seconds: float = 3.0,
    video: bool = True,
    audio: bool = True,
    tone_hz: float = 440.0,
    w: int = 320,
    h: int = 240,
    fps: int = 25,
    sr: int = 44_100,
    faststart: bool = False,
) -> Made:
    """An mp4 with H.264 (or MPEG-4 part 2) video and/or an AAC sine tone."""
    import av

    vcodec = _video_codec(av)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        vs = a_s = None
        if video:
            vs = c.add_stream(vcodec, rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if audio:
            a_s = c.add_stream("aac", rate=sr)
            a_s.layout = "mono"
            a_s.format = "fltp"
        if vs is not None:
            n = round(seconds * fps)
            for i in range(n):
                f = av.VideoFrame.from_ndarray(frame_image(i, n, w, h), format="rgb24")
                f.pts = i
                for p in vs.encode(f):
                    c.mux(p)
            for p in vs.encode():
                c.mux(p)
        if a_s is not None:
            t = np.arange(int(seconds * sr)) / sr
            x = (0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)[None, :]
            _encode_audio(c, a_s, x, sr, "fltp")
    return Made(
        path=path,
        duration=seconds,
        has_audio=audio,
        has_video=video,
        tone_hz=tone_hz if audio else None,
        sample_rate=sr if audio else None,
        channels=1 if audio else None,
        audio_codec="aac" if audio else None,
        video_codec=("h264" if vcodec == "libx264" else "mpeg4") if video else None,
        width=w if video else None,
        height=h if video else None,
        fps=fps if video else None,
    )


def make_pcm(path: Path, x: np.ndarray, sr: int, codec: str, tone_hz: float | None) -> Made:
    """A wav (``pcm_s16le``) or flac file of ``x`` (channels x samples float in [-1, 1])."""
    import av

    x = np.atleast_2d(x)
    xi = (np.clip(x, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=sr)
        s.layout = "mono" if x.shape[0] == 1 else "stereo"
        s.format = "s16"
        _encode_audio(c, s, xi, sr, "s16")
    return Made(
        path=path,
        duration=x.shape[1] / sr,
        has_audio=True,
        has_video=False,
        tone_hz=tone_hz,
        sample_rate=sr,
        channels=x.shape[0],
        audio_codec=codec,
    )


def _sine(hz: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * hz * np.arange(int(seconds * sr)) / sr)


# -- good media -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    pytest.importorskip("av")
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def av_mp4(media_dir) -> Made:
    """3 s, 320x240 @ 25 fps H.264 (or MPEG-4) video + a 440 Hz AAC tone (44.1 kHz mono)."""
    return make_av(media_dir / "tone_video.mp4")


@pytest.fixture(scope="session")
def video_only_mp4(media_dir) -> Made:
    """3 s of video and no audio stream at all."""
    return make_av(media_dir / "video_only.mp4", audio=False)


@pytest.fixture(scope="session")
def silence_wav(media_dir) -> Made:
    """2 s of digital silence, 16 kHz mono 16-bit."""
    return make_pcm(media_dir / "silence.wav", np.zeros((1, 32_000)), 16_000, "pcm_s16le", None)


@pytest.fixture(scope="session")
def tone_wav(media_dir) -> Made:
    """2 s of a 440 Hz tone, 44.1 kHz stereo: load_audio must resample and downmix it."""
    x = np.stack([_sine(440.0, 2.0, 44_100)] * 2)
    return make_pcm(media_dir / "tone.wav", x, 44_100, "pcm_s16le", 440.0)


@pytest.fixture(scope="session")
def tone_flac(media_dir) -> Made:
    """4 s of a 1 kHz tone, 16 kHz mono flac."""
    return make_pcm(media_dir / "tone.flac", _sine(1000.0, 4.0, 16_000)[None, :], 16_000, "flac", 1000.0)


@pytest.fixture(scope="session")
def loud_stereo_flac(media_dir) -> Made:
    """1 s of a 300 Hz tone at 0.95 of full scale, the same in both channels, 44.1 kHz stereo flac."""
    x = np.stack([_sine(300.0, 1.0, 44_100, amp=0.95)] * 2)
    return make_pcm(media_dir / "loud_stereo.flac", x, 44_100, "flac", 300.0)


# -- broken media -----------------------------------------------------------------------------------------


def _truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _data_only(path: Path) -> Path | None:
    """An MPEG-TS holding one data stream and nothing else; None where this PyAV cannot write one."""
    import av

    try:
        with av.open(str(path), "w") as c:
            s = c.add_data_stream("bin_data")
            for i in range(4):
                p = av.Packet(b"not audio, not video %d" % i)
                p.stream, p.pts, p.dts = s, i * 90_000, i * 90_000
                c.mux(p)
    except Exception:  # noqa: BLE001 - any failure: this PyAV/FFmpeg cannot make the case
        return None
    return path if path.exists() and path.stat().st_size > 0 else None


def _subtitle_only(path: Path) -> Path | None:
    """A Matroska file holding one (empty) ASS subtitle stream; None where this PyAV cannot write one."""
    import av

    try:
        with av.open(str(path), "w") as c:
            s = c.add_stream("ass")
            p = av.Packet(b"0,0,Default,,0,0,0,,hello")
            p.stream, p.pts, p.dts = s, 0, 0
            c.mux(p)
    except Exception:  # noqa: BLE001 - any failure: this PyAV/FFmpeg cannot make the case
        return None
    return path if path.exists() and path.stat().st_size > 0 else None


@pytest.fixture(scope="session")
def bad_dir(tmp_path_factory) -> Path:
    pytest.importorskip("av")
    return tmp_path_factory.mktemp("bad")


@pytest.fixture(scope="session")
def bad_files(bad_dir, av_mp4) -> dict[str, Path | None]:
    """name -> a broken input (None where this PyAV cannot make that case: the test skips).

    test_bad_input.BAD_CASES lists the names; a new case goes in both places."""
    d = bad_dir
    files: dict[str, Path | None] = {}
    files["missing"] = d / "no_such_dir" / "missing.mp4"
    files["empty"] = d / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["text_as_mp4"] = d / "notes.mp4"
    files["text_as_mp4"].write_text("This is a text file, not a video.\n" * 20)
    files["random_wav"] = d / "random.wav"
    # seeded: random bytes can by chance look like an MPEG audio frame; this seed is known not to
    files["random_wav"].write_bytes(np.random.default_rng(0).bytes(32_768))
    # the mp4 muxer writes the moov atom (the index) last, so the first 30 % has no index at all
    files["truncated_mp4"] = _truncate(av_mp4.path, d / "truncated.mp4", 0.30)
    files["directory"] = d / "a_folder.mp4"
    files["directory"].mkdir()
    files["data_only"] = _data_only(d / "data_only.ts")
    files["subtitle_only"] = _subtitle_only(d / "subtitle_only.mkv")
    # rich-markup-like brackets and spaces in the name: the one-line error must still name the file verbatim
    files["bracket_name"] = d / "clip [bold] #1 [red].mp4"
    files["bracket_name"].write_text("not media\n")
    return files


@pytest.fixture(scope="session")
def truncated_flac(bad_dir, tone_flac) -> Path:
    """The first 40 % of the bytes of ``tone_flac`` (4 s): its header still says 4 s."""
    return _truncate(tone_flac.path, bad_dir / "truncated.flac", 0.40)


@pytest.fixture(scope="session")
def garbled_mp4(bad_dir, av_mp4) -> Path:
    """``av_mp4`` with a valid header and index but random bytes for most of the media payload."""
    data = bytearray(av_mp4.path.read_bytes())
    start, end = data.find(b"mdat"), data.find(b"moov")
    if start < 0 or end < start:
        pytest.skip("unexpected mp4 layout")
    lo, hi = start + 8 + 200, end - 200
    data[lo:hi] = np.random.default_rng(1).bytes(hi - lo)
    p = bad_dir / "garbled.mp4"
    p.write_bytes(bytes(data))
    return p


# -- real media -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """The read-only folder of real media (jfk.flac, hamilton.mp4) next to the checkout; skips when absent."""
    return _shared_media_dir()


@pytest.fixture(scope="session")
def jfk_flac(shared_media) -> Path:
    p = shared_media / "jfk.flac"
    if not p.is_file():
        pytest.skip(f"jfk.flac not in {shared_media}")
    return p


@pytest.fixture(scope="session")
def hamilton_mp4(shared_media) -> Path:
    p = shared_media / "hamilton.mp4"
    if not p.is_file():
        pytest.skip(f"hamilton.mp4 not in {shared_media}")
    return p


# -- helpers as fixtures (tests do not import conftest) -----------------------------------------------------


@pytest.fixture(scope="session")
def frame_red():
    """i -> the red level encoded into frame i of the generated videos."""
    return lambda i: RED0 + RED_STEP * i


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory) -> dict[str, str]:
    """Environment for CLI subprocesses: the caller's, so the installed model cache is used (the runs that
    succeed need the models; the broken files fail before any model is looked up)."""
    env = dict(os.environ)
    env.pop("AFFECT_LLM_DEBUG", None)
    env.pop("FORCE_COLOR", None)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (closed again, for a server to bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def count_reason_many(monkeypatch, pipe) -> list[int]:
    """Count the calls of ``pipe.reason_many`` (the real method still runs): one entry per call, the number of
    inputs it got. Restored when the test ends."""
    calls: list[int] = []
    real = pipe.reason_many

    def counted(gathered, **kw):
        calls.append(len(gathered))
        return real(gathered, **kw)

    monkeypatch.setattr(pipe, "reason_many", counted)
    return calls
