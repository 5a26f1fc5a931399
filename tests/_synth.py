"""Speech fixtures made with espeak-ng (Debian package; installed by scripts/install.sh)."""

import shutil
import subprocess
from pathlib import Path

import pytest


def espeak(text: str, path: Path, speed: int = 150, pitch: int = 50, amplitude: int = 100) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/install.sh installs it)")
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", str(speed), "-p", str(pitch), "-a", str(amplitude), "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    return path


def shared_media() -> Path:
    p = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"
    if not p.is_dir():
        pytest.skip("../shared/data/media is not present")
    return p
