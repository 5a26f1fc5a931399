"""The analysis API behind the web page (``POST /v1/analyses``, its events, result, plot and chat) and the page's
own files, over a fake pipeline that returns real :class:`Analysis` objects (no models): progress events as the
stages run, errors named by the uploaded file's name, uploads deleted, the API key, 404/409/413/429, and a page
that loads nothing from elsewhere."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from affect_llm.errors import MediaError
from affect_llm.server import WEB, ServeOptions, create_app
from affect_llm.types import Analysis, Cue, Modality

KEY = "page-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


class FakePipe:
    """The surface of Pipeline the analysis API uses. ``gather`` times two stages through the request's timer
    (so the job hears them), reads the upload there and then, and raises a MediaError naming the file's path
    when its bytes start with ``BROKEN``; ``hold`` (an Event) stalls ``gather`` until set."""

    def __init__(self):
        self.calls: list[dict] = []
        self.hold: threading.Event | None = None
        self.chats: list[tuple] = []

    def gather(self, source=None, *, text=None, timer=None, context=None, speaker=None):
        self.calls.append({"source": source, "text": text, "context": context, "speaker": speaker})
        with timer("probe"):
            data = Path(source).read_bytes() if source is not None else text.encode()
            if data.startswith(b"BROKEN"):
                raise MediaError(source, "invalid data found when processing input (not a media file?)")
        with timer("asr"):
            if self.hold is not None:
                self.hold.wait(10)
        return (source, data)

    def reason_many(self, gathered, *, timers=None, started=None, explain=None):
        out = []
        for (source, data), timer in zip(gathered, timers):
            with timer("label"):
                pass
            out.append(_analysis("text" if source is None else str(source), len(data)))
        return out

    def chat(self, analysis, history, question):
        self.chats.append((analysis.label, history, question))
        return f"From [S1]: {question} (after {len(history)} turns)"


def _analysis(source: str, n: int) -> Analysis:
    return Analysis(
        source=source, label="joy", probabilities={"joy": 0.7, "neutral": 0.3},
        distributions={"llm": {"joy": 0.6, "neutral": 0.4}}, fusion={"llm": 1.0}, decision="the LLM decides",
        explanation=f"The speaker sounds glad [S1] ({n} bytes).", cited_cues=["S1"],
        cues=[Cue(id="S1", modality=Modality.speech, start=0.5, end=1.5, text='says "yes"')],
        timeline={"prosody": [{"t": 0.025 + 0.05 * i, "pitch_hz": 120.0 + i, "loudness_db": 60.0} for i in range(40)]},
        timings={"total": 0.1},
    )  # fmt: skip


@pytest.fixture
def app():
    fake = FakePipe()
    app = create_app(ServeOptions(api_key=KEY, batch_wait_ms=0, max_concurrency=2, max_body_mb=1), pipeline=fake)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield app, fake, client


def _events(client, job_id: str) -> list[tuple[str, dict]]:
    r = client.get(f"/v1/analyses/{job_id}/events", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in r.text.split("\n\n"):
        kind = re.search(r"^event: (\w+)$", block, re.M)
        data = re.search(r"^data: (.*)$", block, re.M)
        if kind and data:
            out.append((kind.group(1), json.loads(data.group(1))))
    return out


def test_an_upload_streams_its_stages_then_its_analysis(app):
    app, fake, client = app
    r = client.post("/v1/analyses?filename=my%20clip.mp4", content=b"\x00" * 1000, headers=AUTH)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "running" and r.headers["location"] == f"/v1/analyses/{job['id']}"
    events = _events(client, job["id"])
    stages = [(d["stage"], d["status"]) for k, d in events if k == "stage"]
    assert stages == [("probe", "start"), ("probe", "done"), ("asr", "start"), ("asr", "done"),
                      ("label", "start"), ("label", "done")]  # fmt: skip
    assert events[-1] == ("done", {"id": job["id"], "label": "joy"})
    view = client.get(f"/v1/analyses/{job['id']}", headers=AUTH).json()
    assert view["status"] == "done" and view["name"] == "my clip.mp4" and view["error"] is None
    assert view["analysis"]["source"] == "my clip.mp4"  # the user's name for it, not the server's temporary copy
    a = Analysis.model_validate(view["analysis"])  # the whole Analysis, timeline included
    assert a.timeline["prosody"][0]["pitch_hz"] == 120.0 and "(1000 bytes)" in a.explanation
    upload = Path(fake.calls[0]["source"])
    assert upload.suffix == ".mp4" and not upload.exists()  # deleted once analysed


def test_a_text_with_its_dialogue(app):
    _, fake, client = app
    body = {"text": "I got the job!", "context": "Ann: Any news?\nBen: Not yet.", "speaker": "Ben"}
    job = client.post("/v1/analyses", json=body, headers=AUTH).json()
    assert _events(client, job["id"])[-1][0] == "done"
    assert fake.calls[-1] == {"source": None, "text": "I got the job!", "context": body["context"], "speaker": "Ben"}
    again = client.post("/v1/analyses", json=body, headers=AUTH).json()  # the same input: from the cache
    assert [d["stage"] for k, d in _events(client, again["id"]) if k == "stage"] == ["cached"]
    assert len(fake.calls) == 1


def test_a_broken_file_ends_in_an_error_event_naming_the_file(app):
    _, fake, client = app
    job = client.post("/v1/analyses?filename=notes.mp4", content=b"BROKEN bytes", headers=AUTH).json()
    kind, data = _events(client, job["id"])[-1]
    assert kind == "error" and data["status"] == 400
    assert data["error"]["message"].startswith("notes.mp4: invalid data") and data["error"]["code"] == "MediaError"
    assert str(fake.calls[0]["source"]) not in data["error"]["message"]  # never the server's temporary path
    view = client.get(f"/v1/analyses/{job['id']}", headers=AUTH).json()
    assert view["status"] == "failed" and view["analysis"] is None
    assert [(d["stage"], d["status"]) for d in view["events"]] == [("probe", "start"), ("probe", "failed")]
    r = client.get(f"/v1/analyses/{job['id']}/plot.png", headers=AUTH)
    assert r.status_code == 409 and "notes.mp4: invalid data" in r.json()["error"]["message"]


def test_refusals_in_openai_error_schema(app):
    _, _, client = app
    cases = [
        (client.post("/v1/analyses", content=b"", headers=AUTH), 400, "empty"),
        (client.post("/v1/analyses", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}),
         400, "invalid request"),
        (client.post("/v1/analyses", json={"text": "hi", "colour": "red"}, headers=AUTH), 400, "colour"),
        (client.post("/v1/analyses", json={"text": ""}, headers=AUTH), 400, "text"),
        (client.get("/v1/analyses/0123456789abcdef", headers=AUTH), 404, "no analysis"),
        (client.get("/v1/analyses/0123456789abcdef/events", headers=AUTH), 404, "no analysis"),
        (client.post("/v1/analyses?filename=x.wav", content=b"\x00" * (1024 * 1024 + 1), headers=AUTH), 413, "1 MB"),
        (client.post("/v1/analyses", json={"text": "hi"}), 401, "API key"),
    ]
    for r, status, words in cases:
        assert r.status_code == status, (status, r.text)
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and words in err["message"], err


def test_follow_up_questions_and_the_plot(app):
    _, fake, client = app
    job = client.post("/v1/analyses?filename=take.wav", content=b"\x01" * 64, headers=AUTH).json()
    _events(client, job["id"])
    turns = [{"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because [S1]."},
             {"role": "user", "content": "And the voice?"}]  # fmt: skip
    r = client.post(f"/v1/analyses/{job['id']}/chat", json={"messages": turns}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["answer"] == "From [S1]: And the voice? (after 1 turns)"
    assert fake.chats[-1] == ("joy", [("Why?", "Because [S1].")], "And the voice?")
    bad = client.post(f"/v1/analyses/{job['id']}/chat", json={"messages": turns[:2]}, headers=AUTH)
    assert bad.status_code == 400 and "user question" in bad.json()["error"]["message"]
    png = client.get(f"/v1/analyses/{job['id']}/plot.png", headers=AUTH)
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert 'filename="take-timeline.png"' in png.headers["content-disposition"]


def test_a_running_analysis_holds_a_slot_and_refuses_chat(app):
    _, fake, client = app
    fake.hold = threading.Event()
    try:
        first = client.post("/v1/analyses", json={"text": "one"}, headers=AUTH).json()
        second = client.post("/v1/analyses", json={"text": "two"}, headers=AUTH)
        assert second.status_code == 202
        third = client.post("/v1/analyses", json={"text": "three"}, headers=AUTH)  # max_concurrency=2
        assert third.status_code == 429 and third.headers["retry-after"] == "1"
        r = client.post(f"/v1/analyses/{first['id']}/chat", json={"messages": [{"role": "user", "content": "?"}]},
                        headers=AUTH)  # fmt: skip
        assert r.status_code == 409 and "still running" in r.json()["error"]["message"]
        assert client.get("/health").json()["busy"] == 2
    finally:
        fake.hold.set()
    assert _events(client, first["id"])[-1][0] == "done"
    assert _events(client, second.json()["id"])[-1][0] == "done"
    assert client.get("/health").json()["busy"] == 0


def test_the_page_and_its_files_need_no_key_and_nothing_from_elsewhere(app):
    _, _, client = app
    health = client.get("/health").json()
    assert health["auth_required"] is True and health["max_body_mb"] == 1
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "http" not in csp
    refs = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert "/static/app.js" in refs and "/static/app.css" in refs
    for ref in refs:
        if ref.startswith("data:"):
            continue
        assert ref.startswith("/static/"), ref
        r = client.get(ref)
        assert r.status_code == 200 and r.content, ref
    for f in [WEB / "index.html", *sorted((WEB / "static").iterdir())]:
        text = f.read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), f"{f.name} refers to another host"
    assert client.get("/static/nothing.js").status_code == 404


@pytest.mark.parametrize("fails", [False, True])
def test_an_upload_is_deleted_before_its_job_is_heard_to_end(app, monkeypatch, fails):
    """The events stream ends when the job does; the upload is gone by then (it was deleted after, in a race)."""
    from affect_llm import server

    _, fake, client = app
    seen = []
    for name in ("finish", "fail"):
        original = getattr(server._Job, name)

        def wrapped(self, *a, _original=original, **k):
            seen.append(Path(fake.calls[-1]["source"]).exists())
            return _original(self, *a, **k)

        monkeypatch.setattr(server._Job, name, wrapped)
    body = b"BROKEN" * 100 if fails else b"\x01" * 500  # the fake raises a MediaError on BROKEN bytes
    r = client.post("/v1/analyses?filename=a.mp4", content=body, headers=AUTH)
    assert _events(client, r.json()["id"])[-1][0] == ("error" if fails else "done")
    assert seen == [False]
