"""The ``openai`` backend: any OpenAI-compatible chat endpoint as the reasoner (vLLM, llama.cpp's server, Ollama's
OpenAI API, LM Studio, OpenAI itself), through the ``openai`` client library (its timeouts and its retries with
exponential backoff on 408/409/429/5xx and dropped connections).

The evidence goes in chat messages built from the same templates as the in-process reasoner. There is no soft
prompt and no LoRA adapter: both are trained for the shipped SmolLM2 and only an in-process or vLLM model can
take them.

**Label distribution.** A chat API gives no continuation likelihoods, so the distribution comes from what the
server does give (the method goes in ``Analysis.label_method``):

- ``logprobs``: the answer's ``top_logprobs`` at its first token that begins a label (a chat model may answer
  "The speaker feels anger.": the alternatives at "anger"). Each listed token that begins
  exactly one label (``Sad`` → sadness; ``surprised`` → surprise) adds its probability to that label (a
  multi-token label is reached through its first token, and every spelling of it is summed); a token that
  begins two labels is left out. Labels the server did not list get the mass it left unlisted, shared, at most
  the smallest listed probability each. Renormalised over the label set.
- ``json_schema``: without log-probabilities, a structured answer (``response_format`` with a JSON schema:
  ``{"label": one of the labels, "confidence": 0-1}``); the label gets the confidence (at least twice any
  other label's share), the others share the rest.
- ``json``: where ``response_format`` is refused, the same JSON asked for in words and parsed from the reply
  (``text`` when the reply holds only a label word).

``auto`` (the default) tries them in that order; a method the server refuses (400, or no log-probabilities in
its answer) is not tried again with that server. Contextual calibration (dividing out the label prior of a
content-free prompt) applies to ``logprobs`` only: a stated confidence is not a likelihood to divide.

**Generation.** The explanation's opening ("The speaker feels joy.") cannot be written into the model's turn
through a chat API, so the model is asked to begin with it and the opening is put in front when it did not (a
seeded first citation after it, meant for a small model that does not cite on its own, is left out).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import BackendError, require

Message = dict[str, str]
METHODS = ("logprobs", "json_schema", "json")


class OpenAIOptions(BaseModel):
    """The openai backend's options (``ReasonerOptions.backend_options``; on the command line ``--llm-url``,
    ``--llm-model``, ``--llm-api-key-env``, ``--llm-concurrency`` or ``--backend-option KEY=VALUE``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(description="the server's OpenAI API base URL, e.g. http://127.0.0.1:8000/v1 (--llm-url)")
    model: str = Field(description="the model name the server serves, as its /v1/models lists it (--llm-model)")
    api_key_env: str = Field("OPENAI_API_KEY", description="the environment variable holding the API key "
                             "(unset: no key is sent, as local servers expect)")  # fmt: skip
    timeout: float = Field(120.0, gt=0, description="seconds to wait for one answer")
    retries: int = Field(4, ge=0, description="retries with exponential backoff on 408/409/429/5xx and dropped "
                         "connections (the openai client's)")  # fmt: skip
    concurrency: int = Field(4, ge=1, description="requests in flight at once (explanations of a batch, scoring)")
    label_method: Literal["auto", "logprobs", "json_schema", "json"] = Field(
        "auto", description="how the label distribution is obtained (see affect_llm.llm.openai_chat)")
    top_logprobs: int = Field(20, ge=1, le=20, description="alternatives per answer token asked for")


def options_of(opts) -> OpenAIOptions:
    """The openai options of a :class:`~affect_llm.config.ReasonerOptions`."""
    return OpenAIOptions.model_validate(opts.backend_options)


@dataclass(frozen=True)
class LabelScores:
    """Log-probabilities over a label set and how they were obtained (one of :data:`METHODS`, or ``text``)."""

    logprobs: np.ndarray
    method: str


