"""In-process transformers backend: chat formatting, continuation scoring, generation.

The two operations the reasoner needs -- the log-likelihood of given continuations, and free generation --
are the backend interface; a vLLM backend (OpenAI-compatible server) implements the same two.

Every reasoner prompt starts with the same system turn, so the backend keeps that head's KV cache and runs
only the rest of each prompt. The head is a fixed boundary of the prompt, never "whatever the last prompt
shared", so a prompt is always computed in the same pieces and the same input gives the same output bit for
bit, whatever ran before it (reusing an arbitrary common prefix changes the chunking, and in bf16 the rounding).
"""

from __future__ import annotations

import copy
import hashlib
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from .. import models
from ..runtime import quiet_transformers
from ..threads import CoreMonitor, torch_threads
from . import invariant
from .soft_prompt import Prompt, prompt_embeddings, split_slot

Message = dict[str, str]


@dataclass
class GenerationRequest:
    """One prompt of :meth:`TransformersLM.generate_many`."""

    messages: list[Message]
    assistant_prefix: str = ""
    soft: Any = None  # (k, d) soft-prompt vectors for the prompt's slot, or None


class LLMBackend(Protocol):
    """What the reasoner needs of an LLM: this module's :class:`TransformersLM` and
    :class:`~affect_llm.llm.vllm.VLLMLM` (a vLLM server) both are one."""

    name: str
    location: str
    adapter: str | None
    tokenizer: Any

    def prompt(self, messages: list[Message], soft=None, assistant_prefix: str = "",
               add_generation_prompt: bool = True) -> Prompt: ...  # fmt: skip

    def score(self, messages: list[Message], continuations: list[str], soft=None) -> np.ndarray: ...

    def generate(self, messages: list[Message], max_new_tokens: int = 96, temperature: float = 0.0, seed: int = 0,
                 assistant_prefix: str = "", soft=None) -> str: ...  # fmt: skip

    def generate_many(self, requests: list[GenerationRequest], max_new_tokens: int = 96, temperature: float = 0.0,
                      seed: int = 0) -> list[str]: ...  # fmt: skip


class ChatPrompting:
    """Chat formatting for a backend with a ``tokenizer``: both backends build their prompts here."""

    tokenizer: Any

    def chat_ids(self, messages: list[Message], add_generation_prompt: bool = True) -> list[int]:
        return self.prompt(messages, add_generation_prompt=add_generation_prompt).ids

    def prompt(
        self, messages: list[Message], soft=None, assistant_prefix: str = "", add_generation_prompt: bool = True
    ) -> Prompt:
        """The chat-formatted prompt; the soft vectors ((k, d) tensor) go where a message holds :data:`SLOT`."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
        p = split_slot(self.tokenizer, text, soft)
        if assistant_prefix:
            p.ids += self.tokenizer(assistant_prefix, add_special_tokens=False)["input_ids"]
        return p


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bf16 runs faster than float32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: str = "auto") -> "torch.device":
    """``auto``: the GPU when CUDA is available, else the CPU; ``cpu``; ``cuda`` (``cuda:N``), refused without
    CUDA."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine (use --device cpu)")
        return torch.device(device)
    raise ValueError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N)")


def resolve_dtype(dtype: str, device: "torch.device | None" = None):
    if dtype == "auto":
        if (device is None and torch.cuda.is_available()) or (device is not None and device.type == "cuda"):
            return torch.bfloat16
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r} (auto, float32, bfloat16, float16)") from None


