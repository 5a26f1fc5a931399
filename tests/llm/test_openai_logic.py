"""The openai backend's logic, over a scripted wire (httpx's MockTransport under the real openai client): label
distributions from top log-probabilities and from structured answers, the fallback between them, the explanation's
opening, the one-line errors, and the options. The same backend against a real vLLM chat server is in
tests/llm/test_openai_vllm.py."""

from __future__ import annotations

import json
import math

import httpx
import numpy as np
import pytest

from affect_llm.config import PipelineOptions, ReasonerOptions
from affect_llm.errors import BackendError
from affect_llm.llm import openai_chat
from affect_llm.llm.openai_chat import (
    OpenAIChatLM,
    OpenAIOptions,
    begin_with,
    distribution_from_confidence,
    distribution_from_top_logprobs,
    opening_sentence,
    parse_structured,
)

MELD = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
MESSAGES = [{"role": "system", "content": "sys"},
            {"role": "user", "content": "Evidence:\n[T1] (text): I won!\n<|cache_boundary|>Which emotion?"}]  # fmt: skip


def test_top_logprobs_map_to_labels_by_unique_prefix():
    top = [("Joy", math.log(0.6)), (" joy", math.log(0.1)), ("Sad", math.log(0.1)), ("s", math.log(0.05)),
           ("The", math.log(0.05))]  # fmt: skip
    lp = distribution_from_top_logprobs(top, MELD)
    p = dict(zip(MELD, np.exp(lp)))
    assert abs(sum(p.values()) - 1) < 1e-9
    assert max(p, key=p.get) == "joy"
    # "Joy" and " joy" are summed (0.7); "Sad" begins sadness alone; "s" begins sadness and surprise: left out
    assert p["joy"] / p["sadness"] == pytest.approx(7.0)
    # unlisted labels share the unlisted mass (0.1), at most the smallest listed probability (0.05) each
    assert p["fear"] == pytest.approx(p["anger"]) and p["fear"] / p["joy"] == pytest.approx((0.1 / 5) / 0.7)
    assert distribution_from_top_logprobs([("The", -0.1), ("I", -2.0)], MELD) is None
    # "An", "N", "Jo" begin labels only by accident (anger, neutral, joy): a token needs three of a label's letters
    assert distribution_from_top_logprobs([("An", -0.1), ("N", -1.0), ("Jo", -2.0)], MELD) is None


def test_structured_answers_parse_and_become_distributions():
    assert parse_structured('{"label": "Anger", "confidence": 0.8}', MELD) == ("anger", 0.8, "json")
    assert parse_structured('Sure! ```json\n{"label": "fear", "confidence": "x"}\n```', MELD) == ("fear", 0.5, "json")
    assert parse_structured("I think it is sadness.", MELD) == ("sadness", 0.5, "text")
    assert parse_structured("joy or sadness", MELD) is None
    assert parse_structured('{"label": "happy"}', MELD) is None
    p = np.exp(distribution_from_confidence("joy", 0.9, MELD))
    assert p[1] == pytest.approx(0.9) and p.sum() == pytest.approx(1) and p[0] == pytest.approx(0.1 / 6)
    low = np.exp(distribution_from_confidence("joy", 0.01, MELD))  # the answered label stays the model's pick
    assert low[1] == pytest.approx(2 / 8) and low[1] == pytest.approx(2 * low[0])


def test_the_opening_is_kept_once():
    o = "The speaker feels joy."
    assert begin_with("The speaker feels joy. In [T1] they cheer.", o) == "The speaker feels joy. In [T1] they cheer."
    assert begin_with("the speaker  feels joy. As [T1] shows…", o).startswith("the speaker  feels joy")
    assert begin_with("In [T1] they cheer.", o) == "The speaker feels joy. In [T1] they cheer."
    assert begin_with("The speaker feels **joy**, as [T1] shows.", o) == "The speaker feels **joy**, as [T1] shows."
    assert opening_sentence("The speaker feels joy. In [T1],") == o  # the seeded citation is not asked for


