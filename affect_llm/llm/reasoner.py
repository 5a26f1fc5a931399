"""The reasoner: a label distribution by likelihood scoring, then an explanation that cites cue ids.

The two are separate calls on purpose: the label is decided by scoring every label's log-likelihood as the
model's answer (never by parsing free text), so fusion can later change the label, and the explainer is told
the final label and asked to justify it from the evidence.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import models, prompting
from ..config import ReasonerOptions
from ..errors import ModelNotFound
from ..evidence import Evidence, cited_ids
from . import backends
from .hf import GenerationRequest, LLMBackend, Message
from .soft_prompt import CACHE_MARK, SLOT

#: the shipped reasoner adapter that ``adapter="auto"`` loads when the LLM is its base
DEFAULT_ADAPTER = "reasoner-meld"


@dataclass
class AdapterInfo:
    """A reasoner adapter folder: peft's LoRA files, ``projector.*`` (optional) and ``reasoner.json``."""

    path: Path
    base: str  # the LLM it was trained on (registry name, path or HF id)
    context_model: str | None  # the context model whose embeddings the projector reads
    calibrate: bool = False
    seed_citation: bool = False  # whether the explanation is seeded with the first cue id
    labels: list[str] | None = None  # the label set it was trained to answer with
    context_fingerprint: str | None = None  # affect_llm.context.model.fingerprint of that context model

    @classmethod
    def load(cls, folder: str | Path) -> "AdapterInfo":
        folder = Path(folder)
        meta = folder / "reasoner.json"
        if not (folder / "adapter_config.json").is_file():
            raise ModelNotFound(f"{folder}: not a LoRA adapter (no adapter_config.json)")
        raw = json.loads(meta.read_text()) if meta.is_file() else {}
        return cls(folder, raw.get("base", ""), raw.get("context_model"), bool(raw.get("calibrate", False)),
                   bool(raw.get("seed_citation", False)), raw.get("labels"), raw.get("context_fingerprint"))  # fmt: skip

    @property
    def has_projector(self) -> bool:
        return (self.path / "projector.json").is_file()


def resolve_adapter(opts: ReasonerOptions) -> AdapterInfo | None:
    """The adapter ``opts.adapter`` names: None for the base model; 'auto' is the shipped default when the LLM
    is the base it was trained on and the label set is the one it answers with (and nothing otherwise: another
    label set, e.g. EmoryNLP's, gets the base model, which the shipped fusion for it was fitted on)."""
    from ..runtime import adapters_dir

    ref = opts.adapter
    if ref is None or ref.lower() == "none":
        return None
    if ref == "auto":
        folder = adapters_dir() / DEFAULT_ADAPTER
        if not folder.is_dir():
            return None
        info = AdapterInfo.load(folder)
        same = models.ALIASES.get(opts.model, opts.model) == models.ALIASES.get(info.base, info.base)
        same_labels = info.labels is None or set(info.labels) == set(opts.labels)
        return info if same and same_labels else None
    folder = Path(ref) if ("/" in ref or Path(ref).exists()) else adapters_dir() / ref
    if not folder.is_dir():
        raise ModelNotFound(f"adapter {ref!r}: no such folder ({folder})")
    return AdapterInfo.load(folder)


@dataclass
class ExplainJob:
    """What :meth:`Reasoner.explain_many` explains: the evidence, the decided label, the soft prompt."""

    evidence: Evidence
    label: str
    evidence_text: str | None = None
    soft: object = None
    distributions: dict[str, dict[str, float]] | None = None  # per modality: whether the kinds agree


class Explained(NamedTuple):
    """An explanation, the ids it cites that exist and those that do not, and what the check changed."""

    text: str
    cited: list[str]
    unknown: list[str]
    notes: list[str] = []


CONTENT_FREE = "Evidence:\n[T1] (text): N/A"
#: label methods whose scores are likelihoods, which contextual calibration divides by the content-free prior
CALIBRATED = ("scored", "logprobs")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + float(np.log(np.exp(x - m).sum()))


