"""The openai backend against a real OpenAI-compatible chat endpoint: the vLLM server the install script builds,
serving the embedded SmolLM2 through its chat API under another name. The whole pipeline end to end (label from
the answer's top log-probabilities, explanation, the fusion left out for an LLM it was not fitted on), the
structured-answer methods (asked for, and where log-probabilities are refused), LangChain and ``serve`` through the same options, a wrong model name as a one-line
exit 4, and a server that goes away mid-batch: the items it could not answer are written as retryable errors and
a rerun against the restarted server completes them, no id twice."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from affect_llm.config import PipelineOptions, ReasonerOptions
from affect_llm.evidence import cited_ids
from tests.conftest import free_port

CLI = [sys.executable, "-m", "affect_llm.cli"]
SERVED = "smol-chat"  # not the registry name: the backend knows the model only by what the server calls it
TOP = 5  # the server's --max-logprobs
TEXTS = ["I can't believe you did this to me! Get out!", "Oh my God, we won! We actually won!",
         "Okay. See you tomorrow then."]  # fmt: skip



def _server(port: int = 0):
    from affect_llm import models
    from affect_llm.llm.vllm import VLLMServer, VLLMServerOptions, vllm_python
    from affect_llm.errors import BackendError

    try:
        vllm_python()
    except BackendError as e:
        pytest.skip(f"vLLM not installed here ({e.one_line()[:80]}…); scripts/install.sh installs it")
    # at most 5 alternatives per token: a request for 5 gets log-probabilities, one for the default 20 is refused
    # (400), which is a server without them as far as the backend can tell
    # uncompiled: these tests are about the wire, and it starts ~50 s sooner (VLLMServerOptions.compile)
    return VLLMServer(VLLMServerOptions(model=str(models.path("smollm2-135m")), served_name=SERVED, port=port,
                                        compile=False, extra_args=["--max-logprobs", str(TOP)]))  # fmt: skip


@pytest.fixture(scope="module")
def chat_server():
    with _server() as server:
        yield server


def _opts(url: str, *more: str, **kw) -> PipelineOptions:
    return PipelineOptions(llm_url=url, llm_model=SERVED, face=False, backend_option=[f"top_logprobs={TOP}", *more],
                           **kw)  # fmt: skip


@pytest.mark.slow
def test_the_pipeline_runs_on_a_chat_endpoint(chat_server):
    from affect_llm.pipeline import Pipeline

    pipe = Pipeline(_opts(chat_server.url))
    runs = [pipe.analyze(text=t) for t in TEXTS]
    for a in runs:
        assert a.label_method == "logprobs"
        assert a.models["llm"] == f"{SERVED} @ {chat_server.url}" and "adapter" not in a.models
        llm = a.distributions["llm"]
        assert set(llm) == set(a.probabilities) and sum(llm.values()) == pytest.approx(1, abs=1e-6)
        # the shipped fusion was fitted on SmolLM2 in process: another LLM decides alone, and says so
        assert a.fusion == {} and a.probabilities == pytest.approx(llm)
        assert any("fusion was fitted on smollm2-135m's label scores" in n for n in a.notes)
        assert a.explanation.startswith(f"The speaker feels {a.label}.")
        ids = cited_ids(a.explanation)
        assert ids and set(ids) <= {c.id for c in a.cues} and not a.uncited_ids, a.explanation
    dists = [np.array(list(a.distributions["llm"].values())) for a in runs]
    assert max(np.abs(dists[0] - d).max() for d in dists[1:]) > 0.01  # the evidence moves the distribution
    again = pipe.analyze(text=TEXTS[1])
    assert again.probabilities == runs[1].probabilities and again.explanation == runs[1].explanation


@pytest.mark.slow
@pytest.mark.parametrize("method", ["auto", "json_schema"])
def test_a_structured_answer_gives_the_distribution_without_logprobs(chat_server, method):
    """``auto`` asking for more alternatives than the server gives (refused: 400) falls back to the structured
    answer (vLLM's guided decoding keeps it to the schema); ``json_schema`` asked for directly gives one too.
    Plain ``json`` (asked for in words, no schema) is tested over a scripted wire only: SmolLM2-135M does not
    follow the instruction (no label in its answer to this text)."""
    from affect_llm.llm.reasoner import Reasoner

    opts = ReasonerOptions(backend="openai", backend_options={"url": chat_server.url, "model": SERVED,
                                                              "label_method": method})  # fmt: skip
    r = Reasoner(opts)
    assert r.adapter is None and r.projector is None
    dist, got = r.label_result("Evidence:\n[T1] (text): \"Oh my God, we won! We actually won!\"")
    assert got == "json_schema"
    assert set(dist) == set(opts.labels)
    assert sum(dist.values()) == pytest.approx(1, abs=1e-6)
    top = max(dist, key=dist.get)
    assert dist[top] >= 1 / len(dist) and sorted(dist.values())[-2] < dist[top]  # one answered label


@pytest.mark.slow
def test_follow_up_questions_langchain_and_open_vocabulary_on_the_endpoint(chat_server):
    from affect_llm.integrations.langchain import AffectAnalyzer
    from affect_llm.pipeline import Pipeline

    pipe = Pipeline(_opts(chat_server.url, open_vocab=True))
    a = pipe.analyze(text=TEXTS[0])
    assert a.open_vocabulary is not None and all(w.replace(" ", "").isalpha() for w in a.open_vocabulary)
    answer = pipe.chat(a, [], "Why do you think so?")
    assert len(answer.split()) >= 8 and answer.strip().lower() not in a.probabilities
    out = AffectAnalyzer(llm_url=chat_server.url, llm_model=SERVED, face=False, context_model="none",
                         backend_option=[f"top_logprobs={TOP}"]).invoke(
        {"text": TEXTS[1], "question": "Which words show it?"})  # fmt: skip
    assert out["label_method"] == "logprobs" and len(out["answer"].split()) >= 8


@pytest.mark.slow
def test_serve_and_a_wrong_model_name(chat_server, tmp_path):
    from openai import OpenAI

    r = subprocess.run([*CLI, "chat", "--text", "hi", "--llm-url", chat_server.url, "--llm-model", "nope",
                        "--no-face"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 4, r.stderr
    msg = " ".join(r.stderr.split())
    # one served model: the name is not checked at load (llama.cpp answers to any), the first request's 404 says it
    assert "has no model 'nope' (404)" in msg and f"it serves: {SERVED}" in msg and "Traceback" not in r.stderr
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--no-face", "--llm-url", chat_server.url,
                             "--llm-model", SERVED, "--backend-option", f"top_logprobs={TOP}"],
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.5)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=300)
        msgs = [{"role": "user", "content": "I finally got the job! I start on Monday!"}]
        first = client.chat.completions.create(model="affect-llm", messages=msgs)
        affect = first.model_extra["affect"]
        assert affect["label_method"] == "logprobs" and affect["label"] in affect["probabilities"]
        msgs += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "What in the evidence shows it?"}]  # fmt: skip
        follow = client.chat.completions.create(model="affect-llm", messages=msgs).choices[0].message.content
        assert len(follow.split()) >= 8 and cited_ids(follow), follow
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


@pytest.mark.slow
def test_a_server_gone_mid_batch_loses_no_work(chat_server, tmp_path):
    """The server stops after the batch's first chunk: the items it could not answer become retryable error
    records (one line each, the batch goes on to its end); the same batch against a server that is up (the
    module's, started the same way) analyses exactly those and every id has one record."""
    from affect_llm.batch import BatchOptions, load_inputs, run
    from affect_llm.inputs import read_jsonl_records

    manifest = tmp_path / "items.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"u{i}", "text": f"{t} ({i})"}) + "\n"
                                for i, t in enumerate(TEXTS * 2)))  # fmt: skip
    port = free_port()
    out = tmp_path / "out.jsonl"
    items = load_inputs(manifest)
    with _server(port) as server:
        cfg = _opts(server.url, "retries=1", "timeout=20", context_model="none").config()
        seen = []

        def stop_after_first(rec):
            seen.append(rec)
            if len(seen) == 1:
                server.stop()

        summary = run(items, cfg, out, BatchOptions(progress=False, llm_batch=2), on_record=stop_after_first)
    recs = read_jsonl_records(out)
    assert summary.done == 6 and len(recs) == 6
    ok = [r for r in recs if r["error"] is None]
    failed = [r for r in recs if r["error"] is not None]
    assert len(ok) == 2 and len(failed) == 4  # the first chunk was answered before the server went
    assert all(r["retry"] and f"cannot reach the LLM server at http://127.0.0.1:{port}/v1" in r["error"]
               for r in failed), failed  # fmt: skip
    cfg = _opts(chat_server.url, "retries=1", "timeout=20", context_model="none").config()
    summary = run(items, cfg, out, BatchOptions(progress=False, llm_batch=2))
    recs = read_jsonl_records(out)
    assert summary.done == 4 and summary.skipped == 2
    assert sorted(r["id"] for r in recs) == [f"u{i}" for i in range(6)] and all(r["error"] is None for r in recs)