class TransformersLM(ChatPrompting):
    """A causal LM in this process. ``adapter``: a folder with a peft LoRA adapter for it, merged into the weights
    (no extra matmuls at inference; the merge is made once and kept in the model cache, see
    :mod:`~affect_llm.merge`). ``device``: see :func:`resolve_device`; the model and every step's
    tensors live there."""

    def __init__(self, ref: str = "smollm2-135m", threads: int = 0, dtype: str = "auto", adapter: str | None = None,
                 device: str = "auto", load_4bit: bool = False):  # fmt: skip
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_transformers()
        # torch's pool: the user's count, else the free cores, re-measured before every call (see threads.py)
        self._cores = None if threads else CoreMonitor()
        torch.set_num_threads(threads or self._cores.free())
        r = models.resolve(ref, kind="llm")
        local_only = r.path is not None or not models.downloads_allowed()
        self.name = ref
        self.location = r.location
        self.adapter = adapter
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(r.location, local_files_only=local_only)
        self.load_4bit = load_4bit
        if load_4bit:  # the weights in 4-bit NF4 (bitsandbytes, CUDA only); the adapter stays unmerged beside them
            model = AutoModelForCausalLM.from_pretrained(r.location, local_files_only=local_only,
                                                         **quantized_4bit(self.device, self.dtype))  # fmt: skip
            if adapter is not None:  # (merging into 4-bit weights would round the adapter away)
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
        elif adapter is not None:  # merged: no extra matmuls; made once and kept in the model cache (merge.py)
            from ..merge import load_merged

            base = Path(r.path) if r.path is not None else None
            model = load_merged(ref, r.location, base, adapter, self.dtype, local_only, self.tokenizer)
        else:
            model = AutoModelForCausalLM.from_pretrained(r.location, local_files_only=local_only, dtype=self.dtype)
        # attention row by row over each row's own positions: a row's output never depends on its batch
        model.set_attn_implementation(invariant.register())
        if self.dtype == torch.bfloat16 and self.device.type == "cpu" and not load_4bit:
            invariant.block_rows(model)  # and bfloat16 matmuls whose rows never depend on how many share a call
        self.model = (model if load_4bit else model.to(self.device)).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        self._eos = {eos} if isinstance(eos, int) else set(eos or [self.tokenizer.eos_token_id])
        self._lock = threading.Lock()  # one forward at a time: torch on 2 cores gains nothing from overlap
        self._heads_lock = threading.Lock()
        self._heads: dict[Any, Any] = {}  # KV caches of prompt prefixes cut at fixed bounds (see _bounds)
        self._system_ids: dict[str, list[int]] = {}  # a system turn's chat-formatted ids, by its text

    def _size_pool(self) -> None:
        """Before a call: torch's pool to the cores free now (unless the user chose a count)."""
        if self._cores is not None and self.device.type == "cpu":
            n = self._cores.free()
            if n != torch.get_num_threads():
                torch.set_num_threads(n)

    # -- cached prefixes ------------------------------------------------------------------------------
    def _bounds(self, messages: list[Message], prompt: Prompt) -> list[int]:
        """Where a prompt may be cut for caching: after its system turn (the same for every reasoner call) and at
        its :data:`~affect_llm.llm.soft_prompt.CACHE_MARK` marks (after the evidence block, which the label and
        the explanation prompts of one input share). These are fixed places in the prompt itself, never "what the
        last prompt shared", so a prompt is always computed in the same pieces, cached or not."""
        bounds = []
        if messages and messages[0].get("role") == "system":
            system = messages[0]["content"]
            head = self._system_ids.get(system)
            if head is None:  # the reasoner has one or two system turns: tokenized once each
                head = self._system_ids[system] = self.prompt(messages[:1], add_generation_prompt=False).ids
            n = len(head)
            if 0 < n < len(prompt) and prompt.ids[:n] == head and all(i >= 0 for i in head):
                bounds.append(n)
        bounds += [m for m in prompt.marks if m < len(prompt) and (not bounds or m > bounds[-1])]
        return bounds

    @staticmethod
    def _key(prompt: Prompt, n: int):
        ids = tuple(prompt.ids[:n])
        slots = sorted({-i - 1 for i in ids if i < 0})
        if not slots:
            return ids
        assert prompt.soft is not None
        soft = prompt.soft[slots].detach().float().cpu().numpy()
        return ids, hashlib.sha256(soft.tobytes()).hexdigest()

    def _prefix(self, prompt: Prompt, bounds: list[int]):
        """(a fresh copy of the KV cache of ``prompt.ids[:bounds[-1]]``, that length), or (None, 0). Each piece
        between two bounds is computed once, on top of the cache of the pieces before it, and kept (least
        recently used first out, within :data:`PREFIX_CACHE_BYTES`)."""
        embed = self.model.get_input_embeddings()
        cache, start = None, 0
        with self._heads_lock:
            for b in bounds:
                key = self._key(prompt, b)
                hit = self._heads.pop(key, None)
                if hit is None:
                    base = copy.deepcopy(cache) if cache is not None else None
                    e = prompt_embeddings(embed, prompt, start=start, end=b)
                    hit = self.model(inputs_embeds=e.unsqueeze(0), past_key_values=base, use_cache=True).past_key_values
                self._heads[key] = hit  # (re)inserted last: the most recently used
                cache, start = hit, b
            while len(self._heads) > 1 and sum(_nbytes(c) for c in self._heads.values()) > PREFIX_CACHE_BYTES:
                self._heads.pop(next(iter(self._heads)))
            return (copy.deepcopy(cache), start) if cache is not None else (None, 0)

    # -- scoring ----------------------------------------------------------------------------------------
    def score(self, messages: list[Message], continuations: list[str], soft=None) -> np.ndarray:
        """Sum of token log-probabilities of each continuation as the assistant's reply."""
        prompt = self.prompt(messages, soft)
        conts = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        if any(len(c) == 0 for c in conts):
            raise ValueError("empty continuation")
        with self._lock, torch.inference_mode():
            self._size_pool()
            cache, head = self._prefix(prompt, self._bounds(messages, prompt))
            embeds = prompt_embeddings(self.model.get_input_embeddings(), prompt, start=head)
            out = self.model(inputs_embeds=embeds.unsqueeze(0), past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            first = torch.log_softmax(out.logits[0, -1].float(), -1)
            scores = np.array([float(first[c[0]]) for c in conts])
            # The continuations' later tokens in one forward: the prompt's cache repeated once per continuation
            # (small: a few hundred positions), each row its continuation's tokens, right-padded (a padded
            # position comes after every position read, so the causal mask keeps it out).
            longer = [i for i, c in enumerate(conts) if len(c) > 1]
            if longer:
                width = max(len(conts[i]) - 1 for i in longer)
                batch = torch.zeros((len(longer), width), dtype=torch.long)
                for r, i in enumerate(longer):
                    batch[r, : len(conts[i]) - 1] = torch.tensor(conts[i][:-1])
                cache.batch_repeat_interleave(len(longer))
                # at one thread, whatever the pool's size: in float32 this pass (several queries per row over the
                # cache) gives other bits at 1 and 2 threads (measured: 6th digit of a label's score), and it is a
                # few tokens. bf16 gives the same bits either way, so its scores are unchanged by this.
                with torch_threads(1 if self.device.type == "cpu" else None):
                    logits = self.model(batch.to(self.device), past_key_values=cache, use_cache=True).logits
                logp = torch.log_softmax(logits.float(), -1)
                for r, i in enumerate(longer):
                    scores[i] += float(sum(logp[r, j, t] for j, t in enumerate(conts[i][1:])))
        return scores

    # -- generation -------------------------------------------------------------------------------------
    def generate(
        self,
        messages: list[Message],
        max_new_tokens: int = 96,
        temperature: float = 0.0,
        seed: int = 0,
        assistant_prefix: str = "",
        soft=None,
    ) -> str:
        """Greedy (``temperature`` 0) or nucleus-sampled continuation, with a repetition penalty of 1.15 over the
        prompt and the answer (transformers' own logits processors). The same computation as one row of
        :meth:`generate_many`, so a prompt gets the same answer alone or in a batch."""
        request = GenerationRequest(messages, assistant_prefix, soft)
        return self.generate_many([request], max_new_tokens, temperature, seed)[0]

    def generate_many(self, requests: list[GenerationRequest], max_new_tokens: int = 96, temperature: float = 0.0,
                      seed: int = 0) -> list[str]:  # fmt: skip
        """:meth:`generate` for many prompts at once. Prompts with the same head (system turn) share its cached KV;
        their rests are left-padded into one batch, then one forward per new token for all of them, a row leaving
        the batch when it ends. Attention runs row by row over each row's own positions
        (:mod:`affect_llm.llm.invariant`), so every answer is the one its prompt gets alone, bit for bit, in any
        dtype. Sampling (``temperature`` > 0) runs each prompt alone with its own generator seeded with ``seed``."""
        prompts = [self.prompt(r.messages, r.soft, r.assistant_prefix) for r in requests]
        bounds = [self._bounds(r.messages, p) for r, p in zip(requests, prompts)]
        answers: list[list[int]] = [[] for _ in requests]
        with self._lock, torch.inference_mode():
            self._size_pool()
            chunks = [[i] for i in range(len(requests))] if temperature > 0 else [list(range(len(requests)))]
            for chunk in chunks:
                outs = self._decode([prompts[i] for i in chunk], [bounds[i] for i in chunk], max_new_tokens,
                                    temperature, seed)  # fmt: skip
                for i, a in zip(chunk, outs):
                    answers[i] = a
        return [(r.assistant_prefix + self.tokenizer.decode(a, skip_special_tokens=True)).strip()
                for r, a in zip(requests, answers)]  # fmt: skip

    def _decode(self, prompts: list[Prompt], bounds: list[list[int]], max_new_tokens: int, temperature: float,
                seed: int) -> list[list[int]]:  # fmt: skip
        """The new tokens of each prompt. Each row starts from its own cached prefix (:meth:`_prefix`), the
        prefixes right-aligned into one left-padded batch cache; the rests run as one left-padded batch."""
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopPLogitsWarper,  # fmt: skip
        )

        processors = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.15)])
        if temperature > 0:
            processors += [TemperatureLogitsWarper(temperature), TopPLogitsWarper(0.9)]
        gen = torch.Generator().manual_seed(seed)
        n_real = len(prompts)
        # ghost rows (copies of the first prompt, their tokens thrown away) keep a forward at the row count from
        # which every row is computed as in any larger batch
        floor = invariant.min_rows(self.dtype)
        prompts = prompts + [prompts[0]] * max(0, floor - n_real)
        bounds = bounds + [bounds[0]] * max(0, floor - n_real)
        n = len(prompts)
        # each distinct prefix fetched once (the ghost rows and prompts sharing an evidence block share it)
        keys = [self._key(p, b[-1]) if b else None for p, b in zip(prompts, bounds)]
        fetched: dict = {}
        for k, p, b in zip(keys, prompts, bounds):
            if k not in fetched:
                fetched[k] = self._prefix(p, b)
        prefixes = [fetched[k] for k in keys]
        head = max(start for _, start in prefixes)  # the batch cache's length: row r's prefix ends there
        cache = _stack_caches(prefixes, head)
        width = max(len(p) - start for p, (_, start) in zip(prompts, prefixes))
        embed = self.model.get_input_embeddings()
        rows = [prompt_embeddings(embed, p, start=start) for p, (_, start) in zip(prompts, prefixes)]
        embeds = rows[0].new_zeros((n, width, rows[0].shape[-1]))
        mask = torch.zeros((n, head + width), dtype=torch.long)
        seen = torch.zeros((n, head + width), dtype=torch.long)
        for i, (p, e, (_, start)) in enumerate(zip(prompts, rows, prefixes)):
            rest = len(p) - start  # row i: [pad | its prefix | pad | its rest]
            mask[i, head - start : head] = 1
            embeds[i, width - rest :] = e
            mask[i, head + width - rest :] = 1
            real = p.real_ids()
            # a row's seen tokens, left-filled with its own first token: penalising a token twice is once
            seen[i] = torch.tensor([real[0]] * (head + width - len(real)) + real)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, head:]
        out = self.model(inputs_embeds=embeds, attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), past_key_values=cache, use_cache=True)  # fmt: skip
        cache, last = out.past_key_values, out.logits[:, -1].float().cpu()
        live = list(range(n))  # prompt index of each batch row
        done = [False] * n
        answers: list[list[int]] = [[] for _ in range(n)]
        for step in range(max_new_tokens):
            scores = processors(seen, last)
            if temperature > 0:
                tokens = torch.multinomial(torch.softmax(scores, -1), 1, generator=gen).squeeze(1)
            else:
                tokens = scores.argmax(-1)
            for r, i in enumerate(live):
                t = int(tokens[r])
                if done[i] or t in self._eos:
                    done[i] = True
                else:
                    answers[i].append(t)
            if all(done[i] for i in live if i < n_real) or step == max_new_tokens - 1:
                break
            keep = [r for r, i in enumerate(live) if not done[i]]
            keep += [r for r, i in enumerate(live) if done[i]][: max(0, floor - len(keep))]
            keep.sort()
            if len(keep) < len(live):  # rows that ended leave the batch (and the cache), down to the floor
                idx = torch.tensor(keep)
                cache.batch_select_indices(idx.to(self.device))
                tokens, mask, seen = tokens[idx], mask[idx], seen[idx]
                live = [live[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], 1)
            seen = torch.cat([seen, tokens.unsqueeze(1)], 1)
            pos = mask.sum(-1, keepdim=True) - 1
            last = self.model(tokens.unsqueeze(1).to(self.device), attention_mask=mask.to(self.device),
                              position_ids=pos.to(self.device), past_key_values=cache,
                              use_cache=True).logits[:, -1].float().cpu()  # fmt: skip
        return answers[:n_real]


