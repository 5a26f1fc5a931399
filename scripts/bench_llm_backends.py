"""Batch throughput of the reasoner behind a chat endpoint against the in-process default, on MELD dev text
(each utterance with its earlier dialogue; labels + explanations).

    .venv/bin/python scripts/bench_llm_backends.py --limit 32 --rounds 2

Starts a vLLM server (the environment scripts/install.sh builds) serving the embedded SmolLM2 through its chat
API, batching requests (``--max-num-seqs`` as vLLM's default), then runs ``affect-llm batch`` in a fresh process
per setting, timed from outside (start-up and model loading count): the in-process default (SmolLM2 + the shipped
adapter, ``--backend transformers``) and ``--llm-url … --llm-concurrency N`` for each N. The settings alternate
for ``--rounds`` rounds and the medians are printed, with each setting's rate as a ratio to the in-process one.
Not a test: the figures depend on the machine and on what else runs on it (on 2 cores the server and the
pipeline share them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_batch(csv: str, limit: int, extra: list[str]) -> tuple[float, int, int]:
    """(seconds, records, errors) of one ``affect-llm batch`` run in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.jsonl"
        cmd = [sys.executable, "-m", "affect_llm.cli", "batch", csv, "--out", str(out), "--limit", str(limit), *extra]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
        wall = time.perf_counter() - t0
        if r.returncode:
            raise SystemExit(f"{' '.join(extra)}: failed: {r.stderr.strip().splitlines()[-1:]}")
        recs = [json.loads(x) for x in out.read_text().splitlines()]
        return wall, len(recs), sum(x.get("error") is not None for x in recs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=str(REPO.parent / "shared" / "data" / "meld" / "dev_sent_emo.csv"))
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--concurrency", default="1,4,8")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from affect_llm import models
    from affect_llm.llm.vllm import VLLMServer, VLLMServerOptions

    served = "smol-chat"
    opts = VLLMServerOptions(model=str(models.path("smollm2-135m")), served_name=served, deterministic=False,
                             extra_args=["--max-logprobs", "20"])  # fmt: skip
    settings = {"in process (transformers, adapter)": []}
    for n in args.concurrency.split(","):
        settings[f"chat endpoint, --llm-concurrency {n}"] = ["--llm-url", "URL", "--llm-model", served,
                                                               "--llm-concurrency", n]  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in settings}
    errors: dict[str, int] = {k: 0 for k in settings}
    t_start = time.perf_counter()
    with VLLMServer(opts) as server:
        print(f"vLLM server up in {time.perf_counter() - t_start:.0f} s ({server.url}); {args.limit} MELD dev "
              f"utterances per run, labels + explanations, {args.rounds} rounds")  # fmt: skip
        for _ in range(args.rounds):
            for name, extra in settings.items():
                extra = [server.url if x == "URL" else x for x in extra]
                wall, n, err = run_batch(args.csv, args.limit, extra)
                times[name].append(wall)
                errors[name] += err
    base = args.limit / statistics.median(times["in process (transformers, adapter)"])
    print("\n| setting | wall per run (median) | items/s | vs in process | errors |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        rate = args.limit / statistics.median(ts)
        print(f"| {name} | {statistics.median(ts):.1f} s | {rate:.2f} | {rate / base:.2f}× | {errors[name]} |")


if __name__ == "__main__":
    main()
