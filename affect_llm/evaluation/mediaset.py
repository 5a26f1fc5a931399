"""A small labelled media set made on this machine: no labelled emotional audio or video ships on PyPI, so the
faces come from photographs that do (scikit-image's astronaut, Eileen Collins smiling broadly; matplotlib's
Grace Hopper, a composed neutral face), animated into short clips (a slow zoom and drift, so that the face
tracker sees motion), silent or with espeak-ng speech over them.

Labels say what the clip determines, nothing more: a silent smiling face is joy; a silent composed face is
neutral; speech over a face is labelled by its words where face and words agree, and by the words where they
contradict (the face is then the evidence the decision must weigh down). These are still photographs of two
people, not acted emotion: the set checks that the pipeline reads what is there and says it truthfully, not how
well it recognises emotion in the wild.

    >>> from affect_llm.evaluation.mediaset import build
    >>> items = build("media-set/")            # writes the clips and media-set/manifest.jsonl
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class MediaItem:
    id: str
    path: str
    label: str | None  # None: the clip does not determine a label (scored for faithfulness only)
    face: str  # which photograph
    speech: str | None  # what espeak-ng says over it, or None (a silent clip)
    note: str


def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        return np.asarray(im.convert("RGB"))


FACES = {"astronaut": astronaut, "hopper": grace_hopper}


def animate(rgb: np.ndarray, path: str | Path, seconds: float = 4.0, fps: int = 10, speech_wav: str | Path | None = None,
            size: int = 320) -> Path:  # fmt: skip
    """An H.264 mp4 of ``rgb`` slowly zooming in (100 % to 90 % of the frame) and drifting, ``seconds`` long (or
    as long as ``speech_wav``, which becomes its AAC audio track)."""
    import av
    from PIL import Image

    audio = None
    if speech_wav is not None:
        import wave

        with wave.open(str(speech_wav)) as wf:  # espeak-ng writes 16-bit mono PCM
            sr = wf.getframerate()
            audio = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        seconds = max(seconds, len(audio) / sr + 0.5)
    h, w = rgb.shape[:2]
    side = min(h, w)
    img = Image.fromarray(rgb)
    path = Path(path)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        vs.width = vs.height = size
        vs.pix_fmt = "yuv420p"
        a_s = None
        if audio is not None:
            a_s = c.add_stream("aac", rate=sr)
            a_s.layout = "mono"
            a_s.format = "fltp"
        n = round(seconds * fps)
        for i in range(n):
            k = i / max(n - 1, 1)
            crop = side * (1.0 - 0.1 * k)
            x0 = (w - crop) / 2 + 0.03 * side * np.sin(2 * np.pi * k)
            y0 = (h - crop) / 2
            frame = img.crop((int(x0), int(y0), int(x0 + crop), int(y0 + crop))).resize((size, size))
            f = av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")
            f.pts = i
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a_s is not None:
            frame = av.AudioFrame.from_ndarray(audio[None, :], format="fltp", layout="mono")
            frame.sample_rate = sr
            frame.pts = 0
            for p in a_s.encode(frame):
                c.mux(p)
            for p in a_s.encode():
                c.mux(p)
    return path


def espeak(text: str, path: str | Path, speed: int = 150, pitch: int = 50) -> Path:
    """``text`` spoken by espeak-ng (Debian package ``espeak-ng``) into a WAV file."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError("espeak-ng is not installed (apt-get install espeak-ng; scripts/install.sh does)")
    subprocess.run([exe, "-v", "en-us", "-s", str(speed), "-p", str(pitch), "-w", str(path), text], check=True,
                   capture_output=True)  # fmt: skip
    return Path(path)


#: (id, face, speech, label, note)
RECIPES = [
    ("smile-silent", "astronaut", None, "joy", "a broad smile (AU6+AU12), no audio"),
    ("neutral-silent", "hopper", None, "neutral", "a composed face, no audio"),
    ("smile-won", "astronaut", "We won! This is wonderful, I love it!", "joy", "a smile and happy words"),
    ("neutral-tomorrow", "hopper", "Okay. I will see you tomorrow at nine.", "neutral", "plain words, a composed face"),
    ("smile-sorry", "astronaut", "I am so sorry. I miss her every day.", "sadness",
     "sad words over a smiling face: the face contradicts the words"),
    ("neutral-hate", "hopper", "Stop it! I hate this, get out!", "anger", "angry words, a composed face"),
]  # fmt: skip


def build(out_dir: str | Path, recipes=RECIPES) -> list[MediaItem]:
    """Write the clips and ``manifest.jsonl`` (one :class:`MediaItem` per line) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = []
    with tempfile.TemporaryDirectory() as tmp:
        for cid, face, speech, label, note in recipes:
            wav = espeak(speech, Path(tmp) / f"{cid}.wav") if speech else None
            path = animate(FACES[face](), out / f"{cid}.mp4", speech_wav=wav)
            items.append(MediaItem(cid, path.name, label, face, speech, note))
    with open(out / "manifest.jsonl", "w") as f:
        f.writelines(json.dumps(asdict(it)) + "\n" for it in items)
    return items
