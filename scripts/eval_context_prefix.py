"""Score a context model on a dev split two ways: each dialogue seen whole (both directions, as ERC papers
evaluate) and as the pipeline uses it (each utterance last, only the earlier ones before it).

    python scripts/eval_context_prefix.py --dataset meld --data-dir ../shared/data/meld [--model DIR]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import sys as _sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's affect_llm, whatever is installed

from affect_llm.context.model import ContextModel, default_path
from affect_llm.training.context import evaluate
from affect_llm.data import Dialogue, load_dataset
from affect_llm.metrics import accuracy, expected_calibration_error, weighted_f1


def prefix_scores(model: ContextModel, dialogues: list[Dialogue]) -> dict:
    labels = model.cfg.labels
    probs, gold = [], []
    with torch.inference_mode():
        for d in dialogues:
            for i, u in enumerate(d.utterances):
                if u.label is None:
                    continue
                out = model.predict(Dialogue(id=d.id, utterances=d.utterances[: i + 1]))
                probs.append(out.probabilities[-1])
                gold.append(labels.index(u.label))
    p = np.stack(probs)
    g = [labels[i] for i in gold]
    pr = [labels[i] for i in p.argmax(1)]
    return {"weighted_f1": round(100 * weighted_f1(g, pr, labels), 2), "accuracy": round(100 * accuracy(g, pr), 2),
            "ece": round(expected_calibration_error(p, gold), 4), "n": len(gold)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="meld")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    model = ContextModel.load(a.model or default_path(a.dataset))
    dialogues = load_dataset(a.dataset, a.split, a.data_dir)
    t0 = time.perf_counter()
    whole = evaluate(model, dialogues).summary()
    t1 = time.perf_counter()
    prefix = prefix_scores(model, dialogues)
    t2 = time.perf_counter()
    print(f"whole dialogue : weighted-F1 {whole['weighted_f1']:.2f}  accuracy {whole['accuracy']:.2f}  "
          f"ECE {whole['ece']:.4f}  ({t1 - t0:.0f} s)")
    print(f"earlier only   : weighted-F1 {prefix['weighted_f1']:.2f}  accuracy {prefix['accuracy']:.2f}  "
          f"ECE {prefix['ece']:.4f}  ({t2 - t1:.0f} s)")


if __name__ == "__main__":
    main()
