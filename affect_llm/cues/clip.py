"""Frames -> C-cues: zero-shot CLIP matching of sampled video frames against the emotion labels.

CLIP's zero-shot recipe (Radford et al. 2021, sec. 3.1.4): every label is written out as many prompts --
a few templates ("a photo of a {} person", "a face showing {}", ...) filled with the label's adjective and
noun forms ("joy" -> happy, joyful / joy, happiness) -- each prompt is embedded, and the label's text
embedding is the normalised mean of its prompts' normalised embeddings. A frame's label distribution is the
softmax over labels of ``logit_scale x cosine similarity``; the clip's distribution is the mean of its
frames' distributions (as Team RAS average per-frame CLIP predictions over a MELD utterance).

The numbers are kept apart from the model: :func:`frame_distributions` and :func:`aggregate` are plain numpy,
:class:`ClipMatcher` only embeds. Weights come through :func:`affect_llm.models.resolve` (a local path or a
Hugging Face id in the local cache; the hub only with ``AFFECT_LLM_ALLOW_DOWNLOAD=1``). No CLIP ships on PyPI,
so with ``SceneOptions(model=None)`` :func:`load_matcher` returns None and the pipeline skips the stage with
:data:`NO_MODEL_NOTE`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import models
from ..config import SceneOptions
from ..errors import ModelNotFound
from ..media import Frame
from ..types import Cue, Modality

#: the pipeline's note when the stage is skipped for want of weights
NO_MODEL_NOTE = "no CLIP weights configured (--clip MODEL)"

#: frames embedded per forward pass
BATCH_SIZE = 16

#: templates taking an adjective ("happy") and a noun ("happiness"); "a" before a vowel becomes "an"
ADJECTIVE_TEMPLATES = (
    "a photo of a {} person",
    "a {} facial expression",
    "a person feeling {}",
    "a close-up photo of a {} face",
    "a person who looks {}",
)
NOUN_TEMPLATES = (
    "a face showing {}",
    "a photo of a person expressing {}",
    "an expression of {}",
)

#: label -> (adjective forms, noun forms); a label not listed here is used as itself in every template
SYNONYMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "neutral": (("neutral", "calm", "expressionless"), ("no emotion", "a neutral expression")),
    "joy": (("happy", "joyful"), ("joy", "happiness")),
    "surprise": (("surprised", "astonished"), ("surprise", "astonishment")),
    "anger": (("angry", "furious"), ("anger", "rage")),
    "sadness": (("sad", "unhappy"), ("sadness", "sorrow")),
    "disgust": (("disgusted", "repulsed"), ("disgust", "revulsion")),
    "fear": (("afraid", "scared", "fearful"), ("fear", "terror")),
}

#: the best label is called a weak match when its probability is below this many times uniform (1 / #labels)
WEAK_MATCH = 1.5


def _articles(text: str) -> str:
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)


def label_prompts(label: str) -> list[str]:
    """Every prompt written for ``label`` (templates x synonym forms), duplicates removed, order kept."""
    adjectives, nouns = SYNONYMS.get(label.lower(), ((label,), (label,)))
    prompts = [t.format(a) for t in ADJECTIVE_TEMPLATES for a in adjectives]
    prompts += [t.format(n) for t in NOUN_TEMPLATES for n in nouns]
    return list(dict.fromkeys(_articles(p) for p in prompts))


# -- the numbers (pure numpy) ------------------------------------------------------------------------------


def _normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def ensemble(prompt_embeddings: np.ndarray) -> np.ndarray:
    """A label's text embedding from its prompts' (prompts x dim): normalised mean of the normalised rows."""
    return _normalize(_normalize(prompt_embeddings).mean(axis=0))


def frame_distributions(sims: np.ndarray, logit_scale: float) -> np.ndarray:
    """Per-frame label distributions: softmax over labels (columns) of ``logit_scale * sims``.

    ``sims``: frames x labels cosine similarities. Returns float64 of the same shape, each row summing to 1.
    """
    s = np.asarray(sims, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] == 0:
        raise ValueError(f"sims must be frames x labels, got shape {s.shape}")
    z = float(logit_scale) * s
    z -= z.max(axis=1, keepdims=True)  # stable: the largest logit becomes 0
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def aggregate(dists: np.ndarray) -> np.ndarray:
    """The clip-level distribution: the mean of the per-frame distributions (frames x labels -> labels)."""
    d = np.asarray(dists, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] == 0:
        raise ValueError(f"need at least one frame's distribution (frames x labels), got shape {d.shape}")
    return d.mean(axis=0)


# -- results and cues --------------------------------------------------------------------------------------


@dataclass
class SceneResult:
    labels: list[str]
    times: np.ndarray  # (frames,) seconds
    frame_dists: np.ndarray  # (frames, labels), rows sum to 1
    mean: np.ndarray | None  # (labels,) the clip-level distribution; None when there were no frames
    model: str = ""

    @property
    def distribution(self) -> dict[str, float]:
        return {} if self.mean is None else dict(zip(self.labels, (float(p) for p in self.mean)))

    def __len__(self) -> int:
        return len(self.times)


def _span(s: Any) -> tuple[float, float]:
    if hasattr(s, "start") and hasattr(s, "end"):
        return float(s.start), float(s.end)
    a, b = s
    return float(a), float(b)


def describe(labels: Sequence[str], dist: np.ndarray, n_frames: int) -> str:
    """'3 frames match 'joy' best (0.41), then 'surprise' (0.22)'; says so when no label stands out."""
    order = np.argsort(-np.asarray(dist), kind="stable")
    first, second = order[0], order[1] if len(order) > 1 else None
    who = "the frame matches" if n_frames == 1 else f"{n_frames} frames match"
    then = f", then '{labels[second]}' ({dist[second]:.2f})" if second is not None else ""
    if dist[first] < WEAK_MATCH / len(labels):
        return f"{who} no label clearly: '{labels[first]}' ({dist[first]:.2f}) leads{then}"
    return f"{who} '{labels[first]}' best ({dist[first]:.2f}){then}"


def scene_cues(result: SceneResult, spans: Iterable[Any] | None = None, max_gap: float = 1.0) -> list[Cue]:
    """C-cues from a :class:`SceneResult`: one for the whole clip, or one per span.

    ``spans``: (start, end) pairs or objects with ``start``/``end`` (transcript segments). A span's
    distribution is the mean over the frames inside it; a span too short to hold a sampled frame takes the
    frame nearest its middle, if that is within ``max_gap`` seconds of the span, and is skipped otherwise.
    Ids are ``C1, C2, ...`` over the cues made; ``value`` is the label distribution.
    """
    if result.mean is None or len(result) == 0:
        return []
    times = np.asarray(result.times, dtype=np.float64)
    if spans is None:
        groups = [(float(times.min()), float(times.max()), np.arange(len(times)))]
    else:
        groups = []
        for s in spans:
            start, end = _span(s)
            idx = np.flatnonzero((times >= start) & (times <= end))
            if idx.size == 0:
                near = int(np.argmin(np.abs(times - (start + end) / 2)))
                if times[near] < start - max_gap or times[near] > end + max_gap:
                    continue
                idx = np.array([near])
            groups.append((start, end, idx))
    cues = []
    for start, end, idx in groups:
        dist = aggregate(result.frame_dists[idx])
        cues.append(
            Cue(
                id=f"C{len(cues) + 1}",
                modality=Modality.scene,
                start=start,
                end=end,
                text=describe(result.labels, dist, len(idx)),
                value={lab: round(float(p), 4) for lab, p in zip(result.labels, dist)},
            )
        )
    return cues


# -- the model ---------------------------------------------------------------------------------------------


def _pooled(out: Any):
    """transformers < 5 returns the projected embeddings; 5 an output whose pooler_output holds them."""
    return out if hasattr(out, "ndim") else out.pooler_output


class ClipMatcher:
    """A transformers CLIP model with the labels' ensembled text embeddings computed once.

    ``model_ref``: a local directory saved with ``save_pretrained`` (model + processor) or a Hugging Face id
    such as ``openai/clip-vit-base-patch32`` that is in the local cache.
    """

    def __init__(
        self, model_ref: str, labels: Sequence[str], batch_size: int = BATCH_SIZE, device: str | None = None
    ):
        labels = [str(lab).strip() for lab in labels if str(lab).strip()]
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"need at least two distinct labels, got {labels}")
        r = models.resolve(model_ref, kind="clip")  # before importing torch: a bad reference fails fast
        local_only = r.path is not None or not models.downloads_allowed()

        import torch
        from transformers import CLIPModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # as the LLM loader does: no progress bars or backend notices
        hf_logging.disable_progress_bar()
        self.name = str(model_ref)
        self.location = r.location
        self.labels = labels
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            self.tokenizer, self.image_processor = _load_processor(r.location, local_only)
            self.model = CLIPModel.from_pretrained(r.location, local_files_only=local_only)
        except (OSError, ValueError) as e:
            raise ModelNotFound(
                f"{model_ref!r} ({r.location}) could not be loaded as a CLIP model: {e}"
            ) from None
        self.model = self.model.float().to(self.device).eval()
        self.logit_scale = float(self.model.logit_scale.detach().exp().item())
        self.text_embeddings = self._label_embeddings()  # (labels, dim), rows of unit norm

    def _label_embeddings(self) -> np.ndarray:
        import torch

        prompts = [label_prompts(lab) for lab in self.labels]
        flat = [p for ps in prompts for p in ps]
        max_len = getattr(self.model.config.text_config, "max_position_embeddings", 77)
        tok = self.tokenizer(flat, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        with torch.inference_mode():
            inputs = {k: tok[k].to(self.device) for k in ("input_ids", "attention_mask") if k in tok}
            emb = _pooled(self.model.get_text_features(**inputs))
        emb = emb.float().cpu().numpy()
        rows, i = [], 0
        for ps in prompts:
            rows.append(ensemble(emb[i : i + len(ps)]))
            i += len(ps)
        return np.stack(rows)

    def image_embeddings(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Unit-norm embeddings (n x dim) of H x W x 3 uint8 RGB images."""
        import torch

        pixels = self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            emb = _pooled(self.model.get_image_features(pixel_values=pixels.to(self.device, torch.float32)))
        return _normalize(emb.float().cpu().numpy())

    def similarities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Cosine similarities, images x labels."""
        return self.image_embeddings(images) @ self.text_embeddings.T

    def match(self, frames: Iterable[Frame]) -> SceneResult:
        """Per-frame label distributions and their mean; frames are consumed ``batch_size`` at a time."""
        times: list[float] = []
        dists: list[np.ndarray] = []
        batch: list[Frame] = []

        def flush() -> None:
            if batch:
                dists.append(frame_distributions(self.similarities([f.rgb for f in batch]), self.logit_scale))
                times.extend(f.t for f in batch)
                batch.clear()

        for f in frames:
            batch.append(f)
            if len(batch) >= self.batch_size:
                flush()
        flush()
        d = np.concatenate(dists) if dists else np.zeros((0, len(self.labels)))
        return SceneResult(
            labels=list(self.labels),
            times=np.asarray(times, dtype=np.float64),
            frame_dists=d,
            mean=aggregate(d) if len(d) else None,
            model=self.name,
        )


def _load_processor(location: str, local_only: bool):
    """(tokenizer, image processor): from a CLIPProcessor, else each on its own (a checkpoint without one)."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPProcessor

    try:
        p = CLIPProcessor.from_pretrained(location, local_files_only=local_only)
        return p.tokenizer, p.image_processor
    except (OSError, ValueError, TypeError):
        tok = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
        return tok, AutoImageProcessor.from_pretrained(location, local_files_only=local_only)


def load_matcher(opts: SceneOptions, labels: Sequence[str]) -> ClipMatcher | None:
    """The matcher ``opts`` asks for (``opts.labels`` over ``labels``); None when no model is configured."""
    if opts.model is None:
        return None
    return ClipMatcher(opts.model, opts.labels or list(labels))
