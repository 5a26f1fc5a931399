"""Batch reasoning: the pipeline over many inputs into one JSONL file, crash-safe and resumable, on one machine or
on a Ray cluster. ``affect-llm batch`` and ``affect-llm eval`` both run through :func:`run`.

**Inputs** (:func:`load_inputs`): a MELD or EmoryNLP CSV (each labelled utterance as text with the dialogue
before it; with ``media_dir``, MELD's clips ``dia{D}_utt{U}.mp4``), a JSONL manifest (one ``{"id", "path" or
"text", "context"?, "speaker"?, "label"?}`` per line; paths relative to the manifest), or a folder of media
files (ids are their paths inside it).

**Output**: one line per input — ``id, label, probabilities, distributions, fusion, decision, label_method,
explanation, explained_label, cited_cues, uncited_ids, cues, transcript, missing_modalities, notes, timings,
evidence, error`` (with ``explain_gold`` the explanation is of the item's dataset label, ``explained_label``).
:mod:`affect_llm.export` turns the lines into an instruction-tuning set. Items go through the LLM in
chunks of ``llm_batch`` (their explanations are generated as one batch); each chunk's lines are appended and
``fsync``-ed as soon as it is done, so ``kill -9`` loses at most the chunks in flight; rerunning the same
command skips the ids already written (a line cut short by the kill is dropped first) and never writes an id
twice. An item that fails gets its ``error`` and the batch goes on; a rerun analyses again the items whose
error was not their own (``retry``: a worker that died, a server that went away), never the bad inputs. A sidecar ``OUT.run.json`` keeps the
settings; another command cannot resume into the same file.

**Engines**:

- ``local`` with ``workers=0``: one process does everything, chunk after chunk;
- ``local`` with ``workers=N``: N spawned processes, each a whole pipeline on its share of the cores, take the
  chunks in turn; the main process only writes;
- ``ray``: Ray Data streams the items through actors that each hold a pipeline (``ray.init()`` starts a local
  cluster unless ``ray_address`` names one); the driver writes the records as they arrive, the same way.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import AffectLLMError, InputError, MediaError
from .inputs import MEDIA_SUFFIXES, EvalItem, EvalSet, read_jsonl_records
from .types import Analysis

Engine = Literal["local", "ray"]


@dataclass(frozen=True)
class BatchOptions:
    engine: Engine = "local"
    workers: int = 0  # local: pipeline processes (0 = all in this process); ray: actors (0 = 1)
    ray_address: str | None = None  # None: a local Ray instance; "auto" or "ray://host:port": a cluster
    explain: bool = True
    explain_ids: set[str] | None = None  # explain only these ids (None: all, when ``explain``)
    progress: bool = True
    llm_batch: int = 32  # items whose explanations are generated together (and written together)
    explain_gold: bool = False  # explain each item's dataset label instead of the decided one (rationale mode)

    def explains(self, item_id: str) -> bool:
        return self.explain and (self.explain_ids is None or item_id in self.explain_ids)


@dataclass
class RunSummary:
    total: int = 0
    done: int = 0  # items analysed in this call
    skipped: int = 0  # already in the output (resumed)
    errors: int = 0  # records with an error written in this call
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def items_per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.total, "items_this_call": self.done, "resumed_past": self.skipped,
                "errors_this_call": self.errors, "seconds_this_call": round(self.seconds, 1),
                "items_per_second": round(self.items_per_second, 3),
                "stage_seconds": {k: round(v, 1) for k, v in sorted(self.stage_seconds.items(), key=lambda kv: -kv[1])}}  # fmt: skip


# -- inputs ------------------------------------------------------------------------------------------------


def load_inputs(path: str | Path, *, media_dir: str | Path | None = None, limit: int | None = None) -> EvalSet:
    """The items of a batch input (see the module docstring)."""
    from .data import csv_dataset_name, dataset_labels, load_csv

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MEDIA_SUFFIXES)
        items = [EvalItem(id=str(f.relative_to(p)), media=f) for f in files]
        es = EvalSet("folder", None, items, source=str(p))
    elif p.suffix.lower() == ".csv":
        from .inputs import dialogue_items

        name = csv_dataset_name(p)
        if name is None:
            raise InputError(f"{p}: not a MELD or EmoryNLP CSV (no Dialogue_ID / Scene_ID column)")
        items = dialogue_items(name, load_csv(p, name), Path(media_dir) if media_dir else None, labelled_only=False)
        es = EvalSet(name, None, items, labels=dataset_labels(name), source=str(p))
    else:
        es = _manifest(p, Path(media_dir) if media_dir else None)
    if limit is not None:
        es.items = es.items[: max(0, limit)]
    if not es.items:
        raise InputError(f"{p}: no items")
    return es


def _manifest(p: Path, media_dir: Path | None) -> EvalSet:
    """A JSONL manifest: the evaluation JSONL format, whose reader takes ``path`` for ``media``."""
    from .inputs import load_eval_set

    es = load_eval_set("jsonl", p, media_dir=media_dir)
    es.name = "manifest"
    return es


# -- records -----------------------------------------------------------------------------------------------


def record(item: EvalItem, a: Analysis) -> dict[str, Any]:
    """What a batch keeps of an analysis (:meth:`Analysis.summary`, probabilities to 6 decimals)."""
    rec = {"id": item.id, **a.summary(), "evidence": a.evidence, "error": None}
    if a.open_vocabulary is not None:  # what evaluation reads as the prediction's open-vocabulary label set
        rec["labels"] = list(a.open_vocabulary)
    rec["probabilities"] = {k: round(v, 6) for k, v in a.probabilities.items()}
    rec["distributions"] = {m: {k: round(v, 6) for k, v in d.items()} for m, d in a.distributions.items()}
    return rec


#: errors that belong to the item itself (a bad file, a bad text): a rerun would fail the same way
FINAL_ERRORS = (InputError, MediaError)


def _final_names() -> tuple[str, ...]:
    """The type names of :data:`FINAL_ERRORS` and their subclasses, as error records write them."""
    todo, names = list(FINAL_ERRORS), []
    while todo:
        cls = todo.pop()
        names.append(cls.__name__)
        todo += cls.__subclasses__()
    return tuple(f"{n}:" for n in names)


def error_record(item: EvalItem, e: BaseException) -> dict[str, Any]:
    msg = e.one_line() if isinstance(e, AffectLLMError) else " ".join(str(e).split())
    final = isinstance(e, FINAL_ERRORS)
    return {"id": item.id, "label": None, "error": f"{type(e).__name__}: {msg}", "retry": not final}


def retryable(rec: dict[str, Any]) -> bool:
    """Whether a resumed run analyses this record's item again: an error that is not the item's own (a worker
    that died, a server that went away, a model that failed to load). Records written before the ``retry``
    field are judged by their error's type name."""
    if rec.get("error") is None:
        return False
    if "retry" in rec:
        return bool(rec["retry"])
    return not str(rec["error"]).startswith(_final_names())


