"""The merged-model cache (affect_llm/merge.py): the cached copy is the fresh merge bit for bit, is used on the
next load without peft, is keyed by what the merge depends on, and never turns a cache problem into an error."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from affect_llm import models
from affect_llm import merge

pytestmark = pytest.mark.skipif(not models.is_pulled("smollm2-135m"), reason="needs: affect-llm models pull smollm2-135m")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-layer Llama with SmolLM2's tokenizer and a LoRA adapter with non-zero B (so the merge changes weights)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = models.path("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(src)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)  # fmt: skip
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-merge")
    base = root / "base"
    LlamaForCausalLM(cfg).save_pretrained(base)
    tok.save_pretrained(base)
    for extra in ("chat_template.jinja",):
        if (src / extra).exists() and not (base / extra).exists():
            shutil.copy(src / extra, base / extra)
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    adapter = root / "adapter"
    model.save_pretrained(adapter)
    return base, adapter


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    root = tmp_path / "merged"
    monkeypatch.setattr(merge, "cache_root", lambda: root)
    return root


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cached_copy_is_the_fresh_merge_bit_for_bit(tiny, cache, dtype, monkeypatch):
    base, adapter = tiny
    fresh = merge.merge(str(base), adapter, dtype)
    first = merge.load_merged("tiny", str(base), base, adapter, dtype)  # merges and saves
    folder = merge.cache_folder("tiny", base, adapter, dtype)
    assert merge.is_complete(folder) and _same(first, fresh)
    # the merge changed the weights (the test would pass vacuously on an all-zero adapter otherwise)
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    assert not _same(plain, fresh)

    def no_merge(*a, **k):
        raise AssertionError("merged again although a complete copy is cached")

    monkeypatch.setattr(merge, "merge", no_merge)
    second = merge.load_merged("tiny", str(base), base, adapter, dtype)
    assert _same(second, fresh)
    assert next(second.parameters()).dtype == dtype


def test_key_follows_the_adapter_bytes_the_dtype_and_the_base_files(tiny, tmp_path):
    base, adapter = tiny
    k = merge.cache_key(base, adapter, torch.float32)
    assert k == merge.cache_key(base, adapter, torch.float32)
    assert k != merge.cache_key(base, adapter, torch.bfloat16)
    other = tmp_path / "adapter"
    shutil.copytree(adapter, other)
    assert merge.cache_key(base, other, torch.float32) == k  # the adapter's bytes, not its path
    cfg = json.loads((other / "adapter_config.json").read_text())
    cfg["lora_alpha"] = 16
    (other / "adapter_config.json").write_text(json.dumps(cfg))
    assert merge.cache_key(base, other, torch.float32) != k
    base2 = tmp_path / "base"
    shutil.copytree(base, base2)
    st = base2 / "model.safetensors"
    k2 = merge.cache_key(base2, adapter, torch.float32)
    os.utime(st, ns=(st.stat().st_atime_ns, st.stat().st_mtime_ns + 10**9))
    assert merge.cache_key(base2, adapter, torch.float32) != k2  # a replaced weights file is a different base


def test_a_damaged_copy_is_merged_again_and_replaced(tiny, cache):
    base, adapter = tiny
    fresh = merge.load_merged("tiny", str(base), base, adapter, torch.float32)
    folder = merge.cache_folder("tiny", base, adapter, torch.float32)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    again = merge.load_merged("tiny", str(base), base, adapter, torch.float32)
    assert _same(again, fresh)
    assert merge.is_complete(folder)
    third = merge.load_merged("tiny", str(base), base, adapter, torch.float32)
    assert _same(third, fresh)


def test_an_unwritable_cache_is_not_an_error(tiny, tmp_path, monkeypatch):
    base, adapter = tiny
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setattr(merge, "cache_root", lambda: blocker / "merged")
    model = merge.load_merged("tiny", str(base), base, adapter, torch.float32)
    assert _same(model, merge.merge(str(base), adapter, torch.float32))
    assert not (blocker / "merged").exists()


def test_older_keys_are_pruned_to_keep(tiny, cache, tmp_path):
    base, adapter = tiny
    other = tmp_path / "v" / "adapter"
    shutil.copytree(adapter, other)
    folders = []
    for alpha in (9, 10, 11, 12):
        cfg = json.loads((adapter / "adapter_config.json").read_text())
        cfg["lora_alpha"] = alpha
        (other / "adapter_config.json").write_text(json.dumps(cfg))
        merge.load_merged("tiny", str(base), base, other, torch.float32)
        folders.append(merge.cache_folder("tiny", base, other, torch.float32))
    left = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
    assert folders[-1].name in left and len(left) == merge.KEEP + 1
    assert folders[0].name not in left


@pytest.mark.slow
def test_transformers_lm_second_load_skips_peft(tiny, tmp_path):
    """In a fresh process, a TransformersLM with an adapter loads the cached merge without importing peft, and
    scores exactly as the first load did."""
    base, adapter = tiny
    home = tmp_path / "home"
    home.mkdir()
    code = f"""
