"""The label decision (affect_llm.decision): which distributions count for the evidence present, pooled face
readings, the fusion's renormalisation, and the sentence that says why."""

import pytest

from affect_llm.config import MELD_LABELS
from affect_llm.decision import decide, pool_face
from affect_llm.errors import InputError
from affect_llm.fusion import ProbabilityFusion

L = list(MELD_LABELS)


def _peak(label: str, p: float = 0.8) -> dict[str, float]:
    rest = (1 - p) / (len(L) - 1)
    return {k: (p if k == label else rest) for k in L}


def _fusion() -> ProbabilityFusion:
    # the text modalities fitted (weights 1 and 0.5 in logit), face and scene at the unfitted prior
    f = ProbabilityFusion(L, ["context", "llm", "face", "scene"])
    f.logits[:, 0, :], f.logits[:, 1, :], f.logits[:, 2, :], f.logits[:, 3, :] = 1.0, 0.5, -0.2, -0.2
    f.fitted.update(context=True, llm=True)
    return f


def test_a_wordless_input_is_decided_from_the_face_not_the_text_models():
    dists = {"llm": _peak("neutral", 0.9), "context": _peak("neutral", 0.9), "face": _peak("joy"),
             "facs": _peak("joy", 0.6)}  # fmt: skip
    d = decide(dists, L, has_words=False, fusion=_fusion())
    assert d.label == "joy" and d.used == ("face",) and d.weights == {"face": 1.0}
    assert set(d.left_out) == {"llm", "context"} and "trained on words" in d.left_out["llm"]
    assert d.reason.startswith("joy: fused from the face") and "left out: the LLM's label scores" in d.reason
    # no fusion file: the pooled face alone
    alone = decide(dists, L, has_words=False)
    assert alone.label == "joy" and alone.weights == {} and "from the face" in alone.reason


def test_with_words_the_fitted_fusion_weighs_everything_present():
    dists = {"llm": _peak("anger"), "context": _peak("anger", 0.6), "face": _peak("joy", 0.5)}
    d = decide(dists, L, has_words=True, fusion=_fusion())
    assert d.label == "anger" and set(d.used) == {"llm", "context", "face"}
    assert d.weights["context"] > d.weights["llm"] > d.weights["face"]
    assert sum(d.probabilities.values()) == pytest.approx(1.0)
    assert decide(dists, L, has_words=True).used == ("llm",)  # no fusion: the LLM decides


def test_pooled_face_is_the_normalised_geometric_mean():
    fer, facs = _peak("joy", 0.9), _peak("surprise", 0.5)
    p = pool_face(fer, facs)
    assert sum(p.values()) == pytest.approx(1.0) and max(p, key=p.get) == "joy"
    assert p["surprise"] > fer["surprise"]  # the FACS reading pulls it
    assert pool_face(fer, None) is fer and pool_face(None, facs) is facs and pool_face(None, None) is None


def test_nothing_to_decide_from_is_an_input_error():
    with pytest.raises(InputError):
        decide({"llm": _peak("joy")}, L, has_words=False)
    with pytest.raises(InputError):
        decide({"scene": {"a": 0.5, "b": 0.5}}, L, has_words=False)


def test_face_readings_on_different_label_sets_are_not_pooled():
    fer = {"neutral": 0.2, "joy": 0.3, "anger": 0.5}
    facs = {"neutral": 0.1, "joy": 0.9}
    d = decide({"face": fer, "facs": facs}, ["neutral", "joy", "anger"], has_words=False)
    assert d.label == "anger" and d.left_out["facs"] == "not on the label set"
