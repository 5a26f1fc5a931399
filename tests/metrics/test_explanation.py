"""Explanation quality vs gold explanations: BLEU-4, ROUGE-L, METEOR, embedding similarity, by hand where possible."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from affect_llm.metrics import explanation as ex
from affect_llm.metrics.explanation import explanation_scores

EMER_GT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "emer" / "emer_v1_gt_eng.csv"


class BagOfWords:
    """A stand-in encoder: word-count vectors over a fixed vocabulary, so cosines can be worked out by hand."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        vocab = sorted({w for t in texts for w in t.lower().split()}) or ["_"]
        v = np.array([[t.lower().split().count(w) for w in vocab] for t in texts], dtype=float)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


class FakeWordNet:
    """nltk's WordNet interface, just enough for METEOR's synonym stage: quick <-> fast."""

    class _Lemma:
        def __init__(self, name):
            self._name = name

        def name(self):
            return self._name

    class _Synset:
        def __init__(self, names):
            self._names = names

        def lemmas(self):
            return [FakeWordNet._Lemma(n) for n in self._names]

    def synsets(self, word, *args, **kwargs):
        return [self._Synset(["quick", "fast"])] if word in ("quick", "fast") else []


GOLD = [
    "In the video, he roared, spoke quickly and loudly, and stared with wide eyes. Therefore, he is angry.",
    "She smiled warmly and thanked her friend for the gift, so she is happy.",
]


def test_identical_texts_score_the_maximum():
    enc = BagOfWords()
    r = explanation_scores(GOLD, GOLD, encoder=enc, wordnet=None)
    assert r["n"] == 2 and r["empty"] == 0
    assert r["bleu4"] == pytest.approx(100.0)
    assert r["rouge_l"] == pytest.approx(1.0)
    assert r["embedding_similarity"] == pytest.approx(1.0)
    for text, s in zip(GOLD, r["per_sample"]):
        n = len(ex.meteor_tokens(text))
        # every word aligned in one chunk: Fmean = 1, penalty = 0.5 * (1/n)^3
        assert s["meteor"] == pytest.approx(1 - 0.5 / n**3)
        assert s["bleu4"] == pytest.approx(100.0) and s["rouge_l"] == pytest.approx(1.0)
    assert r["meteor"] > 0.99
    assert len(enc.calls) == 1 and len(enc.calls[0]) == 4  # one batch: both predictions and both references


def test_bleu_by_hand():
    # 1- to 4-gram matches 5/6, 3/5, 2/4, 1/3; same length: BP = 1
    hyp, ref = "the cat sat on the mat", "the cat sat on a mat"
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    b = ex.bleu4([hyp], [ref])
    assert b["bleu4"] == pytest.approx(expected) and b["per_sample"] == [pytest.approx(expected)]
    assert "tok:13a" in b["signature"] and "case:lc" in b["signature"]
    assert ex.bleu4(["THE CAT SAT ON THE MAT"], [ref])["bleu4"] == pytest.approx(expected)  # lowercased
    # an empty prediction stays in the corpus: same matches, reference length 6 + 3 -> BP = exp(1 - 9/6)
    b = ex.bleu4([hyp, ""], [ref, "x y z"])
    assert b["bleu4"] == pytest.approx(expected * math.exp(1 - 9 / 6))
    assert b["per_sample"][1] == 0.0


def test_rouge_l_by_hand_and_against_rouge_score():
    from rouge_score import rouge_scorer

    # LCS "he shouted at them" = 4 of 5 and 5 tokens: F = 0.8;  "she smiled at" = 3: P = 3/4, R = 3/6, F = 0.6
    preds = ["he shouted loudly at them", "she smiled at him"]
    refs = ["he shouted at them angrily", "she smiled warmly at her friend"]
    r = ex.rouge_l(preds, refs)
    assert r["per_sample"] == [pytest.approx(0.8), pytest.approx(0.6)]
    assert r["rouge_l"] == pytest.approx(0.7)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert r["per_sample"] == [pytest.approx(scorer.score(g, p)["rougeL"].fmeasure) for p, g in zip(preds, refs)]


def test_meteor_by_hand():
    # 4 exact matches of 5 and 5 tokens: Fmean = 0.8; chunks "he shouted" + "at them" = 2: penalty 0.5*(2/4)^3
    m = ex.meteor(["he shouted loudly at them"], ["he shouted at them angrily"], wordnet=None)
    assert m["per_sample"] == [pytest.approx(0.8 * (1 - 0.5 * 0.5**3))]
    assert m["meteor_variant"] == "exact+stem"
    # the stem stage: cats ~ cat; all 3 aligned in one chunk
    m = ex.meteor(["The cats sat."], ["the cat sat"], wordnet=None)
    assert m["meteor"] == pytest.approx(1 - 0.5 / 27)


def test_meteor_synonyms_only_with_wordnet():
    # without WordNet: she, is (2 of 3), one chunk: Fmean 2/3, penalty 0.5*(1/2)^3
    plain = ex.meteor(["she is quick"], ["she is fast"], wordnet=None)
    assert plain["meteor"] == pytest.approx(2 / 3 * (1 - 0.5 / 8))
    assert plain["meteor_variant"] == "exact+stem"
    # with a synonym source, quick ~ fast: all 3 aligned in one chunk (nltk looks synonyms up on the Porter
    # stems left after the stem stage; quick and fast are their own stems)
    syn = ex.meteor(["she is quick"], ["she is fast"], wordnet=FakeWordNet())
    assert syn["meteor"] == pytest.approx(1 - 0.5 / 27)
    assert syn["meteor_variant"] == "exact+stem+wordnet"


