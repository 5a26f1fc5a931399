"""A larger utterance encoder within a CPU budget: the lowest layers frozen and their outputs cached (the features
equal the full model's), any encoder family (a tiny MPNet and a tiny BERT built from configs here), the losses,
and a killed training run that resumes to the weights an uninterrupted one gives."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from affect_llm import models
from affect_llm.context.model import ContextModel, ContextModelConfig
from affect_llm.data import MELD_LABELS, Dialogue, Utterance, load_dataset
from affect_llm.training import context as tc
from tests.context.test_model import PHRASES
from tests.test_data import write_meld

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def tiny_encoder(folder: Path, family: str = "mpnet", layers: int = 4) -> Path:
    """A randomly initialised 4-layer encoder of ``family`` with MiniLM's (BERT) tokenizer: what CI can build."""
    from transformers import AutoModel, BertConfig, MPNetConfig

    try:
        tok = models.path("minilm-l6")
    except Exception as e:
        pytest.skip(f"minilm-l6 not pulled ({e})")
    folder.mkdir(parents=True)
    for name in TOKENIZER_FILES:
        shutil.copy(tok / name, folder / name)
    kw = dict(vocab_size=30527, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
              intermediate_size=64, pad_token_id=0)  # fmt: skip
    cfg = MPNetConfig(**kw, max_position_embeddings=514) if family == "mpnet" else BertConfig(**kw)
    torch.manual_seed(0)
    AutoModel.from_config(cfg).save_pretrained(folder)
    return folder


def tiny_meld(folder: Path) -> Path:
    """Six dialogues that differ (each a rotation of the phrases), so the order they are drawn in matters."""
    items, rows = list(PHRASES.items()), []
    for dia in range(6):
        for uid in range(4):
            lab, text = items[(uid + dia) % 4]
            rows.append((text, ["Ross", "Rachel"][uid % 2], lab, dia, uid))
    write_meld(folder, "train", rows)
    write_meld(folder, "dev", rows[:8])
    return folder


DIALOGUE = Dialogue(id="x", utterances=[Utterance("A", t) for t in (
    "Where were you?", "At the museum, all day long with my sister.", "Fine.", "You're lying to me!")])  # fmt: skip


@pytest.mark.parametrize("family,targets", [("mpnet", ["q", "k", "v", "o", "dense"]),
                                            ("bert", ["query", "key", "value", "dense"])])  # fmt: skip
