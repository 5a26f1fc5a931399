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
    # generation is greedy decoding of exactly this prompt: the same tokens as argmax step by step (float32, so
    # that the backend's KV-cached chunks and this one-shot forward agree)
    import torch

    lm32 = TransformersLM(str(tiny_lm_dir), dtype="float32")
    messages = [{"role": "user", "content": "hi"}]
    ids = lm32.chat_ids(messages)
    eos = lm32.tokenizer.eos_token_id
    new: list[int] = []
    with torch.inference_mode():
        for _ in range(5):
            nxt = int(lm32.model(torch.tensor([ids + new])).logits[0, -1].argmax())
            if nxt == eos:
                break
            new.append(nxt)
    want = lm32.tokenizer.decode(new, skip_special_tokens=True).strip()
    assert want and lm32.generate(messages, max_new_tokens=5) == want


def test_device_cpu_goes_through_the_same_path(tiny_lm_dir):
    """--device cpu: the model and every step's tensors on the CPU, the same scores and text as auto on a machine
    without CUDA; cuda without CUDA is a clear error."""
    import torch

    from affect_llm.llm.hf import resolve_device

    auto = TransformersLM(str(tiny_lm_dir), dtype="float32")
    cpu = TransformersLM(str(tiny_lm_dir), dtype="float32", device="cpu")
    assert cpu.device.type == "cpu" and next(cpu.model.parameters()).device.type == "cpu"
    msgs = [{"role": "system", "content": "Judge."}, {"role": "user", "content": "hello there"}]
    assert np.array_equal(cpu.score(msgs, ["calm", "tense"]), cpu.score(msgs, ["calm", "tense"]))
    if not torch.cuda.is_available():
        assert auto.device.type == "cpu"
        assert np.array_equal(auto.score(msgs, ["calm", "tense"]), cpu.score(msgs, ["calm", "tense"]))
        assert auto.generate(msgs, 6) == cpu.generate(msgs, 6)
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_cuda_device_runs_the_model_on_the_gpu(tiny_lm_dir):
    """On a GPU: the model lives there, scores and greedy text come out, bf16 is the auto dtype; scores agree with
    the CPU's within float tolerance in float32."""
    import torch

    gpu = TransformersLM(str(tiny_lm_dir), dtype="float32", device="cuda")
    assert next(gpu.model.parameters()).device.type == "cuda"
    cpu = TransformersLM(str(tiny_lm_dir), dtype="float32", device="cpu")
    msgs = [{"role": "system", "content": "Judge."}, {"role": "user", "content": "hello there"}]
    np.testing.assert_allclose(gpu.score(msgs, ["calm", "tense"]), cpu.score(msgs, ["calm", "tense"]), atol=1e-3)
    assert isinstance(gpu.generate(msgs, 6), str)
    assert TransformersLM(str(tiny_lm_dir), device="cuda").dtype == torch.bfloat16


def test_load_4bit_without_a_gpu_is_a_one_line_error(tiny_lm_dir):
    import torch

    from affect_llm.errors import BackendError

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the 4-bit path runs (test below)")
    with pytest.raises(BackendError, match="--load-4bit needs a CUDA GPU"):
        TransformersLM(str(tiny_lm_dir), device="cpu", load_4bit=True)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
def test_load_4bit_on_a_gpu_scores_close_to_the_full_weights(tiny_lm_dir):
    """--load-4bit: the linear layers in NF4 (bitsandbytes), the scores within quantisation error of bf16."""
    pytest.importorskip("bitsandbytes")
    q = TransformersLM(str(tiny_lm_dir), device="cuda", load_4bit=True)
    assert any("4bit" in type(m).__name__ for m in q.model.modules())
    full = TransformersLM(str(tiny_lm_dir), device="cuda", dtype="bfloat16")
    msgs = [{"role": "system", "content": "Judge."}, {"role": "user", "content": "hello there"}]
    a, b = q.score(msgs, ["calm", "tense"]), full.score(msgs, ["calm", "tense"])
    assert np.isfinite(a).all() and np.abs(a - b).max() < 1.0
    assert isinstance(q.generate(msgs, 6), str)
