"""score(): which metrics a dataset's gold allows, computed on small hand-checked sets."""

from __future__ import annotations

import pytest

from affect_llm.evaluation.predictions import Prediction
from affect_llm.evaluation.score import score
from affect_llm.inputs import EvalItem, EvalSet
from affect_llm.metrics import builtin_wheels
from affect_llm.types import Cue, Modality

LABELS = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]


def _closed_set() -> EvalSet:
    items = [
        EvalItem(id="a", text="x", label="joy", sentiment="positive"),
        EvalItem(id="b", text="x", label="anger", sentiment="negative"),
        EvalItem(id="c", text="x", label="neutral", sentiment="neutral"),
        EvalItem(id="d", text="x", label="surprise", sentiment="positive"),
        EvalItem(id="e", text="x", label="sadness", sentiment="negative"),
    ]
    return EvalSet("meld", "dev", items, labels=LABELS)


def _p(i: str, label: str, probs: dict | None = None, **kw) -> Prediction:
    return Prediction(id=i, label=label, probabilities=probs, **kw)


def test_classification_sentiment_and_the_bookkeeping():
    es = _closed_set()
    one = lambda lab: {x: (0.94 if x == lab else 0.01) for x in LABELS}  # noqa: E731
    preds = {
        "a": _p("a", "joy", one("joy")),
        "b": _p("b", "sadness", one("sadness")),
        "c": _p("c", "neutral", one("neutral")),
        # surprise 0.6 splits into 0.3 positive + 0.3 negative; neutral 0.4 wins the sentiment
        "d": _p("d", "surprise", {**{x: 0.0 for x in LABELS}, "surprise": 0.6, "neutral": 0.4}),
        "e": Prediction(id="e", error="MediaError: x: truncated"),
        "zz": _p("zz", "joy"),
    }
    m = score(es, preds, wheels=builtin_wheels(), embed=False)
    assert (m["n_items"], m["n_scored"], m["n_errors"], m["n_missing"]) == (5, 4, 1, 0)
    assert m["unknown_ids"] == ["zz"]
    c = m["classification"]
    assert c["accuracy"] == pytest.approx(3 / 4)
    # per-class F1 over the 4 scored: joy 1, neutral 1, surprise 1, anger 0 (missed), sadness 0 (a false positive)
    assert c["per_class_f1"]["joy"] == 1.0 and c["per_class_f1"]["anger"] == 0.0
    assert c["weighted_f1"] == pytest.approx(3 / 4)  # each gold class has support 1
    assert c["confusion"][LABELS.index("anger")][LABELS.index("sadness")] == 1
    assert c["predicted"]["sadness"] == 1 and c["support"]["sadness"] == 0
    s = m["sentiment"]
    # gold (MELD's own column): positive, negative, neutral, positive; predicted: positive, negative, neutral, neutral
    assert s["n"] == 4 and s["accuracy"] == pytest.approx(3 / 4) and s["gold_from"] == "dataset annotation"
    h = m["hit_rate"]  # from the labels; gold neutral excluded
    assert h["n"] == 3 and h["excluded_neutral"] == 1 and h["hit_rate"] == pytest.approx(2 / 3)


def test_free_text_predictions_have_their_emotion_words_extracted():
    es = EvalSet("emer-v1", None, [EvalItem(id="a", text="x", label="angry", explanation="He roared; he is angry."),
                                   EvalItem(id="b", text="x", label="happy", explanation="She smiles warmly.")])  # fmt: skip
    preds = {"a": Prediction(id="a", explanation="He shouts: he is furious, not calm at all."),
             "b": Prediction(id="b", explanation="She is not happy.")}  # fmt: skip
    m = score(es, preds, wheels=builtin_wheels(), embed=False)
    assert m["hit_rate"]["hit_rate"] == pytest.approx(0.5)  # "furious" hits anger; "not happy" is negated
    e = m["explanation"]
    assert e["n"] == 2 and 0 < e["rouge_l"] < 1 and e["embedding_similarity"] is None
    assert "faithfulness" not in m  # no evidence came with these predictions


def test_open_vocabulary_sets_and_faithfulness():
    es = EvalSet("ov-merd", None, [EvalItem(id="a", labels=["happy", "excited"]),
                                   EvalItem(id="b", labels=["worried"])])  # fmt: skip
    cue = Cue(id="T1", modality=Modality.text, text='"We won!"')
    preds = {"a": Prediction(id="a", labels=["joyful"], explanation='The speaker feels joy. In [T1] they say '
                             '"We won!". [F9] shows a smile.', label="joy", cues=[cue]),
             "b": Prediction(id="b", labels=[])}  # fmt: skip
    m = score(es, preds, wheels=builtin_wheels(), embed=False)
    o = m["openset"]["level1"]
    # a: gold {happy group}, pred {happy group} → P = R = 1; b: nothing predicted → P = R = 0
    assert o["n"] == 2 and o["precision"] == pytest.approx(0.5) and o["recall"] == pytest.approx(0.5)
    f = m["faithfulness"]
    assert f["n"] == 1 and f["cited_ids_exist"] == pytest.approx(0.5)  # T1 exists, F9 does not


@pytest.mark.slow
def test_the_llm_extractor_reads_implied_emotions():
    from affect_llm.evaluation.llm_extractor import LLMExtractor

    wheels = builtin_wheels()
    x = LLMExtractor(wheels)
    angry = x("She slammed the door and shouted at him.")
    assert angry and all(w in wheels.vocabulary for w in angry)
    groups = {g for w in angry for wheel in wheels.wheels for g in [wheels.group(w, wheel, "level1")] if g}
    assert any("ang" in g or "mad" in g for g in groups), groups
    # plain statements mostly list nothing; the 135M model is weak (a 2026-12-02 install reads "anger"
    # into the weather one; earlier installs did not), so this asserts a rate (at most one of five), not each one
    plain = ["The weather report says rain tomorrow.", "The bus leaves at nine.", "The report is on the second shelf.",
             "Turn left after the bridge.", "The store closes at six on Sundays."]  # fmt: skip
    listed = {t: x(t) for t in plain}
    assert sum(bool(v) for v in listed.values()) <= 1, listed
