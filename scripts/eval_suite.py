"""Run the evaluation suite (eval/suite.toml) and keep its reports in eval/reports/NAME/.

    .venv/bin/python scripts/eval_suite.py                      # every run of the suite
    .venv/bin/python scripts/eval_suite.py --only meld-dev --limit 50 --runs-dir /tmp/s   # a quick look

Each run is `affect_llm.evaluation.evaluate` (what `affect-llm eval` runs) into RUN_DIR (default
runs/suite/NAME; rerunning resumes), then metrics.json, report.md and report.html are copied to
eval/reports/NAME/ (not with --limit: partial runs are not the shipped figures). Prints one line per run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from affect_llm.evaluation import evaluate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default=str(REPO / "eval" / "suite.toml"))
    ap.add_argument("--data-root", default=None, help="where the datasets live (default: the suite's data_root)")
    ap.add_argument("--runs-dir", default=str(REPO / "runs" / "suite"))
    ap.add_argument("--only", default=None, help="comma-separated run names")
    ap.add_argument("--limit", type=int, default=None, help="first N items of each run (reports not copied)")
    args = ap.parse_args()

    suite = tomllib.loads(Path(args.suite).read_text())
    root = Path(args.data_root or suite.get("data_root", "../shared/data"))
    if not root.is_absolute():
        root = (REPO / root).resolve()

    def wheels_for(run: dict):
        name = run.get("wheels", suite.get("wheels", "builtin"))
        return root / name if name != "builtin" and (root / name).is_dir() else None
    only = set(args.only.split(",")) if args.only else None
    for r in suite["run"]:
        if only and r["name"] not in only:
            continue
        out = Path(args.runs_dir) / r["name"]
        t0 = time.perf_counter()
        m = evaluate(r["dataset"], root / r["data_dir"], out, split=r.get("split"), limit=args.limit,
                     explain=r.get("explain", True), explain_sample=r.get("explain_sample"),
                     predictions=root / r["predictions"] if r.get("predictions") else None,
                     wheels=wheels_for(r))  # fmt: skip
        print(f"{r['name']}: {_headline(m)}  ({time.perf_counter() - t0:.0f} s, {out})")
        if args.limit is None:
            keep = REPO / "eval" / "reports" / r["name"]
            keep.mkdir(parents=True, exist_ok=True)
            for f in ("metrics.json", "report.md", "report.html", "run.json"):
                shutil.copy2(out / f, keep / f)


def _headline(m: dict) -> str:
    parts = []
    if c := m.get("classification"):
        parts.append(f"weighted-F1 {100 * c['weighted_f1']:.2f}, accuracy {100 * c['accuracy']:.2f}")
    if h := m.get("hit_rate"):
        parts.append(f"HIT {100 * h['hit_rate']:.2f}")
    if o := m.get("openset"):
        parts.append(f"OV F L1 {100 * o['level1']['f']:.2f} / L2 {100 * o['level2']['f']:.2f}")
    if e := m.get("explanation"):
        parts.append(f"ROUGE-L {e['rouge_l']:.3f}")
    if f := m.get("faithfulness"):
        parts.append(f"cited ids exist {100 * f['cited_ids_exist']:.1f}%")
    return "; ".join(parts) + f"; scored {m['n_scored']}/{m['n_items']}, errors {m['n_errors']}"


if __name__ == "__main__":
    main()
