"""The reasoner on the embedded SmolLM2: exact likelihood scoring, label distributions, cited explanations."""

import numpy as np
import pytest

from affect_llm.config import ReasonerOptions
from affect_llm.evidence import Evidence, cited_ids
from affect_llm.llm.hf import TransformersLM, load
from affect_llm.llm.reasoner import Reasoner
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


@pytest.fixture(scope="module")
def lm16():
    return TransformersLM("smollm2-135m", dtype="bfloat16")


SYSTEM = {"role": "system", "content": "You judge emotions from evidence and explain them, citing ids."}


def _asks(*texts):
    return [[SYSTEM, {"role": "user", "content": f'Evidence: [T1] (text): "{t}". Why does the speaker feel so?'}]
            for t in texts]  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_same_prompt_same_output_whatever_ran_before(dtype, lm32, lm16):
    """A, B, A: the second A is bit-identical to the first (scores and generation), and to a cold model's A,
    in both dtypes: the cached head is a fixed boundary of the prompt, not a prefix shared with the last call."""
    lm = lm32 if dtype == "float32" else lm16
    a, b = _asks("I can't believe you forgot my birthday again.", "Oh wow, that is wonderful news!")
    labels = ["joy", "anger", "sadness", "surprise"]
    lm._heads.clear()
    cold_gen, cold_score = lm.generate(a, 24, assistant_prefix="The speaker feels"), lm.score(a, labels)
    assert lm._heads  # the system turn's cache was kept
    lm.generate(b, 24, assistant_prefix="The speaker feels")
    lm.score(b, labels)
    assert lm.generate(a, 24, assistant_prefix="The speaker feels") == cold_gen
    assert np.array_equal(lm.score(a, labels), cold_score)
    # a prompt that shares more than the head with the last one (the old prefix cache's case) is unaffected too
    longer = [a[0], {"role": "user", "content": a[1]["content"] + " Answer briefly."}]
    first = lm.score(longer, labels)
    lm._heads.clear()
    lm.score(b, labels)
    assert np.array_equal(lm.score(longer, labels), first)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_batched_generation_with_a_shared_head_is_bit_identical(dtype, lm32, lm16):
    """Prompts sharing a system turn, batched (left-padded, ending at different steps), give exactly the answers
    they get alone, in bfloat16 too (row-wise attention and at least min_rows rows per forward)."""
    from affect_llm.llm.hf import GenerationRequest

    lm = lm32 if dtype == "float32" else lm16
    msgs = _asks("I can't believe you forgot my birthday again.", "Okay.", "You never listen to me. Not once.",
                 "Get out of my house right now!", "I miss her so much, every single day.")  # fmt: skip
    reqs = [GenerationRequest(m, "The speaker feels") for m in msgs]
    alone = [lm.generate(r.messages, 32, assistant_prefix=r.assistant_prefix) for r in reqs]
    assert lm.generate_many(reqs, 32) == alone
    assert lm.generate_many(reqs[::-1], 32) == alone[::-1]
    assert lm.generate_many(reqs[1:3], 32) == alone[1:3]


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


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_explanation_cites_only_checked_ids(dtype, lm32, lm16):
    lm = lm32 if dtype == "float32" else lm16
    r = Reasoner(ReasonerOptions(max_new_tokens=40), lm=lm)
    ev = _evidence()
    text, cited, unknown, _ = r.explain(ev, "anger")
    assert text.startswith("The speaker feels anger.")
    assert cited and set(cited) <= set(ev.ids)
    assert not set(unknown) & set(ev.ids)
    # deterministic (greedy) decoding, also after other work
    r.label_distribution(ev.render())
    r.explain(ev, "sadness")
    assert r.explain(ev, "anger")[0] == text