def test_meteor_never_downloads(monkeypatch):
    import nltk

    def no_download(*args, **kwargs):
        raise AssertionError("nltk tried to download")

    monkeypatch.setattr(nltk, "download", no_download)
    m = ex.meteor(["she is quick"], ["she is fast"])  # "auto": WordNet only if installed locally
    installed = ex.installed_wordnet()
    assert m["meteor_variant"] == ("exact+stem" if installed is None else "exact+stem+wordnet")
    if installed is None:
        assert ex.NoWordNet().synsets("happy") == []


def test_meteor_uses_an_installed_wordnet(monkeypatch):
    monkeypatch.setattr(ex, "installed_wordnet", lambda: FakeWordNet())
    m = ex.meteor(["she is quick"], ["she is fast"])
    assert m["meteor_variant"] == "exact+stem+wordnet" and m["meteor"] == pytest.approx(1 - 0.5 / 27)
    r = explanation_scores(["she is quick"], ["she is fast"], embed=False)
    assert r["meteor_variant"] == "exact+stem+wordnet"


def test_empty_predictions_score_zero_and_are_counted():
    enc = BagOfWords()
    preds = ["", "   ", None, "she is happy with the gift"]
    refs = ["he is angry", "he is sad", "she is calm", "she is very happy with the gift"]
    r = explanation_scores(preds, refs, encoder=enc, wordnet=None)
    assert r["n"] == 4 and r["empty"] == 3
    for s in r["per_sample"][:3]:
        assert s["empty"] and s["bleu4"] == s["rouge_l"] == s["meteor"] == s["embedding_similarity"] == 0.0
    last = r["per_sample"][3]
    assert not last["empty"]
    # bag of words: 6 shared words of 6 and 7: cos = 6 / (sqrt(6) * sqrt(7))
    assert last["embedding_similarity"] == pytest.approx(math.sqrt(6 / 7))
    assert last["rouge_l"] == pytest.approx(12 / 13)  # LCS 6: P = 1, R = 6/7
    assert r["embedding_similarity"] == pytest.approx(last["embedding_similarity"] / 4)  # empties pull the mean
    assert r["rouge_l"] == pytest.approx(last["rouge_l"] / 4)
    assert enc.calls == [[preds[3], refs[3]]]  # empties are not encoded
    alone = explanation_scores(preds[3:], refs[3:], embed=False, wordnet=None)
    assert r["bleu4"] < alone["bleu4"]  # the empties' references lengthen the corpus: brevity penalty


def test_embed_off_and_no_samples():
    r = explanation_scores(["a b c d"], ["a b c d"], embed=False, wordnet=None)
    assert r["embedding_similarity"] is None and r["per_sample"][0]["embedding_similarity"] is None
    r = explanation_scores([], [], embed=False)
    assert r["n"] == 0 and r["empty"] == 0 and r["per_sample"] == []
    assert r["bleu4"] is None and r["rouge_l"] is None and r["meteor"] is None


def test_bad_input():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        explanation_scores(["a", "b"], ["a"], embed=False)
    with pytest.raises(ValueError, match="reference 1 is empty"):
        explanation_scores(["a", "b"], ["a", " "], embed=False)
    with pytest.raises(TypeError):
        explanation_scores("a text", "a text", embed=False)


@pytest.mark.slow
def test_minilm_similarity():
    r = ex.embedding_similarity(
        ["The speaker shouts and glares, so he is angry.", "The speaker shouts and glares, so he is angry."],
        ["The speaker shouts and glares, so he is angry.", "She smiles softly at the birthday cake."],
    )
    same, other = r["per_sample"]
    assert same == pytest.approx(1.0, abs=1e-5)
    assert other < 0.5


@pytest.mark.slow
def test_emer_gold_against_itself_and_shuffled():
    if not EMER_GT.is_file():
        pytest.skip(f"{EMER_GT} is not present")
    with open(EMER_GT, encoding="utf-8", newline="") as f:
        reasons = [row["reasons"] for row in csv.DictReader(f)][:12]
    shuffled = reasons[1:] + reasons[:1]  # every reason paired with another sample's
    same = explanation_scores(reasons, reasons)
    other = explanation_scores(shuffled, reasons)
    assert same["bleu4"] == pytest.approx(100.0)
    assert same["rouge_l"] == pytest.approx(1.0)
    assert same["meteor"] > 0.99
    assert same["embedding_similarity"] == pytest.approx(1.0, abs=1e-5)
    # EMER reasons share a template ("In the video, ... Therefore, it is inferred that ..."): not 0, but far lower
    assert other["bleu4"] < 50
    assert other["rouge_l"] < 0.6
    assert other["meteor"] < 0.6
    assert other["embedding_similarity"] < 0.85


@pytest.mark.parametrize("module,call", [("sacrebleu.metrics", "bleu4"), ("nltk.translate.meteor_score", "meteor")])
def test_a_missing_eval_extra_is_a_clear_error(monkeypatch, module, call):
    """Without the [eval] extra the text metrics say what to install (exit code 3), not an ImportError."""
    import sys

    from affect_llm.errors import MissingExtra
    from affect_llm.metrics import explanation as ex

    monkeypatch.setitem(sys.modules, module, None)  # what an absent package looks like to import
    with pytest.raises(MissingExtra, match=r"pip install 'affect-llm\[eval\]'") as e:
        getattr(ex, call)(["a happy face"], ["a happy face"], **({"wordnet": None} if call == "meteor" else {}))
    assert e.value.exit_code == 3
