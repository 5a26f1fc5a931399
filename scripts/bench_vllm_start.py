"""How long a started vLLM server takes to be ready, and to answer, compiled (vLLM's default) and uncompiled
(``--enforce-eager``, ``VLLMServerOptions(compile=False)`` / ``--backend-option compile=false``), side by side.

    .venv/bin/python scripts/bench_vllm_start.py [--trials 2] [--tokens 32]

Alternates the two settings ``--trials`` times; prints, per setting, the median seconds to ready and the median
seconds for one greedy completion of ``--tokens`` tokens (4 requests per start), and whether both give the same text.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import httpx

    from affect_llm import models
    from affect_llm.llm.vllm import VLLMServer, VLLMServerOptions

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()
    ready: dict[bool, list[float]] = {True: [], False: []}
    answer: dict[bool, list[float]] = {True: [], False: []}
    texts: dict[bool, list[str]] = {True: [], False: []}
    for _ in range(args.trials):
        for compiled in (True, False):
            opts = VLLMServerOptions(model=str(models.path("smollm2-135m")), served_name="m", dtype=args.dtype,
                                     compile=compiled)  # fmt: skip
            t = time.perf_counter()
            server = VLLMServer(opts).start()
            ready[compiled].append(time.perf_counter() - t)
            try:
                with httpx.Client(base_url=server.url, timeout=300) as c:
                    for i in range(4):
                        t = time.perf_counter()
                        r = c.post("/completions", json={"model": "m", "prompt": f"The weather on day {i} was",
                                                         "max_tokens": args.tokens, "temperature": 0})  # fmt: skip
                        answer[compiled].append(time.perf_counter() - t)
                        texts[compiled].append(r.json()["choices"][0]["text"])
            finally:
                server.stop()
    for compiled in (True, False):
        print(f"{'compiled' if compiled else 'eager   '}: ready {statistics.median(ready[compiled]):.1f} s "
              f"(n={len(ready[compiled])}), {args.tokens} tokens {statistics.median(answer[compiled]):.3f} s "
              f"(n={len(answer[compiled])})")  # fmt: skip
    same = sum(a == b for a, b in zip(texts[True], texts[False]))
    print(f"same text from both: {same} of {len(texts[True])}")


if __name__ == "__main__":
    main()
