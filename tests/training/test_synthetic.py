"""Media-shaped training examples (affect_llm.training.synthetic): the project's own textualizers on sampled AU and
prosody patterns; labels only where the evidence determines one; explanations that pass every truth check."""

from affect_llm.config import MELD_LABELS
from affect_llm.cues import face
from affect_llm.evidence import cited_ids
from affect_llm.metrics.faithfulness import check_sentences, truth_checks
from affect_llm.training.synthetic import media_examples

UTTERANCES = [("I hate this, get out!", "anger"), ("See you tomorrow.", "neutral"), ("We won! We won!", "joy"),
              ("I miss her so much.", "sadness"), ("Ew, what is that smell?", "disgust")]  # fmt: skip


def test_examples_are_deterministic_and_labelled_only_where_determined():
    a, b = media_examples(120, UTTERANCES, seed=3), media_examples(120, UTTERANCES, seed=3)
    assert [(x.evidence.render(), x.label, x.explanation) for x in a] == [(x.evidence.render(), x.label, x.explanation) for x in b]
    kinds = {x.kind for x in a}
    assert kinds == {"prototype", "neutral", "low", "blend", "voice", "agree", "contradict"}
    for x in a:
        assert (x.label is None) == (x.kind in ("low", "blend", "voice")), x.kind
        if x.kind == "prototype":  # the face determines it: its FACS reading is the label
            f = x.evidence.cues[0]
            assert face.facs_reading({k: v for k, v in f.value.items() if k in face.AU_NAMES})[0] == x.label
        if x.kind in ("agree", "contradict"):
            assert x.label == dict(UTTERANCES)[x.evidence.cues[0].text.strip('"')]
            assert ("do not point the same way" in x.explanation) == (x.kind == "contradict")
    assert media_examples(40, seed=3) and all(x.kind not in ("agree", "contradict") for x in media_examples(40, seed=3))


def test_silver_explanations_pass_every_truth_check():
    for x in media_examples(120, UTTERANCES, seed=5):
        shown = x.label or x.explanation.rsplit(" is ", 1)[1].rstrip(".")
        t = truth_checks(x.explanation, x.evidence.cues, shown, list(MELD_LABELS))
        assert not any(t[k] for k in ("misquote", "non_word", "flat", "invented_speech", "other_feeling")), (t, x.explanation)
        assert t["strongest_cited"] and set(cited_ids(x.explanation)) == set(x.evidence.ids)
        claims = [c for c in check_sentences(x.explanation, x.evidence.cues, labels=MELD_LABELS) if c.kind == "claim"]
        assert all(c.supported for c in claims), [c.text for c in claims if not c.supported]
