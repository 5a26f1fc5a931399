"""An LLM as the emotion-word extractor of the wheel metrics (the option beside the deterministic
:class:`~affect_llm.metrics.emotion_words.LexiconExtractor`).

The LLM (default: the embedded SmolLM2-135M-Instruct, greedy, no adapter) is asked to list the emotions a text
expresses (system message ``prompts/extract_emotions.j2`` and the few-shot turns of :data:`FEW_SHOT`, without
which the 135M model copies the instruction's example words or answers "none"); its answer is then read as a word list by the deterministic
extractor, so only words of the wheel set's vocabulary come back — an LLM answer can never add a word the
metrics cannot map, and the same text always gives the same words. It catches emotions a text implies without
naming them ("she slammed the door" → angry) at the price of one generation per text (~1 s on 2 CPU cores) and
of the small model's own mistakes; the deterministic extractor stays the default.
"""

from __future__ import annotations

from .. import prompting
from ..metrics.emotion_words import emotion_words
from ..metrics.wheel import WheelSet

#: (text, answer) turns shown before the text; they cover named, implied and absent emotions
FEW_SHOT = [
    ("I cannot stop smiling, we won the final!", "happy, excited"),
    ("The meeting is at 3 pm in room 4.", "none"),
    ("He punched the wall and yelled at everyone.", "angry"),
    ("She kept checking the door, her hands shaking.", "afraid, nervous"),
]


class LLMExtractor:
    """``extractor(text) -> list[str]``: the emotion words an LLM lists for ``text``, kept to the vocabulary."""

    def __init__(self, wheels: WheelSet, model: str = "smollm2-135m", max_new_tokens: int = 24, lm=None):
        self.wheels = wheels
        self.max_new_tokens = max_new_tokens
        if lm is None:
            from ..llm.hf import load

            lm = load(model, adapter=None)
        self.lm = lm
        self._cache: dict[str, list[str]] = {}

    def __call__(self, text: str) -> list[str]:
        text = " ".join((text or "").split())
        if not text:
            return []
        if text not in self._cache:
            messages = [{"role": "system", "content": prompting.render("extract_emotions.j2")}]
            for shot, answer in FEW_SHOT:
                messages += [{"role": "user", "content": f"Text: {shot}"}, {"role": "assistant", "content": answer}]
            messages.append({"role": "user", "content": f"Text: {text}"})
            answer = self.lm.generate(messages, self.max_new_tokens, 0.0, 0)
            listed = answer.strip().splitlines()[0] if answer.strip() else ""
            self._cache[text] = [] if listed.lower().startswith("none") else emotion_words(listed, self.wheels)
        return list(self._cache[text])
