"""An OpenAI-compatible endpoint over the pipeline: ``affect-llm serve`` (FastAPI + uvicorn).

- ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions``.
- The first user message holds the clip or the text: content parts ``{"type": "text"}``, ``{"type":
  "input_audio", "input_audio": {"data": BASE64, "format": "wav"}}``, ``{"type": "video_url", "video_url":
  {"url": "data:video/mp4;base64,…" | a path under --media-root}}`` or ``{"type": "file", "file": {"file_data":
  "data:…", "filename": …}}``. Its analysis is the reply: the message content is the explanation, and the label,
  probabilities, cues and missing modalities come in the response's ``affect`` field (:meth:`Analysis.summary`) (with ``response_format:
  {"type": "json_object"}`` the content is that JSON). Later user turns ask about the same clip: the answer is
  the content, the first turn's analysis stays in ``affect`` (analyses are cached by content, so a follow-up does
  not analyse the clip again).
- The web page at ``/`` (``affect_llm/web/``: plain HTML, CSS and JavaScript served from the package, nothing
  fetched from elsewhere) talks to the analysis API, which any client may use too: ``POST /v1/analyses`` (the
  media file's bytes as the body, ``?filename=clip.mp4``; or JSON ``{"text", "context", "speaker"}``) → 202 with
  an id; ``GET /v1/analyses/{id}/events`` (server-sent events: ``stage`` as each stage starts and ends, then
  ``done`` or ``error``); ``GET /v1/analyses/{id}`` (status, the stages so far, then the whole Analysis with its
  timeline, or the error); ``GET /v1/analyses/{id}/plot.png``; ``POST /v1/analyses/{id}/chat`` (``{"messages":
  [...]}``, the follow-up turns, the last one the user's question) → ``{"answer"}``. The last ``cache_size``
  analyses are kept.
- ``stream: true`` sends the reply as server-sent ``chat.completion.chunk`` events (the text is generated whole,
  then sent in word-sized chunks), ending with ``data: [DONE]``.
- Safety: binds 127.0.0.1 by default; optional API key (``Authorization: Bearer KEY``); media paths only under
  ``--media-root`` (resolved, so ``../`` and symlinks out of it are refused); ``file:`` URLs likewise; http(s)
  media URLs off; request bodies over ``--max-body-mb`` → 413; more than ``--max-concurrency`` requests at once
  → 429 with ``Retry-After`` (the body is counted as it is read, so a chunked body is held to the limit too);
  the API key is compared in constant time; ``input_audio.format`` must be one of :data:`AUDIO_FORMATS`; uploads
  are written atomically and deleted after their request; an LLM stage that stops (its thread restarted) or does
  not answer within ``llm_timeout_s`` → 503; files under the media root are cached by path, size and mtime;
  every error (404, 405 and request validation included) in OpenAI's error schema, never a stack trace.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict, deque
from concurrent.futures import InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, Optional

from fastapi import Request  # noqa: TC002  (FastAPI reads the endpoint annotations at run time)
from pydantic import BaseModel, ConfigDict, Field

from .errors import AffectLLMError, BackendError, InputError, MediaError

MODEL_ID = "affect-llm"
#: the web page's files (index.html, static/)
WEB = Path(__file__).parent / "web"
#: the page loads nothing from elsewhere: its scripts, styles and media are this server's (or the user's own file)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

#: the ``input_audio.format`` values accepted (the extension of the uploaded file; anything else is a 400)
AUDIO_FORMATS = frozenset({"wav", "flac", "mp3", "mpeg", "mpga", "ogg", "oga", "opus", "m4a", "aac", "webm", "mp4",
                           "aiff", "aif", "amr", "wma"})  # fmt: skip
_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


class ServeOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: Optional[str] = None
    media_root: Optional[Path] = Field(None, description="media paths and file: URLs are allowed only under this")
    max_body_mb: float = 64.0
    max_concurrency: int = Field(4, ge=1, description="requests in progress at once; more get 429")
    cache_size: int = 32
    batch_wait_ms: float = Field(
        20.0, ge=0, description="how long the LLM stage waits for other requests to reason and explain together"
    )
    llm_timeout_s: float = Field(
        600.0, gt=0, description="how long a request waits for the LLM stage before it gets 503"
    )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = MODEL_ID
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    response_format: Optional[dict[str, Any]] = None


class AnalysisRequest(BaseModel):
    """``POST /v1/analyses`` with a JSON body: a text, optionally with the dialogue before it."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)
    context: Optional[str] = Field(None, description="the dialogue before the text, one `Speaker: utterance` a line")
    speaker: Optional[str] = None


