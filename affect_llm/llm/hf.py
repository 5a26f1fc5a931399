"""In-process transformers backend: chat formatting, continuation scoring, generation.

The two operations the reasoner needs -- the log-likelihood of given continuations, and free generation --
are the backend interface; a vLLM backend (OpenAI-compatible server) implements the same two.

Label scoring and the explanation both start with the same system prompt and evidence block, so the backend
keeps the KV cache of the last prompt and re-uses its longest common prefix (like vLLM's prefix caching): the
evidence is encoded once per clip, not once per call.
"""

from __future__ import annotations

import copy
import logging
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from .. import models
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


def resolve_dtype(dtype: str):
    import torch

    if dtype == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r} (auto, float32, bfloat16, float16)") from None


def _crop(cache, length: int) -> None:
    """Cut a KV cache back to its first ``length`` tokens (a negative argument means the same in every
    transformers version: remove that many tokens)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def quiet_transformers() -> None:
    """No progress bars or warnings from transformers on our users' terminals."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    # peft asks transformers a deprecated question on every get_peft_model; not our users' business
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    # transformers 5.x renames forward(past_key_values=) to cache=; the old name works on every version we support
    warnings.filterwarnings("ignore", message=".*`past_key_values` is deprecated.*", category=FutureWarning)


class TransformersLM(ChatPrompting):
    """A causal LM in this process. ``adapter``: a folder with a peft LoRA adapter for it, merged into the weights
    on load (no extra matmuls at inference)."""

    def __init__(self, ref: str = "smollm2-135m", threads: int = 0, dtype: str = "auto", adapter: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_transformers()
        if threads:
            torch.set_num_threads(threads)
        r = models.resolve(ref, kind="llm")
        local_only = r.path is not None or not models.downloads_allowed()
        self.name = ref
        self.location = r.location
        self.adapter = adapter
        self.dtype = resolve_dtype(dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(r.location, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(r.location, local_files_only=local_only, dtype=self.dtype)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter, is_trainable=False).merge_and_unload()
        self.model = model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        self._eos = {eos} if isinstance(eos, int) else set(eos or [self.tokenizer.eos_token_id])
        self._lock = threading.Lock()  # one forward at a time: torch on 2 cores gains nothing from overlap
        self._prefix = Prompt([])
        self._prefix_cache = None

    # -- prefix cache -----------------------------------------------------------------------------------
    def _reusable(self, prompt: Prompt):
        """A copy of the cached KV cache cut to the longest prefix it shares with ``prompt`` (leaving at least one
        position to run, for the logits), and that prefix's length."""
        n = 0
        limit = min(len(prompt) - 1, len(self._prefix))
        while n < limit and prompt.same_position(self._prefix, n):
            n += 1
        if n == 0 or self._prefix_cache is None:
            return None, 0
        cache = copy.deepcopy(self._prefix_cache)
        _crop(cache, n)
        return cache, n

    def _encode(self, prompt: Prompt):
        """Run the prompt (re-using the cached prefix); return the last position's logits and the cache."""
        cache, n = self._reusable(prompt)
        embeds = prompt_embeddings(self.model.get_input_embeddings(), prompt, start=n)
        out = self.model(inputs_embeds=embeds.unsqueeze(0), past_key_values=cache, use_cache=True)
        self._prefix, self._prefix_cache = prompt, copy.deepcopy(out.past_key_values)
        return out.logits[0, -1], out.past_key_values

    # -- scoring ----------------------------------------------------------------------------------------
    def score(self, messages: list[Message], continuations: list[str], soft=None) -> np.ndarray:
        """Sum of token log-probabilities of each continuation as the assistant's reply."""
        import torch

        prompt = self.prompt(messages, soft)
        conts = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        if any(len(c) == 0 for c in conts):
            raise ValueError("empty continuation")
        with self._lock, torch.inference_mode():
            last, cache = self._encode(prompt)
            first = torch.log_softmax(last.float(), -1)
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
                rows = copy.deepcopy(cache)
                rows.batch_repeat_interleave(len(longer))
                logp = torch.log_softmax(self.model(batch, past_key_values=rows, use_cache=True).logits.float(), -1)
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
        prompt and the answer (transformers' own logits processors). The prompt runs through the prefix cache
        and the soft-prompt embedding path like :meth:`score`."""
        import torch
        from transformers import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                                  TopPLogitsWarper)  # fmt: skip

        prompt = self.prompt(messages, soft, assistant_prefix)
        processors = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.15)])
        if temperature > 0:
            processors += [TemperatureLogitsWarper(temperature), TopPLogitsWarper(0.9)]
        out: list[int] = []
        with self._lock, torch.inference_mode():
            gen = torch.Generator().manual_seed(seed)
            last, cache = self._encode(prompt)
            seen = torch.tensor([prompt.real_ids()])
            for _ in range(max_new_tokens):
                scores = processors(seen, last.float().unsqueeze(0))
                if temperature > 0:
                    tok = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=gen))
                else:
                    tok = int(scores.argmax(-1))
                if tok in self._eos:
                    break
                out.append(tok)
                seen = torch.cat([seen, torch.tensor([[tok]])], 1)
                last = self.model(torch.tensor([[tok]]), past_key_values=cache, use_cache=True).logits[0, -1]
        text = self.tokenizer.decode(out, skip_special_tokens=True)
        return (assistant_prefix + text).strip()

    def generate_many(self, requests: list[GenerationRequest], max_new_tokens: int = 96, temperature: float = 0.0,
                      seed: int = 0) -> list[str]:  # fmt: skip
        """:meth:`generate` for many prompts at once, greedy: the prefix the prompts share runs once, their rests
        left-padded into one batch after it, then one forward per new token for all of them, a row leaving the
        batch when it ends. The same penalty over each row's
        prompt and answer. Sampling (``temperature`` > 0) runs the prompts one at a time, each with ``seed``, so
        that an answer does not depend on what it was batched with."""
        import torch
        from transformers import RepetitionPenaltyLogitsProcessor

        if temperature > 0 or len(requests) <= 1:
            return [self.generate(r.messages, max_new_tokens, temperature, seed, r.assistant_prefix, r.soft)
                    for r in requests]  # fmt: skip
        prompts = [self.prompt(r.messages, r.soft, r.assistant_prefix) for r in requests]
        n = len(prompts)
        # the prefix all prompts share (the system prompt, ...) runs once; each row then holds its own rest
        shared = 0
        while shared < min(len(p) for p in prompts) - 1 and all(p.same_position(prompts[0], shared) for p in prompts):
            shared += 1
        width = max(len(p) for p in prompts) - shared
        penalty = RepetitionPenaltyLogitsProcessor(1.15)
        embed = self.model.get_input_embeddings()
        with self._lock, torch.inference_mode():
            cache = None
            if shared:
                head = prompt_embeddings(embed, prompts[0])[:shared]
                cache = self.model(inputs_embeds=head.unsqueeze(0), use_cache=True).past_key_values
                cache.batch_repeat_interleave(n)
            rows = [prompt_embeddings(embed, p, start=shared) for p in prompts]
            embeds = rows[0].new_zeros((n, width, rows[0].shape[-1]))
            mask = torch.zeros((n, shared + width), dtype=torch.long)
            mask[:, :shared] = 1
            seen = torch.zeros((n, shared + width), dtype=torch.long)
            for i, (p, e) in enumerate(zip(prompts, rows)):
                rest = len(p) - shared  # left-padded between the shared prefix and the row's own rest
                embeds[i, width - rest :] = e
                mask[i, shared + width - rest :] = 1
                real = p.real_ids()
                # a row's seen tokens, left-filled with its own first token: penalising a token twice is once
                seen[i] = torch.tensor([real[0]] * (shared + width - len(real)) + real)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
            out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache,
                             use_cache=True)  # fmt: skip
            cache, last = out.past_key_values, out.logits[:, -1]
            live = list(range(n))  # request index of each batch row
            answers: list[list[int]] = [[] for _ in range(n)]
            for step in range(max_new_tokens):
                tokens = penalty(seen, last.float()).argmax(-1)
                keep = []
                for r, i in enumerate(live):
                    t = int(tokens[r])
                    if t in self._eos:
                        continue
                    answers[i].append(t)
                    keep.append(r)
                if not keep or step == max_new_tokens - 1:
                    break
                if len(keep) < len(live):  # rows that ended leave the batch (and the cache)
                    idx = torch.tensor(keep)
                    cache.batch_select_indices(idx)
                    tokens, mask, seen = tokens[idx], mask[idx], seen[idx]
                    live = [live[r] for r in keep]
                mask = torch.cat([mask, mask.new_ones((len(live), 1))], 1)
                seen = torch.cat([seen, tokens.unsqueeze(1)], 1)
                pos = (mask.sum(-1, keepdim=True) - 1)
                last = self.model(tokens.unsqueeze(1), attention_mask=mask, position_ids=pos, past_key_values=cache,
                                  use_cache=True).logits[:, -1]  # fmt: skip
        return [(r.assistant_prefix + self.tokenizer.decode(a, skip_special_tokens=True)).strip()
                for r, a in zip(requests, answers)]  # fmt: skip


@lru_cache(maxsize=2)
def load(ref: str = "smollm2-135m", threads: int = 0, dtype: str = "auto", adapter: str | None = None) -> TransformersLM:
    """A process-wide cached model."""
    return TransformersLM(ref, threads, dtype, adapter)
