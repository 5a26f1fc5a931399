"""Explanation checks and repair (affect_llm.explanation) and their measurement (faithfulness truth checks):
the failures the issue found on real output -- a misquote, a non-word, flat wording for surprise, speech quoted
from a silent clip, "the conversation so far" without a dialogue -- are caught, dropped, and replaced by
sentences that cite the strongest cue of each modality."""

import pytest

from affect_llm.config import MELD_LABELS
from affect_llm.evidence import Evidence, cited_ids
from affect_llm.explanation import misquotes, non_words, repair, sentence_problems, strongest_cues, word_list
from affect_llm.metrics.faithfulness import faithfulness_scores, truth_checks
from affect_llm.types import Cue, Modality

L = list(MELD_LABELS)
T1 = Cue(id="T1", modality=Modality.text, text='"You never listen to me. Not once, not ever."')
D1 = Cue(id="D1", modality=Modality.context, value={"anger": 0.6, "neutral": 0.4},
         text="context model on the utterance alone (no dialogue given): anger 0.60, neutral 0.40")  # fmt: skip
SMILE = {"AU6": 4.0, "AU12": 3.6, "AU25": 2.0, "happy": 0.58, "neutral": 0.3, "visible": 1.0}
F1 = Cue(id="F1", modality=Modality.face, start=0, end=3,
         text="main face: strong AU6 cheek raiser (4.0/5) with AU12 lip corner puller (3.6/5); expression happy 0.58",
         value=SMILE)  # fmt: skip
F2 = Cue(id="F2", modality=Modality.face, start=3, end=6, text="slight AU25 lips part (1.2/5)",
         value={"AU25": 1.2, "neutral": 0.7, "happy": 0.2})  # fmt: skip

needs_words = pytest.mark.skipif(word_list() is None, reason="no English word list (apt-get install wamerican)")


def test_a_quote_no_cue_holds_is_a_misquote():
    assert misquotes('In [T1] they say "Not once, not always".', [T1]) == ["Not once, not always"]
    assert misquotes('In [T1] they say "not once, NOT ever".', [T1]) == []
    assert misquotes('In [T1] they say "You never listen to me..."', [T1]) == []  # a shortened quote
    # a quote of another cue's words is checked against the cue the sentence cites
    assert misquotes('In [F1] they say "listen to me".', [T1, F1]) == ["listen to me"]


@needs_words
def test_non_words_against_the_word_list_the_cues_and_domain_terms():
    assert non_words("The words are matterment and thunderboots.", [T1], L) == ["matterment", "thunderboots"]
    assert non_words("In [F1] the cheeks rise (AU6, AU12): a smile; FACS says joy.", [F1], L) == []
    assert non_words("Monica's words.", [Cue(id="T1", modality=Modality.text, text='"Monica!"')], L) == []


def test_sentence_problems_name_each_failure():
    face_only = [F1, F2]
    assert sentence_problems('In [F1] they say "sad".', face_only, "joy", L)[0].startswith("misquote")
    assert "speech claimed, but there are no words" in sentence_problems("In [F1] they mention joy.", face_only, "joy", L)
    assert "flat wording for surprise" in sentence_problems("[T1] A matter-of-fact remark.", [T1], "surprise", L)
    assert sentence_problems("[T1] A matter-of-fact remark.", [T1], "neutral", L) == []
    assert "speaks of a conversation, but no dialogue was given" in sentence_problems(
        "[D1] The conversation so far points the same way.", [T1, D1], "anger", L)  # fmt: skip
    assert "speaks of a conversation, but no dialogue was given" in sentence_problems(
        'In [T1] they say "You never listen to me."; the other side says nothing.', [T1, D1], "anger", L)  # fmt: skip
    assert "names another feeling than joy" in sentence_problems("[F1] The speaker feels neutral.", face_only, "joy", L)
    assert "cites an id not in the evidence" in sentence_problems("In [S1] a word.", face_only, "joy", L)


def test_the_strongest_cue_of_each_modality():
    strong = strongest_cues([F2, F1, T1, D1], "anger")
    assert strong[Modality.face].id == "F1" and strong[Modality.text].id == "T1" and strong[Modality.context].id == "D1"
    invisible = Cue(id="F1", modality=Modality.face, text="main face not visible", value={"visible": 0.0})
    assert Modality.face not in strongest_cues([invisible], "joy")


def test_repair_of_the_silent_clip_explanation_from_the_issue():
    """The explanation a user got for a silent smiling clip, repaired: the invented speech and the non-word
    go, the smile is said in plain words with its AU ids, the label is not contradicted."""
    ev = Evidence.build([F1, F2], [Modality.speech, Modality.prosody])
    raw = ('The speaker feels joy. In [F1] they say "sad", soneutral; [F2] they mention "surprise" but not '
           '"sadness". The words themselves do not indicate a particular feeling.')  # fmt: skip
    fixed = repair(raw, ev, "joy", L, "The speaker feels joy.", {"face": {"joy": 0.9, "neutral": 0.1}})
    assert fixed.text.startswith("The speaker feels joy. In [F1] the cheeks rise and the lip corners pull up")
    assert "a smile" in fixed.text and "say" not in fixed.text and '"' not in fixed.text
    assert len(fixed.dropped) == 2 and fixed.added == ["F1"]
    assert any("speech claimed" in p for _, ps in fixed.dropped for p in ps)
    t = truth_checks(fixed.text, ev.cues, "joy", L)
    assert not any(t[k] for k in ("misquote", "non_word", "flat", "invented_speech", "other_feeling"))
    assert t["strongest_cited"]
    assert truth_checks(raw, ev.cues, "joy", L)["invented_speech"]


