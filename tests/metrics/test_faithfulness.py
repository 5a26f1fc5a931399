"""Faithfulness: cited ids exist, explanations cite, and claim sentences stay with the cues they cite."""

import numpy as np
import pytest

from affect_llm.evidence import Evidence
from affect_llm.metrics import faithfulness as fa
from affect_llm.metrics.faithfulness import faithfulness_scores, split_sentences
from affect_llm.types import Cue, Modality

# cue texts in the shapes the stages write them (speech.py, prosody.describe, face.describe, the pipeline's D1)
CUES = [
    Cue(id="S1", modality=Modality.speech, start=0.0, end=1.8, text='"Get out of my house!" (ASR confidence 0.91)'),
    Cue(id="P1", modality=Modality.prosody, start=0.0, end=1.8,
        text="higher pitch than the speaker's usual (+2.4 st), moderate pitch variation (5.1 st), much louder than the "
             "rest of the clip (+7.2 dB), faster speech than usual (3.4 words/s)"),
    Cue(id="F1", modality=Modality.face, start=0.0, end=1.8,
        text="main face (the only face; its mouth moved during speech, visible in 96% of frames): strong AU4 brow "
             "lowerer (3.3/5) with AU7 lid tightener (2.1/5); expression angry 0.71"),
    Cue(id="D1", modality=Modality.context, value={"anger": 0.52, "neutral": 0.21, "disgust": 0.12},
        text="context model over 4 earlier utterances: anger 0.52, neutral 0.21, disgust 0.12"),
]  # fmt: skip

EXPLANATION = (
    "The speaker feels anger. "
    'In [S1] the speaker says "Get out of my house!", an exclamation. '  # quotes S1
    "[P1] The voice is much louder and faster than usual. "  # louder, faster: both in P1
    "[F1] The brows are lowered in a frown. "  # brow, lowered ~ lowerer, frown -> AU4's lowerer
    "[D1] The conversation so far points the same way (anger 0.52). "  # 0.52 is in D1
    "[F1] The speaker is smiling broadly and laughing. "  # F1 shows a frown, not a smile
    "[P1] They whisper softly. "  # P1 is louder, not softer
    "The speaker clenches their fists. "  # cites nothing
    "Therefore, the speaker's emotional state is anger."
)


def test_sentence_support_by_hand():
    checks = fa.check_sentences(EXPLANATION, CUES)
    kinds = [c.kind for c in checks]
    assert kinds == ["conclusion"] + ["claim"] * 7 + ["conclusion"]
    claims = [c for c in checks if c.kind == "claim"]
    assert [c.supported for c in claims] == [True, True, True, True, False, False, False]
    assert [c.by for c in claims[:4]] == ["quote", "overlap", "overlap", "overlap"]
    assert claims[1].overlap == ["faster", "louder"]
    assert claims[3].overlap == ["0.52"]
    r = faithfulness_scores([EXPLANATION], [CUES])
    assert r["sentence_support"] == pytest.approx(4 / 7)
    assert (r["claim_sentences"], r["supported_sentences"], r["conclusion_sentences"]) == (7, 4, 2)
    assert r["support_by"] == {"quote": 1, "overlap": 3, "embedding": 0}
    assert r["cited_ids_exist"] == 1.0 and r["cites_share"] == 1.0
    assert r["embed"] is False and r["threshold"] is None


def test_the_same_claim_cited_to_the_wrong_cue_is_unsupported():
    softer = Cue(id="P1", modality=Modality.prosody,
                 text="pitch at the speaker's usual level, monotone (1.9 st range), much softer than the rest of the "
                      "clip (-7.4 dB), much slower speech than usual (1.5 words/s)")  # fmt: skip
    claim = "[P1] The voice is much louder and faster than usual."
    assert fa.check_sentences(claim, CUES)[0].supported
    assert not fa.check_sentences(claim, [softer])[0].supported
    # a quotation must be in the cue it cites
    said = 'In [S2] the speaker says "Get out of my house!"'
    other = Cue(id="S2", modality=Modality.speech, text='"I love this place." (ASR confidence 0.88)')
    assert not fa.check_sentences(said, [CUES[0], other])[0].supported
    assert fa.check_sentences(said.replace("S2", "S1"), [CUES[0], other])[0].by == "quote"


def test_one_shared_word_is_not_enough():
    # content words: louder, trembling, hesitant, stammer -> 1 of 4 match P1 (< 1/3)
    s = "[P1] The voice is louder, trembling, hesitant, with a stammer."
    c = fa.check_sentences(s, CUES)[0]
    assert c.overlap == ["louder"] and not c.supported
    # 1 of 3 is enough
    assert fa.check_sentences("[P1] The voice is louder, trembling and hesitant.", CUES)[0].supported


