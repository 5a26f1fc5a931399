"""Any causal LM by local path: a tiny randomly initialised Llama with SmolLM2's tokenizer goes through the
same loading, scoring and generation code as the embedded default."""

import shutil

import numpy as np
import pytest

from affect_llm import models
from affect_llm.config import ReasonerOptions
from affect_llm.llm.hf import TransformersLM
from affect_llm.llm.reasoner import Reasoner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = models.path("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(src)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    for extra in ("chat_template.jinja",):
        if (src / extra).exists() and not (out / extra).exists():
            shutil.copy(src / extra, out / extra)
    return out


def test_reasoner_on_a_local_path_model(tiny_lm_dir):
    lm = TransformersLM(str(tiny_lm_dir))
    r = Reasoner(ReasonerOptions(model=str(tiny_lm_dir), labels=["calm", "tense", "upbeat"], max_new_tokens=8), lm=lm)
    p = r.label_distribution('Evidence:\n[T1] (text): "hello"')
    assert list(p) == ["calm", "tense", "upbeat"]
    assert sum(p.values()) == pytest.approx(1.0, abs=1e-6)
    # random weights: close to, but not exactly, uniform
    assert np.ptp(list(p.values())) > 0
    text = lm.generate([{"role": "user", "content": "hi"}], max_new_tokens=5)
    assert isinstance(text, str)