class Wire:
    """A scripted OpenAI-compatible server: ``/models`` lists ``served``; chat answers by the request's shape."""

    def __init__(self, served=("smol",), logprobs=True, schema=True, reply="joy", status=None, bad_once=False):
        """``logprobs``: True, False (a 400 naming them) or "ignored" (a 200 without them); ``bad_once``: the
        first chat request gets a 400 about itself (too long)."""
        self.served, self.logprobs, self.schema, self.reply, self.status = served, logprobs, schema, reply, status
        self.bad_once = bad_once
        self.requests: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.status:
            return httpx.Response(self.status, json={"error": {"message": f"scripted {self.status}"}})
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": m, "object": "model"} for m in self.served]})
        body = json.loads(request.content)
        self.requests.append(body)
        if self.bad_once:
            self.bad_once = False
            return httpx.Response(400, json={"error": {"message": "This model's maximum context length is 2048"}})
        if body["model"] not in self.served:
            return httpx.Response(404, json={"error": {"message": "no such model"}})
        if body.get("logprobs") and not self.logprobs:
            return httpx.Response(400, json={"error": {"message": "logprobs are not supported"}})
        if body.get("response_format") and not self.schema:
            return httpx.Response(400, json={"error": {"message": "response_format is not supported"}})
        text = self.reply
        if body.get("response_format"):
            text = json.dumps({"label": "joy", "confidence": 0.7})
        logprobs = None
        if body.get("logprobs") and self.logprobs is True:
            top = [{"token": "Joy", "logprob": math.log(0.5), "bytes": None},
                   {"token": "Surprise", "logprob": math.log(0.3), "bytes": None}]  # fmt: skip
            # a sentence before the label, as a chat model writes it: "The speaker feels Joy"
            lead = [{"token": t, "logprob": -0.1, "bytes": None,
                     "top_logprobs": [{"token": t, "logprob": -0.1, "bytes": None},
                                      {"token": "Anger", "logprob": -3.0, "bytes": None}]}
                    for t in ("The", " speaker", " feels")]  # fmt: skip
            logprobs = {"content": [*lead, {"token": "Joy", "logprob": math.log(0.5), "bytes": None, "top_logprobs": top}]}
        return httpx.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                         "message": {"role": "assistant", "content": text}}]})  # fmt: skip


def lm_over(wire: Wire, **opts) -> OpenAIChatLM:
    o = OpenAIOptions(url="http://scripted/v1", model=opts.pop("model", "smol"), retries=0, **opts)
    return OpenAIChatLM(o, http_client=httpx.Client(transport=httpx.MockTransport(wire)))


def test_label_methods_fall_back_and_remember_a_refusal():
    wire = Wire()
    got = lm_over(wire).label_scores(MESSAGES, MELD)
    assert got.method == "logprobs"
    p = dict(zip(MELD, np.exp(got.logprobs)))
    assert max(p, key=p.get) == "joy" and p["joy"] / p["surprise"] == pytest.approx(5 / 3)
    assert "<|cache_boundary|>" not in wire.requests[0]["messages"][1]["content"]
    wire = Wire(logprobs=False)
    lm = lm_over(wire)
    assert lm.label_scores(MESSAGES, MELD).method == "json_schema"
    assert lm.label_scores(MESSAGES, MELD).method == "json_schema"
    assert sum(1 for r in wire.requests if r.get("logprobs")) == 1  # refused once, not asked again
    wire = Wire(logprobs=False, schema=False, reply='{"label": "anger", "confidence": 0.6}')
    got = lm_over(wire).label_scores(MESSAGES, MELD)
    assert got.method == "json" and np.exp(got.logprobs)[MELD.index("anger")] == pytest.approx(0.6)
    with pytest.raises(BackendError, match="does not give a label by logprobs"):
        lm_over(Wire(logprobs=False), label_method="logprobs").label_scores(MESSAGES, MELD)
    # a 200 without log-probabilities is a server that does not give them
    wire = Wire(logprobs="ignored")
    lm = lm_over(wire)
    assert lm.label_scores(MESSAGES, MELD).method == "json_schema" and lm._refused == {"logprobs"}


def test_a_400_about_the_request_itself_refuses_no_method():
    wire = Wire(bad_once=True)
    lm = lm_over(wire)
    with pytest.raises(BackendError, match=r"refused the label request \(400\): This model's maximum context"):
        lm.label_scores(MESSAGES, MELD)
    assert lm._refused == set() and lm.label_scores(MESSAGES, MELD).method == "logprobs"


