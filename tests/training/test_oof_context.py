"""Out-of-fold context models for the reasoner's training examples: a stable fold per dialogue, fold models that
never see their fold, folders checked before anything loads, and examples whose D1 is the fold model's reading
while the soft prompt stays the shipped model's embedding."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from affect_llm.training.context import fold_of
from affect_llm.training.reasoner import ReasonerTrainOptions, out_of_fold_pipelines


def test_fold_of_is_a_stable_balanced_partition():
    ids = [f"meld-train-{i}" for i in range(1000)]
    folds = [fold_of(i, 3) for i in ids]
    assert set(folds) == {0, 1, 2}
    assert all(250 < folds.count(f) < 420 for f in range(3))
    # the same folds in another interpreter (Python's own hash() is salted per process and would not be)
    code = "from affect_llm.training.context import fold_of; print([fold_of(f'meld-train-{i}', 3) for i in range(1000)])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONHASHSEED": "123"},
                           check=True, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert json.loads(other.stdout) == folds


def _fold_dir(root: Path, name: str, **options) -> str:
    d = root / name
    d.mkdir()
    (d / "training.json").write_text(json.dumps({"options": {"dataset": "meld", "folds": 2, "fold": 0, **options}}))
    return str(d)


@pytest.mark.parametrize(
    "folders, message",
    [
        (lambda r: [str(r / "absent")], "no training.json"),
        (lambda r: [_fold_dir(r, "a", folds=0), _fold_dir(r, "b", fold=1)], "whole train split"),
        (lambda r: [_fold_dir(r, "a", dataset="emorynlp"), _fold_dir(r, "b", fold=1)], "emorynlp model"),
        (lambda r: [_fold_dir(r, "a"), _fold_dir(r, "b")], "both hold out fold 0"),
        (lambda r: [_fold_dir(r, "a")], "cover folds 0"),
        (lambda r: [_fold_dir(r, "a"), _fold_dir(r, "b", folds=3, fold=1)], "cover folds 0"),
    ],
)
def test_out_of_fold_folders_are_checked_before_anything_loads(tmp_path, folders, message):
    opts = ReasonerTrainOptions(oof_context=folders(tmp_path))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        out_of_fold_pipelines(opts, cfg=None)


def test_no_folders_no_fold_pipelines():
    assert out_of_fold_pipelines(ReasonerTrainOptions(), cfg=None) == []


@pytest.mark.slow
def test_fold_models_hold_their_fold_out_and_give_the_examples_d1(tmp_path):
    from affect_llm.context.model import default_path
    from affect_llm.data import dataset_labels, load_dataset
    from affect_llm.llm.hf import TransformersLM
    from affect_llm.training.context import TrainOptions, train
    from affect_llm.training.reasoner import build_examples
    from tests.context.test_model import tiny_meld

    if not (default_path("meld") / "config.json").is_file():
        pytest.skip("adapters/context-meld missing")
    data = tiny_meld(tmp_path / "meld")
    train_ids = [d.id for d in load_dataset("meld", "train", data)]
    assert {fold_of(i, 2) for i in train_ids} == {0, 1}  # the fixture has dialogues in both folds
    folders = []
    for f in range(2):
        out = tmp_path / f"fold{f}"
        rec = train(TrainOptions(dataset="meld", data_dir=str(data), out=str(out), epochs=1, max_steps=2,
                                 batch_dialogues=2, seed=f, threads=1, folds=2, fold=f))  # fmt: skip
        assert rec["train_dialogues"] == [i for i in train_ids if fold_of(i, 2) != f]
        folders.append(str(out))

    lm = TransformersLM("smollm2-135m", dtype="float32")
    labels = dataset_labels("meld")
    base = ReasonerTrainOptions(data_dir=str(data), samples=12, explain_share=0.0, drop_context=0.0,
                                speech_share=0.0)  # fmt: skip
    plain = build_examples(base, lm, labels)
    oof = build_examples(ReasonerTrainOptions(**{**base.__dict__, "oof_context": folders}), lm, labels)
    assert [e.uid for e in plain] == [e.uid for e in oof]
    tok = lm.tokenizer
    changed = 0
    for a, b in zip(plain, oof):
        # the soft prompt is the shipped context model's embedding either way
        np.testing.assert_array_equal(a.embedding, b.embedding)
        pa, pb = tok.decode([max(i, 0) for i in a.ids]), tok.decode([max(i, 0) for i in b.ids])
        d1a, d1b = pa.split("[D1]")[1].split("\n")[0], pb.split("[D1]")[1].split("\n")[0]
        # only D1 differs: the text cue is the same
        assert pa.split("[T1]")[1].split("\n")[0] == pb.split("[T1]")[1].split("\n")[0]
        changed += d1a != d1b
    assert changed > len(plain) // 2  # two-step fold models read the dialogues otherwise than the shipped model


def test_the_card_says_how_d1_was_made_and_how_to_reproduce_it(tmp_path):
    from affect_llm.training.reasoner import write_card

    opts = ReasonerTrainOptions(media_examples=300, oof_context=["runs/oof/f0", "runs/oof/f1"], threads=2)
    meta = {"base": "smollm2-135m", "base_sha256": "0" * 64, "context_model": "meld", "soft_tokens": 4}
    oof = [{"folder": f"runs/oof/f{i}", "fold": i, "folds": 2, "fingerprint": "x", "best_dev": {"weighted_f1": w}}
           for i, w in enumerate((54.32, 53.9))]  # fmt: skip
    rec = {"options": opts.__dict__, "pool": 9989, "examples": 3100, "label_examples": 2200, "steps": 300,
           "stopped": "time budget", "minutes": 38.0, "build_minutes": 4.0, "trainable_parameters": 1, "bf16": True,
           "history": [], "oof_context": oof, "media_examples": 420,
           "machine": {"threads": 2, "cpu": "x86_64", "torch": "2.13.0"}}  # fmt: skip
    (tmp_path / "reasoner.json").write_text(json.dumps(meta))
    (tmp_path / "training.json").write_text(json.dumps(rec))
    (tmp_path / "projector.json").write_text(json.dumps({"d_model": 576}))
    card = write_card(tmp_path).read_text()
    assert "D1 out of fold" in card and "54.32, 53.9" in card and "420 media-shaped examples" in card
    assert "--oof-context runs/oof/f0" in card and "--oof-context runs/oof/f1" in card
    assert "--media-examples 300" in card and "scripts/retrain_reasoner.sh" in card
    assert "trained on the same train split" not in card  # the old caveat is gone with out-of-fold D1
    rec.update(oof_context=[], media_examples=0)
    opts.oof_context, opts.media_examples = [], 0
    rec["options"] = opts.__dict__
    (tmp_path / "training.json").write_text(json.dumps(rec))
    card = write_card(tmp_path).read_text()
    assert "trained on the same train split" in card and "--oof-context" not in card and "No voice, face" in card
