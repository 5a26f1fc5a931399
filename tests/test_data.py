import json
from pathlib import Path

import pytest

from affect_llm.data import EMORYNLP_LABELS, MELD_LABELS, dataset_labels, load_dataset, read_dialogue
from affect_llm.errors import InputError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

MELD_HEAD = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"


def write_meld(folder: Path, split: str, rows: list[tuple]) -> Path:
    """rows: (utterance, speaker, emotion, dialogue, utterance_id)"""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [MELD_HEAD]
    for n, (utt, spk, emo, dia, uid) in enumerate(rows, 1):
        utt = utt.replace('"', '""')
        lines.append(f'{n},"{utt}",{spk},{emo},neutral,{dia},{uid},1,1,"00:00:01,000","00:00:02,000"\n')
    p = folder / f"{split}_sent_emo.csv"
    p.write_text("".join(lines), encoding="utf-8")
    return p


def test_meld_grouping_order_and_cp1252(tmp_path):
    write_meld(tmp_path, "dev", [
        ("Second.", "Ross", "joy", 0, 1),
        ("I\x92m first \x93here\x94.", "Rachel", "surprise", 0, 0),
        ("Other dialogue.", "Joey", "neutral", 1, 0),
    ])  # fmt: skip
    ds = load_dataset("meld", "dev", tmp_path)
    assert [d.id for d in ds] == ["meld-dev-0", "meld-dev-1"]
    first = ds[0].utterances[0]
    assert first.text == 'I\'m first "here".' and first.speaker == "Rachel" and first.label == "surprise"
    assert [u.text for u in ds[0].utterances] == ['I\'m first "here".', "Second."]
    assert ds[0].speaker_ids() == [0, 1]


def test_bad_dataset_input(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_dataset("meld", "test", tmp_path)
    with pytest.raises(InputError, match="unknown dataset"):
        dataset_labels("iemocap")
    write_meld(tmp_path, "dev", [("Hi.", "Ross", "happiness", 0, 0)])
    with pytest.raises(InputError, match="unknown label"):
        load_dataset("meld", "dev", tmp_path)
    (tmp_path / "train_sent_emo.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="lacks columns"):
        load_dataset("meld", "train", tmp_path)


def test_read_dialogue_jsonl_and_csv(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"speaker": "A", "text": "We won\\u2019t make it."}\n\n{"speaker": "B", "text": "Sure we will."}\n')
    d = read_dialogue(p)
    assert [(u.speaker, u.text) for u in d.utterances] == [("A", "We won't make it."), ("B", "Sure we will.")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"speaker": "A", "text": "ok"}\nnot json\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2"):
        read_dialogue(bad)
    bad.write_text('{"speaker": "A"}\n')
    with pytest.raises(InputError, match="expected"):
        read_dialogue(bad)
    csvp = write_meld(tmp_path / "m", "dev", [("One.", "Ross", "joy", 0, 0), ("Two.", "Monica", "anger", 0, 1)])
    d2 = read_dialogue(csvp)
    assert [u.label for u in d2.utterances] == ["joy", "anger"]
    with pytest.raises(InputError):
        read_dialogue(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no utterances"):
        read_dialogue(tmp_path / "empty.jsonl")


@pytest.mark.skipif(not (SHARED / "meld").is_dir(), reason="../shared/data/meld is not present")
def test_real_meld_and_emorynlp_dev():
    meld = load_dataset("meld", "dev", SHARED / "meld")
    assert len(meld) == 114 and sum(len(d) for d in meld) == 1109
    labels = {u.label for d in meld for u in d.utterances}
    assert labels == set(MELD_LABELS)
    assert not any("\x92" in u.text or "\u2019" in u.text for d in meld for u in d.utterances)
    emory = load_dataset("emorynlp", "dev", SHARED / "emorynlp")
    assert sum(len(d) for d in emory) == 954
    assert {u.label for d in emory for u in d.utterances} == set(EMORYNLP_LABELS)
    assert all(not u.speaker.startswith("[") for d in emory for u in d.utterances)
    assert json.dumps([u.text for u in emory[0].utterances])  # plain strings


def test_pipeline_reads_context_in_every_form(tmp_path):
    from affect_llm.pipeline import Pipeline
    from affect_llm.prompting import dialogue_text

    pipe = Pipeline()  # nothing loads until analyze()
    d = pipe.dialogue_context("Ross: I\x92m moving to Paris.\n\nRachel: What?\njust a line without a speaker")
    assert [(u.speaker, u.text) for u in d.utterances] == [
        ("Ross", "I'm moving to Paris."), ("Rachel", "What?"), ("unknown", "just a line without a speaker")]  # fmt: skip
    p = tmp_path / "c.jsonl"
    p.write_text('{"speaker": "A", "text": "hi"}\n')
    assert pipe.dialogue_context(str(p)).utterances[0].text == "hi"
    assert pipe.dialogue_context(p).utterances[0].speaker == "A"
    assert pipe.dialogue_context(None) is None
    with pytest.raises(InputError, match="no such context file"):
        pipe.dialogue_context(str(tmp_path / "nope.csv"))
    text = dialogue_text(d)
    assert text.splitlines()[0] == "Earlier in the conversation:" and "Rachel: What?" in text
    assert dialogue_text(None) is None
