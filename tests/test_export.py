"""Instruction-tuning export (``batch --export sharegpt|alpaca FILE``, ``--explain-gold``) and its reading back
(``train reasoner --data FILE``): the records load and carry the evidence, the media path and the cue timings; the
gold label is the one explained in rationale mode; the two formats hold the same turns; and (slow) an exported
file trains an adapter that the pipeline loads."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from affect_llm.batch import BatchOptions, load_inputs, run
from affect_llm.config import PipelineOptions
from affect_llm.errors import InputError
from affect_llm.export import read_training_records, write_export
from affect_llm.inputs import read_jsonl_records

CLI = [sys.executable, "-m", "affect_llm.cli"]
FAKE = ["--backend", "fake", "--asr-backend", "fake", "--context-model", "none", "--no-face"]


def _voice(path: Path) -> Path:
    """0.5 s silence, 1.2 s of a 180 Hz voice-like tone, 0.5 s silence (one S-cue for the fake transcriber)."""
    sr = 16_000
    t = np.arange(int(sr * 1.2)) / sr
    x = np.concatenate([np.zeros(sr // 2), 0.4 * np.sin(2 * np.pi * 180 * t), np.zeros(sr // 2)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture
def manifest(tmp_path) -> Path:
    _voice(tmp_path / "clip.wav")
    rows = [{"id": "won", "text": "We won! I love it, this is wonderful.", "label": "surprise",
             "context": [{"speaker": "A", "text": "Did we win?"}]},
            {"id": "clip", "path": "clip.wav", "label": "neutral"},
            {"id": "empty", "text": "", "label": "neutral"},
            {"id": "sad", "text": "I miss her so much. I am sad and alone."}]  # fmt: skip
    p = tmp_path / "items.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _batch(manifest: Path, out: Path, gold: bool) -> list[dict]:
    items = load_inputs(manifest)
    cfg = PipelineOptions(backend="fake", asr_backend="fake", context_model="none", face=False).config()
    run(items, cfg, out, BatchOptions(progress=False, explain_gold=gold))
    return read_jsonl_records(out)


def test_explain_gold_explains_the_dataset_label_and_keeps_the_decision(manifest, tmp_path):
    recs = {r["id"]: r for r in _batch(manifest, tmp_path / "gold.jsonl", gold=True)}
    won = recs["won"]
    assert won["label"] == "joy"  # the fake LLM's lexicon decides joy for these words
    assert won["explained_label"] == "surprise" and won["explanation"].startswith("The speaker feels surprise.")
    assert recs["sad"]["explained_label"] is None  # no gold label: the decided one is explained
    assert recs["sad"]["explanation"].startswith(f"The speaker feels {recs['sad']['label']}.")
    plain = {r["id"]: r for r in _batch(manifest, tmp_path / "plain.jsonl", gold=False)}
    assert plain["won"]["explained_label"] is None and plain["won"]["explanation"].startswith("The speaker feels joy.")
    assert plain["won"]["label"] == won["label"] and plain["won"]["probabilities"] == won["probabilities"]


def test_the_export_loads_with_its_fields_in_both_formats(manifest, tmp_path):
    recs = _batch(manifest, tmp_path / "gold.jsonl", gold=True)
    items = {x.id: x for x in load_inputs(manifest).items}
    labels = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
    got = {}
    for fmt in ("sharegpt", "alpaca"):
        path = tmp_path / f"{fmt}.jsonl"
        written, left = write_export(recs, fmt, path, labels, items, explain_gold=True)
        assert (written, left) == (3, 1)  # the empty text failed: left out
        rows = {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
        assert set(rows) == {"won", "clip", "sad"}
        won, clip = rows["won"], rows["clip"]
        assert won["label"] == "surprise" and won["label_source"] == "gold" and won["labels"] == labels
        assert rows["sad"]["label_source"] == "predicted"
        assert won["context"] == "Earlier in the conversation:\nA: Did we win?" and rows["sad"]["context"] is None
        assert clip["media"] == str(tmp_path / "clip.wav")
        s1 = next(c for c in clip["cues"] if c["id"] == "S1")
        assert s1["modality"] == "speech" and s1["start"] == pytest.approx(0.5, abs=0.05) and s1["end"] > s1["start"]
        assert clip["evidence"].startswith("Evidence:") and "[S1]" in clip["evidence"]
        if fmt == "sharegpt":
            assert [t["from"] for t in won["conversations"]] == ["system", "human", "gpt"]
            assert won["conversations"][2]["value"].startswith("The speaker feels surprise.")
        else:
            assert won["output"].startswith("The speaker feels surprise.") and won["input"].endswith(won["evidence"])
            assert "Which emotion" in won["instruction"] and "Evidence:" not in won["instruction"]
        got[fmt] = {r.uid: r for r in read_training_records(path)}
    for uid in ("won", "clip", "sad"):  # the same chat turns whichever format carries them
        assert got["sharegpt"][uid].messages == got["alpaca"][uid].messages
        assert got["sharegpt"][uid].evidence == got["alpaca"][uid].evidence
    assert got["sharegpt"]["won"].messages[1]["content"].count("Did we win?") == 1


def test_reading_a_file_that_is_not_a_training_set_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversations": [{"from": "human", "value": "hi"}]}\n')
    with pytest.raises(InputError, match="does not end with the assistant's answer"):
        read_training_records(bad)
    bad.write_text('{"text": "hi"}\n')
    with pytest.raises(InputError, match="neither ShareGPT"):
        read_training_records(bad)
    bad.write_text("{not json\n")
    with pytest.raises(InputError, match=r"bad.jsonl:1: not JSON"):
        read_training_records(bad)


def test_the_cli_writes_the_export_and_refuses_what_cannot_be_exported(manifest, tmp_path):
    out, exp = tmp_path / "out.jsonl", tmp_path / "set.jsonl"
    r = subprocess.run([*CLI, "batch", str(manifest), "--out", str(out), "--explain-gold", "--export", "alpaca",
                        str(exp), *FAKE], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "3 records (1 left out" in " ".join(r.stdout.split())
    assert len(read_training_records(exp)) == 3
    for extra, msg in ((["--export", "csv", str(exp)], "unknown format 'csv'"),
                       (["--export", "alpaca", str(exp), "--no-explain"], "needs explanations")):  # fmt: skip
        r = subprocess.run([*CLI, "batch", str(manifest), "--out", str(tmp_path / "o2.jsonl"), *extra, *FAKE],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
        assert r.returncode == 2 and msg in " ".join(r.stderr.split())


@pytest.mark.slow
def test_an_exported_set_trains_an_adapter_the_pipeline_loads(manifest, tmp_path):
    """The round trip on the real SmolLM2: export → ``train reasoner --data`` (2 steps) → an adapter without a
    projector that the reasoner loads and scores with."""
    out, exp, adapter = tmp_path / "out.jsonl", tmp_path / "set.jsonl", tmp_path / "adapter"
    r = subprocess.run([*CLI, "batch", str(manifest), "--out", str(out), "--explain-gold", "--export", "sharegpt",
                        str(exp), *FAKE], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*CLI, "train", "reasoner", "--data", str(exp), "--out", str(adapter), "--max-steps", "2",
                        "--batch", "2", "--threads", "2"], capture_output=True, text=True, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rec = json.loads((adapter / "training.json").read_text())
    assert rec["steps"] == 2 and rec["examples"] == 6 and rec["label_examples"] == 3  # 3 answers + 3 labels
    assert not (adapter / "projector.json").exists()
    meta = json.loads((adapter / "reasoner.json").read_text())
    assert meta["soft_tokens"] == 0 and meta["context_model"] is None
    assert "set.jsonl" in (adapter / "README.md").read_text()
    from affect_llm.config import ReasonerOptions
    from affect_llm.llm.reasoner import Reasoner

    reasoner = Reasoner(ReasonerOptions(adapter=str(adapter)))
    assert reasoner.projector is None and reasoner.adapter.path == adapter
    p = reasoner.label_distribution("Evidence:\n[T1] (text): We won!")
    assert set(p) == set(meta["labels"]) and abs(sum(p.values()) - 1) < 1e-6
    r = subprocess.run([*CLI, "train", "reasoner", "--data", str(exp)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "give --out" in r.stderr
