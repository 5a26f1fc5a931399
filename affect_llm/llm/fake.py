"""A deterministic stand-in LLM (``backend="fake"``): the :class:`~affect_llm.llm.hf.LLMBackend` interface with
no weights, so the pipeline, server, batch and LangChain logic can be run and tested in milliseconds without a
pulled model, and so can a user's integration.

It is not a model of emotion. Label scores count the words of a small cue lexicon (:data:`LEXICON`) in the
prompt's evidence; generation writes one sentence that cites the first cue and quotes its first words exactly.
The same prompt always gives the same output. Its tokenizer is byte-level and built in code (256 byte tokens
plus the chat-template specials), with a ChatML template like SmolLM2's.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from .hf import ChatPrompting, GenerationRequest, Message

#: label word → words whose presence in the evidence raises its score (one point per occurrence)
LEXICON: dict[str, tuple[str, ...]] = {
    "joy": ("happy", "glad", "great", "won", "love", "yay", "wonderful", "smile", "smiles", "laugh"),
    "surprise": ("wow", "believe", "really", "what", "whoa", "suddenly"),
    "anger": ("angry", "hate", "furious", "out", "never", "stupid", "mad"),
    "sadness": ("sad", "miss", "cry", "lost", "alone", "sorry"),
    "fear": ("scared", "afraid", "spider", "help", "terrified"),
    "disgust": ("gross", "disgusting", "ew", "yuck"),
    "neutral": ("okay", "fine", "tomorrow", "see"),
}
_CUE = re.compile(r"^\[([A-Z]+\d+)\] \([a-z]+\)[^:]*: (.+)$", re.M)
_LABEL = re.compile(r"(?:speaker feels|Analysis: the speaker feels) ([a-z]+)", re.I)
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@lru_cache(maxsize=1)
def tokenizer():
    """A byte-level BPE tokenizer with no merges (every byte one token: lossless on any text), the ChatML
    specials and a ChatML chat template, built without any file."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", additional_special_tokens=SPECIALS)  # fmt: skip
    fast.chat_template = CHAT_TEMPLATE
    return fast


class FakeLM(ChatPrompting):
    """See the module docstring. ``labels_seen`` counts the scoring calls (what a test of caching can read)."""

    def __init__(self, ref: str = "fake", adapter: str | None = None):
        self.name = ref
        self.location = f"fake:{ref}"
        self.adapter = None  # no weights to adapt: an adapter given is ignored
        self.dtype = "none"
        self.tokenizer = tokenizer()
        self.calls = {"score": 0, "generate": 0}

    @staticmethod
    def _user(messages: list[Message]) -> str:
        return "\n".join(m["content"] for m in messages if m["role"] == "user")

    def score(self, messages: list[Message], continuations: list[str], soft=None) -> np.ndarray:
        """One point per lexicon word of a continuation's label found in the evidence (as a log-likelihood
        scale: log of 1 + the count, minus a constant)."""
        self.calls["score"] += 1
        words = re.findall(r"[a-z']+", " ".join(t for _, t in _CUE.findall(self._user(messages))).lower())
        out = [np.log1p(sum(words.count(w) for w in LEXICON.get(c.strip().lower(), ()))) - 3.0 for c in continuations]
        return np.asarray(out, dtype=float)

    def generate(self, messages: list[Message], max_new_tokens: int = 96, temperature: float = 0.0, seed: int = 0,
                 assistant_prefix: str = "", soft=None) -> str:  # fmt: skip
        """One sentence: the first cue cited, its first words quoted exactly (the continuation of
        ``assistant_prefix`` when given, an answer otherwise)."""
        self.calls["generate"] += 1
        user = self._user(messages)
        cues = _CUE.findall(user)
        label = (_LABEL.findall(assistant_prefix + "\n" + user) or ["neutral"])[-1].lower()
        if not cues:
            return " The evidence holds no cue to go on."
        cue_id, text = cues[0]
        span = " ".join(re.sub(r'["“”]', "", text).split()[:4]).rstrip(",.;:")
        body = f'In [{cue_id}], "{span}" is what points to {label}.'
        words = body.split()
        return " " + " ".join(words[: max(1, max_new_tokens)])

    def generate_many(self, requests: list[GenerationRequest], max_new_tokens: int = 96, temperature: float = 0.0,
                      seed: int = 0) -> list[str]:  # fmt: skip
        return [self.generate(r.messages, max_new_tokens, temperature, seed, r.assistant_prefix, r.soft)
                for r in requests]  # fmt: skip


@lru_cache(maxsize=4)
def load(ref: str = "fake") -> FakeLM:
    return FakeLM(ref)


def _backend():
    from .backends import Backend

    return Backend(load=lambda opts, adapter: load(opts.model), chat=lambda opts: load(opts.model))


BACKEND = _backend()
