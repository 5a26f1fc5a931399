"""Fit the probability fusion on a dataset's dev split, as the pipeline sees it.

    affect-llm train fusion --dataset meld --data-dir ../shared/data/meld --out adapters/fusion-meld.json

Every dev utterance goes through :meth:`Pipeline.analyze` exactly as ``chat --text ... --context ...`` would run it
(text only: the utterance last, the earlier utterances of its dialogue as context, no explanation), and the
per-modality distributions are collected (cached in ``--work-dir``). The fusion is cross-fitted over dialogues
(2 folds: fit on one half, score the other) to report honest dev numbers, then fitted on all of dev and saved.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import Dialogue, dataset_labels, load_dataset
from ..metrics import accuracy, expected_calibration_error, per_class_f1, weighted_f1
from ..runtime import progress_bar

MODALITIES = ["context", "llm", "face", "scene"]  # face and scene: no labelled dev video here, so left unfitted


@dataclass
class FusionFitOptions:
    dataset: str = "meld"
    data_dir: str = "../shared/data/meld"
    out: str = "adapters/fusion-meld.json"
    split: str = "dev"
    context_model: str | None = None  # default: the shipped adapters/context-<dataset>
    work_dir: str = ".cache/fusion"
    limit: int | None = None  # first N utterances (smoke tests)
    folds: int = 2
    seed: int = 0
    repeats: int = 10  # cross-fitting repeated over this many random splits of the dialogues (mean ± sd reported)


def collect(pipe, dialogues: list[Dialogue], labels: list[str], limit: int | None = None, progress=None) -> dict:
    """Run the pipeline (text, with each utterance's earlier dialogue as context) over every labelled utterance;
    return ``{"ids", "gold", "dialogue", <modality>: (N, K) array with NaN rows where missing}``."""
    rows: dict[str, list] = {"ids": [], "gold": [], "dialogue": []}
    dists: dict[str, list] = {}
    n = 0
    for di, d in enumerate(dialogues):
        for i, u in enumerate(d.utterances):
            if u.label is None:
                continue
            if limit is not None and n >= limit:
                break
            prefix = Dialogue(id=d.id, utterances=d.utterances[:i])
            a = pipe.analyze(text=u.text, context=prefix, speaker=u.speaker, explain=False)
            rows["ids"].append(u.id)
            rows["gold"].append(labels.index(u.label))
            rows["dialogue"].append(di)
            for m, dist in a.distributions.items():
                dists.setdefault(m, [None] * n)
            for m in dists:
                dist = a.distributions.get(m)
                dists[m].append([dist[lab] for lab in labels] if dist and set(dist) == set(labels) else None)
            n += 1
            if progress is not None:
                progress()
    out: dict = {k: np.asarray(v) for k, v in rows.items()}
    nan = [np.nan] * len(labels)
    for m, v in dists.items():
        out[m] = np.asarray([r if r is not None else nan for r in v], dtype=np.float64)
    return out


def _models_key(pipe) -> str:
    """A short hash of what produces the distributions (the LLM, its adapter's weights, the context model's
    weights), so a cache of collected distributions is never reused for other models — a context model retrained
    in place under its shipped name included."""
    import hashlib

    from ..context.model import context_model_path, fingerprint
    from ..llm.reasoner import resolve_adapter

    cfg = pipe.config
    h = hashlib.sha256(json.dumps([cfg.reasoner.model_dump(), cfg.context.model_dump()], sort_keys=True).encode())
    adapter = resolve_adapter(cfg.reasoner)
    if adapter is not None:
        for f in sorted(adapter.path.glob("*.safetensors")):
            h.update(f.read_bytes())
    if cfg.context.model:
        h.update(fingerprint(context_model_path(cfg.context.model)).encode())
    return h.hexdigest()[:12]


def scores(probs: np.ndarray, gold: np.ndarray, labels: list[str]) -> dict:
    pred = probs.argmax(1)
    g, p = [labels[i] for i in gold], [labels[i] for i in pred]
    return {"weighted_f1": round(100 * weighted_f1(g, p, labels), 2), "accuracy": round(100 * accuracy(g, p), 2),
            "ece": round(expected_calibration_error(probs, gold), 4), "n": len(gold),
            "per_class_f1": {c: round(100 * f, 1) for c, f in per_class_f1(g, p, labels).items()}}  # fmt: skip


def crossfit(data: dict, present: list[str], labels: list[str], folds: int, seed: int) -> np.ndarray:
    """Fused distributions of every sample from a fusion fitted on the other folds (the dialogues split into
    ``folds`` at random by ``seed``, so no dialogue is scored by weights fitted on it)."""
    from ..fusion import ProbabilityFusion

    gold = data["gold"]
    dia = np.unique(data["dialogue"])
    fold_of = dict(zip(dia, np.random.default_rng(seed).permutation(len(dia)) % folds))
    fold = np.array([fold_of[d] for d in data["dialogue"]])
    out = np.zeros((len(gold), len(labels)))
    for k in range(folds):
        tr, te = fold != k, fold == k
        f = ProbabilityFusion(labels, MODALITIES).fit({m: data[m][tr] for m in present}, gold[tr], seed=seed)
        out[te] = f.predict({m: data[m][te] for m in present})
    return out


def fit(opts: FusionFitOptions, pipe=None, console=None) -> dict:
    from rich.console import Console

    from ..config import PipelineConfig
    from ..fusion import ProbabilityFusion
    from ..pipeline import Pipeline

    console = console or Console(stderr=True)
    labels = dataset_labels(opts.dataset)
    if pipe is None:
        cfg = PipelineConfig.model_validate(
            {"reasoner": {"labels": labels}, "context": {"model": opts.context_model or opts.dataset, "fusion": None}}
        )
        pipe = Pipeline(cfg)
    dialogues = load_dataset(opts.dataset, opts.split, opts.data_dir)
    total = sum(1 for d in dialogues for u in d.utterances if u.label)
    total = min(total, opts.limit) if opts.limit else total
    cache = Path(opts.work_dir) / f"{opts.dataset}-{opts.split}-{total}-{_models_key(pipe)}.npz"
    t0 = time.monotonic()
    if cache.is_file():
        data = dict(np.load(cache))
        console.print(f"using the cached distributions in {cache}")
    else:
        with progress_bar(console=console) as bar:
            task = bar.add_task(f"{opts.dataset} {opts.split} through the pipeline", total=total)
            data = collect(pipe, dialogues, labels, opts.limit, progress=lambda: bar.advance(task))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **data)
    minutes = (time.monotonic() - t0) / 60
    gold = data["gold"]
    present = [m for m in MODALITIES if m in data]
    report: dict = {"labels": labels, "n": int(len(gold)), "collect_minutes": round(minutes, 2), "single": {}}
    for m in present:
        ok = ~np.isnan(data[m]).any(1)
        report["single"][m] = scores(data[m][ok], gold[ok], labels)
    # cross-fitting over dialogues: the split of seed ``opts.seed``, then ``repeats`` splits for the spread
    report["fused_crossfit"] = scores(crossfit(data, present, labels, opts.folds, opts.seed), gold, labels)
    if opts.repeats > 1:
        runs = [report["fused_crossfit"]] + [scores(crossfit(data, present, labels, opts.folds, opts.seed + r), gold,
                                                    labels) for r in range(1, opts.repeats)]  # fmt: skip
        report["fused_crossfit_repeated"] = {"splits": opts.repeats, **{
            f"{k}_{stat}": round(float(fn([r[k] for r in runs])), 4 if k == "ece" else 2)
            for k in ("weighted_f1", "accuracy", "ece") for stat, fn in (("mean", np.mean), ("sd", np.std))}}
    final = ProbabilityFusion(labels, MODALITIES).fit({m: data[m] for m in present}, gold, seed=opts.seed)
    report["fused_in_sample"] = scores(final.predict({m: data[m] for m in present}), gold, labels)
    final.info = {"dataset": opts.dataset, "split": opts.split, "n": int(len(gold)), "folds": opts.folds,
                  "fitted_on": present, "llm": pipe.reasoner().identity(), "report": report}  # fmt: skip
    final.save(opts.out)
    Path(opts.out).with_suffix(".report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
