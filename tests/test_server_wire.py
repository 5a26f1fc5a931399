"""`affect-llm serve` without models: the app over a fake pipeline (FastAPI's TestClient, or the ASGI app called
directly), for what does not need real analyses — OpenAI's wire format checked against the `openai` package's
own types, errors in OpenAI's schema for every status, uploads deleted and written atomically, the body limit on
chunked bodies, the audio format allow-list, the API key check, the LLM stage's supervision and timeout, and the
cache of files under the media root."""

from __future__ import annotations

import asyncio
import base64
import builtins
import hashlib
import hmac
import io
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from affect_llm.errors import BackendError
from affect_llm.server import MediaResolver, ServeOptions, _Batcher, create_app

KEY = "wire-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ERROR_KEYS = {"message", "type", "param", "code"}


class FakeAnalysis:
    def __init__(self, data: bytes):
        self.label = "neutral"
        self.explanation = f"The input had {len(data)} bytes with digest {hashlib.sha256(data).hexdigest()[:12]}."

    def summary(self) -> dict:
        return {"label": self.label, "probabilities": {"neutral": 1.0}, "explanation": self.explanation,
                "cues": [], "missing_modalities": []}  # fmt: skip


class FakePipe:
    """Pipeline's surface the server uses. ``gather`` reads the file there and then (so an upload must be whole
    and still there); ``on_reason`` runs first in each ``reason_many`` call (to stall or kill the LLM stage)."""

    def __init__(self):
        self.gathered: list[bytes] = []
        self.reason_calls = 0
        self.on_reason = None

    def gather(self, source=None, *, text=None, timer=None):
        data = Path(source).read_bytes() if source is not None else text.encode()
        self.gathered.append(data)
        return SimpleNamespace(source=str(source or "text"), evidence=data)

    def reason_many(self, gathered, *, timers=None, started=None, explain=None):
        self.reason_calls += 1
        if self.on_reason is not None:
            self.on_reason()
        return [FakeAnalysis(g.evidence) for g in gathered]

    def chat(self, analysis, history, question):
        return f"About that: {question}"


def _app(**kw):
    fake = FakePipe()
    app = create_app(ServeOptions(api_key=KEY, batch_wait_ms=0, **kw), pipeline=fake)
    return app, fake, TestClient(app, raise_server_exceptions=False)


def _post(client, messages, **extra):
    return client.post("/v1/chat/completions", json={"model": "affect-llm", "messages": messages, **extra},
                       headers=AUTH)  # fmt: skip


def _audio(raw: bytes, fmt="wav"):
    return [{"role": "user", "content": [{"type": "input_audio",
                                          "input_audio": {"data": base64.b64encode(raw).decode(), "format": fmt}}]}]  # fmt: skip


def _required_present(model_cls, raw: dict, where: str) -> None:
    """Every field ``model_cls`` marks required is a key of the raw JSON (not only filled by a default)."""
    missing = [n for n, f in model_cls.model_fields.items() if f.is_required() and (f.alias or n) not in raw]
    assert not missing, f"{where}: {missing} missing from {raw}"


def _assert_error(r, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["type"], str) and "Traceback" not in r.text
    return body["error"]


# -- 8. the wire format ------------------------------------------------------------------------------------


