"""`affect-llm serve`: the real `openai` client against a running server (uvicorn in a thread), media as data:
URLs and paths under the media root, refusals, limits and errors in OpenAI's schema."""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time

import httpx
import pytest

from affect_llm.server import ServeOptions, create_app
from tests._synth import shared_media
from tests.conftest import count_reason_many, free_port

pytestmark = pytest.mark.slow

KEY = "test-key"



@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    root = tmp_path_factory.mktemp("media")
    shutil.copy(shared_media() / "jfk.flac", root / "jfk.flac")
    (root.parent / "secret.txt").write_text("not media")
    opts = ServeOptions(port=free_port(), api_key=KEY, media_root=root, max_body_mb=4, max_concurrency=2)
    from affect_llm.config import PipelineConfig

    app = create_app(opts, config=PipelineConfig.model_validate({"face": {"enabled": False}}))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=opts.port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{opts.port}", root
    srv.should_exit = True
    t.join(10)


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0, timeout=300)


def test_models_health_and_the_api_key(server, client):
    assert [m.id for m in client.models.list().data] == ["affect-llm"]
    assert httpx.get(server[0] + "/health").json()["status"] == "ok"
    r = httpx.get(server[0] + "/v1/models", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_text_then_a_follow_up_about_it(client):
    said = "I can't believe you did this to me. Get out of my house!"
    r = client.chat.completions.create(model="affect-llm", messages=[{"role": "user", "content": said}])
    affect = r.model_extra["affect"]
    assert affect["label"] in affect["probabilities"] and r.choices[0].message.content == affect["explanation"]
    assert affect["cues"][0]["id"] == "T1" and abs(sum(affect["probabilities"].values()) - 1) < 1e-6
    r2 = client.chat.completions.create(model="affect-llm", messages=[
        {"role": "user", "content": said},
        {"role": "assistant", "content": r.choices[0].message.content},
        {"role": "user", "content": "Which words show it?"},
    ])  # fmt: skip
    assert r2.choices[0].message.content and r2.model_extra["affect"]["label"] == affect["label"]


def test_audio_as_base64_and_json_output(client):
    data = base64.b64encode((shared_media() / "jfk.flac").read_bytes()).decode()
    r = client.chat.completions.create(model="affect-llm", response_format={"type": "json_object"}, messages=[
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": data, "format": "flac"}}]}])  # fmt: skip
    body = json.loads(r.choices[0].message.content)
    assert "ask not" in body["transcript"] and body["label"] in body["probabilities"]
    assert "face" in body["missing_modalities"]


def test_paths_only_under_the_media_root(server, client):
    from openai import NotFoundError, PermissionDeniedError

    part = lambda url: [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}}]}]  # noqa: E731
    r = client.chat.completions.create(model="affect-llm", messages=part("jfk.flac"))
    assert "ask not" in r.model_extra["affect"]["transcript"]
    for bad in ("../secret.txt", "../../etc/passwd", f"file://{server[1].parent}/secret.txt", "/etc/passwd"):
        with pytest.raises(PermissionDeniedError) as e:
            client.chat.completions.create(model="affect-llm", messages=part(bad))
        assert "outside the media root" in str(e.value)
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="affect-llm", messages=part("missing.mp4"))


