"""Emotion-wheel metrics, computed by hand on the tiny wheel set of test_wheel.py, and on the OV-MERD example
files with the MER wheels (skipped when /work/shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from affect_llm.errors import InputError
from affect_llm.metrics.openset import (
    hit_rate,
    label_explanation_consistency,
    openset_report,
    openset_scores,
    read_openset_csv,
    sentiment_of,
    sentiment_scores,
    vocabulary_coverage,
)
from affect_llm.metrics.wheel import builtin_wheels, default_wheels
from tests.metrics.test_wheel import MER_DIR, SHARED, tiny

EMER = SHARED / "emer"

# On wheel A (level 1): glad, calm -> happy; isolated, grief -> sad; furious -> angry; upset -> sad; blue -> none.
# On wheel B (level 1): glad, calm -> positive; isolated, grief, furious -> negative; upset, blue -> none.


def test_hit_rate_by_hand():
    ws = tiny()
    gold = ["happy", "sad", "neutral", "angry", "blue", "happy"]
    preds = [
        "She looks glad and calm.",  # A {happy}: hit; B {positive}: hit
        ["isolated"],  # A {sad}: hit; B {negative}: hit
        "whatever",  # neutral gold: excluded
        "not furious, just calm, a bit isolated",  # furious negated; A {happy, sad}: miss; B {positive, negative}: hit
        "sad",  # gold "blue" maps nowhere: excluded
        [],  # nothing predicted: miss
    ]
    r = hit_rate(gold, preds, ws)
    assert r["per_wheel"]["A"] == {"hit_rate": 2 / 4, "n": 4, "excluded_unmapped": 1}
    assert r["per_wheel"]["B"] == {"hit_rate": 3 / 4, "n": 4, "excluded_unmapped": 1}
    assert r["hit_rate"] == pytest.approx((2 / 4 + 3 / 4) / 2)
    assert (r["n"], r["excluded_neutral"], r["excluded_unmapped"]) == (4, 1, 1)
    # level 2: A: happy->joyful hit; grief(hurt) vs lonely miss; furious(mad) vs {lonely, content} miss -> 1/4;
    # B: good/bad throughout -> 3/4
    r2 = hit_rate(gold, preds, ws, level="level2")
    assert [r2["per_wheel"][w]["hit_rate"] for w in "AB"] == [1 / 4, 3 / 4]
    assert r2["hit_rate"] == pytest.approx(0.5)
    # neutral is kept when the caller says so (it maps nowhere on the tiny set, so it is then "unmapped")
    r3 = hit_rate(gold, preds, ws, neutral_labels=())
    assert (r3["excluded_neutral"], r3["excluded_unmapped"]) == (0, 2)
    # a wheel on which no gold maps is left out of the mean: "upset" is only on A
    r4 = hit_rate(["upset"], [["grief"]], ws)
    assert r4["per_wheel"]["B"]["n"] == 0 and r4["hit_rate"] == 1.0
    assert hit_rate([], [], ws)["hit_rate"] == 0.0
    with pytest.raises(ValueError):
        hit_rate(["happy"], [], ws)
    with pytest.raises(InputError):
        hit_rate(["happy"], ["glad"], ws, level="level3")  # type: ignore[arg-type]


def test_hit_rate_custom_extractor():
    ws = tiny()
    calls = []

    def extractor(text: str) -> list[str]:
        calls.append(text)
        return ["furious"]

    r = hit_rate(["angry", "happy"], ["anything", ["glad"]], ws, extractor=extractor)
    assert calls == ["anything"] and r["hit_rate"] == 1.0


def test_openset_by_hand():
    ws = tiny()
    gold = [["happy", "furious"], ["grief"], ["blue"], ["calm"]]
    pred = [["glad", "isolated", "calm", "fury"], [], ["happy"], "She is calm and at ease"]
    # wheel A, level 1
    #   s1: G={happy, angry}  P={happy, sad, angry}  p=2/3 r=1
    #   s2: G={sad}           P={}                   p=0   r=0
    #   s3: G={} -> skipped
    #   s4: G={happy}         P={happy}              p=1   r=1
    #   P=5/9 R=2/3 F=2PR/(P+R)=20/33
    # wheel B, level 1: s1 p=r=1; s2 0; s4 1 -> P=R=F=2/3
    r = openset_scores(gold, pred, ws)
    assert r["per_wheel"]["A"] == pytest.approx({"f": 20 / 33, "p": 5 / 9, "r": 2 / 3, "n": 3})
    assert r["per_wheel"]["B"] == pytest.approx({"f": 2 / 3, "p": 2 / 3, "r": 2 / 3, "n": 3})
    # F, P, R averaged over wheels (F is not recomputed from the averaged P and R)
    assert r["f"] == pytest.approx(7 / 11)
    assert r["precision"] == pytest.approx(11 / 18) and r["recall"] == pytest.approx(2 / 3)
    assert r["n"] == 3
    # level 2, wheel A: s1 G={joyful, mad} P={joyful, lonely, content, mad} p=1/2 r=1; s2 0; s4 G=P={content}
    #   P=1/2 R=2/3 F=4/7; wheel B (good/bad) as at level 1: 2/3
    rep = openset_report(gold, pred, ws)
    assert rep["level1"] == r
    assert rep["level2"]["per_wheel"]["A"]["f"] == pytest.approx(4 / 7)
    assert rep["level2"]["f"] == pytest.approx((4 / 7 + 2 / 3) / 2)
    # gold against itself
    assert openset_scores(gold, gold, ws)["f"] == pytest.approx(1.0)
    # nothing scorable
    empty = openset_scores([["blue"]], [["glad"]], ws)
    assert (empty["f"], empty["precision"], empty["recall"], empty["n"]) == (0.0, 0.0, 0.0, 0)
    with pytest.raises(ValueError):
        openset_scores([["glad"]], [], ws)


def test_coverage():
    cov = vocabulary_coverage(["glad", "Glad", "blue", "upset", "nonsense"], tiny())
    assert cov["distinct"] == 4 and cov["covered"] == 2 and cov["uncovered"] == ["blue", "nonsense"]
    assert cov["coverage"] == 0.5 and cov["all_wheels"] == 0.25 and cov["token_coverage"] == 3 / 5


def test_sentiment():
    assert sentiment_of("joy") == "positive" and sentiment_of("Anger ") == "negative"
    assert sentiment_of("neutral") == "neutral" and sentiment_of("surprise") is None
    assert sentiment_of("negative") == "negative"
    # other words: majority of the level-1 groups' sentiments over the wheels
    assert sentiment_of("furious") == "negative" and sentiment_of("delighted") == "positive"
    assert sentiment_of("calm") == "neutral" and sentiment_of("zzz") is None and sentiment_of("") is None
    assert sentiment_of("upset", tiny()) == "negative"  # A: sad (negative); B: no group, no vote
    assert sentiment_of("bittersweet", tiny()) == "positive"  # A: happy; B: positive is not a known group
    # gold "surprise" has no sentiment: excluded; pred "zzz" has none: class "unknown"
    r = sentiment_scores(["positive", "negative", "surprise", "neutral", "negative"],
                         ["joy", "happy", "anger", "calm", "zzz"])
    # kept: (pos, pos) (neg, pos) (neu, neu) (neg, unknown): accuracy 2/4
    # F1: positive P=1/2 R=1 -> 2/3 (support 1); negative 0 (support 2); neutral 1 (support 1)
    assert r["accuracy"] == pytest.approx(0.5)
    assert r["weighted_f1"] == pytest.approx((2 / 3 + 0 + 1) / 4)
    assert (r["n"], r["excluded"]) == (4, 1)


def test_label_explanation_consistency_by_hand():
    ws = tiny()
    labels = ["happy", "angry", "sad", "happy", "blue", "upset", "happy"]
    texts = [
        "She is glad.",  # A happy in {happy}; B positive in {positive}
        "He is not furious at all; he is calm.",  # furious negated: A angry vs {happy}; B negative vs {positive}
        "Nothing to see here.",  # no emotion words
        "isolated and glad",  # A happy in {sad, happy}; B positive in {negative, positive}
        "glad",  # label maps nowhere
        "isolated",  # A sad in {sad}; B: "upset" is not on B
        "upset",  # A happy vs {sad}; B: "upset" maps to nothing on B -> no groups
    ]
    r = label_explanation_consistency(labels, texts, ws)
    assert r["per_wheel"]["A"] == {"consistency": 3 / 5, "n": 5, "unmapped_label": 1, "no_groups": 0}
    assert r["per_wheel"]["B"] == {"consistency": 2 / 3, "n": 3, "unmapped_label": 2, "no_groups": 1}
    assert r["consistency"] == pytest.approx((3 / 5 + 2 / 3) / 2)
    assert (r["n"], r["no_emotion_words"]) == (5, 1)


# -- the OV-MERD example files ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ov() -> tuple[list[list[str]], list[list[str]]]:
    if not (EMER / "ov_merd_openset_gold.csv").is_file():
        pytest.skip(f"OV-MERD example files not found in {EMER}")
    gold = read_openset_csv(EMER / "ov_merd_openset_gold.csv")
    pred = read_openset_csv(EMER / "ov_merd_openset_example_pred.csv")
    assert sorted(gold) == sorted(pred) and len(gold) == 332
    names = sorted(gold)
    return [gold[n] for n in names], [pred[n] for n in names]


def test_ov_merd_mer_wheels(ov):
    if not (MER_DIR / "wheel1.xlsx").is_file():
        pytest.skip(f"MER emotion-wheel files not found in {MER_DIR}")
    mer = default_wheels(MER_DIR)
    gold, pred = ov
    rep = openset_report(gold, pred, mer)
    for lv in ("level1", "level2"):
        assert 0 < rep[lv]["f"] < 1 and 0 < rep[lv]["precision"] < 1 and 0 < rep[lv]["recall"] < 1
        assert openset_scores(gold, gold, mer, lv)["f"] == pytest.approx(1.0)
    # the figures this implementation gives (AffectGPT's definition; recorded so a change shows up)
    assert (rep["level1"]["f"], rep["level1"]["precision"], rep["level1"]["recall"]) == pytest.approx(
        (0.5537, 0.5594, 0.5485), abs=1e-4)
    assert (rep["level2"]["f"], rep["level2"]["precision"], rep["level2"]["recall"]) == pytest.approx(
        (0.4245, 0.4474, 0.4050), abs=1e-4)
    assert rep["level1"]["n"] == 331  # one sample's gold words are all off the MER vocabulary
    cov = vocabulary_coverage([w for g in gold for w in g], mer)
    assert cov["distinct"] == 248 and cov["covered"] == 178


def test_ov_merd_builtin(ov):
    ws = builtin_wheels()
    gold, pred = ov
    rep = openset_report(gold, pred, ws)
    for lv in ("level1", "level2"):
        assert 0.2 < rep[lv]["f"] < 0.9
        assert openset_scores(gold, gold, ws, lv)["f"] == pytest.approx(1.0)
    assert rep["level1"]["f"] > rep["level2"]["f"]
    cov = vocabulary_coverage([w for g in gold for w in g], ws)
    assert cov["coverage"] > 0.9 and cov["all_wheels"] == cov["coverage"]


def test_read_openset_csv_errors(tmp_path: Path):
    with pytest.raises(InputError, match="missing"):
        read_openset_csv(tmp_path / "x.csv")
    (tmp_path / "x.csv").write_text("id,labels\n1,happy\n")
    with pytest.raises(InputError, match="expected columns"):
        read_openset_csv(tmp_path / "x.csv")
