"""Base vs LoRA-tuned reasoner on a dataset's dev split, as the pipeline sees each utterance (text, its earlier
dialogue as context, the context model's D1 cue and embedding).

    python scripts/eval_reasoner.py --data-dir ../shared/data/meld [--adapter adapters/reasoner-meld]
        [--limit N] [--explain 100] [--out adapters/reasoner-meld/eval.json]

Prints, for each reasoner: label weighted-F1 and accuracy from the LLM's own label scores (no fusion); on the
first ``--explain`` utterances (generated for the gold label): the share of explanations that parse (start with
"The speaker feels <label>." and cite at least one cue id that exists), the share of cited ids that exist, the
mean number of ids cited, and the share that name the label again after the opening (label consistency).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

import sys as _sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # this checkout's affect_llm, whatever is installed

from affect_llm.config import PipelineConfig, ReasonerOptions
from affect_llm.data import Dialogue, dataset_labels, load_dataset
from affect_llm.llm.reasoner import Reasoner
from affect_llm.metrics import accuracy, weighted_f1
from affect_llm.pipeline import Pipeline
from affect_llm.prompting import dialogue_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="meld")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--adapter", default="auto", help="the tuned adapter (default: the shipped one)")
    ap.add_argument("--limit", type=int, default=None, help="first N labelled utterances (default all)")
    ap.add_argument("--explain", type=int, default=100, help="explanations generated per reasoner (a seeded sample)")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here (entries of reasoners not run "
                    "this time are kept from an existing file)")
    ap.add_argument("--reasoners", default="base,tuned", help="which to run: base, tuned or both")
    args = ap.parse_args()

    labels = dataset_labels(args.dataset)
    pipe = Pipeline(PipelineConfig.model_validate({"reasoner": {"labels": labels},
                                                   "context": {"model": args.dataset, "fusion": None}}))  # fmt: skip
    which = args.reasoners.split(",")
    reasoners = {}
    if "base" in which:
        reasoners["base"] = Reasoner(ReasonerOptions(labels=labels, adapter=None))
    if "tuned" in which:
        reasoners["tuned"] = Reasoner(ReasonerOptions(labels=labels, adapter=args.adapter))
        assert reasoners["tuned"].adapter is not None, "no tuned adapter found"
    dialogues = load_dataset(args.dataset, args.split, args.data_dir)
    items = [(d, i) for d in dialogues for i, u in enumerate(d.utterances) if u.label][: args.limit]
    explain_idx = set(random.Random(0).sample(range(len(items)), min(args.explain, len(items))))
    gold, preds = [], {k: [] for k in reasoners}
    expl: dict[str, list[dict]] = {k: [] for k in reasoners}
    t0 = time.monotonic()
    fingerprint = None
    for n, (d, i) in enumerate(items):
        u = d.utterances[i]
        gathering = pipe.gather(text=u.text, context=Dialogue(d.id, d.utterances[:i]), speaker=u.speaker)
        evidence, dialogue, found = gathering.evidence, gathering.dialogue, gathering.findings
        ev_text, ctx = evidence.render(), dialogue_text(dialogue)
        if n == 0:  # the adapter's projector reads only the context model it was trained on (its weights' hash)
            fingerprint = getattr(pipe.models.loaded_context_model, "fingerprint", None)
        gold.append(u.label)
        for name, r in reasoners.items():
            soft = r.soft_prompt(found.context_embedding, args.dataset, fingerprint)
            dist = r.label_distribution(ev_text, ctx, soft)
            preds[name].append(max(dist, key=dist.__getitem__))
            if n in explain_idx:
                text, cited, unknown, _ = r.explain(evidence, u.label, ev_text, soft)
                expl[name].append({"id": u.id, "label": u.label, "text": text, "cited": cited, "unknown": unknown})
        if (n + 1) % 100 == 0:
            print(f"{n + 1}/{len(items)} ({(time.monotonic() - t0) / 60:.1f} min)", flush=True)

    report = {"dataset": args.dataset, "split": args.split, "n": len(gold), "explained": len(explain_idx),
              "minutes": round((time.monotonic() - t0) / 60, 1), "reasoners": {}}  # fmt: skip
    for name in reasoners:
        e = expl[name]
        opening = [x["text"].startswith(f"The speaker feels {x['label']}.") for x in e]
        cited_total = sum(len(x["cited"]) + len(x["unknown"]) for x in e)
        report["reasoners"][name] = {
            "adapter": _shown(reasoners[name].adapter.path) if reasoners[name].adapter else None,
            "weighted_f1": round(100 * weighted_f1(gold, preds[name], labels), 2),
            "accuracy": round(100 * accuracy(gold, preds[name]), 2),
            "predicted": {lab: preds[name].count(lab) for lab in labels},
            "explanations_parse_and_cite": round(100 * np.mean([o and bool(x["cited"]) for o, x in zip(opening, e)]), 1),
            "cited_ids_exist": round(100 * sum(len(x["cited"]) for x in e) / max(1, cited_total), 1),
            "ids_cited_per_explanation": round(cited_total / max(1, len(e)), 2),
            "label_named_again": round(100 * np.mean([x["label"] in x["text"][len("The speaker feels "):].split(".", 1)[-1]
                                                      for x in e]), 1),  # fmt: skip
            "examples": e[:5],
        }
    print(json.dumps({k: v for k, v in report.items() if k != "reasoners"}))
    for name, r in report["reasoners"].items():
        print(f"{name:>5}: label weighted-F1 {r['weighted_f1']:.2f}  accuracy {r['accuracy']:.2f}  | explanations: "
              f"parse+cite {r['explanations_parse_and_cite']:.1f}%  cited ids exist {r['cited_ids_exist']:.1f}%  "
              f"ids/explanation {r['ids_cited_per_explanation']}  label named again {r['label_named_again']:.1f}%")
        print(f"       predicted: {r['predicted']}")
        for x in r["examples"][:2]:
            print(f"       [{x['label']}] {x['text']}")
    if args.out:
        out = Path(args.out)
        if out.is_file():
            before = json.loads(out.read_text())
            if (before.get("dataset"), before.get("split"), before.get("n")) == (args.dataset, args.split, len(gold)):
                report["reasoners"] = {**before["reasoners"], **report["reasoners"]}
        out.write_text(json.dumps(report, indent=2) + "\n")
        adapter = reasoners["tuned"].adapter.path if "tuned" in reasoners else None
        if adapter is not None and out.resolve().parent == adapter.resolve():
            from affect_llm.training.reasoner import write_card

            print(f"model card: {write_card(adapter)}")


def _shown(path: Path) -> str:
    """The path relative to the working directory when it is inside it (reports travel between machines)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    main()