#: the most memory the cached prompt prefixes of one model may hold (~14 MB per 600-token prefix in bf16)
PREFIX_CACHE_BYTES = 256 * 2**20


def _layers(cache):
    return [(layer.keys, layer.values) for layer in cache.layers]


def _nbytes(cache) -> int:
    return sum(k.nbytes + v.nbytes for k, v in _layers(cache))


def _stack_caches(prefixes: list, length: int):
    """One batch cache from single-row caches ``(cache or None, its length)`` -- fresh copies of this call's, a
    row that shares another's prefix holding the same object: row r's keys and values right-aligned in
    ``length`` positions (zeros before them, which the attention mask keeps out). None when no row has a
    prefix."""
    if length == 0:
        return None
    out = next(c for c, _ in prefixes if c is not None)
    if all(c is out for c, _ in prefixes):  # the common case: one prefix for every row (one system turn)
        out.batch_repeat_interleave(len(prefixes))
        return out
    rows = [(_layers(c) if c is not None else None, start) for c, start in prefixes]  # read before out changes
    for li, layer in enumerate(out.layers):
        k0, v0 = layer.keys, layer.values
        keys = k0.new_zeros((len(rows), k0.shape[1], length, k0.shape[3]))
        values = v0.new_zeros((len(rows), v0.shape[1], length, v0.shape[3]))
        for r, (layers, start) in enumerate(rows):
            if layers is not None and start:
                k, v = layers[li]
                keys[r, :, length - start :] = k[0]
                values[r, :, length - start :] = v[0]
        layer.keys, layer.values = keys, values
    return out