class Reasoner:
    def __init__(self, opts: ReasonerOptions | None = None, lm: LLMBackend | None = None,
                 adapter: AdapterInfo | None = None):  # fmt: skip
        """``lm``: an already loaded model (then ``adapter`` describes what it carries, if anything)."""
        self.opts = opts or ReasonerOptions()
        backend = backends.get(self.opts.backend)
        # a backend that cannot take the adapter (a chat API) runs the base prompts, calibrated
        self.adapter = (resolve_adapter(self.opts) if backend.adapters else None) if lm is None else adapter
        adapter_path = str(self.adapter.path) if self.adapter else None
        self._given_lm = lm is not None
        self.lm = lm if lm is not None else backend.load(self.opts, adapter_path)
        self.projector = None
        if lm is None and self.adapter is not None and self.adapter.has_projector:
            from .soft_prompt import SoftPromptProjector

            self.projector = SoftPromptProjector.load(self.adapter.path)
        calibrate = self.opts.calibrate
        self.calibrate = (self.adapter.calibrate if self.adapter else True) if calibrate is None else calibrate
        self._system = prompting.text("system.txt")
        self._prior: dict[tuple[str, ...], np.ndarray] = {}

    def identity(self) -> str:
        """The LLM as a fusion file records the one it was fitted on: the registry name of an in-process or vLLM
        model (the same weights either way), or the served model a chat API names (``NAME @ URL``)."""
        if backends.get(self.opts.backend).adapters:
            return models.ALIASES.get(self.opts.model, self.opts.model)
        return str(self.lm.name)

    def soft_prompt(self, embedding, context_model: str | None, fingerprint: str | None = None):
        """The soft-prompt vectors for a context embedding, or None: no projector, no embedding, or an embedding
        from another context model than the one the projector was trained on. When the adapter recorded the
        weights' ``fingerprint`` that decides (the same model given by name or as a folder matches; a retrained
        model under the same name does not); older adapters without one are matched by name."""
        if self.projector is None or embedding is None or self.adapter is None:
            return None
        if self.adapter.context_fingerprint:
            if fingerprint != self.adapter.context_fingerprint:
                return None
        elif context_model != self.adapter.context_model:
            return None
        import torch

        with torch.inference_mode():
            return self.projector(torch.as_tensor(np.asarray(embedding), dtype=torch.float32))

    def _messages(self, user: str) -> list[Message]:
        return [{"role": "system", "content": self._system}, {"role": "user", "content": user}]

    # -- label ------------------------------------------------------------------------------------------
    def label_messages(self, evidence_text: str, context: str | None = None, soft: bool = False) -> list[Message]:
        user = prompting.render("label.j2", evidence_text=evidence_text, labels=self.opts.labels, context=context,
                                soft_slot=SLOT if soft else "", cache_mark=CACHE_MARK)  # fmt: skip
        return self._messages(user)

    def explain_messages(self, evidence: Evidence, label: str, evidence_text: str | None = None,
                         soft: bool = False) -> tuple[list[Message], str]:  # fmt: skip
        """The explanation prompt and the start of the answer the model continues."""
        example = evidence.ids[:2] or ["S1"]
        user = prompting.render("explain.j2", evidence_text=evidence_text or evidence.render(), label=label,
                                example_ids=example, soft_slot=SLOT if soft else "", cache_mark=CACHE_MARK)  # fmt: skip
        # The base model's answer is seeded with the first cue id (it rarely cites on its own); a tuned adapter
        # cites by itself. Every id is checked against the evidence either way.
        seed = self.adapter.seed_citation if self.adapter else True
        prefix = prompting.render("explain_prefix.j2", label=label, first_id=example[0] if seed else "")
        return self._messages(user), prefix

    def label_logprobs(self, evidence_text: str, context: str | None = None, soft=None) -> np.ndarray:
        """log P(label | evidence) per label (see :meth:`label_scores`)."""
        return self.label_scores(evidence_text, context, soft)[0]

    def label_scores(self, evidence_text: str, context: str | None = None, soft=None) -> tuple[np.ndarray, str]:
        """log P(label | evidence) per label and how it was obtained: ``scored`` (each label's log-likelihood as
        the answer, summed over surface forms 'joy', 'Joy'), or what a backend without continuation scoring
        reports from its own ``label_scores`` (a chat API: ``logprobs``, ``json_schema``, ``json``, ``text``)."""
        labels = self.opts.labels
        messages = self.label_messages(evidence_text, context, soft is not None)
        if hasattr(self.lm, "label_scores"):
            got = self.lm.label_scores(messages, list(labels), self.opts.seed)
            return np.asarray(got.logprobs, dtype=float), got.method
        forms = [[lab, lab.capitalize()] if lab != lab.capitalize() else [lab] for lab in labels]
        flat = [f for fs in forms for f in fs]
        s = self.lm.score(messages, flat, soft=soft)
        out, k = [], 0
        for fs in forms:
            out.append(_logsumexp(s[k : k + len(fs)]))
            k += len(fs)
        return np.array(out), "scored"

    def prepare(self) -> None:
        """Compute what every call needs once (the calibration prior), e.g. while the pipeline decodes media."""
        if self.calibrate:
            self._label_prior()

    def _label_prior(self) -> np.ndarray | None:
        # Contextual calibration (Zhao et al., 2021): the model's prior over label words, measured on a
        # content-free input and divided out, so that a small model's bias towards one word does not decide
        # every answer. None: the backend gave no likelihoods for the content-free input (nothing to divide out).
        key = tuple(self.opts.labels)
        if key not in self._prior:
            self._prior[key] = self._cached_prior()
        return self._prior[key]

    def _cached_prior(self) -> np.ndarray | None:
        """The content-free label log-likelihoods, kept on disk per (model, dtype, prompt, labels) for a model
        whose weights are here (a remote model's may change under its name: measured once per process)."""
        user = self.label_messages(CONTENT_FREE)[-1]["content"]
        # the adapter by its weights, not its path: a retrained adapter in the same folder gets its own prior
        ident = json.dumps([str(self.lm.location), _adapter_digest(self.lm.adapter), str(self.lm.dtype),
                            self._system, user, self.opts.labels])  # fmt: skip
        key = hashlib.sha256(ident.encode()).hexdigest()[:32]
        path = models.home() / "cache" / "label-priors" / f"{key}.json"
        persistent = getattr(self.lm, "persistent_prior", True)
        if persistent:
            try:
                values = json.loads(path.read_text())
                if len(values) == len(self.opts.labels):
                    return np.array(values, dtype=float)
            except (OSError, ValueError):
                pass
        if hasattr(self.lm, "label_scores"):  # a chat API: the prior is a likelihood only by log-probabilities
            from ..errors import BackendError

            try:
                got = self.lm.label_scores(self.label_messages(CONTENT_FREE), list(self.opts.labels), self.opts.seed,
                                           method="logprobs")  # fmt: skip
            except BackendError:  # no log-probabilities, or no label among them: nothing to divide out
                return None
            values, method = _smoothed(np.asarray(got.logprobs, dtype=float)), got.method
        else:
            values, method = self.label_scores(CONTENT_FREE)
        if method not in CALIBRATED:
            return None
        if persistent:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(values.tolist()))
                os.replace(tmp, path)
            except OSError:
                pass  # a read-only cache only costs the recomputation
        return values

    def label_distribution(self, evidence_text: str, context: str | None = None, soft=None) -> dict[str, float]:
        return self.label_result(evidence_text, context, soft)[0]

    def label_result(self, evidence_text: str, context: str | None = None,
                     soft=None) -> tuple[dict[str, float], str]:  # fmt: skip
        """The LLM's label distribution and how it was obtained (:meth:`label_scores`). Calibration divides out
        the content-free prior of likelihoods only (``scored``, ``logprobs``), never a stated confidence."""
        lp, method = self.label_scores(evidence_text, context, soft)
        if self.calibrate and method in CALIBRATED:
            prior = self._label_prior()
            if prior is not None:
                lp = lp - prior
        p = _softmax(lp)
        return {lab: float(v) for lab, v in zip(self.opts.labels, p)}, method

    # -- open vocabulary --------------------------------------------------------------------------------
    def open_vocabulary(self, evidence_text: str, context: str | None = None) -> list[str]:
        """The emotion words the LLM names for the evidence (EMER / OV-MER style), strongest first, at most five:
        its answer read as a comma-separated list, each item kept when it is one or two lowercase letters-only
        words. Evaluation maps them through the emotion wheels; words off the wheels score nothing."""
        user = prompting.render("open_vocab.j2", evidence_text=evidence_text, context=context)
        raw = self.lm.generate(self._messages(user), 24, 0.0, self.opts.seed)
        return parse_emotion_words(raw)

    # -- explanation ------------------------------------------------------------------------------------
    def explain(self, evidence: Evidence, label: str, evidence_text: str | None = None, soft=None,
                distributions: dict[str, dict[str, float]] | None = None) -> Explained:  # fmt: skip
        """The explanation of ``label`` from ``evidence`` (checked, see :meth:`explain_many`)."""
        return self.explain_many([ExplainJob(evidence, label, evidence_text, soft, distributions)])[0]

    def explain_many(self, jobs: list[ExplainJob]) -> list[Explained]:
        """:meth:`explain` for many analyses in one batched generation (the backend's ``generate_many``). With
        ``opts.check_explanations`` (the default) every sentence is checked against the evidence and one that
        fails is dropped; a modality whose strongest cue the LLM left out gets a sentence from that cue
        (:func:`affect_llm.explanation.repair`; ``notes`` say what changed)."""
        from ..explanation import repair

        requests, openings = [], []
        for job in jobs:
            messages, prefix = self.explain_messages(job.evidence, job.label, job.evidence_text, job.soft is not None)
            requests.append(GenerationRequest(messages, prefix, job.soft))
            openings.append(prompting.render("explain_prefix.j2", label=job.label, first_id="").strip())
        texts = self.lm.generate_many(requests, self.opts.max_new_tokens, self.opts.temperature, self.opts.seed)
        out = []
        for job, text, opening in zip(jobs, texts, openings):
            text, notes = _trim(text), []
            if self.opts.check_explanations and job.evidence.cues:
                fixed = repair(text, job.evidence, job.label, self.opts.labels, opening, job.distributions)
                text, notes = fixed.text, fixed.notes()
            ids = cited_ids(text)
            known = set(job.evidence.ids)
            out.append(Explained(text, [i for i in ids if i in known], [i for i in ids if i not in known], notes))
        return out

    # -- chat -------------------------------------------------------------------------------------------
    def chat_lm(self) -> LLMBackend:
        """The model that answers follow-up questions: the base instruct LLM, without the label-tuned adapter
        (which answers every question with a label word), as the backend provides it (vLLM: in process, since a
        started server serves the adapted model only). A model given to the constructor answers itself when it
        carries no adapter."""
        if self._given_lm and self.adapter is None:
            return self.lm
        return backends.get(self.opts.backend).chat(self.opts)

    def chat(self, analysis, history: list[tuple[str, str]], question: str) -> str:
        """Answer ``question`` about ``analysis`` (an :class:`~affect_llm.types.Analysis`); ``history`` holds the
        earlier (question, answer) turns. The instruct model answers with the evidence, the decision and the
        explanation in context; its answer is checked against the cues (:func:`affect_llm.answer.answer`)."""
        from ..answer import answer

        turns = history + [(question, "")]
        first = prompting.render(
            "chat.j2", evidence_text=analysis.evidence, label=analysis.label,
            probability=analysis.probabilities.get(analysis.label, 0.0), decision=analysis.decision,
            explanation=analysis.explanation, question=turns[0][0],
        )  # fmt: skip
        messages: list[Message] = [{"role": "system", "content": prompting.text("chat_system.txt")},
                                   {"role": "user", "content": first}]  # fmt: skip
        for i, (q, a) in enumerate(turns):
            if i:
                messages.append({"role": "user", "content": q})
            if a:
                messages.append({"role": "assistant", "content": a})
        raw = _trim(self.chat_lm().generate(messages, self.opts.max_new_tokens, self.opts.temperature, self.opts.seed))
        return answer(raw, analysis, question)


