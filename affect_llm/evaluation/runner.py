"""The run folder of an evaluation: ``run.json`` (settings, start time, code version, machine) and the guard
that keeps another command from resuming into it. The items themselves run through :func:`affect_llm.batch.run`
(crash-safe, resumable, local or Ray), the same engine as ``affect-llm batch``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..runtime import run_record

PREDICTIONS = "predictions.jsonl"
RUN_FILE = "run.json"


def prepare_run_dir(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Create ``out`` (or check that it holds a run with the same settings) and return the run record."""
    out.mkdir(parents=True, exist_ok=True)
    return run_record(out / RUN_FILE, settings, out, "a run")
