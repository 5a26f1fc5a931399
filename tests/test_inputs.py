"""Evaluation sets read from the datasets' own files, and predictions files in the formats users bring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affect_llm.errors import InputError
from affect_llm.evaluation.predictions import read_predictions
from affect_llm.inputs import load_eval_set, parse_label_set, read_jsonl_records

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not here")
    return path


def test_meld_dev_items_carry_their_earlier_dialogue_and_sentiment():
    es = load_eval_set("meld", _need(SHARED / "meld"), "dev")
    assert es.labels == ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
    assert len(es.items) == 1109 and len({x.id for x in es.items}) == 1109
    first, second = es.items[0], es.items[1]
    assert first.id == "dia0_utt0" and first.context is not None and len(first.context) == 0
    assert second.context.utterances[-1].text == first.text  # the earlier utterance, not the item itself
    assert first.sentiment in {"positive", "negative", "neutral"} and first.label in es.labels
    assert all("\x92" not in x.text for x in es.items)  # cp1252 quotes normalised


def test_meld_media_dir_names_the_clips(tmp_path):
    es = load_eval_set("meld", _need(SHARED / "meld"), "dev", media_dir=tmp_path, limit=3)
    assert [x.media.name for x in es.items] == ["dia0_utt0.mp4", "dia0_utt1.mp4", "dia1_utt0.mp4"]
    assert all(x.text is None for x in es.items)


def test_emer_and_ov_merd_files():
    emer = _need(SHARED / "emer")
    v1 = load_eval_set("emer-v1", emer)
    assert len(v1.items) == 100 and v1.items[0].id == "sample_00000648"
    assert v1.items[0].label == "angry" and v1.items[0].text and "Therefore" in v1.items[0].explanation
    v2 = load_eval_set("emer-v2", emer)
    assert len(v2.items) == 332 and all(x.labels for x in v2.items) and not v2.items[0].runnable
    ov = load_eval_set("ov-merd", emer)
    assert ov.items[0].labels == ["pleasurable", "self-deprecating", "relaxed", "complaining", "relieved", "humorous",
                                  "joyful", "happy"]  # fmt: skip


def test_jsonl_dataset_and_its_errors(tmp_path):
    f = tmp_path / "set.jsonl"
    f.write_text('{"id": "a", "text": "I love it", "label": "Joy"}\n\n'
                 '{"id": "b", "media": "b.mp4", "labels": "[\'happy\', \'excited\']", "explanation": "She smiles."}\n'
                 '{"id": "c", "text": "hm", "context": [{"speaker": "A", "text": "Hi"}]}\n')  # fmt: skip
    es = load_eval_set("jsonl", f)
    a, b, c = es.items
    assert a.label == "joy" and a.text == "I love it" and b.media == tmp_path / "b.mp4"
    assert b.labels == ["happy", "excited"] and c.context.utterances[0].speaker == "A"
    f.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    with pytest.raises(InputError, match="appears twice"):
        load_eval_set("jsonl", f)
    f.write_text('{"id": "a", "text": "x"}\n{"id": "b"\n')
    with pytest.raises(InputError, match=r"set.jsonl:2: not JSON"):
        load_eval_set("jsonl", f)


@pytest.mark.parametrize(("given", "expected"), [
    ("['happy', 'excited']", ["happy", "excited"]),
    ('["Happy"]', ["happy"]),
    ("happy, self-deprecating", ["happy", "self-deprecating"]),
    ("", []),
    ("['unterminated", ["unterminated"]),
])  # fmt: skip
def test_label_sets(given, expected):
    assert parse_label_set(given) == expected


def test_unknown_dataset_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="unknown dataset"):
        load_eval_set("iemocap", tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_eval_set("emer-v1", tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        load_eval_set("meld", tmp_path / "nope")


def test_predictions_in_the_formats_users_bring(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("name,openset\ns1,\"['happy', 'relaxed']\"\ns2,angry\n")
    p = read_predictions(csv)
    assert p["s1"].labels == ["happy", "relaxed"] and p["s2"].labels == ["angry"]
    js = tmp_path / "p.jsonl"
    js.write_text(json.dumps({"id": "x", "label": "Joy", "explanation": "e", "probabilities": {"joy": 1.0},
                              "cues": [{"id": "T1", "modality": "text", "text": "\"hi\""}]}) + "\n")  # fmt: skip
    x = read_predictions(js)["x"]
    assert x.label == "joy" and x.cues[0].id == "T1" and x.probabilities == {"joy": 1.0}
    with pytest.raises(InputError, match="id column"):
        (tmp_path / "bad.csv").write_text("who,label\na,joy\n")
        read_predictions(tmp_path / "bad.csv")


def test_a_line_cut_short_is_dropped_and_repaired(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "lab')
    assert [r["id"] for r in read_jsonl_records(f)] == ["a", "b"]
    assert f.read_bytes().endswith(b'"lab')  # reading alone does not touch the file
    read_jsonl_records(f, repair=True)
    assert f.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