class FollowUp(BaseModel):
    """``POST /v1/analyses/{id}/chat``: the follow-up turns about an analysis (the last one the user's)."""

    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage] = Field(min_length=1)


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None, param: str | None = None):  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers or {}
        self.param = param


def _error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# -- media in a message --------------------------------------------------------------------------------------


def _text_of(content: str | list[dict[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")


def _media_parts(content) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return []
    return [p for p in content if p.get("type") in ("input_audio", "video_url", "file", "image_url")]


def _prompt_tokens(messages: list[ChatMessage]) -> int:
    """An approximate prompt size: the words of every message's text (media parts count nothing)."""
    return sum(len(_text_of(m.content).split()) for m in messages)


class MediaResolver:
    """Turns a content part into a local file (decoded ``data:`` URLs go to a temporary file, named by its
    content, written under a temporary name and renamed into place, and deleted by :meth:`release` when the last
    request holding it is done)."""

    def __init__(self, opts: ServeOptions, tmp: Path):
        self.opts = opts
        self.tmp = tmp
        self._refs: dict[Path, int] = {}  # upload -> requests holding it
        self._refs_lock = threading.Lock()

    def is_upload(self, path: Path) -> bool:
        return path.parent == self.tmp

    def resolve(self, part: dict[str, Any]) -> Path:
        kind = part.get("type")
        if kind == "input_audio":
            a = part.get("input_audio") or {}
            fmt = a.get("format") or "wav"
            ext = fmt.lstrip(".").lower() if isinstance(fmt, str) else ""
            if ext not in AUDIO_FORMATS:
                raise APIError(400, f"input_audio.format {str(fmt)[:32]!r} is not a supported audio format "
                                    f"(one of {', '.join(sorted(AUDIO_FORMATS))})",
                               code="invalid_audio_format", param="input_audio.format")  # fmt: skip
            return self._write(self._b64(a.get("data")), "." + ext)
        if kind == "video_url":
            return self._url(str((part.get("video_url") or {}).get("url") or ""))
        if kind == "file":
            f = part.get("file") or {}
            if f.get("file_data"):
                data = str(f["file_data"])
                if data.startswith("data:"):
                    return self._url(data)
                suffix = Path(str(f.get("filename") or "x.bin")).suffix
                return self._write(self._b64(data), suffix if _SAFE_SUFFIX.fullmatch(suffix) else "")
            raise APIError(400, "a file part needs file_data (a data: URL or base64); file ids are not supported")
        raise APIError(400, f"content part type {kind!r} is not supported (text, input_audio, video_url, file)")

    def _b64(self, data) -> bytes:
        if not isinstance(data, str) or not data:
            raise APIError(400, "media data is empty")
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, "media data is not valid base64") from None

    def _write(self, raw: bytes, suffix: str) -> Path:
        if not raw:
            raise APIError(400, "media data is empty")
        path = self.tmp / (hashlib.sha256(raw).hexdigest() + (suffix if _SAFE_SUFFIX.fullmatch(suffix) else ""))
        with self._refs_lock:  # held from here: not deleted until this request releases it
            self._refs[path] = self._refs.get(path, 0) + 1
        try:
            if not path.exists():  # a request sending the same bytes at the same time writes its own copy
                part = self.tmp / f".{path.name}.{uuid.uuid4().hex}.part"
                try:
                    with open(part, "wb") as f:
                        f.write(raw)
                    os.replace(part, path)  # atomic: the name holds nothing or all of it
                finally:
                    part.unlink(missing_ok=True)
        except BaseException:
            self.release(path)
            raise
        return path

    def release(self, path: Path) -> None:
        """This request is done with ``path``: an upload no other request holds is deleted."""
        with self._refs_lock:
            n = self._refs.get(path)
            if n is None:
                return
            if n > 1:
                self._refs[path] = n - 1
                return
            del self._refs[path]
            path.unlink(missing_ok=True)

    def _url(self, url: str) -> Path:
        if url.startswith("data:"):
            head, _, data = url.partition(",")
            if ";base64" not in head:
                raise APIError(400, "a data: URL must be base64-encoded")
            mime = head[5:].split(";")[0]
            suffix = {"video/mp4": ".mp4", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/flac": ".flac",
                      "audio/mpeg": ".mp3", "video/webm": ".webm", "video/quicktime": ".mov"}.get(mime, ".bin")  # fmt: skip
            return self._write(self._b64(data), suffix)
        if url.startswith(("http://", "https://")):
            raise APIError(400, "http(s) media URLs are off on this server (send the media as a data: URL)",
                           code="url_not_allowed")  # fmt: skip
        path = url[len("file://"):] if url.startswith("file://") else url
        return self._local(path)

    def _local(self, path: str) -> Path:
        root = self.opts.media_root
        if root is None:
            raise APIError(403, "media paths are off on this server (start it with --media-root DIR)",
                           type_="permission_error", code="path_not_allowed")  # fmt: skip
        base = root.resolve()
        p = Path(path)
        target = (p if p.is_absolute() else base / p).resolve()
        if target != base and base not in target.parents:
            raise APIError(403, f"{path}: outside the media root", type_="permission_error", code="path_not_allowed")
        if not target.is_file():
            raise APIError(404, f"{path}: no such file under the media root", code="not_found")
        return target


def _parse(model: type[BaseModel], body: bytes):
    try:
        return model.model_validate_json(body)
    except ValueError as e:
        msg = " ".join(str(e).split())[:300]
        raise APIError(400, f"invalid request: {msg}", code="invalid_request") from None


def _turns(turns: list[ChatMessage]) -> tuple[list[tuple[str, str]], str]:
    """The (question, answer) history of follow-up turns, and the last user question (system turns skipped)."""
    history, pending = [], None
    for m in turns:
        if m.role == "user":
            pending = _text_of(m.content).strip()
        elif m.role == "assistant" and pending is not None:
            history.append((pending, _text_of(m.content)))
            pending = None
    if not pending:
        raise APIError(400, "the last message must be a user question", code="invalid_request")
    return history, pending


def _as_api_error(e: AffectLLMError, source: Path | None, resolver: MediaResolver, name: str = "the uploaded media"):
    """The HTTP error of a pipeline error: bad input 400, an LLM backend that failed 503, else 500. An upload is
    named as ``name``, never by its temporary path."""
    msg = e.one_line()
    if source is not None and resolver.is_upload(source):
        msg = msg.replace(str(source), name)
    if isinstance(e, (MediaError, InputError)):
        return APIError(400, msg, code=type(e).__name__)
    if isinstance(e, BackendError):
        return APIError(503, msg, type_="server_error", code=type(e).__name__)
    return APIError(500, msg, type_="server_error", code=type(e).__name__)


# -- the analysis jobs (POST /v1/analyses) -----------------------------------------------------------------


class _Job:
    """One analysis started through ``POST /v1/analyses``: its stage events as they happen, then its Analysis
    or its error. Written by the analysis thread, read by the event streams and polls (under ``lock``)."""

    def __init__(self, name: str):
        self.id = uuid.uuid4().hex[:16]
        self.name = name  # the uploaded file's name (or "the text"): what its errors call it
        self.created = time.monotonic()
        self.events: list[dict] = []
        self.status = "running"  # running | done | failed
        self.analysis = None
        self.error: dict | None = None  # OpenAI's error schema, and its HTTP status under "status"
        self.lock = threading.Lock()

    def stage(self, stage: str, status: str, seconds: float | None) -> None:
        with self.lock:
            self.events.append({"stage": stage, "status": status, "seconds": seconds,
                                "at": round(time.monotonic() - self.created, 3)})  # fmt: skip

    def finish(self, analysis) -> None:
        with self.lock:
            self.analysis, self.status = analysis, "done"

    def fail(self, status: int, body: dict) -> None:
        with self.lock:
            self.error, self.status = {"status": status, **body}, "failed"

    def since(self, n: int) -> tuple[list[dict], str]:
        with self.lock:
            return self.events[n:], self.status

    def view(self, with_analysis: bool) -> dict:
        with self.lock:
            out = {"id": self.id, "object": "analysis", "name": self.name, "status": self.status,
                   "events": list(self.events), "error": self.error}  # fmt: skip
            if with_analysis:
                out["analysis"] = self.analysis.model_dump(mode="json") if self.analysis is not None else None
            return out


class _Jobs:
    """The analyses started through the API: every running one, and the latest ``keep`` finished ones."""

    def __init__(self, keep: int):
        self._keep = keep
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._lock = threading.Lock()

    def new(self, name: str) -> _Job:
        job = _Job(name)
        with self._lock:
            self._jobs[job.id] = job
            finished = [k for k, j in self._jobs.items() if j.status != "running"]
            for k in finished[: max(0, len(finished) - self._keep)]:
                del self._jobs[k]
        return job

    def get(self, job_id: str) -> _Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise APIError(404, f"no analysis {job_id[:40]!r} on this server (unknown, or no longer kept: the "
                                "latest analyses are kept)", code="not_found")  # fmt: skip
        return job

    def done(self, job_id: str) -> _Job:
        """The job, finished with an analysis (409 while it runs, its own error when it failed)."""
        job = self.get(job_id)
        if job.status == "running":
            raise APIError(409, "the analysis is still running", code="analysis_running")
        if job.status == "failed":
            raise APIError(409, f"the analysis failed: {job.error['error']['message']}", code="analysis_failed")
        return job


async def _job_events(job: _Job, poll_s: float = 0.1, keepalive_s: float = 10.0):
    """Server-sent events of a job: ``stage`` per stage event (the ones so far first), then ``done`` with the
    label, or ``error`` with the error body; a comment every ``keepalive_s`` keeps idle connections open."""
    sent, last = 0, time.monotonic()
    while True:
        events, status = job.since(sent)
        for e in events:
            yield f"event: stage\ndata: {json.dumps(e)}\n\n"
        sent += len(events)
        if events:
            last = time.monotonic()
        if status == "done":
            yield f"event: done\ndata: {json.dumps({'id': job.id, 'label': job.analysis.label})}\n\n"
            return
        if status == "failed":
            yield f"event: error\ndata: {json.dumps(job.error)}\n\n"
            return
        if time.monotonic() - last > keepalive_s:  # a client gone is noticed here (Starlette ends the stream)
            yield ": keep-alive\n\n"
            last = time.monotonic()
        await asyncio.sleep(poll_s)


# -- the app ---------------------------------------------------------------------------------------------


def create_app(opts: ServeOptions | None = None, pipeline=None, config=None):
    """The FastAPI app. ``pipeline``: a :class:`~affect_llm.pipeline.Pipeline` (default: one from ``config``, a
    :class:`~affect_llm.config.PipelineConfig` or :class:`~affect_llm.config.PipelineOptions`)."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    opts = opts or ServeOptions()
    tmp = Path(tempfile.mkdtemp(prefix="affect-llm-serve-"))  # uploads, each deleted after its request

    @asynccontextmanager
    async def lifespan(_app):
        try:
            yield
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    app = FastAPI(title="affect-llm", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.upload_dir = tmp
    state: dict[str, Any] = {"pipe": pipeline, "busy": 0}
    busy_lock = threading.Lock()  # "busy" changes on the event loop (chat) and in the analysis threads
    # Three locks, so that the stages overlap: the analyses cache; the cue models (one request's cues at a time:
    # on a few cores two extractions at once only slow each other); the LLM stage (the batcher's batches and the
    # follow-up answers take turns). A request's LLM work never waits for another request's cue extraction, so
    # requests that reach the LLM stage together share one batched generation.
    cache_lock, cue_lock, llm_lock = threading.Lock(), threading.Lock(), threading.Lock()
    cache: OrderedDict[str, Any] = OrderedDict()
    resolver = MediaResolver(opts, tmp)
    max_body = int(opts.max_body_mb * 1024 * 1024)
    jobs = _Jobs(keep=max(1, opts.cache_size))
    plot_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe

    def enter() -> None:
        """Count a request in, or refuse it (429) when ``max_concurrency`` are in progress."""
        with busy_lock:
            if state["busy"] >= opts.max_concurrency:
                raise APIError(429, "the server is busy; retry shortly", type_="rate_limit_error", code="busy",
                               headers={"Retry-After": "1"})  # fmt: skip
            state["busy"] += 1

    def leave() -> None:
        with busy_lock:
            state["busy"] -= 1

    async def read_body(request: Request) -> bytes:
        chunks, total = [], 0
        async for chunk in request.stream():  # a chunked body has no content-length: count as it comes
            total += len(chunk)
            if total > max_body:
                raise APIError(413, f"request body over {opts.max_body_mb:g} MB", code="request_too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    def pipe():
        if state["pipe"] is None:
            from .pipeline import Pipeline

            state["pipe"] = Pipeline(config)
        return state["pipe"]

    @app.exception_handler(APIError)
    async def _api_error(_: Request, e: APIError):
        return JSONResponse(_error_body(e.message, e.type, e.code, e.param), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):  # 404 (no such route), 405, ...
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        type_ = "server_error" if e.status_code >= 500 else "invalid_request_error"
        msg = f"{e.detail}: {request.method} {request.url.path}"
        return JSONResponse(_error_body(msg, type_, code), status_code=e.status_code, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return JSONResponse(_error_body(f"invalid request: {where}: {first.get('msg', 'malformed')}",
                                        "invalid_request_error", "invalid_request", where or None), status_code=400)  # fmt: skip

    @app.exception_handler(Exception)
    async def _internal(_: Request, e: Exception):
        return JSONResponse(_error_body(f"internal error: {type(e).__name__}", "server_error"), status_code=500)

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        if opts.api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "").encode("latin-1")  # the header's bytes
            if not hmac.compare_digest(given, f"Bearer {opts.api_key}".encode()):
                return JSONResponse(_error_body("invalid API key", "invalid_request_error", "invalid_api_key"),
                                    status_code=401)  # fmt: skip
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            return JSONResponse(_error_body(f"request body over {opts.max_body_mb:g} MB", "invalid_request_error",
                                            "request_too_large"), status_code=413)  # fmt: skip
        return await call_next(request)

    @app.get("/health")
    async def health():
        sizes = list(app.state.batcher.sizes)
        batches = {"count": len(sizes), "mean_size": round(sum(sizes) / len(sizes), 3) if sizes else 0.0,
                   "max_size": max(sizes, default=0)}  # fmt: skip
        return {"status": "ok", "models_loaded": state["pipe"] is not None, "busy": state["busy"],
                "llm_batches": batches, "auth_required": bool(opts.api_key), "max_body_mb": opts.max_body_mb}

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=WEB / "static"), name="static")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "affect-llm"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req = _parse(ChatRequest, await read_body(request))
        enter()
        try:
            analysis, answer = await run_in_threadpool(_respond, req)
        finally:
            leave()
        affect = analysis.summary()
        as_json = (req.response_format or {}).get("type") == "json_object"
        content = json.dumps({**affect, "answer": answer}) if as_json else answer
        rid, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
        prompt, completion = _prompt_tokens(req.messages), len(content.split())
        if req.stream:
            return StreamingResponse(_sse(rid, created, content, affect), media_type="text/event-stream")
        return {"id": rid, "object": "chat.completion", "created": created, "model": MODEL_ID,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                             "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
                "affect": affect}  # fmt: skip

    def _respond(req: ChatRequest):
        users = [i for i, m in enumerate(req.messages) if m.role == "user"]
        if not users:
            raise APIError(400, "no user message", code="invalid_request")
        first = req.messages[users[0]]
        parts = _media_parts(first.content)
        if len(parts) > 1:
            raise APIError(400, "one clip per conversation (the first user message holds it)")
        text = _text_of(first.content).strip()
        source = resolver.resolve(parts[0]) if parts else None
        try:
            return _respond_to(req, users, text, source)
        finally:
            if source is not None:
                resolver.release(source)  # an upload is deleted once no request holds it

    def _cache_key(source: Path | None, text: str, context: str | None = None, speaker: str | None = None) -> str:
        """Text by its content (and its dialogue's), an upload by its name (its content's hash), a file under the
        media root by its path, size and modification time (a changed file is analysed again)."""
        if source is None:
            key = "text:" + text + (f"\0context:{context}\0speaker:{speaker or ''}" if context or speaker else "")
        elif resolver.is_upload(source):
            key = "upload:" + source.name
        else:
            st = source.stat()
            key = f"file:{source}\0{st.st_size}\0{st.st_mtime_ns}"
        return hashlib.sha256(key.encode()).hexdigest()

    def _respond_to(req: ChatRequest, users: list[int], text: str, source: Path | None):
        if source is None and not text:
            raise APIError(400, "the first user message has neither media nor text", code="invalid_request")
        try:
            analysis = _cached_analysis(source, text)
            if len(users) == 1:
                return analysis, analysis.explanation
            history, question = _turns(req.messages[users[0] + 1 :])
            with llm_lock:
                return analysis, pipe().chat(analysis, history, question)
        except AffectLLMError as e:
            raise _as_api_error(e, source, resolver) from None

    def _analyze(source: Path | None, text: str, *, context: str | None = None, speaker: str | None = None,
                 timer=None):  # fmt: skip
        """The cues (one request at a time on the models), then the label and explanation in the batcher, with
        whatever other requests reached the LLM stage at about the same time."""
        from .pipeline import Timer

        timer, t0 = timer or Timer(), time.perf_counter()
        extra = {k: v for k, v in (("context", context), ("speaker", speaker)) if v}
        with cue_lock:
            gathering = pipe().gather(source, timer=timer) if source else \
                pipe().gather(text=text, timer=timer, **extra)
        fut = batcher.submit(gathering, timer, t0)
        try:
            return fut.result(timeout=opts.llm_timeout_s)
        except FutureTimeout:
            fut.cancel()  # the batcher skips it
            raise APIError(503, f"the LLM stage did not answer within {opts.llm_timeout_s:g} s; retry shortly",
                           type_="server_error", code="llm_unavailable", headers={"Retry-After": "1"}) from None

    def _cached_analysis(source: Path | None, text: str | None, context: str | None = None,
                         speaker: str | None = None, timer=None):  # fmt: skip
        """The analysis from the cache (``timer`` hears a "cached" stage), else :func:`_analyze`'s, kept there."""
        key = _cache_key(source, text, context, speaker)
        with cache_lock:
            analysis = cache.get(key)
        if analysis is None:
            analysis = _analyze(source, text, context=context, speaker=speaker, timer=timer)
        elif timer is not None and timer.on_stage is not None:
            timer.on_stage("cached", "done", 0.0)
        with cache_lock:
            cache[key] = analysis
            cache.move_to_end(key)
            while len(cache) > opts.cache_size:
                cache.popitem(last=False)
        return analysis

    # -- the analysis API (the web page's, and any client's) ------------------------------------------------

    @app.post("/v1/analyses")
    async def start_analysis(request: Request, filename: Optional[str] = None):
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await read_body(request)
        text = context = speaker = None
        if ctype == "application/json":
            req = _parse(AnalysisRequest, body)
            text, context, speaker, name = req.text, req.context, req.speaker, "the text"
        elif not body:
            raise APIError(400, "the request body is empty: send a media file's bytes (with ?filename=NAME), or "
                                "JSON with a text", code="invalid_request")  # fmt: skip
        else:
            name = Path(filename).name[:200] if filename and Path(filename).name else "the uploaded media"
        enter()
        source = None
        try:
            if text is None:
                suffix = Path(filename or "").suffix.lower()
                source = resolver._write(body, suffix)
            job = jobs.new(name)
            threading.Thread(target=_run_job, args=(job, source, text, context, speaker), daemon=True,
                             name=f"affect-llm-analysis-{job.id}").start()  # fmt: skip
        except BaseException:
            if source is not None:
                resolver.release(source)
            leave()
            raise
        return JSONResponse(job.view(False), status_code=202, headers={"Location": f"/v1/analyses/{job.id}"})

    def _run_job(job: _Job, source: Path | None, text: str | None, context: str | None, speaker: str | None):
        from .pipeline import Timer

        held = source is not None

        def release() -> None:  # the upload is deleted before anyone hears that the job ended
            nonlocal held
            if held:
                held = False
                resolver.release(source)

        try:
            analysis = _cached_analysis(source, text, context, speaker, Timer(on_stage=job.stage))
            if source is not None and resolver.is_upload(source):  # the user's file name, not the server's copy
                media = analysis.media.model_copy(update={"path": job.name}) if analysis.media else None
                analysis = analysis.model_copy(update={"source": job.name, "media": media})
            release()
            job.finish(analysis)
        except (APIError, AffectLLMError) as e:
            err = e if isinstance(e, APIError) else _as_api_error(e, source, resolver, name=job.name)
            release()
            job.fail(err.status, _error_body(err.message, err.type, err.code, err.param))
        except Exception as e:  # noqa: BLE001 - the page hears of it; the thread must not die silently
            release()
            job.fail(500, _error_body(f"internal error: {type(e).__name__}", "server_error"))
        finally:
            release()
            if job.status == "running":  # whatever happened, the job ends: its streams must not wait forever
                job.fail(500, _error_body("internal error: the analysis thread stopped", "server_error"))
            leave()

    @app.get("/v1/analyses/{job_id}")
    async def get_analysis(job_id: str):
        return jobs.get(job_id).view(True)

    @app.get("/v1/analyses/{job_id}/events")
    async def analysis_events(job_id: str):
        job = jobs.get(job_id)
        return StreamingResponse(_job_events(job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})  # fmt: skip

    @app.get("/v1/analyses/{job_id}/plot.png")
    async def analysis_plot(job_id: str):
        job = jobs.done(job_id)
        png = await run_in_threadpool(_plot, job.analysis)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(job.name).stem)[:60] or "analysis"
        return Response(png, media_type="image/png",
                        headers={"Content-Disposition": f'attachment; filename="{stem}-timeline.png"'})  # fmt: skip

    def _plot(analysis) -> bytes:
        from .plot import plot_timeline

        out = tmp / f"plot-{uuid.uuid4().hex}.png"
        try:
            with plot_lock:
                plot_timeline(analysis, out)
            return out.read_bytes()
        except InputError as e:
            raise APIError(400, e.one_line(), code="nothing_to_plot") from None
        finally:
            out.unlink(missing_ok=True)

    @app.post("/v1/analyses/{job_id}/chat")
    async def analysis_chat(job_id: str, request: Request):
        req = _parse(FollowUp, await read_body(request))
        job = jobs.done(job_id)
        history, question = _turns(req.messages)
        enter()
        try:
            answer = await run_in_threadpool(_answer, job.analysis, history, question)
        finally:
            leave()
        return {"id": job_id, "object": "analysis.answer", "answer": answer}

    def _answer(analysis, history, question) -> str:
        try:
            with llm_lock:
                return pipe().chat(analysis, history, question)
        except AffectLLMError as e:
            raise _as_api_error(e, None, resolver) from None

    batcher = _Batcher(pipe, llm_lock, opts.batch_wait_ms / 1000, max_batch=max(1, opts.max_concurrency))
    app.state.batcher = batcher

    return app


class _Batcher:
    """The server's LLM stage: requests that reach it at about the same time are reasoned together
    (:meth:`Pipeline.reason_many`: labels one by one, the explanations in one batched generation). One thread
    takes a job, waits ``wait_s`` for more (up to ``max_batch``), and runs them holding the LLM stage's lock (follow-up answers take it too)."""

    def __init__(self, pipe, lock: threading.Lock, wait_s: float, max_batch: int):
        import queue

        self._pipe, self._lock, self._wait, self._max = pipe, lock, wait_s, max_batch
        self.sizes: deque[int] = deque(maxlen=1000)  # the sizes of the latest batches (GET /health reports them)
        self._q: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def submit(self, gathered: tuple, timer, started: float):
        from concurrent.futures import Future

        fut: Future = Future()
        with self._start:  # a thread that died (see _loop) is replaced; the job goes to a live one
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="affect-llm-batcher", daemon=True)
                self._thread.start()
            self._q.put((gathered, timer, started, fut))
        return fut

    @staticmethod
    def _settle(fut, r) -> None:
        if fut.done():  # cancelled: its request stopped waiting
            return
        try:
            if isinstance(r, BaseException):
                fut.set_exception(r)
            else:
                fut.set_result(r)
        except InvalidStateError:  # cancelled meanwhile
            pass

    def _loop(self) -> None:
        import queue

        jobs: list = []
        try:
            while True:
                jobs = [self._q.get()]
                deadline = time.monotonic() + self._wait
                while len(jobs) < self._max:
                    try:
                        jobs.append(self._q.get(timeout=max(0.0, deadline - time.monotonic())))
                    except queue.Empty:
                        break
                jobs = [j for j in jobs if not j[3].done()]
                if not jobs:
                    continue
                self.sizes.append(len(jobs))
                try:
                    with self._lock:
                        results = self._pipe().reason_many([j[0] for j in jobs], timers=[j[1] for j in jobs],
                                                           started=[j[2] for j in jobs])  # fmt: skip
                except Exception as e:  # e.g. the LLM failed to load: every waiting request hears why
                    results = [e] * len(jobs)
                for (_, _, _, fut), r in zip(jobs, results):
                    self._settle(fut, r)
                for j in jobs[len(results):]:  # no result for it: it must not wait forever
                    self._settle(j[3], BackendError("the LLM stage returned no result for this request"))
                jobs = []
        except BaseException as e:  # noqa: BLE001  (this thread dies: the jobs it holds and the queued hear it now)
            err = BackendError(f"the LLM stage stopped ({type(e).__name__}); retry the request")
            with self._start:
                if self._thread is threading.current_thread():
                    self._thread = None  # the next submit starts a new thread
                while True:
                    try:
                        jobs.append(self._q.get_nowait())
                    except queue.Empty:
                        break
            for j in jobs:
                self._settle(j[3], err)