def _adapter_digest(adapter: str | None) -> str:
    """sha256 of an adapter folder's weight and config files ("none" without an adapter)."""
    if not adapter:
        return "none"
    folder = Path(adapter)
    if not folder.is_dir():
        return adapter  # a served name (vLLM): its own identity
    h = hashlib.sha256()
    for f in sorted(folder.glob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".json", ".bin"):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _smoothed(logprobs: np.ndarray) -> np.ndarray:
    """A top-log-probability prior halfway to uniform: the labels a server did not list carry a floor, not a
    measured likelihood, and dividing by a floor would lift a label the model barely gave above its answer."""
    p = np.exp(logprobs)
    return np.log(0.5 * p / p.sum() + 0.5 / len(p))


def parse_emotion_words(answer: str, limit: int = 5) -> list[str]:
    """An answer's comma-separated emotion words (its first line; "and"/"or" separate too), lowercase, one or two
    letters-only words each, without repeats."""
    import re

    first = (answer.strip().splitlines() or [""])[0]
    out: list[str] = []
    for part in re.split(r",|;|/|\band\b|\bor\b", first.lower()):
        words = [w.strip("-") for w in re.sub(r"[^a-z\s-]", " ", part).split() if w.strip("-")]
        if 1 <= len(words) <= 2 and " ".join(words) not in out:
            out.append(" ".join(words))
    return out[:limit]


def _trim(text: str) -> str:
    """Cut a generation that stopped mid-sentence back to its last full sentence."""
    text = text.strip()
    if text and text[-1] not in ".!?\"')]":
        cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
        if cut > 0:
            text = text[: cut + 1]
    return text
