"""Running the pipeline over an evaluation set into ``RUN_DIR/predictions.jsonl``, safely.

Every item's record is appended and flushed to disk (``fsync``) as soon as it is done, so a run killed at any
moment loses at most the item in flight; running the same command again skips the ids already there and never
writes an id twice. An item that fails (a missing or corrupt clip, …) gets a record with its ``error`` and the
run goes on. ``run.json`` keeps the settings; a different run cannot be resumed into the same folder.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import AffectLLMError, InputError
from ..types import Analysis
from .datasets import EvalItem, EvalSet
from .predictions import read_jsonl_records

PREDICTIONS = "predictions.jsonl"
RUN_FILE = "run.json"


@dataclass
class RunSummary:
    done: int = 0  # items analysed in this call
    skipped: int = 0  # already in predictions.jsonl (resumed)
    errors: int = 0  # records with an error written in this call
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def items_per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def record(item: EvalItem, a: Analysis) -> dict[str, Any]:
    """What a run keeps of an analysis: enough to score it and to read why (the cues the explanation used)."""
    return {
        "id": item.id,
        "label": a.label,
        "probabilities": {k: round(v, 6) for k, v in a.probabilities.items()},
        "distributions": {m: {k: round(v, 6) for k, v in d.items()} for m, d in a.distributions.items()},
        "explanation": a.explanation,
        "cited_cues": a.cited_cues,
        "uncited_ids": a.uncited_ids,
        "cues": [c.model_dump(mode="json", include={"id", "modality", "start", "end", "text"}) for c in a.cues],
        "transcript": a.transcript.text if a.transcript else None,
        "missing_modalities": [m.value for m in a.missing_modalities],
        "notes": a.notes,
        "timings": a.timings,
        "error": None,
    }


def error_record(item: EvalItem, e: BaseException) -> dict[str, Any]:
    msg = e.one_line() if isinstance(e, AffectLLMError) else " ".join(str(e).split())
    return {"id": item.id, "label": None, "error": f"{type(e).__name__}: {msg}"}


def analyze_item(pipe, item: EvalItem, explain: bool) -> Analysis:
    if item.media is not None:
        return pipe.analyze(item.media, context=item.context, speaker=item.speaker, explain=explain)
    if item.text is not None:
        return pipe.analyze(text=item.text, context=item.context, speaker=item.speaker, explain=explain)
    raise InputError(f"{item.id}: nothing to analyse (this dataset names clips: give --media-dir)")


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None if r.returncode == 0 else None
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


def run_items(
    eval_set: EvalSet,
    analyze: Callable[[EvalItem], Analysis],
    out: Path,
    *,
    progress: bool = True,
    on_record: Callable[[dict], None] | None = None,
) -> RunSummary:
    """Analyse every item of ``eval_set`` not yet in ``out/predictions.jsonl``, appending one record each."""
    path = out / PREDICTIONS
    done_ids = {r["id"] for r in read_jsonl_records(path, repair=True)}
    todo = [x for x in eval_set.items if x.id not in done_ids]
    summary = RunSummary(skipped=len(eval_set.items) - len(todo))
    t0 = time.perf_counter()
    bar = _Progress(len(eval_set.items), summary.skipped, eval_set.name) if progress else None
    with open(path, "a", encoding="utf-8") as f:
        try:
            for item in todo:
                try:
                    rec = record(item, analyze(item))
                except Exception as e:  # a bad item is recorded and the run goes on
                    rec = error_record(item, e)
                    summary.errors += 1
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                summary.done += 1
                for stage, s in (rec.get("timings") or {}).items():
                    summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + s
                if on_record:
                    on_record(rec)
                if bar:
                    bar.advance(rec)
        finally:
            if bar:
                bar.stop()
            summary.seconds = time.perf_counter() - t0
    return summary


class _Progress:
    """A rich progress bar with rate, ETA and the error count."""

    def __init__(self, total: int, completed: int, name: str):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,  # fmt: skip
        )

        self.errors = 0
        self.p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                          TimeRemainingColumn(), TextColumn("{task.fields[errors]}"),
                          console=Console(stderr=True), transient=False)  # fmt: skip
        self.t0 = time.perf_counter()
        self.start = completed
        self.task = self.p.add_task(name, total=total, completed=completed, rate="", errors="")
        self.p.start()

    def advance(self, rec: dict) -> None:
        self.errors += rec.get("error") is not None
        n = self.p.tasks[0].completed + 1 - self.start
        rate = n / max(1e-9, time.perf_counter() - self.t0)
        self.p.update(self.task, advance=1, rate=f"{rate:.2f} items/s",
                      errors=f"[red]{self.errors} errors[/]" if self.errors else "")  # fmt: skip

    def stop(self) -> None:
        self.p.stop()
