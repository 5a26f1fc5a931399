"""Emotion wheels: the MER mapping on a hand-made wheel set, the MER file reader against the real files (skipped
when /work/shared/data/emotion_wheel is absent), the built-in taxonomy, and the free-text extractor."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from affect_llm.errors import InputError
from affect_llm.metrics.emotion_words import EmotionWordExtractor, LexiconExtractor, emotion_words
from affect_llm.metrics.wheel import (
    WHEELS_ENV,
    Wheel,
    WheelSet,
    builtin_wheels,
    default_wheels,
    inflections,
    load_mer_wheels,
    parse_word_list,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MER_DIR = SHARED / "emotion_wheel"


def tiny() -> WheelSet:
    """Two wheels; ``forms`` and ``synonyms`` written out so that every mapping below can be followed by hand."""
    a = Wheel.from_tree("A", {
        "happy": {"joyful": ["glad"], "content": ["calm"]},
        "sad": {"lonely": ["isolated"], "hurt": ["grief"]},
        "angry": {"mad": ["furious"]},
    })
    b = Wheel.from_tree("B", {
        "positive": {"good": ["glad", "calm", "joyful"]},
        "negative": {"bad": ["isolated", "grief", "furious", "mad"]},
    })
    forms = {
        "glad": ("glad",), "gladly": ("glad",), "joyful": ("joyful",), "calm": ("calm",), "at ease": ("calm",),
        "furious": ("furious",), "fury": ("furious",), "grief": ("grief",), "isolated": ("isolated",),
        "happy": ("happy",), "sad": ("sad",), "angry": ("angry",), "upset": ("upset",), "blue": ("blue",),
        "bittersweet": ("bittersweet",), "neutral": ("neutral",), "worn-out": ("grief",),
    }
    synonyms = {
        "glad": ("glad",), "joyful": ("joyful",), "calm": ("calm",), "furious": ("furious", "mad"),
        "grief": ("grief",), "isolated": ("isolated",), "happy": ("happy", "glad"), "sad": ("sad", "grief"),
        "angry": ("furious", "mad"), "upset": ("sad",), "bittersweet": ("grief", "glad"),
    }
    return WheelSet("tiny", (a, b), forms, synonyms)


@pytest.fixture(scope="module")
def mer() -> WheelSet:
    if not (MER_DIR / "wheel1.xlsx").is_file():
        pytest.skip(f"MER emotion-wheel files not found in {MER_DIR}")
    return default_wheels(MER_DIR)


# -- the MER mapping on the tiny set -----------------------------------------------------------------------------


def test_wheel_from_tree_maps():
    a = tiny().wheel("A")
    assert a.level1_of["glad"] == "happy" and a.level2_of["glad"] == "joyful"
    assert a.level1_of["joyful"] == "happy" and a.level2_of["joyful"] == "joyful"
    # a level-1 word's level-2 group is its alphabetically first child (content < joyful)
    assert a.level1_of["happy"] == "happy" and a.level2_of["happy"] == "content"
    assert a.groups_at("level1") == ["angry", "happy", "sad"]
    # a word placed twice keeps its last place (AffectGPT builds a dict in order)
    w = Wheel.from_tree("w", {"x": {"p": ["dup"]}, "y": {"q": ["dup"], "p2": ["x"]}})
    assert (w.level1_of["dup"], w.level2_of["dup"]) == ("y", "q")
    assert (w.level1_of["x"], w.level2_of["x"]) == ("y", "p2")
    # cells are normalised like MER's reader
    assert Wheel.from_tree("w", {" Mad ": {"Hurt ": [" Jealous"]}}).level1_of["jealous"] == "mad"


def test_group_follows_mer_definition():
    ws = tiny()
    # happy -> raw "happy" -> wheel words {glad, happy}; sorted, "glad" is the first on wheel A
    assert ws.candidates("Happy ") == ("glad", "happy")
    assert ws.group("happy", "A") == "happy" and ws.group("happy", "A", "level2") == "joyful"
    assert ws.group("happy", "B") == "positive" and ws.group("happy", "B", "level2") == "good"
    # the alphabetically first candidate on the wheel wins, whichever group it is in
    assert ws.group("bittersweet", "A") == "happy"  # glad < grief
    # "upset" -> sad, a level-1 word of A: its level-2 group is A's first child of "sad" (hurt < lonely)
    assert ws.group("upset", "A") == "sad" and ws.group("upset", "A", "level2") == "hurt"
    assert ws.group("upset", "B") is None  # "sad" is not on wheel B
    assert ws.group("fury", "A", "level2") == "mad"  # a word form -> its raw word -> the wheel
    # not a form / a raw word without synonyms / unknown: nothing
    assert ws.group("nonsense", "A") is None and ws.group("blue", "A") is None and ws.group("neutral", "B") is None
    assert ws.groups(["glad", "isolated", "blue", "calm"], "A") == {"happy", "sad"}
    assert ws.groups(["glad", "isolated", "blue", "calm"], "A", "level2") == {"joyful", "lonely", "content"}
    assert "blue" not in ws.vocabulary and "upset" in ws.vocabulary and ws.maps("upset")
    with pytest.raises(InputError):
        ws.group("glad", "Z")
    with pytest.raises(InputError):
        ws.group("glad", "A", "level3")  # type: ignore[arg-type]


def test_parse_word_list():
    assert parse_word_list("['Happy', ' excited ']") == ["happy", "excited"]
    assert parse_word_list('["don\'t believe", \'doubt\']') == ["don't believe", "doubt"]
    assert parse_word_list("[happy, sad]") == ["happy", "sad"]  # not a literal: AffectGPT's split
    assert parse_word_list("happy, sad") == ["happy", "sad"]
    assert parse_word_list("") == [] and parse_word_list(None) == [] and parse_word_list("[]") == []


# -- extracting emotion words ---------------------------------------------------------------------------------


def test_extractor_negation():
    ws = tiny()
    assert emotion_words("She is not angry.", ws) == []
    assert emotion_words("He never looked glad", ws) == []
    assert emotion_words("He isn't really glad", ws) == []  # n't, two words before
    assert emotion_words("not at all, glad", ws) == ["glad"]  # punctuation ends the scope
    assert emotion_words("not furious but calm", ws) == ["calm"]  # so does "but"
    assert emotion_words("no, no, no he is very very glad", ws) == ["glad"]  # 4 tokens away
    assert emotion_words("not only glad, furious", ws) == ["glad", "furious"]
    assert emotion_words("Without grief or fury", ws) == []


def test_extractor_order_multiword_lists():
    ws = tiny()
    assert emotion_words("Gladly! Then FURIOUS, then glad again; at ease", ws) == ["gladly", "furious", "glad", "at ease"]
    assert emotion_words("He is worn out", ws) == ["worn-out"]  # a hyphenated entry matches with a space
    assert emotion_words("['glad', 'unknown', 'Fury']", ws) == ["glad", "fury"]
    assert emotion_words("glad, sort of furious", ws) == ["glad", "furious"]  # list item read as text
    assert emotion_words(["glad", "not furious"], ws) == ["glad"]
    assert emotion_words("", ws) == [] and emotion_words("blue", ws) == []
    extract = LexiconExtractor(ws)
    assert isinstance(extract, EmotionWordExtractor) and extract("so glad") == ["glad"]


def test_extractor_builtin():
    ws = builtin_wheels()
    assert emotion_words("She was at a loss for words.", ws) == ["at a loss for words"]  # longest match
    assert emotion_words("She was at a loss.", ws) == ["at a loss"]
    assert emotion_words("Self-deprecating humour; she's not interested", ws) == [
        "self-deprecating", "humour", "not interested"]  # an entry that starts with a negator is kept whole
    assert emotion_words("She doesn't care", ws) == ["doesn't care"]
    # text stopwords: not taken from running text, taken as list items
    assert emotion_words("Her voice is low and heavy; she looks sad", ws) == ["sad"]
    assert emotion_words("low, down", ws) == ["low", "down"]
    assert emotion_words("Fine, let's go", ws) == []
    assert emotion_words("happy and satisfied, angry/displeased", ws) == ["happy", "satisfied", "angry", "displeased"]


# -- the MER files ------------------------------------------------------------------------------------------------


def test_mer_counts(mer):
    assert [w.name for w in mer.wheels] == ["wheel1", "wheel2", "wheel3", "wheel4", "wheel5"]
    # AffectGPT's comments: 247-253 wheel words, 1255 synonym keys, 7386 word forms
    assert len(set().union(*(w.words for w in mer.wheels))) == 253
    assert len(mer.synonyms) == 1255
    assert len(mer.forms) == 7386
    assert mer is default_wheels(str(MER_DIR))  # cached per folder


def test_mer_known_mappings(mer):
    w1, w2, w5 = mer.wheel("wheel1"), mer.wheel("wheel2"), mer.wheel("wheel5")
    # wheel1.xlsx, first rows: Mad / Offended / Skeptical, then (carried down) Insulated
    assert w1.tree["mad"]["offended"] == ("skeptical", "insulated")
    assert w1.level2_of["happy"] == "accepted"  # first of happy's level-2 children
    # wheel2.xlsx has "Disappointed" as a level-2 word under Disgusted and as a level-3 word under Sad/Hurt
    assert (w2.level1_of["disappointed"], w2.level2_of["disappointed"]) == ("sad", "hurt")
    assert "mad" in w5.tree  # " Mad " in wheel5.xlsx
    # format.csv: "anger" is a form of "anger", "angered", "angry"; synonym.xlsx: "furious" stands for "angry"
    assert mer.forms["anger"] == ("anger", "angered", "angry")
    assert "angry" in mer.synonyms["furious"]
    assert [(mer.group("anger", w), mer.group("anger", w, "level2")) for w in mer.wheels] == [
        ("mad", "anger"), ("angry", "aggressive"), ("mad", "angry"), ("anger", "aggressive"), ("mad", "angry")]
    assert [mer.group("worried", w) for w in mer.wheels] == ["scared", "fearful", "scared", "fear", "scared"]
    assert all(mer.group("neutral", w) is None for w in mer.wheels)
    # the definition, quirks included: "fear"'s sorted candidates reach "brave" on wheel2 before "fearful"
    assert mer.group("fear", "wheel2") == "happy"


def test_mer_errors(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    with pytest.raises(InputError, match="not a folder"):
        load_mer_wheels(tmp_path / "nope")
    with pytest.raises(InputError, match="wheel1.xlsx"):
        load_mer_wheels(tmp_path)
    wb = openpyxl.Workbook()
    wb.active.append(["level1", "level2", "level3"])
    wb.active.append(["Happy", "Joyful", "Glad"])
    wb.save(tmp_path / "wheel1.xlsx")
    with pytest.raises(InputError, match="synonym.xlsx: missing"):
        load_mer_wheels(tmp_path)
    (tmp_path / "synonym.xlsx").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="synonym.xlsx: not a readable"):
        load_mer_wheels(tmp_path)
    wb = openpyxl.Workbook()
    wb.active.append(["word_run1", "synonym_run1"])
    wb.save(tmp_path / "synonym.xlsx")
    with pytest.raises(InputError, match="synonym.xlsx: missing column"):
        load_mer_wheels(tmp_path)
    wb = openpyxl.Workbook()
    wb.active.append([f"{k}_run{i}" for i in range(1, 9) for k in ("word", "synonym")])
    wb.active.append(["glad", "cheerful, pleased"] * 8)
    wb.save(tmp_path / "synonym.xlsx")
    with pytest.raises(InputError, match="format.csv: missing"):
        load_mer_wheels(tmp_path)
    (tmp_path / "format.csv").write_text("word,forms\nglad,gladly\n")
    with pytest.raises(InputError, match="format.csv: expected columns"):
        load_mer_wheels(tmp_path)
    (tmp_path / "format.csv").write_text('name,format\ncheerful,"cheerfully,cheer"\n')
    ws = load_mer_wheels(tmp_path)
    assert ws.group("cheerfully", "wheel1") == "happy" and ws.group("cheerfully", "wheel1", "level2") == "joyful"
    wb = openpyxl.Workbook()
    wb.active.append(["level1", "level2", "level3"])
    wb.active.append([None, "Joyful", "Glad"])
    wb.save(tmp_path / "wheel2.xlsx")
    with pytest.raises(InputError, match=r"wheel2.xlsx: row 2 has an empty level1"):
        load_mer_wheels(tmp_path)


def test_default_wheels_env(monkeypatch, mer):
    monkeypatch.delenv(WHEELS_ENV, raising=False)
    assert default_wheels() is builtin_wheels()
    monkeypatch.setenv(WHEELS_ENV, "builtin")
    assert default_wheels() is builtin_wheels()
    monkeypatch.setenv(WHEELS_ENV, str(MER_DIR))
    assert default_wheels() is mer
    assert default_wheels(MER_DIR) is mer


# -- the built-in taxonomy ------------------------------------------------------------------------------------


def _taxonomy() -> dict:
    return json.loads(resources.files("affect_llm.metrics").joinpath("taxonomy.json").read_text(encoding="utf-8"))


DATASET_LABELS = {
    "meld": ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"],
    "emorynlp": ["neutral", "joyful", "peaceful", "powerful", "scared", "mad", "sad"],
    "fer": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
    "emer": ["angry", "happy", "worried", "sad", "surprise"],
    "iemocap": ["frustrated", "excited"],
}


@pytest.mark.parametrize("dataset", sorted(DATASET_LABELS))
def test_builtin_covers_dataset_labels(dataset):
    ws = builtin_wheels()
    for label in DATASET_LABELS[dataset]:
        for w in ws.wheels:
            assert ws.group(label, w) is not None, (label, w.name)
            assert ws.group(label, w, "level2") is not None, (label, w.name)


def test_builtin_structure():
    ws = builtin_wheels()
    data = _taxonomy()
    assert ws.wheel_names == ["ekman", "plutchik", "feelings"]
    for w in ws.wheels:
        assert 8 <= len(w.groups_at("level1")) <= 12
        placed = [c for children in w.tree.values() for leaves in children.values() for c in leaves]
        assert sorted(placed) == sorted(data["concepts"]), w.name  # every concept exactly once
    # a lemma belongs to one concept, and maps where its concept maps on every wheel and level (no alphabetical
    # surprise from a group name that is also a lemma)
    owner: dict[str, str] = {}
    for c, lemmas in data["concepts"].items():
        for lemma in [c, *lemmas]:
            assert owner.setdefault(lemma, c) == c, (lemma, owner[lemma], c)
            for w in ws.wheels:
                for lv in ("level1", "level2"):
                    assert ws.group(lemma, w, lv) == ws.group(c, w, lv), (lemma, c, w.name, lv)
    # group names map to themselves
    for w in ws.wheels:
        for l1, children in w.tree.items():
            assert ws.group(l1, w) == l1
            for l2 in children:
                assert ws.group(l2, w, "level2") == l2
    assert set(ws.text_stopwords) <= ws.vocabulary
    assert ws.group("negative", "ekman") is None  # valence-only words name no group, on purpose
    # generated inflections land where their lemma does
    assert {"worry", "worrying", "worries"} <= inflections("worried")
    assert {"frustration", "frustrating"} <= inflections("frustrated")
    assert {"happily", "happiness"} <= inflections("happy")
    for form, lemma in [("frustration", "frustrated"), ("happily", "happy"), ("anxiously", "anxious"),
                        ("fears", "fear"), ("sarcastically", "sarcastic")]:
        assert ws.group(form, "plutchik", "level2") == ws.group(lemma, "plutchik", "level2") is not None