def test_chat_answers_with_history(lm):
    """Follow-ups with history: answers in sentences that cite the evidence, through the base model (the
    adapter would answer with a label word), whichever turn it is."""
    from affect_llm.types import Analysis

    r = Reasoner(ReasonerOptions(max_new_tokens=24), lm=lm)
    ev = _evidence()
    a = Analysis(source="t", label="anger", probabilities={"anger": 0.6, "neutral": 0.4}, cues=ev.cues,
                 evidence=ev.render(), explanation="The speaker feels anger. In [S1] they shout.", cited_cues=["S1"])  # fmt: skip
    a1 = r.chat(a, [], "Why?")
    assert len(a1.split()) >= 8 and cited_ids(a1)
    a2 = r.chat(a, [("Why?", a1)], "Is the voice loud?")
    assert "P1" in cited_ids(a2), a2
    assert r.chat_lm() is r.lm  # no adapter here: the same model


def test_label_prior_is_keyed_by_the_adapter_weights(tmp_path):
    """Two adapter folders at one path in turn (a retrained adapter): the cached prior follows the weights."""
    from affect_llm.llm.reasoner import _adapter_digest

    a = tmp_path / "adapter"
    a.mkdir()
    (a / "adapter_config.json").write_text("{}")
    (a / "adapter_model.safetensors").write_bytes(b"one")
    first = _adapter_digest(str(a))
    (a / "adapter_model.safetensors").write_bytes(b"two")
    assert _adapter_digest(str(a)) != first
    assert _adapter_digest(None) == "none"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_thread_count_does_not_change_results(dtype, lm32, lm16):
    """The pool follows the free cores (affect_llm.threads), so results must not depend on its size: generation,
    and scores of labels of one token and of several (their later tokens take a pass of their own, which in
    float32 gave other bits at 1 and 2 threads until it ran at one; a CI run under load caught it)."""
    import torch

    lm = lm32 if dtype == "float32" else lm16
    msgs = _asks("I can't believe you forgot my birthday again.")[0]
    before, cores = torch.get_num_threads(), lm._cores
    lm._cores = None  # hold the count fixed for the comparison
    try:
        out = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            out[n] = (lm.generate(msgs, 24, assistant_prefix="The speaker feels"),
                      lm.score(msgs, ["joy", "anger", "sadness", "surprise"]))  # fmt: skip
    finally:
        torch.set_num_threads(before)
        lm._cores = cores
    assert out[1][0] == out[2][0] and np.array_equal(out[1][1], out[2][1])


def test_free_cores_sees_a_busy_neighbour():
    """free_cores counts the cores other processes keep busy (not this one's own work)."""
    import subprocess
    import sys

    from affect_llm.threads import CoreMonitor, available_cores, free_cores

    cores = available_cores()
    if cores < 2:
        pytest.skip("needs 2 cores")
    idle = free_cores(0.2)
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<5: pass"])
    try:
        import time

        time.sleep(0.3)
        loaded = free_cores(0.3)
        m = CoreMonitor(min_interval=0.1)
        m.free()
        time.sleep(0.3)
        watched = m.free()
    finally:
        busy.kill()
    assert loaded <= idle - 1 or idle < cores  # a machine already busy before cannot show the step
    assert watched <= cores - 1


def test_rowwise_attention_computes_what_torchs_attention_computes():
    """The batch-invariant attention is the same function as transformers' sdpa attention (within float32
    rounding): label scores over a cached prefix, and a greedy continuation, agree with the model run on sdpa."""
    lm = TransformersLM("smollm2-135m", dtype="float32", adapter=None)
    msgs = _asks("I can't believe you forgot my birthday again.")[0]
    labels = ["joy", "anger", "sadness", "surprise and more words"]
    ours = lm.score(msgs, labels), lm.generate(msgs, 16, assistant_prefix="The speaker feels")
    lm.model.set_attn_implementation("sdpa")
    lm._heads.clear()
    try:
        theirs = lm.score(msgs, labels), lm.generate(msgs, 16, assistant_prefix="The speaker feels")
    finally:
        from affect_llm.llm import invariant

        lm.model.set_attn_implementation(invariant.NAME)
    np.testing.assert_allclose(ours[0], theirs[0], atol=2e-3)
    assert ours[1] == theirs[1]