def test_chat_completion_is_openais_chat_completion_with_every_required_field():
    from openai.types.chat import ChatCompletion, ChatCompletionMessage
    from openai.types.chat.chat_completion import Choice
    from openai.types.completion_usage import CompletionUsage

    _, _, client = _app()
    said = "I can't believe you did this to me"
    r = _post(client, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": said}])
    assert r.status_code == 200
    raw = r.json()
    parsed = ChatCompletion.model_validate(raw)
    _required_present(ChatCompletion, raw, "completion")
    _required_present(Choice, raw["choices"][0], "choice")
    _required_present(ChatCompletionMessage, raw["choices"][0]["message"], "message")
    _required_present(CompletionUsage, raw["usage"], "usage")
    assert raw["object"] == "chat.completion" and raw["id"].startswith("chatcmpl-")
    assert isinstance(raw["created"], int) and raw["model"] == "affect-llm"
    choice = raw["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert choice["message"] == {"role": "assistant", "content": parsed.choices[0].message.content, "refusal": None}
    u = raw["usage"]
    assert all(type(u[k]) is int for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["prompt_tokens"] > 0 and u["completion_tokens"] == len(choice["message"]["content"].split())


def test_stream_chunks_are_openais_chat_completion_chunks_then_done():
    from openai.types.chat import ChatCompletionChunk
    from openai.types.chat.chat_completion_chunk import Choice

    _, _, client = _app()
    messages = [{"role": "user", "content": "We won the game!"}]
    whole = _post(client, messages).json()["choices"][0]["message"]["content"]
    r = _post(client, messages, stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in r.text.split("\n\n") if line]  # fmt: skip
    assert events[-1] == "[DONE]" and "[DONE]" not in events[:-1]
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) >= 3
    for raw in chunks:
        ChatCompletionChunk.model_validate(raw)
        _required_present(ChatCompletionChunk, raw, "chunk")
        assert raw["object"] == "chat.completion.chunk" and raw["model"] == "affect-llm"
        assert raw["id"] == chunks[0]["id"] and raw["created"] == chunks[0]["created"]
        (choice,) = raw["choices"]
        _required_present(Choice, choice, "chunk choice")
        assert {"index", "delta", "finish_reason"} <= set(choice) and choice.get("logprobs") is None
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == whole


def test_models_list_is_openais_model_list():
    from openai.types import Model

    _, _, client = _app()
    raw = client.get("/v1/models", headers=AUTH).json()
    assert raw["object"] == "list" and [m["id"] for m in raw["data"]] == ["affect-llm"]
    for m in raw["data"]:
        Model.model_validate(m)
        _required_present(Model, m, "model")
        assert m["object"] == "model" and isinstance(m["created"], int) and isinstance(m["owned_by"], str)


def test_the_openai_client_itself_reads_replies_and_errors():
    from openai import NotFoundError, OpenAI

    _, _, client = _app()
    oc = OpenAI(base_url="http://testserver/v1", api_key=KEY, http_client=client, max_retries=0)
    assert [m.id for m in oc.models.list().data] == ["affect-llm"]
    r = oc.chat.completions.create(model="affect-llm", messages=[{"role": "user", "content": "Hello there"}])
    assert r.choices[0].message.content.startswith("The input had") and r.usage.total_tokens > 0
    with pytest.raises(NotFoundError) as e:
        oc.get("/nope", cast_to=dict)
    assert e.value.code == "not_found"


def test_every_error_status_is_in_openais_error_schema():
    app, fake, client = _app(max_body_mb=0.01)

    @app.get("/v1/probe")  # a route with a typed parameter: FastAPI's request validation (422) is reached
    async def probe(n: int):
        return {"n": n}

    assert _assert_error(client.get("/v1/models"), 401)["code"] == "invalid_api_key"
    assert _assert_error(client.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    assert _assert_error(client.get("/v1/nope", headers=AUTH), 404)["code"] == "not_found"
    assert _assert_error(client.get("/nope"), 404)["code"] == "not_found"
    r = client.get("/v1/chat/completions", headers=AUTH)
    assert _assert_error(r, 405)["code"] == "method_not_allowed" and "POST" in r.headers["allow"]
    err = _assert_error(client.get("/v1/probe", params={"n": "x"}, headers=AUTH), 400)
    assert err["param"] == "query.n" and err["type"] == "invalid_request_error"
    for body in (b"{not json", b'{"messages": []}', b'{"messages": [{"role": "robot", "content": "x"}]}'):
        _assert_error(client.post("/v1/chat/completions", content=body, headers=AUTH), 400)
    big = {"messages": [{"role": "user", "content": "x" * 20000}]}
    assert _assert_error(client.post("/v1/chat/completions", json=big, headers=AUTH), 413)["code"] == "request_too_large"
    assert _assert_error(_post(client, [{"role": "system", "content": "x"}]), 400)

    def boom(*a, **k):
        raise RuntimeError("/secret/path")

    fake.gather = boom
    err = _assert_error(_post(client, [{"role": "user", "content": "fine"}]), 500)
    assert err["type"] == "server_error" and "/secret/path" not in err["message"]


# -- 1, 2. uploads: deleted after the request, written atomically ---------------------------------------


def test_uploads_are_deleted_after_each_request_and_the_folder_on_shutdown(monkeypatch):
    made: list[Path] = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*a, **k):
        made.append(Path(real_mkdtemp(*a, **k)))
        return str(made[-1])

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    app, fake, client = _app()
    (folder,) = made
    raws = [os.urandom(1000 + i) for i in range(3)]
    for raw in raws:
        assert _post(client, _audio(raw)).status_code == 200
        assert list(folder.iterdir()) == []
    data_url = "data:video/mp4;base64," + base64.b64encode(raws[0]).decode()
    assert _post(client, [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": data_url}}]}]).status_code == 200
    part = {"type": "file", "file": {"file_data": base64.b64encode(raws[1]).decode(), "filename": "clip.flac"}}
    assert _post(client, [{"role": "user", "content": [part]}]).status_code == 200
    assert _post(client, _audio(b"not audio", fmt="mp3")).status_code == 200
    assert list(folder.iterdir()) == []
    assert fake.gathered == [*raws, raws[0], raws[1], b"not audio"]  # each upload was whole when analysed
    follow = [*_audio(raws[2]), {"role": "assistant", "content": "x"}, {"role": "user", "content": "Why?"}]
    r = _post(client, follow)  # the same upload again: re-sent, answered from the cache, deleted again
    assert r.json()["choices"][0]["message"]["content"] == "About that: Why?" and len(fake.gathered) == 6
    assert list(folder.iterdir()) == []
    with TestClient(app):  # the app's lifespan: the folder itself goes at shutdown
        assert folder.is_dir()
    assert not folder.exists()


def test_an_identical_upload_during_a_write_never_reads_a_partial_file(tmp_path, monkeypatch):
    """Request A's write of an upload stalls half-way; request B sends the same bytes meanwhile and reads what
    it resolved to: the whole upload, never A's half-written file. The file goes once neither holds it."""
    resolver = MediaResolver(ServeOptions(), tmp_path)
    raw = os.urandom(256 * 1024)
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(raw).decode(), "format": "wav"}}
    half, go, stalled = threading.Event(), threading.Event(), []
    real_open = builtins.open

    class Stalling:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            n = len(b) // 2
            self.f.write(b[:n])
            self.f.flush()
            half.set()
            go.wait(10)
            return n + self.f.write(b[n:])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

    def opening(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        if "w" in mode and Path(file).parent == tmp_path and not stalled:
            stalled.append(file)
            return Stalling(f)
        return f

    monkeypatch.setattr(builtins, "open", opening)
    monkeypatch.setattr(io, "open", opening)
    got: dict[str, Path] = {}
    a = threading.Thread(target=lambda: got.setdefault("a", resolver.resolve(part)))
    a.start()
    try:
        assert half.wait(10)
        got["b"] = resolver.resolve(part)
        seen = got["b"].read_bytes()
    finally:
        go.set()
        a.join(10)
    monkeypatch.undo()
    assert len(seen) == len(raw) and seen == raw
    assert got["a"] == got["b"] and got["a"].read_bytes() == raw
    resolver.release(got["b"])
    assert got["a"].read_bytes() == raw  # A still holds it
    resolver.release(got["a"])
    assert list(tmp_path.iterdir()) == []


# -- 3. the body limit on a chunked body -------------------------------------------------------------------


def test_a_chunked_body_over_the_limit_gets_413_before_it_is_all_read():
    """No content-length: the body comes in 64 KiB pieces (up to 200 of them, 12.5 MiB); with a 1 MB limit the
    server answers 413 once the limit is passed and stops reading."""
    app, _, _ = _app(max_body_mb=1)
    piece, pulled, sent = b" " * 65536, [0], []

    async def receive():
        pulled[0] += 1
        if pulled[0] > 200:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": piece, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                         (b"transfer-encoding", b"chunked"), (b"authorization", f"Bearer {KEY}".encode())]}  # fmt: skip
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert start["status"] == 413 and body["error"]["code"] == "request_too_large"
    assert set(body["error"]) == ERROR_KEYS
    assert pulled[0] <= (1024 * 1024) // len(piece) + 2  # 17 pieces pass the limit; not the 200 sent


# -- 4. the API key -----------------------------------------------------------------------------------------


def test_the_api_key_is_compared_with_compare_digest(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    _, _, client = _app()
    assert client.get("/v1/models", headers=AUTH).status_code == 200
    assert calls and any(f"Bearer {KEY}".encode() in (bytes(a), bytes(b)) for a, b in calls)
    for h in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {KEY}x"},
              {"Authorization": "Bearer ключ".encode()}):  # fmt: skip
        n = len(calls)
        _assert_error(client.get("/v1/models", headers=h), 401)
        assert len(calls) == n + 1
    assert client.get("/health").status_code == 200


# -- 5. the audio format ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["../a", "../../etc/x", "wav/../../b", "a" * 40, "exe", "w a v", 5, ["wav"]])
def test_an_audio_format_off_the_allow_list_is_a_400(fmt):
    _, fake, client = _app()
    err = _assert_error(_post(client, _audio(b"some bytes", fmt=fmt)), 400)
    assert err["code"] == "invalid_audio_format" and err["param"] == "input_audio.format"
    assert err["type"] == "invalid_request_error" and fake.gathered == []


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "WAV", ".ogg", None])
def test_an_audio_format_on_the_allow_list_is_analysed(fmt):
    _, fake, client = _app()
    assert _post(client, _audio(b"some bytes", fmt=fmt)).status_code == 200 and fake.gathered == [b"some bytes"]


# -- 6. the LLM stage: supervised, waited for with a timeout ---------------------------------------------------


class Die(BaseException):
    """Not an Exception: kills the batcher's thread past its ``except Exception``."""


def test_a_batcher_thread_that_dies_fails_its_jobs_and_is_restarted():
    fake = FakePipe()
    deaths = [Die()]

    def once():
        if deaths:
            raise deaths.pop()

    fake.on_reason = once
    batcher = _Batcher(lambda: fake, threading.Lock(), wait_s=0.0, max_batch=4)
    with pytest.raises(BackendError, match="LLM stage stopped"):
        batcher.submit(SimpleNamespace(source="text", evidence=b"first"), None, time.perf_counter()).result(timeout=10)
    r = batcher.submit(SimpleNamespace(source="text", evidence=b"second"), None, time.perf_counter()).result(timeout=10)
    assert r.explanation == FakeAnalysis(b"second").explanation and fake.reason_calls == 2


def test_a_dead_llm_stage_is_a_503_and_the_next_request_is_served():
    _, fake, client = _app()
    deaths = [Die()]
    fake.on_reason = lambda: deaths and (_ for _ in ()).throw(deaths.pop())
    out = []
    t = threading.Thread(target=lambda: out.append(_post(client, [{"role": "user", "content": "first"}])),
                         daemon=True)  # fmt: skip
    t.start()
    t.join(20)
    assert out, "the request waited on a dead LLM stage"
    err = _assert_error(out[0], 503)
    assert err["type"] == "server_error"
    assert _post(client, [{"role": "user", "content": "second"}]).status_code == 200


def test_a_stalled_llm_stage_is_a_503_after_the_timeout():
    _, fake, client = _app(llm_timeout_s=0.5)
    release = threading.Event()
    fake.on_reason = lambda: release.wait(5)
    t0 = time.monotonic()
    try:
        r = _post(client, [{"role": "user", "content": "stuck"}])
    finally:
        release.set()
    err = _assert_error(r, 503)
    assert time.monotonic() - t0 < 4 and err["type"] == "server_error" and err["code"] == "llm_unavailable"
    assert r.headers["retry-after"] == "1"
    fake.on_reason = None
    assert _post(client, [{"role": "user", "content": "unstuck"}]).status_code == 200


# -- 7. files under the media root: cached by path, size and modification time ---------------------------------


def test_a_changed_file_under_the_media_root_is_analysed_again(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    clip = root / "a.wav"
    _, fake, client = _app(media_root=root)
    ask = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "a.wav"}}]}]

    def said():
        r = _post(client, ask)
        assert r.status_code == 200
        return r.json()["choices"][0]["message"]["content"]

    clip.write_bytes(b"one")
    assert said() == FakeAnalysis(b"one").explanation
    assert said() == FakeAnalysis(b"one").explanation and len(fake.gathered) == 1  # unchanged: cached
    clip.write_bytes(b"three")  # another size
    assert said() == FakeAnalysis(b"three").explanation
    st = clip.stat()
    clip.write_bytes(b"thre3")  # the same size, another modification time
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert said() == FakeAnalysis(b"thre3").explanation and len(fake.gathered) == 3