def test_refusals_and_errors_in_openai_schema(server, client):
    from openai import BadRequestError

    with pytest.raises(BadRequestError) as e:
        client.chat.completions.create(model="affect-llm", messages=[{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": "https://example.com/a.mp4"}}]}])  # fmt: skip
    assert "http(s) media URLs are off" in str(e.value)
    h = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    url = server[0] + "/v1/chat/completions"
    for body in (b"{not json", b'{"messages": []}', b'{"messages": [{"role": "robot", "content": "x"}]}'):
        r = httpx.post(url, content=body, headers=h)
        assert r.status_code == 400 and set(r.json()["error"]) >= {"message", "type", "code"}
        assert "Traceback" not in r.text
    big = json.dumps({"messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]})
    r = httpx.post(url, content=big, headers=h)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    bad_media = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {
        "data": base64.b64encode(b"not audio at all").decode(), "format": "wav"}}]}]  # fmt: skip
    with pytest.raises(BadRequestError) as e:
        client.chat.completions.create(model="affect-llm", messages=bad_media)
    assert e.value.code == "MediaError" and "the uploaded media: not a readable media file" in str(e.value)
    assert "/tmp" not in str(e.value)


def test_streaming(client):
    chunks = list(client.chat.completions.create(model="affect-llm", stream=True,
                                                 messages=[{"role": "user", "content": "We won the game!"}]))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop" and text
    assert text == chunks[-1].model_extra["affect"]["explanation"]


def test_too_many_at_once_get_429_with_retry_after(server):
    h = {"Authorization": f"Bearer {KEY}"}
    url = server[0] + "/v1/chat/completions"
    texts = [f"Message number {i}: I am thrilled!" for i in range(6)]  # distinct: no cache hits

    def post(t, out):
        out.append(httpx.post(url, json={"messages": [{"role": "user", "content": t}]}, headers=h, timeout=300))

    got: list[httpx.Response] = []
    threads = [threading.Thread(target=post, args=(t, got)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in got)
    assert codes.count(200) >= 2 and 429 in codes and set(codes) <= {200, 429}
    refused = next(r for r in got if r.status_code == 429)
    assert refused.headers["Retry-After"] == "1" and refused.json()["error"]["type"] == "rate_limit_error"


def test_langchains_openai_chat_model_works_unmodified(server):
    pytest.importorskip("langchain_openai")
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=server[0] + "/v1", api_key=KEY, model="affect-llm", max_retries=0, timeout=300)
    said = "You forgot my birthday again. I'm so hurt."
    reply = chat.invoke(said)
    # the server's answer is the analysis the pipeline gives outside any server (not a cache hit of an earlier
    # request: this text is sent once)
    from affect_llm.config import PipelineConfig
    from affect_llm.pipeline import Pipeline

    direct = Pipeline(PipelineConfig.model_validate({"face": {"enabled": False}})).analyze(text=said)
    assert reply.content and reply.content == direct.explanation


def test_fifty_concurrent_requests_mixing_text_and_media_all_answered(server):
    """scripts/load_test.py's client, a load smoke test on the real models: 50 requests at once over 5 distinct
    inputs (4 texts and jfk.flac as base64); the server admits 2 at a time, the rest get 429 + Retry-After and
    come back; none fails. That 50 distinct concurrent requests each get their own analysis is tested with the
    fake LLM (tests/test_fake_backend.py), where 50 analyses take seconds."""
    import asyncio
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("load_test", REPO / "scripts" / "load_test.py")
    load_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load_test)
    res = asyncio.run(load_test.run_load(server[0], n=50, distinct=5, media=shared_media() / "jfk.flac",
                                         api_key=KEY))  # fmt: skip
    assert res["errors"] == 0, res["first_errors"]
    assert res["n"] == 50 and res["p95_s"] >= res["p50_s"] > 0


def test_requests_reaching_the_llm_together_are_reasoned_in_one_batch(monkeypatch):
    """The server's batcher: three requests submitted within its wait reach Pipeline.reason_many as one call
    (the real pipeline; the call is only counted), and each gets its own analysis."""
    from affect_llm.config import PipelineConfig
    from affect_llm.pipeline import Pipeline, Timer
    from affect_llm.server import _Batcher

    pipe = Pipeline(PipelineConfig.model_validate({"face": {"enabled": False}}))
    calls = count_reason_many(monkeypatch, pipe)
    texts = ["I got the job!", "Get out of my house.", "The bus leaves at nine."]
    jobs = [pipe.gather(text=t) for t in texts]
    batcher = _Batcher(lambda: pipe, threading.Lock(), wait_s=2.0, max_batch=8)
    futures = [batcher.submit(j, Timer(), time.perf_counter()) for j in jobs]
    results = [f.result(timeout=300) for f in futures]
    assert calls == [3]
    assert [r.cues[0].text for r in results] == [f'"{t}"' for t in texts]
    assert all(r.explanation.startswith(f"The speaker feels {r.label}") for r in results)
