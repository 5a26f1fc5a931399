"""The reasoner: a label distribution by likelihood scoring, then an explanation that cites cue ids.

The two are separate calls on purpose: the label is decided by scoring every label's log-likelihood as the
model's answer (never by parsing free text), so fusion can later change the label, and the explainer is told
the final label and asked to justify it from the evidence.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .. import models, prompting
from ..config import ReasonerOptions
from ..evidence import Evidence, cited_ids
from .hf import Message, TransformersLM, load

CONTENT_FREE = "Evidence:\n[T1] (text): N/A"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + float(np.log(np.exp(x - m).sum()))


class Reasoner:
    def __init__(self, opts: ReasonerOptions | None = None, lm: TransformersLM | None = None):
        self.opts = opts or ReasonerOptions()
        self.lm = lm or load(self.opts.model, self.opts.threads, self.opts.dtype)
        self._system = prompting.text("system.txt")
        self._prior: dict[tuple[str, ...], np.ndarray] = {}

    def _messages(self, user: str) -> list[Message]:
        return [{"role": "system", "content": self._system}, {"role": "user", "content": user}]

    # -- label ------------------------------------------------------------------------------------------
    def label_logprobs(self, evidence_text: str, context: str | None = None) -> np.ndarray:
        """log P(label | evidence) per label, summed over surface forms ('joy', 'Joy')."""
        labels = self.opts.labels
        forms = [[lab, lab.capitalize()] if lab != lab.capitalize() else [lab] for lab in labels]
        flat = [f for fs in forms for f in fs]
        user = prompting.render("label.j2", evidence_text=evidence_text, labels=labels, context=context)
        s = self.lm.score(self._messages(user), flat)
        out, k = [], 0
        for fs in forms:
            out.append(_logsumexp(s[k : k + len(fs)]))
            k += len(fs)
        return np.array(out)

    def prepare(self) -> None:
        """Compute what every call needs once (the calibration prior), e.g. while the pipeline decodes media."""
        if self.opts.calibrate:
            self._label_prior()

    def _label_prior(self) -> np.ndarray:
        # Contextual calibration (Zhao et al., 2021): the model's prior over label words, measured on a
        # content-free input and divided out, so that a small model's bias towards one word does not decide
        # every answer.
        key = tuple(self.opts.labels)
        if key not in self._prior:
            self._prior[key] = self._cached_prior()
        return self._prior[key]

    def _cached_prior(self) -> np.ndarray:
        """The content-free label log-likelihoods, kept on disk per (model, dtype, prompt, labels)."""
        user = prompting.render("label.j2", evidence_text=CONTENT_FREE, labels=self.opts.labels, context=None)
        ident = json.dumps([str(self.lm.location), str(self.lm.dtype), self._system, user, self.opts.labels])
        key = hashlib.sha256(ident.encode()).hexdigest()[:32]
        path = models.home() / "cache" / "label-priors" / f"{key}.json"
        try:
            values = json.loads(path.read_text())
            if len(values) == len(self.opts.labels):
                return np.array(values, dtype=float)
        except (OSError, ValueError):
            pass
        values = self.label_logprobs(CONTENT_FREE)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(values.tolist()))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache only costs the recomputation
        return values

    def label_distribution(self, evidence_text: str, context: str | None = None) -> dict[str, float]:
        lp = self.label_logprobs(evidence_text, context)
        if self.opts.calibrate:
            lp = lp - self._label_prior()
        p = _softmax(lp)
        return {lab: float(v) for lab, v in zip(self.opts.labels, p)}

    # -- explanation ------------------------------------------------------------------------------------
    def explain(self, evidence: Evidence, label: str, evidence_text: str | None = None) -> tuple[str, list[str], list[str]]:
        """Return (explanation, cited ids that exist, ids mentioned that do not exist)."""
        evidence_text = evidence_text or evidence.render()
        example = evidence.ids[:2] or ["S1"]
        user = prompting.render("explain.j2", evidence_text=evidence_text, label=label, example_ids=example)
        # The answer is seeded with the label and the first cue id (prompts/explain_prefix.j2): a small base model
        # rarely cites on its own; the LoRA-tuned reasoner learns to. Every id is checked against the evidence.
        prefix = prompting.render("explain_prefix.j2", label=label, first_id=example[0])
        text = self.lm.generate(
            self._messages(user),
            max_new_tokens=self.opts.max_new_tokens,
            temperature=self.opts.temperature,
            seed=self.opts.seed,
            assistant_prefix=prefix,
        )
        text = _trim(text)
        ids = cited_ids(text)
        known = set(evidence.ids)
        return text, [i for i in ids if i in known], [i for i in ids if i not in known]

    # -- chat -------------------------------------------------------------------------------------------
    def chat(
        self,
        evidence_text: str,
        label: str,
        probability: float,
        explanation: str,
        history: list[tuple[str, str]],
        question: str,
    ) -> str:
        """Answer ``question`` about the clip; ``history`` holds the earlier (question, answer) turns."""
        turns = history + [(question, "")]
        first = prompting.render(
            "chat.j2", evidence_text=evidence_text, label=label, probability=probability,
            explanation=explanation, question=turns[0][0],
        )  # fmt: skip
        messages: list[Message] = [{"role": "system", "content": self._system}, {"role": "user", "content": first}]
        for i, (q, a) in enumerate(turns):
            if i:
                messages.append({"role": "user", "content": q})
            if a:
                messages.append({"role": "assistant", "content": a})
        return _trim(
            self.lm.generate(messages, self.opts.max_new_tokens * 2, self.opts.temperature, self.opts.seed)
        )


def _trim(text: str) -> str:
    """Cut a generation that stopped mid-sentence back to its last full sentence."""
    text = text.strip()
    if text and text[-1] not in ".!?\"')]":
        cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
        if cut > 0:
            text = text[: cut + 1]
    return text