def test_concurrent_requests_share_llm_batches_and_cues_do_not_wait_for_the_llm():
    """8 requests at once: while one batch is in the LLM stage the others' cues are gathered (the cue models
    are not held by the LLM stage), so they reach the batcher together and share generations (GET /health
    reports the batch sizes); every request gets its own answer."""
    from concurrent.futures import ThreadPoolExecutor

    class SlowCues(FakePipe):
        def gather(self, source=None, *, text=None, timer=None):
            time.sleep(0.1)  # cue extraction takes a while, one request at a time
            return super().gather(source, text=text, timer=timer)

    fake = SlowCues()
    in_llm = threading.Event()
    gathered_during_llm = []

    def slow_llm():
        in_llm.set()
        before = len(fake.gathered)
        time.sleep(0.4)
        gathered_during_llm.append(len(fake.gathered) - before)

    fake.on_reason = slow_llm
    app = create_app(ServeOptions(api_key=KEY, batch_wait_ms=50, max_concurrency=8), pipeline=fake)
    client = TestClient(app, raise_server_exceptions=False)
    texts = [f"request number {i}" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda t: _post(client, [{"role": "user", "content": t}]), texts))
    assert all(r.status_code == 200 for r in replies)
    digests = {r.json()["choices"][0]["message"]["content"] for r in replies}
    assert len(digests) == 8  # each request its own analysis
    health = client.get("/health").json()["llm_batches"]
    assert health["max_size"] > 1 and health["count"] < 8
    assert health["count"] == fake.reason_calls
    assert max(gathered_during_llm) > 0  # cues were gathered while a batch was in the LLM stage
