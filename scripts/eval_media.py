"""Label and truth figures on the media set made here (affect_llm.evaluation.mediaset) plus the real clips in
../shared/data/media, and one example explanation for each kind of input (a face-only clip, an audio clip, a
text, a dialogue).

    .venv/bin/python scripts/eval_media.py                  # writes eval/reports/media-set/metrics.json too
    .venv/bin/python scripts/eval_media.py --out /tmp/m.json

Prints the per-clip label against the clip's label (where it determines one), the decision, the share of
explanations failing each truth check (affect_llm.metrics.faithfulness.truth_checks) and the supported claim
sentences. The set is two photographed faces animated into clips, silent or with espeak-ng speech: it checks
that the pipeline reads what is there and says it truthfully, not how well it recognises acted emotion.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's affect_llm, whatever is installed
SHARED = ROOT.parent / "shared" / "data" / "media"
DIALOGUE = "Monica: Guess what, I got the job!\nRachel: No way! That's amazing!\nMonica: I start on Monday."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "reports" / "media-set" / "metrics.json")
    args = ap.parse_args()

    from affect_llm.config import MELD_LABELS, PipelineConfig
    from affect_llm.evaluation.mediaset import build
    from affect_llm.metrics.faithfulness import TRUTH_CHECKS, faithfulness_scores
    from affect_llm.pipeline import Pipeline

    pipe = Pipeline(PipelineConfig())
    rows, analyses = [], []
    with tempfile.TemporaryDirectory() as tmp:
        items = build(tmp)
        inputs = [(it.id, Path(tmp) / it.path, it.label, it.note) for it in items]
        for name in ("hamilton.mp4", "jfk.flac"):
            if (SHARED / name).is_file():
                inputs.append((name, SHARED / name, None, "real clip (no gold label)"))
        for cid, path, gold, note in inputs:
            t0 = time.perf_counter()
            a = pipe.analyze(path)
            rows.append({"id": cid, "gold": gold, "label": a.label, "seconds": round(time.perf_counter() - t0, 2),
                         "decision": a.decision, "explanation": a.explanation, "note": note,
                         "missing": [m.value for m in a.missing_modalities]})  # fmt: skip
            analyses.append(a)
    text = pipe.analyze(text="I can't believe you forgot my birthday again.")
    dialogue = pipe.analyze(text="I start on Monday.", context=DIALOGUE.rsplit("\n", 1)[0], speaker="Monica")
    f = faithfulness_scores([a.explanation for a in analyses], [a.cues for a in analyses],
                            decided=[a.label for a in analyses], labels=MELD_LABELS)  # fmt: skip
    labelled = [r for r in rows if r["gold"]]
    out = {
        "n": len(rows),
        "labelled": len(labelled),
        "label_accuracy": sum(r["label"] == r["gold"] for r in labelled) / len(labelled),
        "sentence_support": f["sentence_support"],
        **{k: f[k] for k in TRUTH_CHECKS},
        "clips": rows,
        "examples": {
            "face_only": next((r["explanation"] for r in rows if r["id"] == "smile-silent"), None),
            "audio": next((r["explanation"] for r in rows if r["id"] == "jfk.flac"), None),
            "text": text.explanation,
            "dialogue": dialogue.explanation,
        },
    }
    for r in rows:
        mark = "" if r["gold"] is None else ("ok " if r["label"] == r["gold"] else "MISS")
        print(f"{r['id']:18} gold {r['gold']!s:8} got {r['label']:8} {mark:4} {r['seconds']:5.1f} s  {r['decision']}")
    print(f"label accuracy {out['label_accuracy']:.2f} on {len(labelled)} labelled clips; supported claim sentences "
          f"{out['sentence_support']:.3f}")  # fmt: skip
    print("truth checks (share of explanations): " + ", ".join(f"{k} {out[k]:.2f}" for k in TRUTH_CHECKS if out[k] is not None))
    for k, v in out["examples"].items():
        print(f"\n[{k}] {v}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