def test_cached_lower_layers_give_the_full_models_features(tmp_path, family, targets):
    enc = tiny_encoder(tmp_path / "enc", family)
    torch.manual_seed(0)
    m = ContextModel(ContextModelConfig(labels=MELD_LABELS, encoder=str(enc), past_utterances=2, frozen_layers=2))
    assert m.cfg.lora_targets == targets
    lora = [n for n, p in m.encoder.named_parameters() if p.requires_grad]
    assert lora and {n.split(".layer.")[1].split(".")[0] for n in lora} == {"2", "3"}  # nothing below the cut
    with torch.no_grad():
        for n, p in m.encoder.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)  # make the adapter matter
    m.eval()
    with torch.no_grad():
        full = m.encode_dialogues([DIALOGUE])
        cache = m.lower_states([DIALOGUE])
        upper = m.encode_dialogues([DIALOGUE], cache=cache)
    assert len(cache) == len(DIALOGUE)
    torch.testing.assert_close(upper, full, atol=1e-5, rtol=1e-5)
    assert len(m.encoder.get_base_model().encoder.layer) == 4  # the swap is undone

    m.train()  # gradients reach the LoRA weights through the cached path
    m.encode_dialogues([DIALOGUE], cache=cache).pow(2).sum().backward()
    grads = [p.grad for n, p in m.encoder.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_frozen_layers_must_leave_a_layer_to_train(tmp_path):
    enc = tiny_encoder(tmp_path / "enc")
    with pytest.raises(ValueError, match="frozen_layers must be 0 … 3"):
        ContextModel(ContextModelConfig(labels=MELD_LABELS, encoder=str(enc), frozen_layers=4))


def test_the_losses():
    torch.manual_seed(0)
    logits, y = torch.randn(2, 5, 4), torch.tensor([[0, 1, 2, -100, 3], [0, 0, 0, 0, -100]])
    ce = tc.emotion_loss(logits, y, tc.TrainOptions(loss="ce"), None)
    focal0 = tc.emotion_loss(logits, y, tc.TrainOptions(loss="focal", focal_gamma=0.0), None)
    torch.testing.assert_close(focal0, ce)  # γ = 0 is cross-entropy
    assert tc.emotion_loss(logits, y, tc.TrainOptions(loss="focal"), None) < ce  # easy examples count less
    d = [Dialogue("d", [Utterance("A", "x", label=lab) for lab in ["neutral"] * 50 + ["joy"] * 5 + ["fear"]])]
    w = tc.class_weights(d, ["neutral", "joy", "fear", "disgust"])
    assert w[0] < w[1] < w[2] <= w[3] and abs(float(w.sum()) - 4) < 1e-5
    same = tc.emotion_loss(logits, y, tc.TrainOptions(loss="balanced"), torch.ones(4))
    torch.testing.assert_close(same, ce)


def _train(tmp_path, data, enc, out, **kw):
    opts = tc.TrainOptions(dataset="meld", data_dir=str(data), out=str(out), epochs=3, batch_dialogues=2,
                           patience=5, seed=3, encoder=str(enc), frozen_layers=2, past_utterances=1,
                           aux_sentiment=0.5, threads=1, **kw)  # fmt: skip
    return tc.train(opts)


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch):
    data, enc = tiny_meld(tmp_path / "meld"), tiny_encoder(tmp_path / "enc")
    whole = _train(tmp_path, data, enc, tmp_path / "whole")
    assert not (tmp_path / "whole" / tc.CHECKPOINT).exists()  # a finished run leaves only its record

    real, calls = tc.evaluate, []

    def dies_in_epoch_two(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tc, "evaluate", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, data, enc, tmp_path / "killed")
    assert (tmp_path / "killed" / tc.CHECKPOINT).is_file()
    monkeypatch.setattr(tc, "evaluate", real)
    with pytest.raises(ValueError, match="other options"):
        _train(tmp_path, data, enc, tmp_path / "killed", resume=True, lr=5e-4)
    resumed = _train(tmp_path, data, enc, tmp_path / "killed", resume=True)

    strip = [{k: v for k, v in h.items() if k != "minutes"} for h in whole["history"]]
    assert [{k: v for k, v in h.items() if k != "minutes"} for h in resumed["history"]] == strip
    for f in ("broad_mamba.safetensors", "encoder_lora/adapter_model.safetensors"):
        a, b = load_file(str(tmp_path / "whole" / f)), load_file(str(tmp_path / "killed" / f))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f
    assert resumed["best_epoch"] == whole["best_epoch"] and not (tmp_path / "killed" / tc.CHECKPOINT).exists()