def test_repair_keeps_a_true_sentence_and_adds_the_missing_modalities():
    ev = Evidence.build([T1, F1, D1])
    raw = 'The speaker feels anger. In [T1] they say "Not once, not ever", an accusation.'
    fixed = repair(raw, ev, "anger", L, "The speaker feels anger.")
    assert 'In [T1] they say "Not once, not ever", an accusation.' in fixed.text
    assert sorted(fixed.added) == ["D1", "F1"] and set(cited_ids(fixed.text)) == {"T1", "F1", "D1"}
    assert "conversation" not in fixed.text  # D1 read the utterance alone


def test_faithfulness_scores_report_the_truth_check_shares():
    ev = [[T1], [T1], [F1]]
    texts = ['The speaker feels anger. In [T1] they say "Not once, not always".',
             "The speaker feels surprise. [T1] A matter-of-fact remark with no emotional tone.",
             "The speaker feels joy. In [F1] the cheeks rise and the lip corners pull up (AU6, AU12): a smile."]
    f = faithfulness_scores(texts, ev, decided=["anger", "surprise", "joy"])
    assert f["misquote"] == pytest.approx(1 / 3) and f["flat"] == pytest.approx(1 / 3)
    assert f["invented_speech"] == 0.0 and f["strongest_cited"] == 1.0
    assert faithfulness_scores(texts, ev)["flat"] is None  # no labels, no label checks


def test_label_words_flat_wording_and_speech_verbs_in_their_forms():
    from affect_llm.explanation import SPEECH_CLAIM, contradicts, is_flat

    assert contradicts("The speaker feels angry.", "joy", L) and contradicts("Anger is the emotion here.", "joy", L)
    assert contradicts("She is clearly sad.", "joy", L)
    assert not contradicts("The speaker does not feel anger but joy.", "joy", L)
    assert not contradicts("Therefore, the speaker's emotional state is joy.", "joy", L)
    assert is_flat("It sounds neutral.") and is_flat("It doesn't indicate any emotion.") and is_flat("no sign of emotion")
    assert not is_flat("There are no emotion words, but the voice is loud.") and not is_flat("the voice is flat and slow")
    assert SPEECH_CLAIM.search("she shouted it") and SPEECH_CLAIM.search("he replied")
    assert not SPEECH_CLAIM.search("the speaker's emotional state is joy")


def test_repair_keeps_one_copy_of_a_repeated_sentence():
    ev = Evidence.build([T1])
    s = 'In [T1] they say "Not once, not ever", an accusation.'
    fixed = repair(f"The speaker feels anger. {s} {s}", ev, "anger", L, "The speaker feels anger.")
    assert fixed.text.count(s) == 1


def test_the_agreement_sentence_names_each_kind_of_evidence_and_is_not_a_cue_claim():
    """hamilton.mp4's shape: the strongest face cue cited reads fear, the whole clip's face leans neutral, the label
    is neutral. The agreement sentence says what each kind leans to over the clip, so it does not read as if the
    fear face agreed with a neutral label; the faithfulness check counts it as a conclusion, not a claim."""
    from affect_llm.metrics.faithfulness import check_sentences

    fear = Cue(id="F2", modality=Modality.face, start=3, end=6,
               text="main face: strong AU2 outer brow raiser (3.9/5) with AU1 inner brow raiser (3.1/5); expression fear 0.41",
               value={"AU2": 3.9, "AU1": 3.1, "fear": 0.41, "neutral": 0.3, "visible": 1.0})  # fmt: skip
    calm = Cue(id="F1", modality=Modality.face, start=0, end=3, text="no AU above 1.0/5; expression neutral 0.80",
               value={"AU25": 0.6, "neutral": 0.8, "visible": 1.0})  # fmt: skip
    said = Cue(id="S1", modality=Modality.speech, start=0, end=6, text='"by working a lot harder"')
    ev = Evidence.build([said, calm, fear])
    dists = {"llm": {"neutral": 0.7, "fear": 0.3}, "face": {"neutral": 0.55, "fear": 0.45}}
    fixed = repair("The speaker feels neutral.", ev, "neutral", L, "The speaker feels neutral.", dists)
    assert "[F2]" in fixed.text and "fear 0.41" in fixed.text  # the strongest face cue is said as it is
    assert fixed.text.endswith("Over the whole clip, the words and the face both lean to neutral: they point the same way.")
    last = check_sentences(fixed.text, ev.cues, labels=L, similarities=None)[-1]
    assert last.kind == "conclusion"
    t = truth_checks(fixed.text, ev.cues, "neutral", L)
    assert not t["other_feeling"] and t["strongest_cited"]
    # an invented agreement-shaped sentence that cites a cue is still a claim and checked as one
    assert check_sentences("Over the whole clip, [F2] and the words both lean to joy: they point the same way.",
                           ev.cues, labels=L, similarities=None)[0].kind == "claim"  # fmt: skip


def test_articles_agree_with_the_next_word_outside_quotes():
    from affect_llm.explanation import fix_articles

    assert fix_articles("[T1] is an matter-of-fact remark.") == "[T1] is a matter-of-fact remark."
    assert fix_articles("A angry tone in [P1].") == "An angry tone in [P1]."
    assert fix_articles('They say "an big deal" with a angry tone.') == 'They say "an big deal" with an angry tone.'
    for kept in ("an AU12 pattern", "a unique smile", "a one-off", "an hour", "a happy face", "an eager voice"):
        assert fix_articles(kept) == kept
