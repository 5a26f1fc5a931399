"""Utterance features: sentence embeddings from the embedded all-MiniLM-L6-v2 (mean pooling, L2-normalised, as
sentence-transformers computes them), through plain transformers so no extra package is needed."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import models
from .textnorm import normalize


class SentenceEncoder:
    def __init__(self, ref: str = "minilm-l6", max_length: int = 128):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from .runtime import quiet_transformers

        quiet_transformers()
        r = models.resolve(ref, kind="text-embedding")
        local_only = r.path is not None or not models.downloads_allowed()
        self.tokenizer = AutoTokenizer.from_pretrained(r.location, local_files_only=local_only)
        self.model = AutoModel.from_pretrained(r.location, local_files_only=local_only, dtype=torch.float32).eval()
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), dim) float32, unit length; text is normalised first (MELD's cp1252 quotes and all)."""
        import torch

        out = []
        for i in range(0, len(texts), batch_size):
            batch = [normalize(t) for t in texts[i : i + batch_size]]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                h = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(e, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


@lru_cache(maxsize=2)
def load_encoder(ref: str = "minilm-l6") -> SentenceEncoder:
    return SentenceEncoder(ref)