def _drop_retryable(out: Path) -> list[dict[str, Any]]:
    """The records of ``out`` that stay done; the file is rewritten without the others (atomically: a temp file
    renamed over it), so that each id keeps one record once its retry is appended."""
    records = read_jsonl_records(out, repair=True)
    keep = [r for r in records if not retryable(r)]
    if len(keep) < len(records):
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    return keep


def _input(item: EvalItem, explain: bool, gold: bool = False) -> dict | InputError:
    """An item as :meth:`Pipeline.analyze_many`'s input (its clip when it has one, else its text); ``gold``: its
    dataset label is the one explained."""
    if item.media is None and item.text is None:
        return InputError(f"{item.id}: nothing to analyse (this dataset names clips: give --media-dir)")
    return {"source": item.media, "text": None if item.media is not None else item.text, "context": item.context,
            "speaker": item.speaker, "explain": explain, "explain_label": item.label if gold else None}


def analyze_item(pipe, item: EvalItem, explain: bool, gold: bool = False) -> dict[str, Any]:
    """One item through the whole pipeline, as a record (an error record when it fails)."""
    return analyze_items(pipe, [item], [explain], gold)[0]


def analyze_items(pipe, items: list[EvalItem], explain: list[bool], gold: bool = False) -> list[dict[str, Any]]:
    """Items through the pipeline together (:meth:`Pipeline.analyze_many`: each one's cues and label, then their
    explanations in one batched generation). One record per item, in order; a bad item gets an error record
    and the others go on. ``gold``: each item's dataset label is explained (when it has one)."""
    results = pipe.analyze_many([_input(x, e, gold) for x, e in zip(items, explain)])
    return [error_record(x, r) if isinstance(r, Exception) else record(x, r) for x, r in zip(items, results)]


