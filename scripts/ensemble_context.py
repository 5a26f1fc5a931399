"""Does averaging context models pay? Each model's dev figures, then their mean probability distribution's.

Every dev dialogue is seen whole (both directions), as `affect-llm train context` selects models, so the rows are
comparable with the model cards' "best dev" figures. Prints one row per model and one for the ensemble.

    .venv/bin/python scripts/ensemble_context.py runs/ctx-a runs/ctx-b --dataset meld --data-dir ../shared/data/meld
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from affect_llm.context.model import ContextModel  # noqa: E402
from affect_llm.data import load_dataset  # noqa: E402
from affect_llm.metrics import accuracy, expected_calibration_error, per_class_f1, weighted_f1  # noqa: E402
from affect_llm.training.context import evaluate  # noqa: E402


def row(name: str, probs: np.ndarray, gold: list[int], labels: list[str], focus: list[str]) -> str:
    g = [labels[i] for i in gold]
    p = [labels[i] for i in probs.argmax(1)]
    pc = per_class_f1(g, p, labels)
    cells = [name, f"{100 * weighted_f1(g, p, labels):.2f}", f"{100 * accuracy(g, p):.2f}",
             f"{expected_calibration_error(probs, gold):.3f}"] + [f"{100 * pc[c]:.1f}" for c in focus]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="context-model folders (same dataset and labels)")
    ap.add_argument("--dataset", default="meld")
    ap.add_argument("--data-dir", default="../shared/data/meld")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = load_dataset(args.dataset, "dev", args.data_dir)
    results, labels = [], None
    for path in args.models:
        t0 = time.perf_counter()
        model = ContextModel.load(path)
        if labels is not None and model.cfg.labels != labels:
            raise SystemExit(f"{path}: labels {model.cfg.labels} differ from {labels}")
        labels = model.cfg.labels
        res = evaluate(model, dev)
        results.append((path, res))
        print(f"{path}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        del model
    focus = [c for c in labels if c != labels[0]]
    print("| model | wF1 | acc | ECE | " + " | ".join(f"F1 {c}" for c in focus) + " |")
    print("|---" * (4 + len(focus)) + "|")
    gold = results[0][1].gold
    for path, res in results:
        if res.gold != gold:
            raise SystemExit(f"{path}: a different set of dev utterances")
        print(row(Path(path).name, res.probabilities, gold, labels, focus))
    if len(results) > 1:
        print(row("mean of the above", np.mean([r.probabilities for _, r in results], axis=0), gold, labels, focus))


if __name__ == "__main__":
    main()
