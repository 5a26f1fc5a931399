"""The conversation-context model: utterance encoder (all-MiniLM-L6-v2 with a LoRA adapter) -> Broad Mamba over the
dialogue -> per-utterance context embedding and emotion probabilities.

    >>> model = ContextModel.load("adapters/context-meld")
    >>> out = model.predict(dialogue)            # a affect_llm.data.Dialogue
    >>> out.probabilities[-1], out.embeddings[-1]

A saved model is a folder: ``config.json`` (labels, encoder, LoRA and Broad Mamba settings), ``encoder_lora/``
(peft's adapter files) and ``broad_mamba.safetensors``. The base encoder comes from the model registry, so the
folder holds only what training changed.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import models
from ..data import Dialogue
from ..errors import InputError, ModelNotFound
from ..runtime import adapters_dir, quiet_transformers
from ..textnorm import normalize
from ..threads import torch_threads
from .broad_mamba import BroadMamba, BroadMambaConfig


#: pooled utterance encodings a loaded model keeps for inference (:meth:`ContextModel.encode_alone`; ~3 KB each
#: for a 768-wide encoder)
SEEN_ITEMS = 4096
#: held while a dialogue is read at one intra-op thread (:func:`_one_thread`), so concurrent readers do not
#: restore each other's thread count under one another
_THREADS_LOCK = threading.Lock()


def _one_thread():
    """One intra-op thread for the block. The encoder's float32 matmuls round differently at other thread counts
    (the sums are split otherwise: 1.7e-6 between 1 and 2 threads, measured on all-mpnet-base-v2), and the
    reasoner's soft prompt turns that into up to 0.05 of a label probability; encoded on one thread, an
    utterance's vector is a function of its words only, whatever thread count the caller (a batch worker, a
    busy server) runs at."""
    return torch_threads(1, lock=_THREADS_LOCK)


#: LoRA targets by encoder family: every attention projection and both feed-forward layers
LORA_TARGETS = {"bert": ["query", "key", "value", "dense"], "mpnet": ["q", "k", "v", "o", "dense"],
                "roberta": ["query", "key", "value", "dense"], "xlm-roberta": ["query", "key", "value", "dense"]}  # fmt: skip


@dataclass
class ContextModelConfig:
    labels: list[str]
    dataset: str = "meld"
    encoder: str = "minilm-l6"
    max_tokens: int = 64  # per utterance
    past_utterances: int = 0  # earlier utterances put before each one in the encoder's input (token-level context)
    past_tokens: int = 48  # at most this many tokens of them (the most recent kept)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_targets: list[str] | None = None  # None: the encoder family's attention and feed-forward layers
    frozen_layers: int = 0  # the lowest N encoder layers get no LoRA (training caches their outputs once)
    broad_mamba: dict = field(default_factory=dict)

    def targets(self, model_type: str) -> list[str]:
        if self.lora_targets:
            return list(self.lora_targets)
        try:
            return LORA_TARGETS[model_type]
        except KeyError:
            raise ValueError(f"no default LoRA targets for a {model_type!r} encoder; set lora_targets") from None

    def mamba_config(self, d_in: int) -> BroadMambaConfig:
        return BroadMambaConfig(**{**self.broad_mamba, "d_in": d_in, "n_labels": len(self.labels)})


@dataclass
class ContextOutput:
    labels: list[str]
    probabilities: np.ndarray  # (utterances, labels)
    embeddings: np.ndarray  # (utterances, d): Broad Mamba's [Z | H], the context embedding

    def distribution(self, i: int = -1) -> dict[str, float]:
        return {lab: float(p) for lab, p in zip(self.labels, self.probabilities[i])}


#: an utterance's encoder input (token ids, where its own tokens start) -> its states after the frozen layers
LowerStates = dict[tuple[tuple[int, ...], int], torch.Tensor]


class _PassThrough(nn.Module):
    """Stands in for a transformers model's embeddings: returns the ``inputs_embeds`` it is given."""

    def forward(self, input_ids=None, inputs_embeds=None, **_):
        return inputs_embeds


