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
import warnings
import threading
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from .. import models
from .soft_prompt import Prompt, prompt_embeddings, split_slot

Message = dict[str, str]


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


class TransformersLM:
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

    # -- formatting -------------------------------------------------------------------------------------
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
            # Continuations run one at a time on the shared cache, cut back after each: memory stays at one
            # prompt's cache however long the evidence (a batch would copy it once per continuation).
            for i, c in enumerate(conts):
                if len(c) > 1:
                    logits = self.model(torch.tensor([c[:-1]]), past_key_values=cache, use_cache=True).logits[0]
                    logp = torch.log_softmax(logits.float(), -1)
                    scores[i] += float(sum(logp[j, t] for j, t in enumerate(c[1:])))
                    _crop(cache, len(prompt))
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


@lru_cache(maxsize=2)
def load(ref: str = "smollm2-135m", threads: int = 0, dtype: str = "auto", adapter: str | None = None) -> TransformersLM:
    """A process-wide cached model."""
    return TransformersLM(ref, threads, dtype, adapter)