def _chunks(items: list[EvalItem], size: int) -> Iterator[list[EvalItem]]:
    size = max(1, size)
    for i in range(0, len(items), size):
        yield items[i : i + size]


# -- the writer --------------------------------------------------------------------------------------------


def prepare(out: Path, settings: dict[str, Any]) -> None:
    """Check (or write) the settings record beside ``out`` (``OUT.run.json``): another command does not resume
    into the same file."""
    from .runtime import run_record

    run_record(out.with_name(out.name + ".run.json"), settings, out, "results")


def run(items: EvalSet, config, out: str | Path, opts: BatchOptions | None = None, *, pipeline=None,
        on_record: Callable[[dict], None] | None = None) -> RunSummary:  # fmt: skip
    """Analyse every item of ``items`` not yet in ``out`` with the ``opts.engine``, appending one record each."""
    opts = opts or BatchOptions()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done_ids = {r["id"] for r in _drop_retryable(out)}  # failed items whose error was not their own run again
    todo = [x for x in items.items if x.id not in done_ids]
    summary = RunSummary(total=len(items.items), skipped=len(items.items) - len(todo))
    if todo and config is not None and (opts.engine == "ray" or opts.workers > 0):
        from .llm import backends

        share = backends.get(config.reasoner.backend).shared
        if share is not None:  # one model for all the workers (vLLM: one server started here), not one each
            config = config.updated(reasoner=share(config.reasoner))
    if opts.engine == "ray":
        produce = _ray_engine(todo, config, opts)
    elif opts.engine == "local" and opts.workers > 0 and todo:
        produce = _process_engine(todo, config, opts)
    elif opts.engine == "local":
        produce = _inline_engine(todo, config, opts, pipeline)
    else:
        raise InputError(f"unknown engine {opts.engine!r} (local or ray)")
    t0 = time.perf_counter()
    bar = _Progress(summary.total, summary.skipped, items.name) if opts.progress else None
    with open(out, "a", encoding="utf-8") as f:
        try:
            for rec in produce:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                summary.done += 1
                summary.errors += rec.get("error") is not None
                for stage, s in (rec.get("timings") or {}).items():
                    if stage != "total":
                        summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + s
                if on_record:
                    on_record(rec)
                if bar:
                    bar.advance(rec)
        finally:
            if bar:
                bar.stop()
            summary.seconds = time.perf_counter() - t0
            if hasattr(produce, "close"):
                produce.close()
    return summary


# -- engines -----------------------------------------------------------------------------------------------


def _inline_engine(todo: list[EvalItem], config, opts: BatchOptions, pipeline) -> Iterator[dict]:
    if not todo:
        return
    from .pipeline import Pipeline

    pipe = pipeline or Pipeline(config)
    for chunk in _chunks(todo, opts.llm_batch):
        yield from analyze_items(pipe, chunk, [opts.explains(x.id) for x in chunk], opts.explain_gold)


_WORKER_PIPE = None
_WORKER_EXPLAIN: BatchOptions | None = None


def _worker_init(config_json: str, threads: int, explain: bool, explain_ids: list[str] | None,
                 explain_gold: bool = False) -> None:  # fmt: skip
    """A worker process: its own pipeline, its share of the cores (``threads`` for torch and the ASR)."""
    global _WORKER_PIPE, _WORKER_EXPLAIN
    import torch

    from .config import PipelineConfig
    from .pipeline import Pipeline

    torch.set_num_threads(threads)
    cfg = PipelineConfig.model_validate_json(config_json).updated(speech={"cpu_threads": threads},
                                                                 reasoner={"threads": threads})  # fmt: skip
    _WORKER_PIPE = Pipeline(cfg)
    _WORKER_EXPLAIN = BatchOptions(explain=explain, explain_ids=set(explain_ids) if explain_ids is not None else None,
                                   explain_gold=explain_gold)  # fmt: skip


def _worker_analyze(blob: bytes) -> list[dict]:
    chunk: list[EvalItem] = pickle.loads(blob)
    return analyze_items(_WORKER_PIPE, chunk, [_WORKER_EXPLAIN.explains(x.id) for x in chunk],
                         _WORKER_EXPLAIN.explain_gold)  # fmt: skip


