import pytest

from affect_llm.evidence import Evidence, cited_ids
from affect_llm.types import Cue, Modality


def _cues():
    return [
        Cue(id="P1", modality=Modality.prosody, start=0.0, end=2.0, text="much louder than the rest of the clip"),
        Cue(id="S2", modality=Modality.speech, start=2.5, end=4.0, text='"second"'),
        Cue(id="S1", modality=Modality.speech, start=0.0, end=2.0, text='"first"'),
    ]


def test_cues_ordered_by_time_then_modality():
    ev = Evidence.build(_cues(), missing=[Modality.face, Modality.face], notes=["no video stream"])
    assert ev.ids == ["S1", "P1", "S2"]
    assert ev.missing == [Modality.face]


def test_render_lists_ids_spans_and_missing():
    text = Evidence.build(_cues(), missing=[Modality.face]).render()
    lines = text.splitlines()
    assert lines[0] == "Evidence:"
    assert lines[1].startswith("[S1] 0.0–2.0 s (speech):")
    assert lines[2].startswith("[P1] 0.0–2.0 s (voice): much louder")
    assert "Not available: face." in text


def test_render_empty_evidence():
    assert "(no usable evidence)" in Evidence.build([]).render()


def test_duplicate_ids_rejected():
    c = _cues()
    c[1] = c[2].model_copy()
    with pytest.raises(ValueError, match="duplicate"):
        Evidence.build(c)


def test_cited_ids():
    assert cited_ids("Loud [P1] and [S1], again [P1]; S12 but not XS1 or S1x") == ["P1", "S1", "S12"]
