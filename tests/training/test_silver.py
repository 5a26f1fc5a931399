"""Silver explanations cite only the cues of their own example and say only what those cues show."""

import random

import pytest

from affect_llm.config import MELD_LABELS
from affect_llm.cue_sentences import agreement_sentence, cue_sentence, emotion_words
from affect_llm.decision import pool_face
from affect_llm.evidence import Evidence, cited_ids
from affect_llm.training.silver import silver_explanation
from affect_llm.types import Cue, Modality


def _text_evidence(text, context=None):
    cues = [Cue(id="T1", modality=Modality.text, text=f'"{text}"')]
    if context is not None:
        cues.append(Cue(id="D1", modality=Modality.context, value=context, text="context model ..."))
    return Evidence.build(cues)


def test_cites_exactly_the_cues_present():
    rng = random.Random(0)
    for _ in range(50):
        label = rng.choice(MELD_LABELS)
        ctx = {lab: rng.random() for lab in MELD_LABELS} if rng.random() < 0.5 else None
        ev = _text_evidence(rng.choice(["Oh my God, I love it!", "What?", "Fine.", "I hate this. Get out!"]), ctx)
        text = silver_explanation(ev, label)
        assert set(cited_ids(text)) == set(ev.ids)
        assert text.endswith(f"the speaker's emotional state is {label}.")


def test_media_evidence_and_the_dialogue_disagreeing():
    ev = Evidence.build([
        Cue(id="S1", modality=Modality.speech, start=0.0, end=2.0, text='"Get out of my house!" (ASR confidence 0.9)'),
        Cue(id="P1", modality=Modality.prosody, start=0.0, end=2.0, text="loud, high pitch for this speaker"),
        Cue(id="F1", modality=Modality.face, start=0.0, end=2.0, text="main face: AU4 brow lowerer 2.1"),
        Cue(id="D1", modality=Modality.context, value={"anger": 0.2, "neutral": 0.7}, text="..."),
    ])  # fmt: skip
    text = silver_explanation(ev, "anger")
    assert cited_ids(text) == ["S1", "P1", "F1", "D1"]
    assert '"get out" sounds irritated' in text and "the voice: loud" in text and "AU4" in text
    assert "leans to neutral (0.70), but the other evidence weighs more" in text
    assert 'the speaker says "Get out of my house!", an exclamation' in text  # speech: the words, no confidence


def test_emotion_words_match_whole_words_only():
    assert emotion_words("Whatever, I hate that!", "anger") == ["hate"]
    assert emotion_words("That's chatty", "anger") == []
    assert emotion_words("Oh no, I'm scared", "fear") == ["oh no", "scared"]
    assert emotion_words("I love it", "sadness") == []  # only the given label's words


def test_long_utterances_are_quoted_short():
    text = silver_explanation(_text_evidence(" ".join(["word"] * 40)), "neutral")
    assert '"' + " ".join(["word"] * 8) + ' ..."' in text
    assert "matter-of-fact" in text


@pytest.mark.parametrize("label", MELD_LABELS)
def test_every_label_has_a_description(label):
    assert "fits" not in silver_explanation(_text_evidence("Okay then."), label)


def test_spoken_cues_with_emotion_words_are_cited_first():
    ev = Evidence.build([
        Cue(id="S1", modality=Modality.speech, start=0.0, end=1.0, text='"Well."'),
        Cue(id="S2", modality=Modality.speech, start=1.0, end=2.0, text='"I hate this."'),
        Cue(id="S3", modality=Modality.speech, start=2.0, end=3.0, text='"Okay."'),
    ])  # fmt: skip
    assert cited_ids(silver_explanation(ev, "anger")) == ["S2"]
    assert cited_ids(silver_explanation(ev, "neutral")) == ["S1", "S2"]  # no words for it: the first two


def test_face_cue_in_plain_words_and_the_context_model_without_a_dialogue():
    face = Cue(id="F1", modality=Modality.face, start=0.0, end=3.0, text="strong AU6 cheek raiser (4.0/5) with AU12 lip corner puller (3.6/5) and AU25 lips part (2.0/5)",
               value={"AU6": 4.0, "AU12": 3.6, "AU25": 2.0, "happy": 0.58, "neutral": 0.3, "visible": 1.0})  # fmt: skip
    assert cue_sentence(face, "joy") == ("In [F1] the cheeks rise and the lip corners pull up (AU6, AU12): a smile; "
                                         "the expression model reads happy 0.58.")  # fmt: skip
    alone = Cue(id="D1", modality=Modality.context, value={"joy": 0.6, "neutral": 0.4},
                text="context model on the utterance alone (no dialogue given): joy 0.60, neutral 0.40")  # fmt: skip
    s = cue_sentence(alone, "joy")
    assert "conversation" not in s and s.startswith("[D1] The context model, reading the utterance alone,")
    assert agreement_sentence({"llm": {"joy": 0.7, "sadness": 0.3}, "face": {"joy": 0.6, "sadness": 0.4}}) == \
        "Over the whole clip, the words and the face both lean to joy: they point the same way."  # fmt: skip
    assert agreement_sentence({"face": {"joy": 0.2, "sadness": 0.8}, "llm": {"joy": 0.7, "sadness": 0.3}}) == \
        "Over the whole clip, the words lean to joy and the face to sadness: they do not point the same way."  # fmt: skip
    # the words pool the LLM and the context model; three kinds
    three = {"llm": {"joy": 0.4, "fear": 0.6}, "context": {"joy": 0.9, "fear": 0.1}, "face": {"joy": 0.3, "fear": 0.7},
             "scene": {"joy": 0.1, "fear": 0.9}}  # fmt: skip
    assert agreement_sentence(three) == ("Over the whole clip, the words lean to joy, the face to fear and the scene "
                                         "to fear: they do not point the same way.")  # fmt: skip
    assert agreement_sentence({"face": {"joy": 1.0}}) is None
    # hamilton.mp4's face: FER leans to joy, the FACS reading to neutral; the face's leaning is their pooled
    # reading (the one the decision used), and the sentence says the two readings split
    split = {"llm": {"joy": 0.1, "neutral": 0.9}, "face": {"joy": 0.39, "neutral": 0.31, "fear": 0.30},
             "facs": {"joy": 0.04, "neutral": 0.66, "fear": 0.30}}  # fmt: skip
    assert agreement_sentence(split) == ("Over the whole clip, the words and the face (its expression model reads joy, "
                                         "its action units neutral) both lean to neutral: they point the same way.")  # fmt: skip
    # summed, this face would lean to fear (0.82 vs 0.80 neutral); pooled as the decision pools it, to neutral
    sum_vs_geo = {"llm": {"joy": 0.1, "neutral": 0.0, "fear": 0.9}, "face": {"joy": 0.0, "neutral": 0.2, "fear": 0.8},
                  "facs": {"joy": 0.38, "neutral": 0.6, "fear": 0.02}}  # fmt: skip
    assert max(pool_face(sum_vs_geo["face"], sum_vs_geo["facs"]).items(), key=lambda kv: kv[1])[0] == "neutral"
    assert agreement_sentence(sum_vs_geo) == (
        "Over the whole clip, the words lean to fear and the face (its expression model reads fear, its action units "
        "neutral) to neutral: they do not point the same way.")  # fmt: skip
