"""The reasoner on the embedded SmolLM2: exact likelihood scoring, label distributions, cited explanations."""

import numpy as np
import pytest

from affect_llm.config import ReasonerOptions
from affect_llm.evidence import Evidence
from affect_llm.llm.hf import TransformersLM, load
from affect_llm.llm.reasoner import Reasoner
from affect_llm.llm.soft_prompt import Prompt
from affect_llm.types import Cue, Modality

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lm():
    return load("smollm2-135m")


def _naive_score(lm, messages, cont):
    """log P(cont | prompt) by one plain forward over prompt + continuation, no cache, no batching."""
    import torch

    prefix = lm.chat_ids(messages)
    c = lm.tokenizer(cont, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = lm.model(torch.tensor([prefix + c])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    return float(sum(logp[len(prefix) - 1 + j, t] for j, t in enumerate(c)))


@pytest.fixture(scope="module")
def lm32():
    return TransformersLM("smollm2-135m", dtype="float32")


def test_cached_scoring_matches_plain_forward(lm32):
    msgs = [{"role": "user", "content": "Which emotion? Answer with one word."}]
    conts = ["joy", "Sadness", "disgust", "surprise and more words"]
    fast = lm32.score(msgs, conts)
    slow = np.array([_naive_score(lm32, msgs, c) for c in conts])
    np.testing.assert_allclose(fast, slow, atol=2e-3)
    # a second prompt sharing the first one's prefix re-uses its KV cache and still scores exactly
    msgs2 = [{"role": "user", "content": "Which emotion? Answer with one word, please."}]
    np.testing.assert_allclose(lm32.score(msgs2, conts), [_naive_score(lm32, msgs2, c) for c in conts], atol=2e-3)


def test_generation_with_prefix_cache_equals_without(lm32):
    msgs = [{"role": "user", "content": "Name three colours."}]
    lm32._prefix, lm32._prefix_cache = Prompt([]), None
    cold = lm32.generate(msgs, max_new_tokens=12)
    lm32.score(msgs, ["Red"])  # leaves this prompt's cache behind
    assert lm32._prefix.ids
    assert lm32.generate(msgs, max_new_tokens=12) == cold


def test_batched_generation_equals_one_at_a_time(lm32):
    """generate_many (left-padded batch, rows leaving as they end) gives each prompt the answer generate gives
    it alone, in float32: prompts of different lengths, a soft prompt, an assistant prefix, early and late ends."""
    import torch

    from affect_llm.llm.hf import GenerationRequest
    from affect_llm.llm.soft_prompt import SLOT

    soft = torch.randn(4, lm32.model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 0.05
    reqs = [
        GenerationRequest([{"role": "user", "content": "Name three colours."}]),
        GenerationRequest([{"role": "user", "content": "Say yes or no only."}], assistant_prefix="Answer:"),
        GenerationRequest([{"role": "user", "content": f"Context {SLOT}. Describe a calm morning at the sea, "
                                                       "with its sounds and colours, in a few sentences."}], soft=soft),
        GenerationRequest([{"role": "user", "content": "Why is the sky blue?"}], assistant_prefix="Because"),
    ]  # fmt: skip
    one = [lm32.generate(r.messages, 24, assistant_prefix=r.assistant_prefix, soft=r.soft) for r in reqs]
    assert lm32.generate_many(reqs, 24) == one
    assert len({len(a) for a in one}) > 1  # the rows did end at different lengths


def _evidence():
    return Evidence.build(
        [
            Cue(id="S1", modality=Modality.speech, start=0.0, end=2.0, text='"I hate you! Get out of my house!"'),
            Cue(id="P1", modality=Modality.prosody, start=0.0, end=2.0,
                text="much louder than the rest of the clip (+8.0 dB), much higher pitch than the speaker's usual"),
        ]
    )  # fmt: skip


def test_label_distribution_is_a_distribution_over_the_label_set(lm):
    r = Reasoner(ReasonerOptions(), lm=lm)
    p = r.label_distribution(_evidence().render())
    assert list(p) == ReasonerOptions().labels
    assert sum(p.values()) == pytest.approx(1.0, abs=1e-6)
    assert all(v > 0 for v in p.values())
    custom = Reasoner(ReasonerOptions(labels=["positive", "negative", "neutral"]), lm=lm)
    q = custom.label_distribution(_evidence().render())
    assert set(q) == {"positive", "negative", "neutral"} and sum(q.values()) == pytest.approx(1.0)
    # calibration is a real change of the distribution, not a no-op
    raw = Reasoner(ReasonerOptions(calibrate=False), lm=lm).label_distribution(_evidence().render())
    assert max(abs(raw[k] - p[k]) for k in p) > 1e-3


def test_explanation_cites_only_checked_ids(lm):
    r = Reasoner(ReasonerOptions(max_new_tokens=40), lm=lm)
    ev = _evidence()
    text, cited, unknown = r.explain(ev, "anger")
    assert text.startswith("The speaker feels anger.")
    assert cited and set(cited) <= set(ev.ids)
    assert not set(unknown) & set(ev.ids)
    # deterministic (greedy) decoding
    assert r.explain(ev, "anger")[0] == text


def test_chat_answers_with_history(lm):
    r = Reasoner(ReasonerOptions(max_new_tokens=24), lm=lm)
    ev = _evidence()
    a1 = r.chat(ev.render(), "anger", 0.6, "The speaker feels anger. In [S1], they shout.", [], "Why?")
    assert isinstance(a1, str) and a1.strip()
    a2 = r.chat(ev.render(), "anger", 0.6, "The speaker feels anger.", [("Why?", a1)], "Is the voice loud?")
    assert a2.strip()