def test_a_run_stopped_by_its_time_budget_continues_with_a_larger_one(tmp_path, monkeypatch):
    """The budget runs out one step into epoch 2: that unfinished epoch is recorded as such, the last finished
    epoch's checkpoint stays, resuming within the spent budget is refused, and a larger budget continues the run
    to the uninterrupted run's weights and history, with the best finished epoch's weights put back in the folder
    first (the unfinished epoch's, saved as the best, do not stay)."""
    data, enc = tiny_meld(tmp_path / "meld"), tiny_encoder(tmp_path / "enc")
    whole = _train(tmp_path, data, enc, tmp_path / "whole", max_minutes=1000.0)

    clock = {"now": 0.0}
    monkeypatch.setattr(tc, "time", type("FakeTime", (), {"monotonic": staticmethod(lambda: clock["now"])}))
    real, calls, epoch_one = tc.evaluate, [], {}
    bm = tmp_path / "cut" / "broad_mamba.safetensors"

    def an_hour_passes_in_epoch_one(*a, **k):
        calls.append(1)
        out = real(*a, **k)
        if len(calls) == 1:
            clock["now"] = 3600.0  # from the end of epoch 1 on, the 50-minute budget is spent
            return out
        epoch_one.update(load_file(str(bm)))  # epoch 1's weights, saved as the best so far
        return dataclasses.replace(out, weighted_f1=out.weighted_f1 + 1)  # scores best: its weights are saved

    monkeypatch.setattr(tc, "evaluate", an_hour_passes_in_epoch_one)
    cut = _train(tmp_path, data, enc, tmp_path / "cut", max_minutes=50.0)
    assert cut["stopped"] == "time budget" and [h.get("partial", False) for h in cut["history"]] == [False, True]
    assert cut["history"][1]["step"] == cut["history"][0]["step"] + 1 and cut["best_epoch"] == 2
    assert (tmp_path / "cut" / tc.CHECKPOINT).is_file()  # epoch 1's, kept: the run is not over
    with pytest.raises(ValueError, match="time budget is spent"):
        _train(tmp_path, data, enc, tmp_path / "cut", resume=True, max_minutes=50.0)
    seen_at_resume = {}

    def first_look(*a, **k):  # before the resumed run saves anything, the folder holds epoch 1's weights again
        if not seen_at_resume:
            seen_at_resume.update(load_file(str(bm)))
        return real(*a, **k)

    monkeypatch.setattr(tc, "evaluate", first_look)
    resumed = _train(tmp_path, data, enc, tmp_path / "cut", resume=True, max_minutes=1000.0)
    assert epoch_one.keys() == seen_at_resume.keys() and all(torch.equal(epoch_one[k], seen_at_resume[k])
                                                             for k in epoch_one)  # fmt: skip
    strip = [{k: v for k, v in h.items() if k != "minutes"} for h in whole["history"]]
    assert [{k: v for k, v in h.items() if k != "minutes"} for h in resumed["history"]] == strip
    for f in ("broad_mamba.safetensors", "encoder_lora/adapter_model.safetensors"):
        a, b = load_file(str(tmp_path / "whole" / f)), load_file(str(tmp_path / "cut" / f))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f
    assert resumed["stopped"] == "epochs" and not (tmp_path / "cut" / tc.CHECKPOINT).exists()


@pytest.mark.slow
def test_train_cli_with_another_encoder_frozen_layers_focal_loss_and_causal(tmp_path):
    """The command line end to end on a tiny MPNet: the saved model loads with its encoder and scores what the
    record says, and the card names the encoder, the loss and the command that reproduces it. ``--causal``: the
    saved model reads forwards only, so a dialogue's prefix gives its last utterance what the whole dialogue
    gives it there (the dev score is the pipeline's)."""
    data, enc = tiny_meld(tmp_path / "meld"), tiny_encoder(tmp_path / "enc")
    out = tmp_path / "ctx"
    proc = subprocess.run(
        [sys.executable, "-m", "affect_llm.cli", "train", "context", "--dataset", "meld", "--data-dir", str(data),
         "--out", str(out), "--epochs", "2", "--batch", "2", "--encoder", str(enc), "--frozen-layers", "3",
         "--loss", "focal", "--past", "1", "--causal"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((out / "training.json").read_text())
    assert record["options"]["frozen_layers"] == 3 and record["options"]["loss"] == "focal"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["encoder"] == str(enc) and cfg["frozen_layers"] == 3 and cfg["lora_targets"][0] == "q"
    card = (out / "README.md").read_text()
    assert "focal loss (γ = 2.0)" in card and "--frozen-layers 3 --loss focal --causal" in card and "layers 4 and up" in card
    assert cfg["broad_mamba"]["bidirectional"] is False and "causal (forward-only)" in card
    loaded = ContextModel.load(out)
    dev = load_dataset("meld", "dev", data)
    res = tc.evaluate(loaded, dev)
    assert res.summary()["weighted_f1"] == record["best_dev"]["weighted_f1"]
    whole = loaded.predict(dev[0]).probabilities
    for k in (1, 2, len(dev[0])):
        prefix = Dialogue(dev[0].id, dev[0].utterances[:k])
        assert abs(loaded.predict(prefix).probabilities[-1] - whole[k - 1]).max() < 1e-5