async def _sse(rid: str, created: int, content: str, affect: dict):
    def chunk(delta: dict, finish: str | None = None, extra: dict | None = None) -> str:
        body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **(extra or {})}  # fmt: skip
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    words = content.split(" ")
    for i, w in enumerate(words):
        yield chunk({"content": w + (" " if i < len(words) - 1 else "")})
        await asyncio.sleep(0)
    yield chunk({}, "stop", {"affect": affect})
    yield "data: [DONE]\n\n"


def serve(opts: ServeOptions, config=None, **options) -> None:
    """Run the endpoint until interrupted. ``config``: a :class:`~affect_llm.config.PipelineConfig` or
    :class:`~affect_llm.config.PipelineOptions` (or the options by keyword, as the CLI's flags). With the vLLM
    backend, the vLLM server (when none is given to attach to) is started before this one accepts requests, and
    stopped after it."""
    import uvicorn

    from .config import as_config
    from .llm import backends

    config = as_config(config, **options)
    pipeline = None
    if backends.get(config.reasoner.backend).eager:
        from .pipeline import Pipeline

        pipeline = Pipeline(config)
        pipeline.reasoner()  # starts (or attaches to) its server now, not on the first request
    try:
        uvicorn.run(create_app(opts, pipeline=pipeline, config=config), host=opts.host, port=opts.port,
                    log_level="warning")  # fmt: skip
    finally:
        backends.stop_all()