def test_conclusion_sentences_are_not_counted():
    for s in [
        "The speaker feels joy.",
        "Therefore, the speaker's emotional state is joy.",
        "Therefore, it is inferred that his emotional state is anger.",
        "Therefore, it can be inferred that his emotional state is grateful, happy, and shy.",
        "Overall, the evidence suggests the speaker is most likely surprised.",
    ]:
        assert [c.kind for c in fa.check_sentences(s, CUES)] == ["conclusion"], s
    r = faithfulness_scores(["The speaker feels joy. Therefore, the speaker's emotional state is joy."], [CUES])
    assert r["sentence_support"] is None and r["claim_sentences"] == 0 and r["conclusion_sentences"] == 2
    # a label alone is no content; the dataset's own labels can be added to the emotion words
    assert fa.content_words("[D1] The dialogue points to anger.") == set()
    assert fa.content_words("[F1] He looks grumpy.") == {fa.stem("look"), fa.stem("grumpy")}
    assert fa.content_words("[F1] He looks grumpy.", labels=["grumpy"]) == {"look"}


def test_split_sentences():
    text = (
        'The speaker feels joy. In [T1] they say "Oh. My. God. I love it!", an exclamation; "love" sounds '
        "pleased. [P1] The pitch is higher (+4.1 st) than usual. Mr. Geller, e.g. Ross, is there! Is it? "
        "[D1] The conversation so far points the same way (joy 0.61).\n- [F1] a smile\n2. [C1] a party scene"
    )
    assert split_sentences(text) == [
        "The speaker feels joy.",
        'In [T1] they say "Oh. My. God. I love it!", an exclamation; "love" sounds pleased.',
        "[P1] The pitch is higher (+4.1 st) than usual.",
        "Mr. Geller, e.g. Ross, is there!",
        "Is it?",
        "[D1] The conversation so far points the same way (joy 0.61).",
        "[F1] a smile",
        "[C1] a party scene",
    ]
    # typographic quotes are made ASCII; unpaired quotes do not swallow the rest of the text
    assert split_sentences("In [T1] they say \u201cHi. Bye.\u201d Then they leave.") == [
        'In [T1] they say "Hi. Bye."',
        "Then they leave.",
    ]
    assert split_sentences('In [T1] they say "A, an exclamation]. The wording is plain.') == [
        'In [T1] they say "A, an exclamation].',
        "The wording is plain.",
    ]
    assert split_sentences("") == [] and split_sentences("   \n ") == []


def test_cited_ids_exist_and_cites_share_by_hand():
    texts = [
        "[T1] They say hi. [P9] The voice is loud.",  # T1 exists, P9 does not
        "[S1] and [S2] say it all.",  # both exist
        "No ids at all.",  # cites nothing
        "[F4] A smile.",  # only an unknown id
        "",  # empty
    ]
    t1 = [Cue(id="T1", modality=Modality.text, text='"hi"')]
    s12 = [Cue(id="S1", modality=Modality.speech, text='"a"'), Cue(id="S2", modality=Modality.speech, text='"b"')]
    r = faithfulness_scores(texts, [t1, s12, t1, t1, t1])
    assert r["n"] == 5 and r["empty"] == 1
    assert (r["ids_cited"], r["ids_unknown"]) == (5, 2)
    assert r["cited_ids_exist"] == pytest.approx(3 / 5)  # micro: T1, S1, S2 of T1, P9, S1, S2, F4
    assert [p["cited_ids_exist"] for p in r["per_sample"]] == [0.5, 1.0, None, 0.0, None]
    assert [p["unknown"] for p in r["per_sample"]] == [["P9"], [], [], ["F4"], []]
    assert r["cites_share"] == pytest.approx(2 / 5)  # samples 1 and 2 cite an existing cue
    assert [p["cites"] for p in r["per_sample"]] == [True, True, False, False, False]
    # claim sentences citing only unknown ids are unsupported
    assert r["per_sample"][3]["sentence_support"] == 0.0
    assert r["per_sample"][4]["sentence_support"] is None


def test_inputs():
    ev = Evidence.build(CUES)
    as_dicts = [c.model_dump() for c in CUES]
    a = faithfulness_scores([EXPLANATION], [ev])
    b = faithfulness_scores([EXPLANATION], [as_dicts])
    c = faithfulness_scores([EXPLANATION, None], [CUES, None])
    assert a["sentence_support"] == b["sentence_support"] == c["sentence_support"] == pytest.approx(4 / 7)
    assert c["empty"] == 1 and c["cites_share"] == pytest.approx(0.5)
    assert faithfulness_scores([], [])["cited_ids_exist"] is None
    with pytest.raises(ValueError, match="2 explanations but 1 evidence"):
        faithfulness_scores(["a", "b"], [CUES])
    with pytest.raises(TypeError):
        faithfulness_scores("[S1] text", [CUES])


