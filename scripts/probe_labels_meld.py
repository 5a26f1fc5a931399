"""How good is the zero-shot label scoring of the default LLM on MELD dev text? (issue 2 probe; issue 6 builds
the full eval). Prints weighted-F1 and accuracy with and without contextual calibration on a stratified sample.

    .venv/bin/python scripts/probe_labels_meld.py --data-dir ../shared/data/meld --n 350
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from collections import defaultdict
from pathlib import Path

from rich.progress import track

import sys as _sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's affect_llm, whatever is installed

from affect_llm.config import ReasonerOptions
from affect_llm.llm.reasoner import Reasoner
from affect_llm.pipeline import Pipeline
from affect_llm.textnorm import normalize


def weighted_f1(gold: list[str], pred: list[str]) -> float:
    labels = sorted(set(gold))
    total = 0.0
    for lab in labels:
        tp = sum(g == p == lab for g, p in zip(gold, pred))
        fp = sum(p == lab and g != lab for g, p in zip(gold, pred))
        fn = sum(g == lab and p != lab for g, p in zip(gold, pred))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        total += f1 * sum(g == lab for g in gold)
    return total / len(gold)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data/meld")
    ap.add_argument("--n", type=int, default=350, help="sample size (the dev set's class mix is kept)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with open(Path(args.data_dir) / "dev_sent_emo.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rng = random.Random(args.seed)
    rows = rng.sample(rows, min(args.n, len(rows)))
    gold = [r["Emotion"] for r in rows]
    reasoners = {c: Reasoner(ReasonerOptions(calibrate=c)) for c in (False, True)}
    preds = defaultdict(list)
    t0 = time.perf_counter()
    for r in track(rows, description="scoring"):
        ev = Pipeline.text_evidence(normalize(r["Utterance"])).render()
        for c, reasoner in reasoners.items():
            p = reasoner.label_distribution(ev)
            preds[c].append(max(p, key=p.get))
    dt = time.perf_counter() - t0
    major = max(set(gold), key=gold.count)
    print(f"MELD dev sample n={len(rows)} (seed {args.seed}); {dt / len(rows):.2f} s per utterance for both variants")
    print("| variant | weighted-F1 | accuracy |\n|---|---|---|")
    print(f"| majority class ({major}) | {100 * weighted_f1(gold, [major] * len(gold)):.1f} | "
          f"{100 * gold.count(major) / len(gold):.1f} |")
    for c, name in ((False, "LLM label scoring, raw"), (True, "LLM label scoring, calibrated (default)")):
        acc = sum(g == p for g, p in zip(gold, preds[c])) / len(gold)
        print(f"| {name} | {100 * weighted_f1(gold, preds[c]):.1f} | {100 * acc:.1f} |")
    for c in (False, True):
        print(f"predicted label counts (calibrate={c}):", {k: preds[c].count(k) for k in sorted(set(preds[c]))})


if __name__ == "__main__":
    main()
