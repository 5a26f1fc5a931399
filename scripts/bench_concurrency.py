"""How analyses hold up when the machine is busy: ratios measured side by side in one run.

Three scenes, each timed from outside (wall time of fresh `affect-llm` processes, or of HTTP requests):

1. `chat jfk.flac --json` alone, then beside a running `affect-llm eval` (MELD dev, explanations on) plus one
   single-threaded busy process -- target ratio <= 3;
2. `chat hamilton.mp4 --json` alone, then two of them started together -- target: each <= 2x alone;
3. `affect-llm serve`: one request at a time, then 8 distinct text requests at once -- each request's latency
   against its share (8 requests served one after another: 8x the median single latency), target <= 2.5; also
   the LLM batch sizes the server reports (GET /health).

    .venv/bin/python scripts/bench_concurrency.py            # all three, 3 runs each where it repeats
    .venv/bin/python scripts/bench_concurrency.py --only serve --runs 2

Needs ../shared/data/media (jfk.flac, hamilton.mp4) and ../shared/data/meld/dev_sent_emo.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CLI = [sys.executable, "-m", "affect_llm.cli"]


def _chat(clip: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([*CLI, "chat", str(clip), "--json"], capture_output=True, text=True, cwd=ROOT, check=False)
    if r.returncode != 0:
        raise SystemExit(f"chat {clip.name} failed: {r.stderr.strip()[-400:]}")
    return time.perf_counter() - t0


def _busy() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _eval(out: Path) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "eval", "--dataset", "meld", "--data-dir", str(DATA / "meld"), "--limit", "400",
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)  # fmt: skip


def _stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT if p.args[:3] == CLI[:3] else signal.SIGKILL)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def scene_busy(runs: int) -> dict:
    clip = DATA / "media" / "jfk.flac"
    _chat(clip)  # warm the file cache
    alone = [_chat(clip) for _ in range(runs)]
    with tempfile.TemporaryDirectory() as tmp:
        ev, hog = _eval(Path(tmp) / "run"), _busy()
        try:
            time.sleep(25)  # the eval is past its model loading and into its items
            beside = [_chat(clip) for _ in range(runs)]
        finally:
            _stop(ev, hog)
    a, b = statistics.median(alone), statistics.median(beside)
    return {"alone_s": alone, "beside_eval_and_busy_s": beside, "ratio": round(b / a, 2), "target": 3.0}


def scene_two_chats(runs: int) -> dict:
    clip = DATA / "media" / "hamilton.mp4"
    _chat(clip)
    alone = [_chat(clip) for _ in range(runs)]
    pairs = []
    for _ in range(runs):
        with ThreadPoolExecutor(2) as pool:
            pairs.append(list(pool.map(lambda _: _chat(clip), range(2))))
    a = statistics.median(alone)
    worst = max(max(p) for p in pairs)
    return {"alone_s": alone, "together_s": pairs, "ratio_worst": round(worst / a, 2),
            "ratio_median": round(statistics.median(x for p in pairs for x in p) / a, 2), "target": 2.0}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scene_serve(runs: int) -> dict:
    import httpx

    port = _free_port()
    server = subprocess.Popen([*CLI, "serve", "--port", str(port), "--max-concurrency", "8"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise SystemExit("the server did not start")
        sentences = [f"Take {i}: I honestly can't believe what you just told me about number {i}." for i in range(200)]
        it = iter(sentences)

        def ask(text: str) -> float:
            t0 = time.perf_counter()
            r = httpx.post(f"{url}/v1/chat/completions", timeout=600,
                           json={"model": "affect-llm", "messages": [{"role": "user", "content": text}]})  # fmt: skip
            r.raise_for_status()
            return time.perf_counter() - t0

        ask(next(it))  # models load
        single = [ask(next(it)) for _ in range(max(3, runs))]
        rounds = []
        for _ in range(runs):
            texts = [next(it) for _ in range(8)]
            t0 = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                lat = list(pool.map(ask, texts))
            rounds.append({"latencies_s": [round(x, 2) for x in lat], "wall_s": round(time.perf_counter() - t0, 2)})
        batches = httpx.get(f"{url}/health", timeout=5).json().get("llm_batches")
    finally:
        _stop(server)
    one = statistics.median(single)
    share = 8 * one
    worst = max(max(r["latencies_s"]) for r in rounds)
    return {"single_s": [round(x, 2) for x in single], "rounds": rounds, "share_s": round(share, 2),
            "worst_over_share": round(worst / share, 2), "throughput_gain": round(share / statistics.median(
                r["wall_s"] for r in rounds), 2), "llm_batches": batches, "target": 2.5}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=["busy", "two", "serve"], action="append")
    args = ap.parse_args()
    if not (DATA / "media" / "jfk.flac").is_file():
        raise SystemExit(f"{DATA / 'media'} not found")
    scenes = {"busy": scene_busy, "two": scene_two_chats, "serve": scene_serve}
    out = {}
    for name in args.only or list(scenes):
        out[name] = scenes[name](args.runs)
        print(name, json.dumps(out[name]), flush=True)
    print(json.dumps({"cores": os.cpu_count(), **out}, indent=2))


if __name__ == "__main__":
    main()
