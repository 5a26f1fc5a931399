"""Evaluation runs: ``affect-llm eval`` runs the pipeline over a dataset (or reads a predictions file), scores it
with the metrics of :mod:`affect_llm.metrics`, and writes a run folder::

    RUN_DIR/run.json           settings, start time, code version, machine
    RUN_DIR/predictions.jsonl  one record per item (label, probabilities, explanation, cues, timings, error)
    RUN_DIR/metrics.json       every metric the dataset allows (:func:`score.score`)
    RUN_DIR/report.md, report.html

    >>> from affect_llm.evaluation import evaluate
    >>> metrics = evaluate("meld", "../shared/data/meld", "runs/meld-dev", split="dev", limit=100)
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ..inputs import EVAL_DATASETS, EvalItem, EvalSet, load_eval_set, read_jsonl_records
from .predictions import Prediction, read_predictions
from .runner import PREDICTIONS, prepare_run_dir
from .score import score

__all__ = [
    "EVAL_DATASETS", "EvalItem", "EvalSet", "Prediction", "evaluate", "load_eval_set",
    "read_predictions", "score", "score_run",
]  # fmt: skip

EXAMPLES = 12


def evaluate(
    dataset: str,
    data_dir: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    limit: int | None = None,
    media_dir: str | Path | None = None,
    config=None,
    explain: bool = True,
    explain_sample: int | None = None,
    predictions: str | Path | None = None,
    wheels: str | Path | None = None,
    extractor: str = "lexicon",
    embed: bool = True,
    progress: bool = True,
    pipeline=None,
    engine: str = "local",
    workers: int = 0,
    ray_address: str | None = None,
    llm_batch: int = 32,
) -> dict[str, Any]:
    """Run (or, with ``predictions``, just score) an evaluation into ``out``; returns the metrics.

    ``config``: a :class:`~affect_llm.config.PipelineConfig` (default: the shipped models; for MELD and
    EmoryNLP their labels and their own context model and fusion); ``wheels``: a folder of MER emotion-wheel files (default: :func:`affect_llm.metrics.wheel.default_wheels`).
    ``extractor``: ``lexicon`` (deterministic) or ``llm`` — how free text becomes emotion words.
    ``explain_sample``: explain only a seeded sample of that many items (the rest get labels only), for the
    explanation metrics of a large set at a fraction of the time.
    ``engine``/``workers``/``ray_address``: how the items run (:mod:`affect_llm.batch`: in this process, with
    cue-extraction worker processes, or on Ray); the results do not depend on it.
    Rerunning with the same ``out`` resumes: items already in ``predictions.jsonl`` are not run again."""
    from ..metrics.wheel import default_wheels

    out = Path(out)
    es = load_eval_set(dataset, data_dir, split, media_dir=media_dir, limit=limit)
    wheel_set = default_wheels(wheels)
    if extractor not in ("lexicon", "llm"):
        from ..errors import InputError

        raise InputError(f"unknown extractor {extractor!r} (lexicon or llm)")
    if predictions is not None:
        preds = read_predictions(predictions)
        settings = {"dataset": es.name, "split": es.split, "data_dir": str(data_dir), "limit": limit,
                    "predictions": str(predictions)}  # fmt: skip
        run = prepare_run_dir(out, settings)
        summary = None
    else:
        from ..config import PipelineConfig

        if config is None:  # the dataset's labels, and its own context model and fusion when they ship
            from ..data import DATASETS

            config = PipelineConfig.model_validate(
                {"reasoner": {"labels": es.labels}, "context": {"model": es.name}} if es.name in DATASETS else {}
            )
        settings = {"dataset": es.name, "split": es.split, "data_dir": str(data_dir), "limit": limit,
                    "media_dir": str(media_dir) if media_dir else None, "explain": explain,
                    "explain_sample": explain_sample,
                    "config": config.model_dump(mode="json")}  # fmt: skip
        run = prepare_run_dir(out, settings)
        from ..batch import BatchOptions
        from ..batch import run as run_batch

        chosen = None
        if explain and explain_sample is not None and explain_sample < len(es.items):
            chosen = {es.items[i].id for i in random.Random(0).sample(range(len(es.items)), explain_sample)}
        opts = BatchOptions(engine=engine, workers=workers, ray_address=ray_address, explain=explain,
                            explain_ids=chosen, progress=progress, llm_batch=llm_batch)  # fmt: skip
        summary = run_batch(es, config, out / PREDICTIONS, opts, pipeline=pipeline)
        preds = {r["id"]: Prediction.from_record(r) for r in read_jsonl_records(out / PREDICTIONS)}
    extract = None
    if extractor == "llm":
        from .llm_extractor import LLMExtractor

        extract = LLMExtractor(wheel_set)
    return score_run(es, preds, out, run, wheel_set, embed=embed, extractor=extract,
                     run_summary=summary.as_dict() if summary is not None else None)  # fmt: skip


def score_run(es: EvalSet, preds: dict[str, Prediction], out: Path, run: dict | None, wheel_set,
              *, embed: bool = True, extractor=None, run_summary: dict | None = None) -> dict[str, Any]:  # fmt: skip
    """Score, then write ``metrics.json`` (with ``run_summary``, this call's run figures, under ``run``) and the
    reports into ``out``."""
    from .report import write_reports

    metrics = score(es, preds, wheels=wheel_set, embed=embed, extractor=extractor)
    if run_summary is not None:
        metrics["run"] = run_summary
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_reports(out, metrics, run, _examples(es, preds))
    return metrics


def _examples(es: EvalSet, preds: dict[str, Prediction]) -> list[dict]:
    """A few records for the report: errors first, then a spread of the explained ones, then of the rest."""
    got = [(it, preds[it.id]) for it in es.items if it.id in preds]
    chosen = [x for x in got if x[1].error][:3]
    for pool in ([x for x in got if not x[1].error and x[1].explanation],
                 [x for x in got if not x[1].error and not x[1].explanation]):  # fmt: skip
        room = EXAMPLES - len(chosen)
        if room > 0 and pool:
            chosen += pool[:: max(1, len(pool) // room)][:room]
    return [{"id": it.id, "gold": it.label or (", ".join(it.labels) if it.labels else None), "label": p.label
             if not p.labels else ", ".join(p.labels), "explanation": p.explanation, "error": p.error}
            for it, p in chosen]  # fmt: skip
