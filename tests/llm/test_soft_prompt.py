"""Soft prompts: the one embedding path both backends use reproduces token ids exactly, and a soft prompt lands
exactly where the template marks it."""

import numpy as np
import pytest
import torch

from affect_llm.llm.hf import TransformersLM
from affect_llm.llm.soft_prompt import (
    SLOT,
    ProjectorConfig,
    Prompt,
    SoftPromptProjector,
    embedding_rms,
    prompt_embeddings,  # fmt: skip
    split_slot,
)


@pytest.fixture(scope="module")
def lm32():
    return TransformersLM("smollm2-135m", dtype="float32")


@pytest.mark.slow
def test_token_embeddings_reproduce_the_input_ids_output(lm32):
    """generate(inputs_embeds=the tokens' own embeddings) gives exactly what generate(input_ids) gives, and so
    does our generation loop (which always runs on embeddings)."""
    msgs = [{"role": "user", "content": "Name three colours of the rainbow."}]
    ids = lm32.chat_ids(msgs)
    x = torch.tensor([ids])
    kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=lm32.tokenizer.pad_token_id)
    with torch.inference_mode():
        by_ids = lm32.model.generate(x, attention_mask=torch.ones_like(x), **kw)[0, len(ids) :]
        emb = prompt_embeddings(lm32.model.get_input_embeddings(), Prompt(ids)).unsqueeze(0)
        by_emb = lm32.model.generate(inputs_embeds=emb, attention_mask=torch.ones_like(x), **kw)[0]
        # (with inputs_embeds, transformers' repetition penalty cannot see the prompt's ids, so compare without)
        penalised = lm32.model.generate(x, attention_mask=torch.ones_like(x), repetition_penalty=1.15, **kw)
    assert by_ids.tolist() == by_emb.tolist()[: len(by_ids)]
    # our loop runs on embeddings and penalises repeats of the prompt's ids as transformers does with input_ids
    ours = lm32.generate(msgs, max_new_tokens=12)
    assert ours == lm32.tokenizer.decode(penalised[0, len(ids) :], skip_special_tokens=True).strip()


@pytest.mark.slow
def test_soft_prompt_lands_where_the_slot_is(lm32):
    """Soft vectors equal to the embeddings of some words score exactly like those words written in the slot."""
    words = "Paris is sunny"
    plain = [{"role": "user", "content": f"The weather report.\n{words}\nHow is the weather? One word."}]
    slotted = [{"role": "user", "content": f"The weather report.\n{SLOT}\nHow is the weather? One word."}]
    word_ids = lm32.tokenizer(words, add_special_tokens=False)["input_ids"]
    # precondition of the comparison: the words tokenize the same alone and in the sentence
    full = lm32.chat_ids(plain)
    assert any(full[i : i + len(word_ids)] == word_ids for i in range(len(full)))
    soft = lm32.model.get_input_embeddings()(torch.tensor(word_ids)).detach()
    p = lm32.prompt(slotted, soft)
    assert p.ids.count(-1) == 1 and sum(i < 0 for i in p.ids) == len(word_ids)
    assert [word_ids[-i - 1] if i < 0 else i for i in p.ids] == full  # the words' ids where the soft vectors are
    conts = ["Sunny", "Rainy", "Cold"]
    np.testing.assert_allclose(lm32.score(slotted, conts, soft=soft), lm32.score(plain, conts), atol=1e-4)
    # other soft vectors change the answer's scores; the prefix cache does not confuse the two
    other = soft.flip(0)
    assert not np.allclose(lm32.score(slotted, conts, soft=other), lm32.score(slotted, conts, soft=soft), atol=1e-3)


def test_slot_and_soft_vectors_must_agree():
    from affect_llm.llm.fake import tokenizer  # any tokenizer does; this one needs no pulled model

    tok = tokenizer()
    soft = torch.zeros(3, 8)
    p = split_slot(tok, f"a {SLOT} b", soft)
    assert [i for i in p.ids if i < 0] == [-1, -2, -3]
    with pytest.raises(ValueError, match="no soft prompt"):
        split_slot(tok, f"a {SLOT} b", None)
    with pytest.raises(ValueError, match="exactly one"):
        split_slot(tok, "a b", soft)
    with pytest.raises(ValueError, match="soft positions"):
        Prompt([1, -1, 2], torch.zeros(2, 8))


def test_projector_shapes_scale_and_round_trip(tmp_path):
    torch.manual_seed(0)
    embed = torch.nn.Embedding(100, 16)
    proj = SoftPromptProjector(ProjectorConfig(d_in=12, d_model=16, n_tokens=4, hidden=32), embedding_rms(embed))
    x = torch.randn(5, 12)
    y = proj(x)
    assert y.shape == (5, 4, 16) and proj(x[0]).shape == (4, 16)
    # starts at the size of a token embedding (per-coordinate RMS), whatever the input's scale
    rms = float(proj.eval()(100 * x).pow(2).mean().sqrt())
    assert rms == pytest.approx(embedding_rms(embed), rel=0.05)
    proj.save(tmp_path)
    back = SoftPromptProjector.load(tmp_path)
    torch.testing.assert_close(back(x), proj.eval()(x))
