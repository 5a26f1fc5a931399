"""Benchmark `affect-llm chat --json` per clip: per-stage wall time, real-time factor and peak RSS.

Each run is `affect-llm chat CLIP --json` in a fresh process with a warm model cache (models pulled), timed from
outside: start-up, imports, model loading, decoding, ASR, prosody, faces, label scoring, the explanation and
exit are all inside the wall time. The per-stage columns come from the Analysis' own timings.

    .venv/bin/python scripts/bench_chat.py                 # hamilton.mp4 + a generated 60 s clip
    .venv/bin/python scripts/bench_chat.py my.mp4 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "media"
SENTENCES = [
    "I honestly did not expect to see you here today.",
    "Why would you say something like that to me?",
    "This is the best news I have heard all year!",
    "I am so tired of waiting for things to change.",
    "Please, just leave me alone for a while.",
    "We did it, we actually won the whole thing!",
    "I don't know what to do anymore.",
    "That smell is absolutely disgusting.",
]


def make_clip(path: Path, seconds: float = 60.0) -> Path:
    """A 60 s mp4: espeak-ng sentences (varied rate and pitch, with pauses) over a moving test pattern."""
    import av

    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed to make the 60 s clip (apt-get install espeak-ng)")
    sr = 16_000
    audio: list[np.ndarray] = []
    total = 0
    i = 0
    with tempfile.TemporaryDirectory() as tmp:
        while total < seconds * sr:
            wav = Path(tmp) / f"{i}.wav"
            s = SENTENCES[i % len(SENTENCES)]
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(130 + 15 * (i % 4)), "-p", str(35 + 10 * (i % 5)),
                            "-w", str(wav), s], check=True, capture_output=True)  # fmt: skip
            from affect_llm.media import load_audio

            audio.append(load_audio(wav).samples)
            audio.append(np.zeros(int(sr * (0.4 + 0.3 * (i % 3))), np.float32))
            total += audio[-1].size + audio[-2].size
            i += 1
    pcm = np.concatenate(audio)[: int(seconds * sr)]
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=25)
        v.width, v.height, v.pix_fmt = 320, 240, "yuv420p"
        a = c.add_stream("aac", rate=sr)
        a.layout = "mono"
        for k in range(int(seconds * 25)):
            img = np.zeros((240, 320, 3), np.uint8)
            img[:, (k * 4) % 320 :] = (40, 90, 160)
            for pkt in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in v.encode():
            c.mux(pkt)
        step = 1024
        for k in range(0, pcm.size, step):
            fr = av.AudioFrame.from_ndarray(pcm[None, k : k + step], format="flt", layout="mono")
            fr.sample_rate, fr.pts = sr, k
            for pkt in a.encode(fr):
                c.mux(pkt)
        for pkt in a.encode():
            c.mux(pkt)
    return path


def run_once(clip: Path, extra: list[str]) -> dict:
    """One `affect-llm chat CLIP --json` in a fresh process, timed from outside (start-up and exit included)."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "affect_llm.cli", "chat", str(clip), "--json", *extra],
                       capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{clip}: {r.stderr.strip() or 'failed'}")
    d = json.loads(r.stdout)
    # ru_maxrss of children: the largest resident set of any finished child so far (KiB on Linux)
    return {"timings": d["timings"], "duration": d["media"]["duration"], "wall": wall,
            "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}  # fmt: skip


REFERENCE = """
import time
from affect_llm.llm.hf import load
lm = load()
msgs = [{"role": "user", "content": "Tell me a story about a dog. " * 20}]
lm.generate(msgs, max_new_tokens=4)
t = time.perf_counter()
lm.generate(msgs, max_new_tokens=48)
print(round(time.perf_counter() - t, 2))
"""


def reference_seconds() -> float:
    """How fast this machine is right now: 48 greedy tokens of the default LLM after a 191-token prompt (2.2 s
    on a quiet 2-core machine of this project's kind). Shared machines vary; quote this beside the timings."""
    r = subprocess.run([sys.executable, "-c", REFERENCE], capture_output=True, text=True)
    return float(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else float("nan")


VISUAL = """
import json, sys, time
t0 = time.perf_counter()
from affect_llm import media
from affect_llm.config import FaceOptions
from affect_llm.cues import face
o = FaceOptions()
d = face.detect_faces(media.iter_frames(sys.argv[1], fps=o.fps, max_side=o.max_side), o)
t1 = time.perf_counter()
d = face.detect_faces(media.iter_frames(sys.argv[1], fps=o.fps, max_side=o.max_side), o)
print(json.dumps({"first": t1 - t0, "again": time.perf_counter() - t1, "frames": len(d.times)}))
"""


def visual_row(clip: Path, duration: float) -> str:
    """Face cue extraction alone (decode + landmarks + blendshape AUs + FER): a fresh process's first pass
    (imports and model loading included) and a second pass with the models loaded."""
    r = subprocess.run([sys.executable, "-c", VISUAL, str(clip)], capture_output=True, text=True)
    if r.returncode != 0:
        return f"| {clip.name} | visual extraction failed: {r.stderr.strip().splitlines()[-1:]} |"
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return (f"| {clip.name} | {duration:.1f} s | {d['frames']} | {d['first']:.2f} s ({duration / d['first']:.1f}x real time) "
            f"| {d['again']:.2f} s ({duration / d['again']:.1f}x real time) |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=3, help="runs per clip; the median is reported")
    ap.add_argument("--no-face", action="store_true", help="pass --no-face (the audio-only cue path)")
    args = ap.parse_args()
    clips = list(args.clips)
    tmp = tempfile.TemporaryDirectory()
    if not clips:
        if (SHARED / "hamilton.mp4").exists():
            clips.append(SHARED / "hamilton.mp4")
        clips.append(make_clip(Path(tmp.name) / "speech60.mp4"))
    stages = ["probe", "decode_audio", "load_asr", "asr", "prosody", "face", "load_llm", "wait_llm", "label", "explain"]
    print(f"machine reference: {reference_seconds():.2f} s for 48 LLM tokens (2.2 s when quiet)")
    print(f"cores: {os.cpu_count()}, runs per clip: {args.runs} (median), `affect-llm chat CLIP --json"
          f"{' --no-face' if args.no_face else ''}` in a fresh process per run, warm model cache\n")
    print("| clip | duration | wall (process) | RTF | peak RSS | " + " | ".join(stages) + " |")
    print("|---" * (5 + len(stages)) + "|")
    durations = {}
    for clip in clips:
        runs = [run_once(clip, ["--no-face"] if args.no_face else []) for _ in range(args.runs)]
        med = lambda xs: statistics.median(xs)  # noqa: E731
        dur = durations[clip] = runs[0]["duration"]
        wall = med([r["wall"] for r in runs])
        rss = max(r["rss_mb"] for r in runs)
        st = [med([r["timings"].get(s, 0.0) for r in runs]) for s in stages]
        print(f"| {clip.name} | {dur:.1f} s | {wall:.1f} s | {wall / dur:.2f} | {rss:.0f} MB | "
              + " | ".join(f"{x:.2f}" for x in st) + " |")  # fmt: skip
    if not args.no_face:
        print("\nvisual cue extraction alone (5 fps), fresh process:\n")
        print("| clip | duration | frames | first pass (with imports, model loading) | second pass |")
        print("|---|---|---|---|---|")
        for clip in clips:
            print(visual_row(clip, durations[clip]))
    tmp.cleanup()


if __name__ == "__main__":
    main()
