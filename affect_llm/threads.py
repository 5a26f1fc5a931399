"""Native thread pools sized for the cores that are free, so that an analysis holds up on a busy machine.

torch (intra-op) and CTranslate2 (Whisper) run their threads on GNU OpenMP, whose waiting threads spin. With
more runnable threads than cores -- a ``chat`` beside an ``eval``, two ``chat`` processes, a busy neighbour --
the spinning threads take the cores from the ones with work, and an analysis slows down many times more than
its share. Measured on 2 cores (scripts/bench_concurrency.py prints the whole picture), one explanation of 48
tokens beside one single-threaded busy process: 2 torch threads 8.6 s / 7.9 s, 1 thread 2.9 s / 4.3 s, against
2.2 s alone. ``OMP_WAIT_POLICY=PASSIVE`` fixes the collapse as well but costs ~60 % alone (3.6 s against 2.2 s),
so it is not set.

So the pools take the cores that are free: :func:`free_cores` is the cores this process may use (its CPU
affinity) less those other processes keep busy, from ``/proc/stat``; :class:`CoreMonitor` re-reads that between
LLM calls from the CPU time used since the last one (no extra sampling), and the in-process LLM resizes torch's
pool to it before each call. A count the user chose (``--threads``, ``SpeechOptions.cpu_threads``, a batch
worker's share) is kept as it is.

The pool size does not change results: the LLM's scores and text are bit-identical with 1 and 2 torch threads
(tests/llm/test_reasoner.py checks it), so the same input gives the same output however busy the machine is.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext


def available_cores() -> int:
    """The cores this process may run on (its affinity mask; all cores where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _snapshot() -> tuple[tuple[float, float], float, float] | None:
    """(the machine's (busy, total) CPU time, this process's CPU seconds, the monotonic clock), or None."""
    times = _cpu_times()
    return (times, _own_cpu_seconds(), time.monotonic()) if times is not None else None


def _free_between(before, after) -> int | None:
    """The cores free of other processes between two snapshots (:func:`_snapshot`): the machine's busy cores less this
    process's own; None when the interval says nothing (no time passed)."""
    (busy0, total0), own0, t0 = before
    (busy1, total1), own1, t1 = after
    if total1 <= total0 or t1 <= t0:
        return None
    cores = available_cores()
    busy_cores = (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or cores)  # all processes, in cores
    others = max(0.0, busy_cores - (own1 - own0) / (t1 - t0))
    return max(1, min(cores, round(cores - others)))


def free_cores(sample_s: float = 0.05) -> int:
    """How many of :func:`available_cores` are not kept busy by other processes right now (at least one): the
    machine's busy CPU time over ``sample_s`` less this process's own."""
    before = _snapshot()
    if before is None:
        return available_cores()
    time.sleep(sample_s)
    after = _snapshot()
    free = _free_between(before, after) if after is not None else None
    return available_cores() if free is None else free


def default_threads(chosen: int = 0) -> int:
    """``chosen`` when set (> 0), else :func:`free_cores`."""
    return chosen if chosen and chosen > 0 else free_cores()


class CoreMonitor:
    """The free cores, re-measured at most every ``min_interval`` seconds from the machine's and this process's
    CPU time since the previous measurement (the first one samples for a moment, see :func:`free_cores`)."""

    def __init__(self, min_interval: float = 0.25):
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._last = None  # the snapshot the next measurement starts from
        self._free = available_cores()

    def free(self) -> int:
        with self._lock:
            if self._last is None:
                self._free = free_cores()
                self._last = _snapshot()
                return self._free
            if time.monotonic() - self._last[2] < self.min_interval:
                return self._free
            now = _snapshot()
            free = _free_between(self._last, now) if now is not None else None
            if free is not None:
                self._free, self._last = free, now
            return self._free


@contextmanager
def torch_threads(n: int | None, lock: threading.Lock | None = None) -> Iterator[None]:
    """torch's intra-op pool at ``n`` threads for the block, then as it was (``None``: unchanged). ``lock``, when
    given, is held for the whole block, so callers that share it never see each other's count."""
    import torch

    with lock if lock is not None else nullcontext():
        before = torch.get_num_threads()
        if n is None or n == before:
            yield
            return
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)
