"""In-process transformers backend: chat formatting, continuation scoring, generation.

The two operations the reasoner needs -- the log-likelihood of given continuations, and free generation --
are the backend interface; a vLLM backend (OpenAI-compatible server) implements the same two.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

import numpy as np

from .. import models

Message = dict[str, str]


class TransformersLM:
    def __init__(self, ref: str = "smollm2-135m", threads: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        logging.getLogger("transformers").setLevel(logging.ERROR)
        if threads:
            torch.set_num_threads(threads)
        r = models.resolve(ref, kind="llm")
        local_only = r.path is not None or not models.downloads_allowed()
        self.name = ref
        self.tokenizer = AutoTokenizer.from_pretrained(r.location, local_files_only=local_only)
        self.model = AutoModelForCausalLM.from_pretrained(
            r.location, local_files_only=local_only, dtype=torch.float32
        ).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._lock = threading.Lock()  # one forward at a time: torch on 2 cores gains nothing from overlap

    # -- formatting -------------------------------------------------------------------------------------
    def chat_ids(self, messages: list[Message], add_generation_prompt: bool = True) -> list[int]:
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    # -- scoring ----------------------------------------------------------------------------------------
    def score(self, messages: list[Message], continuations: list[str]) -> np.ndarray:
        """Sum of token log-probabilities of each continuation as the assistant's reply."""
        import torch

        prefix = self.chat_ids(messages)
        conts = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        if any(len(c) == 0 for c in conts):
            raise ValueError("empty continuation")
        n, width = len(conts), max(len(c) for c in conts)
        with self._lock, torch.inference_mode():
            out = self.model(torch.tensor([prefix]), use_cache=True)
            first = torch.log_softmax(out.logits[0, -1].float(), -1)
            scores = np.array([float(first[c[0]]) for c in conts])
            if width > 1:
                cache = out.past_key_values
                cache.batch_repeat_interleave(n)
                ids = torch.full((n, width), self.tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros((n, len(prefix) + width), dtype=torch.long)
                mask[:, : len(prefix)] = 1
                for i, c in enumerate(conts):
                    ids[i, : len(c)] = torch.tensor(c)
                    mask[i, len(prefix) : len(prefix) + len(c)] = 1
                pos = torch.arange(len(prefix), len(prefix) + width).unsqueeze(0).expand(n, -1)
                logits = self.model(ids, attention_mask=mask, past_key_values=cache, position_ids=pos).logits
                logp = torch.log_softmax(logits.float(), -1)
                for i, c in enumerate(conts):
                    scores[i] += float(sum(logp[i, j - 1, c[j]] for j in range(1, len(c))))
        return scores

    # -- generation -------------------------------------------------------------------------------------
    def generate(
        self,
        messages: list[Message],
        max_new_tokens: int = 96,
        temperature: float = 0.0,
        seed: int = 0,
        assistant_prefix: str = "",
    ) -> str:
        import torch

        ids = self.chat_ids(messages)
        if assistant_prefix:
            ids += self.tokenizer(assistant_prefix, add_special_tokens=False)["input_ids"]
        kwargs = dict(max_new_tokens=max_new_tokens, repetition_penalty=1.15, pad_token_id=self.tokenizer.pad_token_id)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=0.9)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self._lock, torch.inference_mode():
            torch.manual_seed(seed)
            x = torch.tensor([ids])
            out = self.model.generate(x, attention_mask=torch.ones_like(x), **kwargs)
        text = self.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
        return (assistant_prefix + text).strip()


@lru_cache(maxsize=2)
def load(ref: str = "smollm2-135m", threads: int = 0) -> TransformersLM:
    """A process-wide cached model."""
    return TransformersLM(ref, threads)
