"""Batch throughput on MELD dev, text only (each utterance with its earlier dialogue), labels + explanations.

    .venv/bin/python scripts/bench_batch.py --limit 100                   # local, then Ray with one actor
    .venv/bin/python scripts/bench_batch.py --limit 60 --engines local --no-explain

Each engine runs `affect-llm batch` in a fresh process (start-up and model loading count), timed from outside,
into a fresh results file. Prints items/s, the per-stage seconds, and what that rate means for a 2,610-utterance
set (MELD test's size). Not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=str(REPO.parent / "shared" / "data" / "meld" / "dev_sent_emo.csv"))
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--workers", type=int, default=None,
                    help="local: pipeline processes (default 0: one process); ray: actors (default 1)")
    ap.add_argument("--no-explain", action="store_true")
    ap.add_argument("--backend", default="transformers", help="transformers | vllm (starts a vLLM server)")
    ap.add_argument("--llm-batch", type=int, default=32, help="items explained together (batched generation)")
    args = ap.parse_args()

    print(f"{args.limit} MELD dev utterances, text + dialogue context, "
          f"{'labels only' if args.no_explain else 'labels + explanations'}")  # fmt: skip
    for engine in args.engines.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.jsonl"
            cmd = [sys.executable, "-m", "affect_llm.cli", "batch", args.csv, "--out", str(out),
                   "--limit", str(args.limit), "--engine", engine]  # fmt: skip
            workers = args.workers if args.workers is not None else (1 if engine == "ray" else 0)
            cmd += ["--workers", str(workers), "--llm-batch", str(args.llm_batch), "--backend", args.backend]
            if args.no_explain:
                cmd.append("--no-explain")
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
            wall = time.perf_counter() - t0
            if r.returncode:
                print(f"{engine}: failed: {r.stderr.strip().splitlines()[-1:]}")
                continue
            recs = [json.loads(x) for x in out.read_text().splitlines()]
            errors = sum(x.get("error") is not None for x in recs)
            stages: dict[str, float] = {}
            for x in recs:
                for k, v in (x.get("timings") or {}).items():
                    if k != "total":
                        stages[k] = stages.get(k, 0.0) + v
            rate = len(recs) / wall
            print(f"{engine:>6} ({workers} workers): {len(recs)} items in {wall:.1f} s wall = {rate:.3f} items/s ({errors} errors); "
                  f"2,610 items would take {2610 / rate / 60:.0f} min")  # fmt: skip
            top = sorted(stages.items(), key=lambda kv: -kv[1])[:6]
            print("        seconds per item: " + ", ".join(f"{k} {v / len(recs):.2f}" for k, v in top))


if __name__ == "__main__":
    main()
