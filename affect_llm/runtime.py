"""Process-wide helpers every stage shares: where the shipped files are, and keeping third-party libraries
quiet on a user's terminal. Nothing here imports a stage."""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def adapters_dir() -> Path:
    """The shipped adapters: the repository's ``adapters/`` (an editable install) or ``affect_llm/_adapters`` inside
    the wheel; ``AFFECT_LLM_ADAPTERS`` points elsewhere."""
    env = os.environ.get("AFFECT_LLM_ADAPTERS")
    if env:
        return Path(env)
    for candidate in (_PKG.parent / "adapters", _PKG / "_adapters"):
        if candidate.is_dir():
            return candidate
    return _PKG.parent / "adapters"


def quiet_transformers() -> None:
    """No progress bars or warnings from transformers on our users' terminals."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    # peft asks transformers a deprecated question on every get_peft_model; not our users' business
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    # transformers 5.x renames forward(past_key_values=) to cache=; the old name works on every version we support
    warnings.filterwarnings("ignore", message=".*`past_key_values` is deprecated.*", category=FutureWarning)


_stderr_lock = threading.Lock()
_stderr_users = 0
_stderr_saved: int | None = None


@contextmanager
def quiet_native_stderr(active: bool = True) -> Iterator[None]:
    """Silence file descriptor 2 (native libraries' logging) unless AFFECT_LLM_DEBUG is set.

    fd 2 belongs to the whole process, so the redirection is shared: the first thread in saves the real stderr
    and points fd 2 at /dev/null, the last one out restores it (two threads that each saved "the current" fd 2
    would otherwise leave the process writing to /dev/null for good)."""
    global _stderr_users, _stderr_saved
    if not active or os.environ.get("AFFECT_LLM_DEBUG"):
        yield
        return
    with _stderr_lock:
        if _stderr_users == 0:
            sys.stderr.flush()
            _stderr_saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        _stderr_users += 1
    try:
        yield
    finally:
        with _stderr_lock:
            _stderr_users -= 1
            if _stderr_users == 0 and _stderr_saved is not None:
                os.dup2(_stderr_saved, 2)
                os.close(_stderr_saved)
                _stderr_saved = None


def progress_bar(*fields: str, console=None, transient: bool = False):
    """The progress bar of every long command (batch, eval, training): the description, the bar, n/N, the named
    extra fields (``task.fields[name]``, given to ``add_task``/``update``), elapsed time and ETA; on stderr unless
    ``console`` is given. A :class:`rich.progress.Progress` (use it as a context manager, or start/stop it)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               *(TextColumn(f"{{task.fields[{name}]}}") for name in fields), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn()]  # fmt: skip
    return Progress(*columns, console=console or Console(stderr=True), transient=transient)


def git_commit() -> str | None:
    """The short commit of the code that runs (None outside a git checkout)."""
    import subprocess

    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_PKG, capture_output=True, text=True,
                           timeout=5, check=False)  # fmt: skip
        return (r.stdout.strip() or None) if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def run_record(record: Path, settings: dict, output: Path, what: str) -> dict:
    """The settings record of a resumable run (``batch``'s results file, ``eval``'s run folder): ``record`` is a
    JSON file of the settings, start time, code version and machine. When ``output`` exists and ``record`` holds
    other settings, an :class:`~affect_llm.errors.InputError` naming them (another command never resumes into a
    run's output); when the settings match, the earlier record; else a new record, written."""
    import json
    import platform
    import time

    from .errors import InputError

    if record.is_file() and output.exists():
        before = json.loads(record.read_text())
        old = before.get("settings") or {}
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise InputError(f"{output} holds {what} of other settings ({', '.join(diff)}); use another --out")
        return before
    rec = {"settings": settings, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git_commit(),
           "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}}
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(rec, indent=2) + "\n")
    return rec
