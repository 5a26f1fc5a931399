"""The context model: a few-step training run through the real CLI, save/load parity, and the shipped weights
reproducing their recorded dev scores."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from affect_llm.context.model import ContextModel, ContextModelConfig, default_path
from affect_llm.data import MELD_LABELS, Dialogue, Utterance, load_dataset
from affect_llm.metrics import weighted_f1
from affect_llm.training.context import evaluate
from tests.test_data import write_meld

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PHRASES = {"joy": "This is wonderful, I love it!", "anger": "Get out of my apartment right now!",
           "neutral": "The coffee place is on the corner.", "sadness": "I miss her so much."}  # fmt: skip


def tiny_meld(folder: Path) -> Path:
    rows = []
    for dia in range(6):
        for uid, (lab, text) in enumerate(PHRASES.items()):
            rows.append((text, ["Ross", "Rachel"][uid % 2], lab, dia, uid))
    write_meld(folder, "train", rows)
    write_meld(folder, "dev", rows[:8])
    return folder


@pytest.mark.slow
def test_train_cli_smoke_and_save_load_parity(tmp_path):
    data = tiny_meld(tmp_path / "meld")
    out = tmp_path / "ctx"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "affect_llm.cli", "train", "context", "--dataset", "meld", "--data-dir", str(data),
         "--out", str(out), "--epochs", "2", "--max-steps", "3", "--batch", "2", "--seed", "1", "--past", "2",
         "--aux-sentiment", "0.5"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "best dev" in proc.stdout
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 3 and record["stopped"] == "max_steps"
    assert record["trainable_parameters"] > 100_000
    assert record["sentiment_head"] is True  # MELD's Sentiment column feeds the auxiliary loss
    assert json.loads((out / "config.json").read_text())["past_utterances"] == 2
    assert {"config.json", "broad_mamba.safetensors", "encoder_lora"} <= {p.name for p in out.iterdir()}

    loaded = ContextModel.load(out)
    dev = load_dataset("meld", "dev", data)
    res = evaluate(loaded, dev)
    assert res.n == 8
    assert res.summary()["weighted_f1"] == record["best_dev"]["weighted_f1"]  # the saved weights are the scored ones
    p = loaded.predict(dev[0]).probabilities
    assert p.shape == (4, len(MELD_LABELS)) and np.allclose(p.sum(1), 1, atol=1e-5)


@pytest.mark.slow
def test_unmerged_and_merged_lora_agree_and_training_moves_the_weights(tmp_path):
    torch.manual_seed(0)
    m = ContextModel(ContextModelConfig(labels=MELD_LABELS))
    # LoRA's B starts at zero: make the adapter do something before checking save/merge parity
    with torch.no_grad():
        for n, prm in m.encoder.named_parameters():
            if "lora_B" in n:
                prm.normal_(0, 0.05)
    m.eval()
    d = Dialogue(id="x", utterances=[Utterance("A", "You did what?!"), Utterance("B", "I sold the car."),
                                     Utterance("A", "That's fantastic news!")])  # fmt: skip
    before = m.predict(d)
    m.save(tmp_path / "m")
    back = ContextModel.load(tmp_path / "m")
    after = back.predict(d)
    np.testing.assert_allclose(after.probabilities, before.probabilities, atol=1e-4)
    np.testing.assert_allclose(after.embeddings, before.embeddings, atol=1e-3)
    with pytest.raises(ValueError):
        back.save(tmp_path / "again")  # merged: nothing LoRA left to save


@pytest.mark.slow
def test_encoder_reads_a_window_of_earlier_utterances_only():
    torch.manual_seed(0)
    m = ContextModel(ContextModelConfig(labels=MELD_LABELS, past_utterances=2)).eval()
    texts = ["Where were you?", "At the museum.", "With whom?", "Nobody, I swear.", "You're lying to me!"]
    d = Dialogue(id="x", utterances=[Utterance("AB"[i % 2], t) for i, t in enumerate(texts)])

    def feats(dialogue):
        with torch.inference_mode():
            return m.encode_dialogues([dialogue]).numpy()

    base = feats(d)
    alone = m.encode(texts).detach().numpy()
    np.testing.assert_allclose(base[0], alone[0], atol=1e-5)  # nothing before the first utterance
    assert np.abs(base[1:] - alone[1:]).max(1).min() > 1e-3  # the others read what was said before them

    edited = Dialogue(id="x", utterances=[*d.utterances[:1], Utterance("B", "At the zoo, feeding lions."),
                                          *d.utterances[2:]])  # fmt: skip
    diff = np.abs(feats(edited) - base).max(1)
    assert diff[0] < 1e-5 and diff[4] < 1e-5  # earlier turns, and turns more than 2 later, do not see it
    assert diff[1] > 1e-3 and diff[2] > 1e-3 and diff[3] > 1e-3  # itself, and the 2 turns after it

    plain = ContextModel(ContextModelConfig(labels=MELD_LABELS))
    plain.encoder.load_state_dict(m.encoder.state_dict())
    with torch.inference_mode():  # past_utterances=0 is the utterance alone, as before the option existed
        np.testing.assert_allclose(plain.encode_dialogues([d]).numpy(), plain.encode(texts).numpy(), atol=1e-5)


def _shipped(dataset: str) -> Path:
    p = default_path(dataset)
    if not (p / "config.json").is_file():
        pytest.skip(f"{p} not trained")
    if not (SHARED / dataset).is_dir():
        pytest.skip(f"../shared/data/{dataset} not present")
    return p


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["meld", "emorynlp"])
def test_shipped_model_reproduces_its_recorded_dev_scores(dataset):
    path = _shipped(dataset)
    record = json.loads((path / "training.json").read_text())
    model = ContextModel.load(path)
    dev = load_dataset(dataset, "dev", SHARED / dataset)
    res = evaluate(model, dev)
    assert abs(100 * res.weighted_f1 - record["best_dev"]["weighted_f1"]) < 0.3
    gold = [u.label for d in dev for u in d.utterances]
    majority = weighted_f1(gold, [max(set(gold), key=gold.count)] * len(gold))
    assert res.weighted_f1 > majority + 0.15
    if dataset == "meld":
        assert 100 * res.weighted_f1 > 51.5  # the frozen-MiniLM + logistic-regression floor on MELD dev


@pytest.mark.slow
def test_predict_keeps_encodings_and_its_output_does_not_depend_on_what_ran_before():
    """predict encodes each utterance alone and keeps it: analysing a dialogue utterance by utterance (as the
    pipeline does) encodes each once, and a dialogue's output is the same bit for bit whether its utterances were
    kept from another dialogue or computed now."""
    torch.manual_seed(0)
    m = ContextModel(ContextModelConfig(labels=MELD_LABELS, past_utterances=2)).eval()
    texts = ["Where were you?", "At the museum.", "With whom?", "Nobody, I swear.", "You're lying to me!"]
    d = Dialogue(id="x", utterances=[Utterance("AB"[i % 2], t) for i, t in enumerate(texts)])
    calls = []
    hook = m.encoder.register_forward_hook(lambda mod, args, kwargs_out: calls.append(1))
    try:
        prefixes = [m.predict(Dialogue(id="x", utterances=d.utterances[: i + 1])) for i in range(len(texts))]
    finally:
        hook.remove()
    assert len(calls) == len(texts)  # once per utterance, not once per (utterance, later prefix): 15

    fresh = ContextModel(ContextModelConfig(labels=MELD_LABELS, past_utterances=2)).eval()
    fresh.load_state_dict(m.state_dict())
    alone = fresh.predict(d)  # nothing kept
    np.testing.assert_array_equal(prefixes[-1].probabilities, alone.probabilities)
    np.testing.assert_array_equal(prefixes[-1].embeddings, alone.embeddings)
    # the vectors are the model's encodings: the padded, chunked path agrees to rounding
    with torch.inference_mode():
        chunked = m.encode_dialogues([d]).numpy()
    np.testing.assert_allclose(m.encode_alone(m.items([d])).numpy(), chunked, atol=1e-5)

    m.train()  # the weights may change now: nothing kept survives
    assert not m._seen


@pytest.mark.slow
def test_the_shipped_model_reads_a_dialogue_the_same_at_any_thread_count():
    """float32 sums split across threads round otherwise (1.7e-6 on mpnet between 1 and 2 threads), and the soft
    prompt amplifies that; a dialogue is read on one thread, so its vectors do not depend on the caller's threads."""
    from affect_llm.context.model import load_context_model

    if not (default_path("meld") / "config.json").is_file():
        pytest.skip("adapters/context-meld not here")
    cm = load_context_model("meld")
    d = Dialogue(id="t", utterances=[Utterance(speaker="A", text="Guess what, I got the job!"),
                                     Utterance(speaker="B", text="Oh my God, he's lost it. He's totally lost it.")])  # fmt: skip
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            cm._seen.clear()  # encode again, not from the kept vectors
            outs.append(cm.predict(d))
            assert torch.get_num_threads() == threads  # the caller's setting is left as it was
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(outs[0].embeddings, outs[1].embeddings)
    assert np.array_equal(outs[0].probabilities, outs[1].probabilities)
