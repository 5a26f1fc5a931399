"""Soft prompts: the conversation-context embedding, projected to ``k`` vectors in the LLM's embedding space and
spliced into the prompt at a marked place.

This is the one place that turns a prompt into the LLM's input embeddings; the in-process transformers backend
and the vLLM backend (``prompt_embeds``) both call :func:`prompt_embeddings`.

A prompt is carried as a :class:`Prompt`: token ids, with the soft-prompt positions written as negative numbers
(``-1 .. -k``: row ``i`` of ``soft`` goes where ``-(i + 1)`` stands). Templates mark the place with
:data:`SLOT`; :func:`split_slot` turns the rendered chat text into such ids.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

#: where the soft prompt goes in a rendered prompt (prompts/*.j2 write it through the ``soft_slot`` variable)
SLOT = "<|context_embedding|>"
#: a place where the prompt may be cut for KV caching (after the evidence block; prompts/*.j2 write it through
#: the ``cache_mark`` variable). It is removed from the text; :attr:`Prompt.marks` keeps where it was.
CACHE_MARK = "<|cache_boundary|>"


@dataclass
class Prompt:
    """Token ids with ``-1 .. -k`` standing for the rows of ``soft`` ((k, d) or None)."""

    ids: list[int]
    soft: torch.Tensor | None = None
    marks: list[int] = field(default_factory=list)  # positions where a CACHE_MARK stood (a cut before ids[m])

    def __post_init__(self) -> None:
        n_slots = sum(1 for i in self.ids if i < 0)
        k = 0 if self.soft is None else int(self.soft.shape[0])
        if n_slots != k:
            raise ValueError(f"prompt has {n_slots} soft positions but {k} soft vectors")

    def __len__(self) -> int:
        return len(self.ids)

    def real_ids(self) -> list[int]:
        return [i for i in self.ids if i >= 0]


def _tokenize(tokenizer, text: str, k: int) -> list[int]:
    """Token ids of ``text``; a :data:`SLOT` in it becomes the ``k`` soft positions ``-1 .. -k`` (the text on
    either side tokenized apart)."""
    parts = text.split(SLOT)
    ids = tokenizer(parts[0], add_special_tokens=False)["input_ids"] if parts[0] else []
    for part in parts[1:]:
        ids += list(range(-1, -k - 1, -1))
        ids += tokenizer(part, add_special_tokens=False)["input_ids"] if part else []
    return ids


def split_slot(tokenizer, text: str, soft: torch.Tensor | None) -> Prompt:
    """Tokenize a rendered chat ``text``; where :data:`SLOT` stands, put the soft positions (the slot must appear
    exactly once when ``soft`` is given, and never otherwise). Each :data:`CACHE_MARK` is removed and its
    position kept in ``marks`` -- only where the text before it tokenizes to exactly the first ids of the whole,
    so a mark never changes the tokens."""
    pieces = text.split(CACHE_MARK)
    text = "".join(pieces)
    n_slots = text.count(SLOT)
    if soft is None and n_slots:
        raise ValueError("the prompt marks a soft-prompt slot but no soft prompt was given")
    if soft is not None and n_slots != 1:
        raise ValueError(f"a soft prompt needs exactly one {SLOT} in the prompt, found {n_slots}")
    k = 0 if soft is None else int(soft.shape[0])
    p = Prompt(_tokenize(tokenizer, text, k), soft)
    for j in range(1, len(pieces)):
        head = _tokenize(tokenizer, "".join(pieces[:j]), k)
        n = len(head)
        if 0 < n < len(p.ids) and p.ids[:n] == head and (not p.marks or n > p.marks[-1]):
            p.marks.append(n)
    return p


def prompt_embeddings(embed: nn.Embedding, prompt: Prompt, start: int = 0, end: int | None = None) -> torch.Tensor:
    """(end - start, d) input embeddings of ``prompt.ids[start:end]``: the embedding table's rows for token
    ids, the soft vectors (cast to the table's dtype) for soft positions."""
    ids = torch.tensor(prompt.ids[start:end], dtype=torch.long, device=embed.weight.device)
    soft_pos = ids < 0
    out = embed(ids.clamp(min=0))
    if soft_pos.any():
        assert prompt.soft is not None
        out = out.clone()
        out[soft_pos] = prompt.soft.to(device=out.device, dtype=out.dtype)[(-ids[soft_pos] - 1)]
    return out


@dataclass
class ProjectorConfig:
    d_in: int  # the context embedding's size (Broad Mamba's [Z | H])
    d_model: int  # the LLM's hidden size
    n_tokens: int = 4  # k soft-prompt vectors
    hidden: int = 512
    dropout: float = 0.1


class SoftPromptProjector(nn.Module):
    """Context embedding (d_in) -> k soft-prompt vectors (k, d_model): LayerNorm, a two-layer MLP, then a learned
    per-dimension scale initialised to the LLM's typical token-embedding size, so that the soft vectors start at
    the norm the LLM expects of an input embedding."""

    def __init__(self, cfg: ProjectorConfig, embedding_scale: float = 1.0):
        super().__init__()
        self.cfg = cfg
        self.net = nn.Sequential(
            nn.LayerNorm(cfg.d_in),
            nn.Linear(cfg.d_in, cfg.hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.n_tokens * cfg.d_model),
        )
        self.out_norm = nn.LayerNorm(cfg.d_model, elementwise_affine=False)
        self.scale = nn.Parameter(torch.full((cfg.d_model,), float(embedding_scale)))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """(d_in,) -> (k, d_model); (b, d_in) -> (b, k, d_model)."""
        single = context.dim() == 1
        x = context.unsqueeze(0) if single else context
        y = self.net(x.float()).view(x.shape[0], self.cfg.n_tokens, self.cfg.d_model)
        y = self.out_norm(y) * self.scale
        return y[0] if single else y

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "projector.safetensors"))
        (folder / "projector.json").write_text(json.dumps(asdict(self.cfg), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> "SoftPromptProjector":
        from safetensors.torch import load_file

        folder = Path(folder)
        proj = cls(ProjectorConfig(**json.loads((folder / "projector.json").read_text())))
        proj.load_state_dict(load_file(str(folder / "projector.safetensors")))
        return proj.eval()


def embedding_rms(embed: nn.Embedding) -> float:
    """The root-mean-square size of one coordinate of the LLM's token embeddings (the projector's initial scale)."""
    w = embed.weight.detach().float()
    return float(w.pow(2).mean().sqrt())
