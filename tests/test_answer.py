"""Follow-up answers (affect_llm.answer) with a hand-made analysis and made-up model text: the model's checked
sentences are kept when they answer; otherwise the answer comes from the cues the question is about."""

from affect_llm.answer import MIN_WORDS, answer, checked_sentences
from affect_llm.config import MELD_LABELS
from affect_llm.evidence import cited_ids
from affect_llm.explanation import misquotes
from affect_llm.metrics.faithfulness import split_sentences
from affect_llm.types import Analysis, Cue, Modality

T1 = Cue(id="T1", modality=Modality.text, text="\"I can't believe you forgot my birthday again.\"")
PROBS = {k: 0.05 for k in MELD_LABELS} | {"surprise": 0.5, "anger": 0.2}


def _analysis(cues=(T1,), missing=(Modality.face, Modality.prosody), label="surprise") -> Analysis:
    return Analysis(source="text", label=label, probabilities=PROBS, cues=list(cues), missing_modalities=list(missing),
                    explanation='The speaker feels surprise. In [T1] they say "I can\'t believe you forgot".',
                    cited_cues=["T1"], decision="surprise: from the LLM's label scores alone.",
                    notes=["text input"])  # fmt: skip


def _ok(text: str, a: Analysis) -> None:
    assert len(text.split()) >= MIN_WORDS and cited_ids(text), text
    assert text.strip(" .").lower() not in MELD_LABELS
    assert set(cited_ids(text)) <= {c.id for c in a.cues}


def test_a_bare_label_gets_a_grounded_answer():
    a = _analysis()
    for q in ["What would change your mind?", "Why do you think so?", "Is that right?"]:
        out = answer("neutral", a, q)
        _ok(out, a)
    doubt = answer("neutral", a, "What would change your mind?")
    assert "next most likely is anger (0.20)" in doubt and "words such as hate" in doubt
    # the words that would be evidence are not quoted: a quote says a cue holds them
    assert not any(misquotes(s, a.cues) for s in split_sentences(doubt)), doubt
    assert "the face and the voice, not available here, could also tip it" in doubt
    assert "How the label was decided" in answer("", a, "Why do you think so?")


def test_a_question_about_a_missing_modality_says_so_and_what_there_is():
    a = _analysis()
    out = answer("Their face was red with rage.", a, "What did their face show?")
    _ok(out, a)
    assert out.startswith("This input has no face evidence") and "rage" not in out


def test_the_models_checked_sentences_are_kept_when_they_answer():
    a = _analysis()
    good = 'In [T1] they say "forgot my birthday again", which is why it reads as surprise at a repeat.'
    assert answer(good + " The speaker is sad.", a, "Why?") == good
    assert checked_sentences('In [T1] they say "you remembered".', a) == []  # a misquote


def test_no_evidence_no_answer_made_up():
    empty = Analysis(source="text", label="neutral", probabilities={"neutral": 0.5, "joy": 0.5})
    assert "no usable evidence" in answer("They are happy.", empty, "Why?")


def test_no_cue_behind_the_label_is_said_and_a_named_label_is_weighed():
    blind = Analysis(source="x", label="neutral", probabilities={"neutral": 1.0, "joy": 0.0},
                     cues=[Cue(id="F1", modality=Modality.face, text="no face was visible in the video",
                               value={"visible": 0.0})])  # fmt: skip
    for q in ("Why?", "Are you sure?"):
        out = answer("", blind, q)
        assert len(out.split()) >= MIN_WORDS and cited_ids(out) == ["F1"] and "no cue behind it" in out
    a = _analysis()
    out = answer("", a, "Could it be joy?")
    assert "joy has 0.05" in out and "It would move to joy" in out
    noted = a.model_copy(update={"notes": ['dropped from the explanation: "[T1] The scene is a sad room" (x)']})
    assert "sad room" not in answer("", noted, "What about the scene?")