def test_the_pipeline_scores_a_batch_concurrently_and_calibrates_top_logprobs(monkeypatch):
    """Through the pipeline: labels scored by the backend's concurrency (results in input order), calibration by
    a content-free prior smoothed halfway to uniform (dividing by it narrows a lead, never inverts it),
    no adapter, the fusion left out for an LLM it was not fitted on."""
    from affect_llm.pipeline import Pipeline

    wire = Wire(reply="In [T1] they say so, which shows joy.")
    lm = lm_over(wire, concurrency=3)
    monkeypatch.setattr(openai_chat, "load", lambda o: lm)
    pipe = Pipeline(PipelineOptions(llm_url="http://scripted/v1", llm_model="smol", face=False, context_model="none",
                                    fusion="meld"))  # fmt: skip
    texts = [f"I won the lottery, number {i}!" for i in range(5)]
    out = pipe.analyze_many([{"text": t} for t in texts])
    assert [a.cues[0].text.strip('"') for a in out] == texts
    for a in out:
        assert a.label_method == "logprobs" and a.models["llm"] == "smol @ http://scripted/v1"
        assert a.fusion == {} and "adapter" not in a.models and pipe.reasoner().adapter is None
        assert a.explanation.startswith(f"The speaker feels {a.label}.")
    p = out[0].distributions["llm"]
    # the scripted answer is the same for every prompt (joy 0.5, surprise 0.3): divided by the smoothed prior of
    # that same answer, joy's lead shrinks but is not inverted, and unlisted labels stay below both
    assert 1 < p["joy"] / p["surprise"] < 5 / 3 and p["surprise"] > p["fear"] == pytest.approx(p["anger"])
    label_requests = [r for r in wire.requests if r.get("logprobs")]
    assert len(label_requests) == 1 + len(texts)  # the content-free prior once, then one per text


def test_generation_asks_for_the_opening_and_keeps_it():
    wire = Wire(reply="In [T1] they say they won, which shows joy.")
    out = lm_over(wire).generate(MESSAGES, 40, assistant_prefix="The speaker feels joy. In [T1],")
    assert out == "The speaker feels joy. In [T1] they say they won, which shows joy."
    assert wire.requests[-1]["messages"][-1]["content"].endswith('Begin your answer with: "The speaker feels joy."')
    with pytest.raises(BackendError, match="soft prompt"):
        lm_over(wire).generate(MESSAGES, 40, soft=object())


@pytest.mark.parametrize(
    "wire, model, match",
    [
        (Wire(status=401), "smol", r"wants an API key \(none in \$OPENAI_API_KEY\) \(401\)"),
        (Wire(status=503), "smol", r"answered 503: scripted 503"),
        (Wire(served=("a", "b")), "smol", r"has no model 'smol'; it serves: a, b"),
    ],
)
def test_server_errors_are_one_line(wire, model, match, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BackendError, match=match):
        lm_over(wire, model=model)


def test_model_names_as_ollama_and_llama_cpp_list_them():
    assert lm_over(Wire(served=("llama3.1:latest", "qwen2.5:7b")), model="llama3.1").opts.model == "llama3.1"
    assert lm_over(Wire(served=("/models/any.gguf",)), model="whatever")  # one model: answers to any name


def test_an_unreachable_server_is_one_line():
    o = OpenAIOptions(url="http://127.0.0.1:9/v1", model="m", retries=0, timeout=5)
    with pytest.raises(BackendError, match=r"cannot reach the LLM server at http://127.0.0.1:9/v1"):
        OpenAIChatLM(o)


def test_flags_become_the_backends_options():
    r = PipelineOptions(llm_url="http://h:1/v1", llm_model="qwen", llm_concurrency=8).config().reasoner
    assert r.backend == "openai"
    assert r.backend_options == {"url": "http://h:1/v1", "model": "qwen", "api_key_env": "OPENAI_API_KEY",
                                 "concurrency": 8}  # fmt: skip
    assert openai_chat.options_of(r).timeout == 120
    with pytest.raises(ValueError, match=r"option url is required .*--llm-url"):
        ReasonerOptions(backend="openai")
    from affect_llm.errors import InputError

    with pytest.raises(InputError, match="the backend here is vllm"):
        PipelineOptions(llm_url="http://h:1/v1", llm_model="m", backend="vllm").config()
    with pytest.raises(InputError, match="the backend here is transformers"):
        PipelineOptions(llm_model="m").config()
    with pytest.raises(ValueError, match=r"option concurrency: Input should be greater than or equal to 1"):
        ReasonerOptions(backend="openai", backend_options={"url": "u", "model": "m", "concurrency": "0"})
