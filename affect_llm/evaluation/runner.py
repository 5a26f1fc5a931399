"""The run folder of an evaluation: ``run.json`` (settings, start time, code version, machine) and the guard
that keeps another command from resuming into it. The items themselves run through :func:`affect_llm.batch.run`
(crash-safe, resumable, local or Ray), the same engine as ``affect-llm batch``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from ..errors import InputError

PREDICTIONS = "predictions.jsonl"
RUN_FILE = "run.json"


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                           timeout=5, check=False)  # fmt: skip
        return (r.stdout.strip() or None) if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def prepare_run_dir(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Create ``out`` (or check that it holds a run with the same settings) and return the run record."""
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / RUN_FILE
    if run_file.is_file():
        before = json.loads(run_file.read_text())
        if before.get("settings") != settings:
            diff = sorted(k for k in set(before.get("settings", {})) | set(settings)
                          if before.get("settings", {}).get(k) != settings.get(k))  # fmt: skip
            raise InputError(f"{out} holds a run with other settings ({', '.join(diff)}); use another --out")
        return before
    rec = {
        "settings": settings,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_commit(),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
    }
    run_file.write_text(json.dumps(rec, indent=2) + "\n")
    return rec