class TableEncoder:
    """Unit vectors chosen per text, so the cosines are known: 'paraphrase' sentences get cos 0.5 with T1."""

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen += texts
        out = []
        for t in texts:
            if t.startswith('"'):  # a cue text
                out.append([1.0, 0.0])
            elif "paraphrase" in t:
                out.append([0.5, np.sqrt(0.75)])
            else:
                out.append([0.0, 1.0])
        return np.array(out)


def test_embedding_rule_with_a_known_encoder():
    t1 = Cue(id="T1", modality=Modality.text, text='"Just stop horsing around!"')
    p1 = Cue(id="P1", modality=Modality.prosody, text="much louder than the rest of the clip (+7.2 dB)")
    text = "[T1] A paraphrase: enough joking. [T1] Nothing like it. [P1] A paraphrase of the voice: booming."
    enc = TableEncoder()
    r = faithfulness_scores([text], [[t1, p1]], embed=True, encoder=enc)
    sents = r["per_sample"][0]["sentences"]
    assert [s["similarity"] for s in sents] == [pytest.approx(0.5), pytest.approx(0.0), None]
    assert [s["by"] for s in sents] == ["embedding", None, None]
    assert r["support_by"]["embedding"] == 1 and r["threshold"] == fa.SIMILARITY_THRESHOLD
    assert p1.text not in enc.seen  # voice, face, scene and dialogue cues are never embedded
    r = faithfulness_scores([text], [[t1, p1]], embed=True, encoder=TableEncoder(), threshold=0.6)
    assert r["support_by"]["embedding"] == 0
    # nothing to embed: the encoder is not even asked
    quiet = TableEncoder()
    faithfulness_scores(["[P1] booming."], [[p1]], embed=True, encoder=quiet)
    assert quiet.seen == []


@pytest.mark.slow
def test_minilm_threshold_separates_paraphrases_from_other_utterances():
    """Three of the calibration pairs (module docstring): MELD utterances and paraphrases sharing no content word."""
    said = [
        '"Hey! What did you decide to do about the movie?"',
        '"What is going on with you? Since when are you so crazy about babies?"',
        '"We should defiantly play football more often. Maybe there\u2019s a like league we could join or something."',
    ]
    para = [
        "In [S1] the speaker asks about the choice regarding the film.",
        "In [S1] the speaker questions a sudden obsession with infants.",
        "In [S1] the speaker proposes joining a team to do the sport regularly.",
    ]
    cue = lambda t: [Cue(id="S1", modality=Modality.speech, text=t)]
    own = faithfulness_scores(para, [cue(t) for t in said], embed=True)
    lexical = faithfulness_scores(para, [cue(t) for t in said])
    wrong = faithfulness_scores(para, [cue(t) for t in said[1:] + said[:1]], embed=True)
    assert lexical["sentence_support"] == 0.0  # no shared content words: only the embedding can tell
    assert own["sentence_support"] == 1.0 and own["support_by"]["embedding"] == 3
    assert wrong["sentence_support"] == 0.0
    sims_own = [p["sentences"][0]["similarity"] for p in own["per_sample"]]
    sims_wrong = [p["sentences"][0]["similarity"] for p in wrong["per_sample"]]
    assert min(sims_own) > fa.SIMILARITY_THRESHOLD + 0.1 and max(sims_wrong) < fa.SIMILARITY_THRESHOLD - 0.1


def test_word_forms_share_a_stem_and_the_stemmer_is_safe_across_threads():
    from concurrent.futures import ThreadPoolExecutor

    for forms in (["pause", "pauses", "paused", "pausing"], ["smile", "smiles", "smiled", "smiling"],
                  ["raise", "raises", "raised"], ["cry", "cries", "crying"]):  # fmt: skip
        assert len({fa.stem(w) for w in forms}) == 1, forms
    assert fa._match(fa.stem("happy"), fa.stem("happily"))  # what the stems leave apart, the match allows
    # a claim worded with another form of the cue's words is supported by overlap
    p = Cue(id="P1", modality=Modality.prosody, text="much louder than usual, 2 pauses inside (1.4 s)")
    c = fa.check_sentences("[P1] The speaker is loud and pausing.", [p], similarities=None)[0]
    assert c.supported and c.by == "overlap"
    import sys

    words = [f"{w}{suffix}" for w in ("internationalization", "generalization", "characterization", "walk", "laugh",
                                      "whisper") for suffix in ("", "s", "ed", "ing", "ly")]  # fmt: skip
    fa.stem.cache_clear()
    serial = [fa.stem(w) for w in words]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads change hands as often as they can
    try:
        with ThreadPoolExecutor(8) as pool:
            for _ in range(30):
                fa.stem.cache_clear()
                assert list(pool.map(fa.stem, words * 20)) == serial * 20
    finally:
        sys.setswitchinterval(interval)
        fa.stem.cache_clear()