_CACHE_MARK = "<|cache_boundary|>"  # affect_llm.llm.soft_prompt.CACHE_MARK (not imported: that module loads torch)
_SLOT = "<|context_embedding|>"
_WORD = re.compile(r"[a-z]+")
ANSWER_TOKENS = 12  # the label answer's length limit: room for "The speaker feels anger." before the label
MIN_PREFIX = 3  # a token begins a label only with at least this many of its letters (not "a", "an", "n")
#: a 400 whose message names one of these is the server refusing the label method, not this one request
_METHOD_WORDS = ("logprob", "top_logprobs", "response_format", "json_schema", "structured", "guided", "grammar")


def _clean(messages: list[Message]) -> list[Message]:
    """The messages as a chat API takes them: the in-process prompt's cache marks removed."""
    out = []
    for m in messages:
        content = m["content"].replace(_CACHE_MARK, "")
        if _SLOT in content:
            raise BackendError("the openai backend cannot take a soft prompt (a context embedding slot was given)")
        out.append({"role": m["role"], "content": content})
    return out


def label_begun(token: str, labels: list[str]) -> Optional[int]:
    """The index of the one label a token begins (or spells out with more after it), else None: "Sad" →
    sadness, "surprised" → surprise; "s" (two labels) and "An", "N" (fewer than :data:`MIN_PREFIX` letters,
    labels begun by accident) begin none."""
    word = _WORD.match(token.strip().lower().lstrip("*_\"'`([{ "))
    if not word or len(word.group(0)) < MIN_PREFIX:
        return None
    w = word.group(0)
    hits = [i for i, lab in enumerate(labels) if lab.lower().startswith(w) or w.startswith(lab.lower())]
    return hits[0] if len(hits) == 1 else None


def distribution_from_top_logprobs(top: list[tuple[str, float]], labels: list[str]) -> Optional[np.ndarray]:
    """Label log-probabilities from one answer position's ``(token, logprob)`` alternatives (see the module
    docstring), or None when no alternative begins a label."""
    mass = np.zeros(len(labels))
    listed = 0.0
    smallest = 1.0
    for token, lp in top:
        p = math.exp(lp)
        listed += p
        smallest = min(smallest, p)
        i = label_begun(token, labels)
        if i is not None:
            mass[i] += p
    if mass.sum() <= 0:
        return None
    unseen = mass == 0
    if unseen.any():
        share = max(0.0, 1.0 - listed) / unseen.sum()
        mass[unseen] = max(min(share, smallest), 1e-6)
    return np.log(mass / mass.sum())


def distribution_from_confidence(label: str, confidence: float, labels: list[str]) -> np.ndarray:
    """A structured answer's (label, confidence) as label log-probabilities: the label gets the confidence, the
    others share the rest. The answered label is the model's pick whatever confidence it states, so it gets at
    least ``2/(K+1)`` (twice any other label's share), and at most 0.99."""
    k = len(labels)
    i = [lab.lower() for lab in labels].index(label.lower())
    p = min(max(float(confidence), 2.0 / (k + 1)), 0.99)
    out = np.full(k, (1.0 - p) / (k - 1))
    out[i] = p
    return np.log(out)


def parse_structured(text: str, labels: list[str]) -> Optional[tuple[str, float, str]]:
    """(label, confidence, method) from a reply: its first JSON object with a known ``label`` (``json``), else
    the one label word it holds (``text``, confidence 0.5), else None."""
    lower = [lab.lower() for lab in labels]
    for m in re.finditer(r"\{[^{}]*\}", text):
        try:
            obj = json.loads(m.group(0))
        except ValueError:
            continue
        lab = str(obj.get("label", "")).strip().lower()
        if lab in lower:
            try:
                conf = float(obj.get("confidence", 0.5))
            except (TypeError, ValueError):
                conf = 0.5
            return labels[lower.index(lab)], (conf if math.isfinite(conf) else 0.5), "json"
    words = set(_WORD.findall(text.lower()))
    found = [lab for lab in lower if lab in words]
    if len(found) == 1:
        return labels[lower.index(found[0])], 0.5, "text"
    return None