class ContextModel(nn.Module):
    def __init__(self, cfg: ContextModelConfig, lora_path: str | Path | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        quiet_transformers()
        self.cfg = cfg
        r = models.resolve(cfg.encoder, kind="text-embedding")
        local_only = r.path is not None or not models.downloads_allowed()
        self.tokenizer = AutoTokenizer.from_pretrained(r.location, local_files_only=local_only)
        if lora_path is not None:  # inference: the LoRA update folded into the weights (no extra matmuls), made
            from ..merge import load_merged  # once and kept in the model cache

            base_files = Path(r.path) if r.path is not None else None
            self.encoder = load_merged(cfg.encoder, r.location, base_files, lora_path, torch.float32, local_only,
                                       auto_class="AutoModel")  # fmt: skip
        else:
            from peft import LoraConfig, get_peft_model

            base = AutoModel.from_pretrained(r.location, local_files_only=local_only, dtype=torch.float32)
            n = int(base.config.num_hidden_layers)
            if not 0 <= cfg.frozen_layers < n:
                raise ValueError(f"frozen_layers must be 0 … {n - 1} for this {n}-layer encoder")
            cfg.lora_targets = cfg.targets(base.config.model_type)
            upper = {"layers_to_transform": list(range(cfg.frozen_layers, n)), "layers_pattern": "layer"} if cfg.frozen_layers else {}
            lc = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                            target_modules=cfg.lora_targets, bias="none", **upper)  # fmt: skip
            self.encoder = get_peft_model(base, lc)
        self.mamba = BroadMamba(cfg.mamba_config(int(self._hf_model().config.hidden_size)))
        self.fingerprint: str | None = None  # of the saved files it was loaded from (see fingerprint())
        self._seen: OrderedDict[tuple[tuple[int, ...], int], torch.Tensor] = OrderedDict()  # see encode_alone
        self._seen_lock = threading.Lock()

    # --- forward -----------------------------------------------------------------------------------------
    def encode(self, texts: list[str], chunk: int = 32) -> torch.Tensor:
        """(len(texts), hidden) mean-pooled encoder states of utterances taken alone."""
        return self._encode([(ids, 0) for ids in self._ids(texts)], chunk)

    def encode_dialogues(self, dialogues: list[Dialogue], chunk: int = 32, cache: LowerStates | None = None) -> torch.Tensor:
        """(utterances of all ``dialogues``, hidden): each utterance's encoder states, mean-pooled over its own
        tokens. With ``past_utterances`` = k, the encoder reads the k utterances before it first
        (``[CLS] u_{i-k} [SEP] … u_{i-1} [SEP] u_i [SEP]``, at most ``past_tokens`` of them, the most recent kept),
        so attention sees the words said just before; earlier turns only, as the pipeline has them.

        ``cache``: the frozen lower layers' outputs for these utterances (:meth:`lower_states`); only the layers
        above them run (training)."""
        return self._encode(self.items(dialogues), chunk, cache)

    def items(self, dialogues: list[Dialogue]) -> list[tuple[list[int], int]]:
        """The encoder's inputs for every utterance of ``dialogues``: (token ids, where its own tokens start)."""
        k = self.cfg.past_utterances
        items: list[tuple[list[int], int]] = []
        for d in dialogues:
            ids = self._ids([u.text for u in d.utterances])
            for i, own in enumerate(ids):
                if k <= 0 or i == 0:
                    items.append((own, 0))
                    continue
                past = [t for p in ids[max(0, i - k) : i] for t in p[1:]][-self.cfg.past_tokens :]  # each ends in [SEP]
                items.append(([own[0], *past, *own[1:]], 1 + len(past)))
        return items

    def _ids(self, texts: list[str]) -> list[list[int]]:
        texts = [normalize(t) or "." for t in texts]
        return self.tokenizer(texts, truncation=True, max_length=self.cfg.max_tokens)["input_ids"]

    def _hf_model(self) -> nn.Module:
        """The transformers encoder under peft's wrapper (or the merged one)."""
        return self.encoder.get_base_model() if hasattr(self.encoder, "get_base_model") else self.encoder

    @contextmanager
    def _only_layers(self, start: int, stop: int | None = None):
        """Run only encoder layers ``start`` … ``stop``-1 for the duration: the others are swapped out of the
        transformers model (any encoder with ``embeddings`` and ``encoder.layer``), and from ``start`` > 0 the
        embeddings too, so the input is ``inputs_embeds`` = cached states, and the model's own forward still
        builds the attention mask (and MPNet's relative position bias). Training only: no other thread may use
        the model meanwhile."""
        hf = self._hf_model()
        emb, layers = hf.embeddings, hf.encoder.layer
        hf.encoder.layer = nn.ModuleList(list(layers)[start:stop])
        if start > 0:
            hf.embeddings = _PassThrough()
        try:
            yield
        finally:
            hf.embeddings, hf.encoder.layer = emb, layers

    @torch.inference_mode()
    def lower_states(self, dialogues: list[Dialogue], chunk: int = 32, progress=None) -> LowerStates:
        """The hidden states after the ``frozen_layers`` lowest layers (no LoRA there, dropout off) for every
        utterance of ``dialogues``, keyed by its encoder input: computed once, then each training epoch runs only
        the layers above (:meth:`encode_dialogues` with ``cache``). Training only (:meth:`_only_layers`)."""
        n = self.cfg.frozen_layers
        if n <= 0:
            raise ValueError("lower_states needs frozen_layers > 0")
        was = self.training
        self.eval()
        out: LowerStates = {}
        try:
            todo = list(dict.fromkeys((tuple(ids), start) for ids, start in self.items(dialogues)))
            todo.sort(key=lambda it: len(it[0]))
            with self._only_layers(0, n):
                for s in range(0, len(todo), chunk):
                    part = todo[s : s + chunk]
                    enc = self.tokenizer.pad({"input_ids": [list(ids) for ids, _ in part]}, return_tensors="pt")
                    h = self.encoder(**enc).last_hidden_state
                    for row, key in enumerate(part):
                        out[key] = h[row, : len(key[0])].clone()
                    if progress is not None:
                        progress(len(part))
        finally:
            self.train(was)
        return out

    @staticmethod
    def _pool(h: torch.Tensor, attention_mask: torch.Tensor, starts: list[int]) -> torch.Tensor:
        m = attention_mask.clone()
        for row, start in enumerate(starts):
            m[row, :start] = 0
        m = m.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def _encode(self, items: list[tuple[list[int], int]], chunk: int, cache: LowerStates | None = None) -> torch.Tensor:
        """``items``: (input ids, where the utterance's own tokens start; 0 pools [CLS] too, as for a lone
        utterance). Runs in chunks of similar length, so short utterances are not padded to the longest one
        (MELD: median 12 tokens, longest 95). With ``cache`` (:meth:`lower_states`), only the layers above the
        frozen ones run, on the cached states (training)."""
        order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
        parts = []
        with self._only_layers(self.cfg.frozen_layers) if cache is not None else nullcontext():
            for s in range(0, len(order), chunk):
                idx = order[s : s + chunk]
                if cache is None:
                    enc = self.tokenizer.pad({"input_ids": [items[i][0] for i in idx]}, return_tensors="pt")
                    mask = enc["attention_mask"]
                    h = self.encoder(**enc).last_hidden_state
                else:
                    states = [cache[(tuple(items[i][0]), items[i][1])] for i in idx]
                    width = max(len(x) for x in states)
                    x = torch.zeros(len(idx), width, states[0].shape[-1])
                    mask = torch.zeros(len(idx), width, dtype=torch.long)
                    for row, st in enumerate(states):
                        x[row, : len(st)], mask[row, : len(st)] = st, 1
                    h = self.encoder(inputs_embeds=x, attention_mask=mask).last_hidden_state
                parts.append(self._pool(h, mask, [items[i][1] for i in idx]))
        pooled = torch.cat(parts)
        return pooled[torch.argsort(torch.tensor(order))]

    @torch.inference_mode()
    def encode_alone(self, items: list[tuple[list[int], int]]) -> torch.Tensor:
        """Inference: (len(items), hidden) pooled states, each item encoded by itself (a batch of one, no
        padding), so its vector is a function of its own input only, and kept (the :data:`SEEN_ITEMS` most recently
        used): analysing utterance after utterance of one dialogue, as ``chat``, the fusion fit and the evaluations
        do, encodes each earlier utterance once instead of once per later one. The same input gives the same
        vector whether it was computed now or kept from another dialogue."""
        out: list[torch.Tensor | None] = []
        with self._seen_lock:
            for ids, start in items:
                hit = self._seen.get((tuple(ids), start))
                if hit is not None:
                    self._seen.move_to_end((tuple(ids), start))
                out.append(hit)
        for i, (ids, start) in enumerate(items):
            if out[i] is None:
                x = torch.tensor([ids])
                h = self.encoder(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
                out[i] = self._pool(h, torch.ones_like(x), [start])[0]
                with self._seen_lock:
                    self._seen[(tuple(ids), start)] = out[i]
                    while len(self._seen) > SEEN_ITEMS:
                        self._seen.popitem(last=False)
        return torch.stack(out)  # type: ignore[arg-type]

    def train(self, mode: bool = True):
        if mode and hasattr(self, "_seen"):  # the weights are about to change: the kept encodings would be stale
            with self._seen_lock:
                self._seen.clear()
        return super().train(mode)

    def forward(self, dialogues: list[Dialogue], cache: LowerStates | None = None,
                flat: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """Returns (context embeddings (b, u, d), logits (b, u, labels), lengths (b,)). ``cache``: see
        :meth:`lower_states`; ``flat``: the utterances' pooled encoder states, already computed."""
        if not dialogues or any(len(d) == 0 for d in dialogues):
            raise InputError("every dialogue needs at least one utterance")
        if flat is None:
            flat = self.encode_dialogues(dialogues, cache=cache)
        lengths = torch.tensor([len(d) for d in dialogues])
        u_max = int(lengths.max())
        feats = flat.new_zeros(len(dialogues), u_max, flat.shape[-1])
        speakers = torch.zeros(len(dialogues), u_max, dtype=torch.long)
        i = 0
        for b, d in enumerate(dialogues):
            feats[b, : len(d)] = flat[i : i + len(d)]
            speakers[b, : len(d)] = torch.tensor(d.speaker_ids(self.mamba.cfg.max_speakers))
            i += len(d)
        ctx, logits = self.mamba(feats, speakers, lengths)
        return ctx, logits, lengths

    @torch.inference_mode()
    def predict(self, dialogue: Dialogue) -> ContextOutput:
        """Per-utterance probabilities and context embeddings of ``dialogue`` (each utterance encoded alone and
        kept, :meth:`encode_alone`)."""
        self.eval()
        if len(dialogue) == 0:
            raise InputError("every dialogue needs at least one utterance")
        with _one_thread():
            ctx, logits, _ = self([dialogue], flat=self.encode_alone(self.items([dialogue])))
        return ContextOutput(list(self.cfg.labels), F.softmax(logits[0], -1).numpy(), ctx[0].numpy())

    # --- persistence -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if not hasattr(self.encoder, "save_pretrained") or not hasattr(self.encoder, "peft_config"):
            raise ValueError("only a model being trained (LoRA not merged) can be saved")
        self.encoder.save_pretrained(str(path / "encoder_lora"))
        tidy_peft_folder(path / "encoder_lora", self.cfg.encoder)
        save_file({k: v.contiguous() for k, v in self.mamba.state_dict().items()}, str(path / "broad_mamba.safetensors"))
        cfg = asdict(self.cfg)
        cfg["broad_mamba"] = asdict(self.mamba.cfg)
        (path / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ContextModel:
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"{path}: not a context model (no config.json)")
        raw = json.loads((path / "config.json").read_text())
        bm = {k: v for k, v in raw.pop("broad_mamba", {}).items() if k not in ("d_in", "n_labels")}
        model = cls(ContextModelConfig(**raw, broad_mamba=bm), lora_path=path / "encoder_lora")
        model.mamba.load_state_dict(load_file(str(path / "broad_mamba.safetensors")))
        model.fingerprint = fingerprint(path)
        return model.eval()


def fingerprint(path: str | Path) -> str:
    """sha256 over a saved context model's weights and config: what a reasoner's projector records, so that it
    never reads embeddings of a retrained model that kept the same name."""
    import hashlib

    path = Path(path)
    h = hashlib.sha256()
    for name in ("config.json", "broad_mamba.safetensors", "encoder_lora/adapter_model.safetensors"):
        f = path / name
        h.update(name.encode() + b"\0" + (f.read_bytes() if f.is_file() else b""))
    return h.hexdigest()


def tidy_peft_folder(folder: Path, encoder: str) -> None:
    """peft writes this machine's cache path as the base model and a boilerplate card: name the upstream model
    instead (the base is always resolved through the registry on load) and keep the one card we write."""
    cfg_path = folder / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    try:
        cfg["base_model_name_or_path"] = models.get(encoder).upstream or encoder
    except ModelNotFound:  # an encoder given as a path or HF id
        cfg["base_model_name_or_path"] = encoder
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (folder / "README.md").unlink(missing_ok=True)


def default_path(dataset: str = "meld") -> Path:
    return adapters_dir() / f"context-{dataset}"


@lru_cache(maxsize=2)
def load_context_model(ref: str | None = None) -> ContextModel:
    """``ref``: a folder, or ``None`` / a dataset name for the shipped ``adapters/context-<dataset>``."""
    return ContextModel.load(context_model_path(ref))


def context_model_path(ref: str | None = None) -> Path:
    """The folder ``load_context_model(ref)`` loads."""
    return Path(ref) if ref and ("/" in ref or Path(ref).exists()) else default_path(ref or "meld")