def quantized_4bit(device: "torch.device", dtype) -> dict:
    """``from_pretrained`` arguments for 4-bit NF4 weights through bitsandbytes (computing in ``dtype``) on
    ``device``, which must be a CUDA GPU: bitsandbytes' 4-bit kernels need one."""
    from ..errors import BackendError, require

    if device.type != "cuda":
        raise BackendError("--load-4bit needs a CUDA GPU (bitsandbytes' 4-bit kernels); on this machine run the "
                           "model in bfloat16 or float32 (--dtype)")  # fmt: skip
    require("bitsandbytes", "gpu", "--load-4bit")
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=dtype)  # fmt: skip
    return {"quantization_config": config, "device_map": {"": str(device)}, "dtype": dtype}


class TransformersOptions(BaseModel):
    """The transformers backend's own options (``ReasonerOptions.backend_options``; ``--load-4bit``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    load_4bit: bool = Field(False, description="the LLM's weights in 4-bit NF4 through bitsandbytes (CUDA only); "
                            "the adapter is applied unmerged")  # fmt: skip


@lru_cache(maxsize=2)
def load(ref: str = "smollm2-135m", threads: int = 0, dtype: str = "auto", adapter: str | None = None,
         device: str = "auto", load_4bit: bool = False) -> TransformersLM:  # fmt: skip
    """A process-wide cached model."""
    return TransformersLM(ref, threads, dtype, adapter, device, load_4bit)


def _from_options(opts, adapter: str | None) -> TransformersLM:
    o = TransformersOptions.model_validate(opts.backend_options)
    return load(opts.model, opts.threads, opts.dtype, adapter, opts.device, o.load_4bit)


def _chat_from_options(opts) -> TransformersLM:
    o = TransformersOptions.model_validate(opts.backend_options)
    return load(opts.model, opts.threads, opts.dtype, None, opts.device, o.load_4bit)


def _backend():
    from .backends import Backend

    return Backend(load=_from_options, chat=_chat_from_options, options=TransformersOptions)


BACKEND = _backend()