def opening_sentence(prefix: str) -> str:
    """The first sentence of an answer's prescribed start ("The speaker feels joy." of "The speaker feels joy. In
    [S1],"): what a chat model is asked to begin with. A seeded citation fragment after it is for a small model
    that does not cite on its own, and cannot be written into a chat model's turn."""
    prefix = prefix.strip()
    m = re.match(r"[^.!?]*[.!?]", prefix)
    return m.group(0).strip() if m else prefix


def begin_with(text: str, opening: str) -> str:
    """``text`` starting with ``opening``: as it is when it does (differing only in case, spacing, punctuation
    and markdown emphasis: "The speaker feels **joy**,"), else the opening put in front."""
    text = text.strip()
    if not opening:
        return text
    norm = lambda s: " ".join(re.sub(r"[^a-z0-9]+", " ", s.lower()).split())  # noqa: E731
    if norm(text).startswith(norm(opening)):
        return text
    return f"{opening} {text}".strip()


class _Refused(Exception):
    """The server answered, but not in the form a label method needs (e.g. no log-probabilities)."""


class OpenAIChatLM:
    """A model behind an OpenAI-compatible chat endpoint, as an :class:`~affect_llm.llm.hf.LLMBackend` (with
    :meth:`label_scores` in place of continuation scoring)."""

    adapter = None  # no LoRA adapter and no soft prompt through a chat API
    tokenizer = None
    persistent_prior = False  # a served model may change under its name: its calibration prior is not kept

    def __init__(self, opts: OpenAIOptions, http_client=None):
        """``http_client``: an ``httpx.Client`` for the openai client to send through (tests; default its own)."""
        openai = require("openai", "openai", "the openai backend")
        self.opts = opts
        self.name = f"{opts.model} @ {opts.url}"
        self.location = f"openai:{opts.url}#{opts.model}"
        self.dtype = "remote"
        key = os.environ.get(opts.api_key_env) or "EMPTY"  # a placeholder: local servers take any key
        self._openai = openai
        self.client = openai.OpenAI(base_url=opts.url, api_key=key, timeout=opts.timeout, max_retries=opts.retries,
                                    http_client=http_client)  # fmt: skip
        self._pool = ThreadPoolExecutor(max_workers=opts.concurrency, thread_name_prefix="affect-llm-openai")
        # requests in flight at once, whoever sends them (a batch's label requests, explanations, server threads)
        self._in_flight = threading.BoundedSemaphore(opts.concurrency)
        self.concurrency = opts.concurrency  # the pipeline scores a batch's labels this many at a time
        self._refused: set[str] = set()  # label methods this server refused
        self._method_lock = threading.Lock()
        self._check_model()

    # -- the server ------------------------------------------------------------------------------------
    def _errors(self, e: Exception) -> BackendError:
        """One line for what went wrong talking to the server."""
        o, openai = self.opts, self._openai
        if isinstance(e, openai.AuthenticationError):
            has_key = bool(os.environ.get(o.api_key_env))
            why = "refused the API key" if has_key else f"wants an API key (none in ${o.api_key_env})"
            return BackendError(f"the LLM server at {o.url} {why} (401)")
        if isinstance(e, openai.PermissionDeniedError):
            return BackendError(f"the LLM server at {o.url} denied access (403): {_message(e)}")
        if isinstance(e, openai.NotFoundError):
            return BackendError(f"the LLM server at {o.url} has no model {o.model!r} (404){self._served_hint()}")
        if isinstance(e, openai.RateLimitError):
            return BackendError(f"the LLM server at {o.url} is rate-limiting (429) after {o.retries} retries")
        if isinstance(e, openai.APITimeoutError):
            return BackendError(f"the LLM server at {o.url} did not answer within {o.timeout:g} s "
                                f"({o.retries} retries)")  # fmt: skip
        if isinstance(e, openai.APIConnectionError):
            return BackendError(f"cannot reach the LLM server at {o.url} ({o.retries} retries): {_message(e)}")
        if isinstance(e, openai.APIStatusError):
            return BackendError(f"the LLM server at {o.url} answered {e.status_code}: {_message(e)}")
        return BackendError(f"the LLM server at {o.url}: {type(e).__name__}: {e}")

    def _served_hint(self) -> str:
        try:
            names = [m.id for m in self.client.models.list()]
        except Exception:  # noqa: BLE001 - only a hint
            return ""
        return f"; it serves: {', '.join(names[:20])}" if names else ""

    def _check_model(self) -> None:
        """Fail now, in one line, when the server is unreachable, wants a key, or does not serve the model. A
        server without a model list (404 on /models) is taken at its word."""
        openai = self._openai
        try:
            names = [m.id for m in self.client.models.list()]
        except openai.NotFoundError:
            return
        except openai.OpenAIError as e:
            raise self._errors(e) from None
        served = set(names) | {n.removesuffix(":latest") for n in names}  # Ollama: "llama3.1" is llama3.1:latest
        if len(names) == 1 and self.opts.model not in served:
            return  # one model: a server such as llama.cpp's answers to any name; a wrong one is a 404 later
        if names and self.opts.model not in served:
            raise BackendError(f"the LLM server at {self.opts.url} has no model {self.opts.model!r}; it serves: "
                               f"{', '.join(names[:20])}")  # fmt: skip

    def _create(self, **kw) -> Any:
        try:
            with self._in_flight:
                return self.client.chat.completions.create(model=self.opts.model, **kw)
        except self._openai.BadRequestError:
            raise
        except self._openai.OpenAIError as e:
            raise self._errors(e) from None

    # -- label ----------------------------------------------------------------------------------------
    def label_scores(self, messages: list[Message], labels: list[str], seed: int = 0,
                     method: Optional[str] = None) -> LabelScores:  # fmt: skip
        """Label log-probabilities for the label prompt ``messages`` (see the module docstring); ``method``: this
        one only (else the options'). ``auto`` tries the methods in order; one the server refuses (no
        log-probabilities in its answer, or a 400 that names the method) is not tried again with this server,
        one whose answer held no label falls through to the next for this call only. Any other 400 is about the
        request itself (too long, filtered) and is an error, refusing nothing."""
        messages = _clean(messages)
        method = method or self.opts.label_method
        fixed = method != "auto"
        with self._method_lock:
            methods = [method] if fixed else [m for m in METHODS if m not in self._refused]
        for m in methods:
            try:
                out = getattr(self, f"_by_{m}")(messages, labels, seed)
            except (self._openai.BadRequestError, _Refused) as e:
                about_method = isinstance(e, _Refused) or any(w in _message(e).lower() for w in _METHOD_WORDS)
                if not about_method:
                    raise BackendError(f"the LLM server at {self.opts.url} refused the label request (400): "
                                       f"{_message(e)}") from None  # fmt: skip
                if fixed:
                    raise BackendError(f"the LLM server at {self.opts.url} does not give a label by {m}: "
                                       f"{_message(e)}") from None  # fmt: skip
                with self._method_lock:
                    self._refused.add(m)
                continue
            if out is not None:
                return out
        raise BackendError(f"no label in the answers of {self.opts.model} (tried: {', '.join(methods) or 'nothing'})")

    def _by_logprobs(self, messages, labels, seed) -> Optional[LabelScores]:
        r = self._create(messages=messages, max_tokens=ANSWER_TOKENS, temperature=0.0, seed=seed, logprobs=True,
                         top_logprobs=self.opts.top_logprobs)  # fmt: skip
        content = getattr(r.choices[0].logprobs, "content", None) if r.choices[0].logprobs else None
        if not content:
            raise _Refused("no log-probabilities in the answer")
        for pos in content:  # the first token that names a label ("anger" of "The speaker feels anger.")
            if label_begun(pos.token, labels) is None:
                continue
            top = [(t.token, t.logprob) for t in (pos.top_logprobs or [])] or [(pos.token, pos.logprob)]
            lp = distribution_from_top_logprobs(top, labels)
            return None if lp is None else LabelScores(lp, "logprobs")
        return None

    def _schema(self, labels: list[str]) -> dict:
        return {"type": "json_schema", "json_schema": {"name": "emotion", "strict": True, "schema": {
            "type": "object", "additionalProperties": False, "required": ["label", "confidence"],
            "properties": {"label": {"type": "string", "enum": list(labels)},
                           "confidence": {"type": "number", "minimum": 0, "maximum": 1}}}}}  # fmt: skip

    def _json_request(self, messages, labels) -> list[Message]:
        ask = (f'\n\nAnswer with JSON only: {{"label": one of {", ".join(labels)}, "confidence": how sure you '
               f"are, from 0 to 1}}.")  # fmt: skip
        return [*messages[:-1], {"role": messages[-1]["role"], "content": messages[-1]["content"] + ask}]

    def _by_json_schema(self, messages, labels, seed) -> Optional[LabelScores]:
        r = self._create(messages=self._json_request(messages, labels), max_tokens=40, temperature=0.0, seed=seed,
                         response_format=self._schema(labels))  # fmt: skip
        got = parse_structured(r.choices[0].message.content or "", labels)
        if got is None:
            return None
        lab, conf, how = got
        return LabelScores(distribution_from_confidence(lab, conf, labels), "json_schema" if how == "json" else how)

    def _by_json(self, messages, labels, seed) -> Optional[LabelScores]:
        r = self._create(messages=self._json_request(messages, labels), max_tokens=40, temperature=0.0, seed=seed)
        got = parse_structured(r.choices[0].message.content or "", labels)
        if got is None:
            return None
        lab, conf, how = got
        return LabelScores(distribution_from_confidence(lab, conf, labels), how)

    def score(self, messages: list[Message], continuations: list[str], soft=None) -> np.ndarray:
        raise BackendError("the openai backend cannot score continuations; the reasoner uses label_scores")

    # -- generation -----------------------------------------------------------------------------------
    def generate(self, messages: list[Message], max_new_tokens: int = 96, temperature: float = 0.0, seed: int = 0,
                 assistant_prefix: str = "", soft=None) -> str:  # fmt: skip
        """The model's reply; with ``assistant_prefix``, asked to begin with it (and given it when it did not)."""
        if soft is not None:
            raise BackendError("the openai backend cannot take a soft prompt")
        msgs = _clean(messages)
        opening = opening_sentence(assistant_prefix)
        if opening:
            msgs[-1] = {**msgs[-1], "content": msgs[-1]["content"] + f'\n\nBegin your answer with: "{opening}"'}
        # the opening's tokens count against the limit in process; here the model writes them itself
        budget = max_new_tokens + (len(opening.split()) * 2 if opening else 0)
        kw: dict[str, Any] = {"temperature": temperature, "seed": seed, "max_tokens": budget}
        if temperature > 0:
            kw["top_p"] = 0.9
        try:
            r = self._create(messages=msgs, **kw)
        except self._openai.BadRequestError as e:
            raise BackendError(f"the LLM server at {self.opts.url} refused the request: {_message(e)}") from None
        return begin_with(r.choices[0].message.content or "", opening)

    def generate_many(self, requests, max_new_tokens: int = 96, temperature: float = 0.0, seed: int = 0) -> list[str]:
        """:meth:`generate` for many prompts, ``concurrency`` of them in flight at once."""
        futures = [self._pool.submit(self.generate, r.messages, max_new_tokens, temperature, seed,
                                     r.assistant_prefix, r.soft) for r in requests]  # fmt: skip
        return [f.result() for f in futures]

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.client.close()


def _message(e: Exception) -> str:
    """The server's own error message, on one line."""
    body = getattr(e, "body", None)
    msg = None
    if isinstance(body, dict):
        err = body.get("error")
        msg = err.get("message") if isinstance(err, dict) else body.get("message")
    return " ".join(str(msg or e).split())[:300]


@lru_cache(maxsize=4)
def load(opts: OpenAIOptions) -> OpenAIChatLM:
    """A process-wide cached client per options."""
    return OpenAIChatLM(opts)


def _from_options(opts, adapter: Optional[str] = None) -> OpenAIChatLM:
    return load(options_of(opts))


def _backend():
    from .backends import Backend

    return Backend(load=_from_options, chat=lambda opts: _from_options(opts), options=OpenAIOptions, adapters=False)


BACKEND = _backend()