def _process_engine(todo: list[EvalItem], config, opts: BatchOptions) -> Iterator[dict]:
    """``opts.workers`` spawned processes, each a whole pipeline on its share of the cores; measured on 2 cores,
    two one-thread pipelines side by side do more than one two-thread pipeline (docs/batch.md)."""
    import multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // opts.workers)
    ctx = mp.get_context("spawn")  # torch and MediaPipe do not survive fork
    pool = ProcessPoolExecutor(opts.workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(config.model_dump_json(), threads, opts.explain,
                                         sorted(opts.explain_ids) if opts.explain_ids is not None else None,
                                         opts.explain_gold))  # fmt: skip
    by_future: dict[Future, list[EvalItem]] = {}
    queue = _chunks(todo, opts.llm_batch)
    finished_all = False
    try:
        for chunk in queue:  # two chunks per worker in flight: bounded memory, workers never idle
            by_future[pool.submit(_worker_analyze, pickle.dumps(chunk))] = chunk
            if len(by_future) >= 2 * opts.workers:
                break
        while by_future:
            finished, _ = wait(set(by_future), return_when=FIRST_COMPLETED)
            for fut in finished:
                chunk = by_future.pop(fut)
                nxt = next(queue, None)
                if nxt is not None:
                    by_future[pool.submit(_worker_analyze, pickle.dumps(nxt))] = nxt
                try:
                    yield from fut.result()
                except Exception as e:  # the worker process itself died (out of memory, a native crash)
                    yield from (error_record(item, e) for item in chunk)
        finished_all = True
    finally:  # done: let the workers exit cleanly; interrupted: do not wait for the items in flight
        pool.shutdown(wait=finished_all, cancel_futures=True)


class _RayAnalyzer:
    """A Ray actor holding one pipeline; a batch of rows in (pickled items), their JSON records out."""

    def __init__(self, config_json: str, explain: bool, explain_ids: list[str] | None, explain_gold: bool = False):
        from .config import PipelineConfig
        from .pipeline import Pipeline

        self.pipe = Pipeline(PipelineConfig.model_validate_json(config_json))
        self.opts = BatchOptions(explain=explain, explain_ids=set(explain_ids) if explain_ids is not None else None,
                                 explain_gold=explain_gold)  # fmt: skip

    def __call__(self, batch: dict) -> dict:
        items: list[EvalItem] = [pickle.loads(b) for b in batch["item"]]
        recs = analyze_items(self.pipe, items, [self.opts.explains(x.id) for x in items], self.opts.explain_gold)
        return {"record": [json.dumps(r, ensure_ascii=False) for r in recs]}


def _ray_engine(todo: list[EvalItem], config, opts: BatchOptions) -> Iterator[dict]:
    if not todo:
        return
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'affect-llm[ray]'") from None
    import logging

    for name in ("ray", "ray.data"):  # Ray's own INFO lines would bury our progress bar
        logging.getLogger(name).setLevel(logging.WARNING)
    started_here = not ray.is_initialized()
    if started_here:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        ray.init(address=opts.ray_address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, ignore_reinit_error=True)  # fmt: skip
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = False
        size = max(1, opts.llm_batch)
        ds = ray.data.from_items([{"item": pickle.dumps(x)} for x in todo],
                                 override_num_blocks=max(1, -(-len(todo) // size)))  # fmt: skip
        ds = ds.map_batches(
            _RayAnalyzer,
            batch_size=size,
            batch_format="numpy",
            fn_constructor_kwargs={"config_json": config.model_dump_json(), "explain": opts.explain,
                                   "explain_ids": sorted(opts.explain_ids) if opts.explain_ids is not None else None,
                                   "explain_gold": opts.explain_gold},
            compute=ray.data.ActorPoolStrategy(size=max(1, opts.workers)), num_cpus=1,
        )  # fmt: skip
        for row in ds.iter_rows():
            yield json.loads(row["record"])
    finally:
        if started_here:
            ray.shutdown()


class _Progress:
    """A rich progress bar with rate, ETA and the error count."""

    def __init__(self, total: int, completed: int, name: str):
        from .runtime import progress_bar

        self.errors = 0
        self.p = progress_bar("rate", "errors")
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

