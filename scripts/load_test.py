"""Load test of a running `affect-llm serve`: N concurrent chat requests mixing text and media.

    .venv/bin/affect-llm serve --port 8000 --media-root ../shared/data/media &
    .venv/bin/python scripts/load_test.py --url http://127.0.0.1:8000 --n 50 --media ../shared/data/media/jfk.flac

All N requests start at once. Inputs cycle through `--distinct` different ones (texts, plus the media file as a
base64 `input_audio` part when given); with fewer distinct inputs than requests the server's analysis cache
answers the repeats, which measures the serving layer rather than the models. A 429 is retried after its
`Retry-After` (as the OpenAI clients do); what still fails counts as an error. Prints p50/p95 latency (from the
request's start to its answer, retries included), throughput and the error count.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import time
from pathlib import Path

import httpx

TEXTS = [
    "I can't believe you did this to me. Get out of my house!",
    "We won the final! I can't stop smiling!",
    "The meeting is moved to Thursday at three.",
    "I miss her so much. Nothing feels the same without her.",
    "Wait, what? You're moving to Paris tomorrow?",
    "Ugh, there's hair in my soup. Gross.",
    "Please don't leave me alone in the dark.",
]


def _messages(i: int, distinct: int, media: Path | None) -> list[dict]:
    k = i % distinct
    if media is not None and k == distinct - 1:
        data = base64.b64encode(media.read_bytes()).decode()
        fmt = media.suffix.lstrip(".") or "wav"
        return [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": data, "format": fmt}}]}]
    text = TEXTS[k % len(TEXTS)] + ("" if k < len(TEXTS) else f" (variant {k})")
    return [{"role": "user", "content": text}]


async def _one(client: httpx.AsyncClient, url: str, body: dict, retries: int) -> tuple[float, str | None]:
    t0 = time.perf_counter()
    for _ in range(retries + 1):
        try:
            r = await client.post(url, json=body)
        except httpx.HTTPError as e:
            return time.perf_counter() - t0, f"{type(e).__name__}: {e}"
        if r.status_code == 429:
            await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            continue
        if r.status_code != 200:
            return time.perf_counter() - t0, f"{r.status_code}: {r.text[:200]}"
        if not r.json().get("affect", {}).get("label"):
            return time.perf_counter() - t0, "no label in the answer"
        return time.perf_counter() - t0, None
    return time.perf_counter() - t0, "429 after all retries"


async def run_load(base_url: str, n: int = 50, distinct: int = 7, media: Path | None = None,
                   api_key: str | None = None, retries: int = 600, timeout: float = 1800) -> dict:  # fmt: skip
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = base_url.rstrip("/") + "/v1/chat/completions"
    async with httpx.AsyncClient(headers=headers, timeout=timeout) as client:
        t0 = time.perf_counter()
        got = await asyncio.gather(*(_one(client, url, {"model": "affect-llm", "messages": _messages(i, distinct, media)},
                                          retries) for i in range(n)))  # fmt: skip
        wall = time.perf_counter() - t0
    lat = sorted(x[0] for x in got)
    errors = [x[1] for x in got if x[1]]
    return {"n": n, "distinct": distinct, "wall_s": round(wall, 2), "throughput_rps": round(n / wall, 3),
            "p50_s": round(statistics.median(lat), 2), "p95_s": round(lat[max(0, int(0.95 * n) - 1)], 2),
            "errors": len(errors), "first_errors": errors[:3]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--distinct", type=int, default=7, help="different inputs among the N (the rest are repeats)")
    ap.add_argument("--media", type=Path, default=None, help="an audio file sent as one of the distinct inputs")
    ap.add_argument("--api-key", default=None)
    args = ap.parse_args()
    res = asyncio.run(run_load(args.url, args.n, args.distinct, args.media, args.api_key))
    print(f"{res['n']} requests ({res['distinct']} distinct inputs) in {res['wall_s']} s: "
          f"{res['throughput_rps']} requests/s, latency p50 {res['p50_s']} s, p95 {res['p95_s']} s, "
          f"errors {res['errors']}" + (f" (first: {res['first_errors']})" if res["errors"] else ""))  # fmt: skip


if __name__ == "__main__":
    main()
