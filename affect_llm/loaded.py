"""The models a :class:`~affect_llm.pipeline.Pipeline` runs, loaded lazily and once: the transcriber, the
reasoning LLM (in a background thread, so that it overlaps decoding and ASR), the context model, the fusion and
CLIP. Thread-safe: each loader checks and sets its model under its own lock, so a pipeline shared by threads (the
server, LangChain's abatch) loads every model once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from .config import PipelineConfig


class Timer:
    """Seconds per stage of one analysis (``with timer("asr"): …``), summed when a stage runs twice.
    ``on_stage(stage, status, seconds)``, when given, hears each stage start (``"start"``, None) and end
    (``"done"`` or ``"failed"``, its seconds): the server's progress events. It must not raise."""

    def __init__(self, on_stage: Callable[[str, str, float | None], None] | None = None) -> None:
        self.timings: dict[str, float] = {}
        self.on_stage = on_stage

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.on_stage is not None:
            self.on_stage(stage, "start", None)
        t0 = time.perf_counter()
        status = "failed"
        try:
            yield
            status = "done"
        finally:
            seconds = time.perf_counter() - t0
            self.timings[stage] = round(self.timings.get(stage, 0.0) + seconds, 4)
            if self.on_stage is not None:
                self.on_stage(stage, status, round(seconds, 4))


class LoadedModels:
    """See the module docstring. Every accessor returns the loaded model (or None when the config switches it
    off) and records its load time in ``timer`` when given."""

    def __init__(self, config: PipelineConfig):
        self.config = config
        self._transcriber = None
        self._reasoner = None
        self._matcher = None
        self._context_model = None
        self._fusion = None
        self._reasoner_loading: Future | None = None
        self._lock = threading.Lock()  # guards the loader state below and the per-model locks
        self._locks: dict[str, threading.Lock] = {}

    def _loader_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(name, threading.Lock())

    def transcriber(self, timer: Timer | None = None):
        with self._loader_lock("asr"):
            if self._transcriber is None:
                from .cues.speech import load_transcriber

                with (timer or Timer())("load_asr"):
                    self._transcriber = load_transcriber(self.config.speech)
            return self._transcriber

    def _load_reasoner(self):
        from .llm.reasoner import Reasoner

        t0 = time.perf_counter()
        reasoner = Reasoner(self.config.reasoner)
        reasoner.prepare()
        return reasoner, time.perf_counter() - t0

    def preload_reasoner(self) -> None:
        """Start loading the LLM in the background (it overlaps decoding and ASR, which run in native code)."""
        with self._lock:
            if self._reasoner is None and self._reasoner_loading is None:
                self._reasoner_loading = ThreadPoolExecutor(1, thread_name_prefix="load-llm").submit(self._load_reasoner)

    def reasoner(self, timer: Timer | None = None):
        if self._reasoner is not None:
            return self._reasoner
        self.preload_reasoner()
        t0 = time.perf_counter()
        with self._lock:
            loading = self._reasoner_loading
        if loading is None:  # another thread finished the load in between
            return self._reasoner
        heard = timer is not None and timer.on_stage is not None  # the server's progress events
        if heard:
            timer.on_stage("wait_llm", "start", None)
        try:
            reasoner, load_s = loading.result()  # re-raises a loading error here
        except BaseException:
            with self._lock:  # the next call tries again instead of re-raising a stale error forever
                if self._reasoner_loading is loading:
                    self._reasoner_loading = None
            if heard:
                timer.on_stage("wait_llm", "failed", round(time.perf_counter() - t0, 4))
            raise
        if heard:
            timer.on_stage("wait_llm", "done", round(time.perf_counter() - t0, 4))
        with self._lock:
            if self._reasoner is None:
                self._reasoner = reasoner
            if self._reasoner_loading is loading:
                self._reasoner_loading = None
        if timer is not None:
            timer.timings["load_llm"] = round(load_s, 4)  # in the background: overlaps other stages
            timer.timings["wait_llm"] = round(time.perf_counter() - t0, 4)
        return self._reasoner

    def _after_llm_import(self, timer: Timer | None) -> None:
        """Importing transformers' lazy modules from two threads at once can fail: a loader that imports them
        (the context model, CLIP) first lets a background LLM load finish (it usually has, while ASR ran)."""
        if self._reasoner_loading is not None:
            self.reasoner(timer)

    @property
    def loaded_context_model(self):
        """The context model if it has been loaded (None otherwise: nothing is loaded to answer)."""
        return self._context_model

    def context_model(self, timer: Timer | None = None):
        """The conversation-context model, or None when ``config.context.model`` is None."""
        ref = self.config.context.model
        if ref is None:
            return None
        if self._context_model is None:
            self._after_llm_import(timer)
            with self._loader_lock("context"):
                if self._context_model is None:
                    from .context.model import load_context_model

                    with (timer or Timer())("load_context"):
                        self._context_model = load_context_model(ref)
        return self._context_model

    def fusion(self):
        """The fitted probability fusion, or None when ``config.context.fusion`` is None (or ``auto`` finds none
        shipped for the context model in use)."""
        with self._loader_lock("fusion"):
            if self._fusion is None:
                from .fusion import ProbabilityFusion
                from .runtime import adapters_dir

                ref = self.config.context.fusion
                auto = ref == "auto"
                if auto:
                    model = self.config.context.model
                    ref = model if model and "/" not in model and not Path(model).exists() else None
                if ref is None:
                    return None
                path = Path(ref) if ref.endswith(".json") or "/" in ref else adapters_dir() / f"fusion-{ref}.json"
                if auto and not path.is_file():
                    return None
                self._fusion = ProbabilityFusion.load(path)
            return self._fusion

    def scene_matcher(self):
        """The CLIP matcher, or None when no CLIP weights are configured."""
        if self._matcher is None and self.config.scene.model is not None:
            self._after_llm_import(None)
            with self._loader_lock("clip"):
                if self._matcher is None:
                    from .cues.clip import load_matcher

                    self._matcher = load_matcher(self.config.scene, self.config.reasoner.labels)
        return self._matcher