import json, sys
from affect_llm.llm.hf import TransformersLM
lm = TransformersLM({str(base)!r}, threads=1, adapter={str(adapter)!r}, dtype="float32", device="cpu")
s = lm.score([{{"role": "user", "content": "How do they feel?"}}], ["joy", "anger"])
print(json.dumps({{"peft": "peft" in sys.modules, "score": [float(x) for x in s]}}))
"""
    env = {**os.environ, "AFFECT_LLM_HOME": str(home)}
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1]) for _ in range(2)]  # fmt: skip
    assert runs[0]["peft"] is True and runs[1]["peft"] is False
    assert runs[0]["score"] == runs[1]["score"]
    assert any(merge.is_complete(p) for p in (home / "cache" / "merged").iterdir())


def test_the_in_process_copy_is_a_folder_a_server_can_load(tiny, cache, monkeypatch):
    """TransformersLM saves the tokenizer beside the merged weights, so vLLM's merged mode (merged_folder, float32)
    reuses the copy instead of finding a folder without a tokenizer."""
    from transformers import AutoTokenizer

    base, adapter = tiny
    tok = AutoTokenizer.from_pretrained(base)
    merge.load_merged(str(base), str(base), base, adapter, torch.float32, tokenizer=tok)
    monkeypatch.setattr(merge, "merge", lambda *a, **k: (_ for _ in ()).throw(AssertionError("merged again")))
    folder = merge.merged_folder(str(base), adapter, "float32")
    assert folder == merge.cache_folder(str(base), base, adapter, torch.float32)
    assert AutoTokenizer.from_pretrained(folder)("How do they feel?").input_ids == tok("How do they feel?").input_ids


def test_the_context_model_encoder_is_kept_merged_too(cache, monkeypatch):
    """ContextModel.load merges its encoder's LoRA once (AutoModel, float32); the next load reads the copy and
    predicts exactly what the freshly merged model does."""
    from affect_llm.context.model import ContextModel, default_path
    from affect_llm.data import Dialogue, Utterance

    path = default_path("meld")
    if not (path / "config.json").is_file():
        pytest.skip("adapters/context-meld not trained")
    d = Dialogue(id="x", utterances=[Utterance("A", "Where were you?"), Utterance("B", "You never listen to me!")])
    first = ContextModel.load(path)
    assert any(merge.is_complete(p) for p in cache.iterdir())
    monkeypatch.setattr(merge, "merge", lambda *a, **k: (_ for _ in ()).throw(AssertionError("merged again")))
    second = ContextModel.load(path)
    assert _same(first.encoder, second.encoder)
    a, b = first.predict(d), second.predict(d)
    assert (a.probabilities == b.probabilities).all() and (a.embeddings == b.embeddings).all()
