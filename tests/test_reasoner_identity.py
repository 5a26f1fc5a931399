"""What the decision and the record say about the LLM behind them (fake backend, no weights): the fitted fusion
counts the LLM's distribution only for the LLM it was fitted on; ``label_method`` says how the distribution was
obtained; ``--open-vocab`` words reach the batch record as the open-vocabulary label set that eval scores."""

from __future__ import annotations

import json

from affect_llm.batch import BatchOptions, load_inputs, record, run
from affect_llm.config import PipelineOptions
from affect_llm.evaluation.predictions import Prediction
from affect_llm.fusion import LEGACY_LLM, fusion_llm
from affect_llm.inputs import EvalItem, read_jsonl_records
from affect_llm.llm.reasoner import parse_emotion_words
from affect_llm.pipeline import Pipeline

TEXT = "I won! This is wonderful, I love it."


def _pipe(**kw) -> Pipeline:
    return Pipeline(PipelineOptions(backend="fake", context_model="none", fusion="meld", face=False, **kw))


def test_the_fusion_counts_the_llm_it_was_fitted_on_only():
    same = _pipe().analyze(text=TEXT)
    assert fusion_llm(_pipe().fusion()) == LEGACY_LLM == same.models["llm"]
    assert "llm" in same.fusion and same.label_method == "scored"
    other = _pipe(llm="another-llm").analyze(text=TEXT)
    assert other.models["llm"] == "another-llm" and other.fusion == {}
    assert other.probabilities == other.distributions["llm"]
    assert "not fused: the fusion was fitted on smollm2-135m's label scores, not another-llm's" in " ".join(other.notes)


def test_a_refit_fusion_records_its_llm(tmp_path):
    from affect_llm.fusion import ProbabilityFusion

    from affect_llm.runtime import adapters_dir

    f = ProbabilityFusion.load(adapters_dir() / "fusion-meld.json")
    f.info = {**f.info, "llm": "another-llm"}
    f.save(tmp_path / "f.json")
    a = Pipeline(PipelineOptions(backend="fake", context_model="none", fusion=str(tmp_path / "f.json"), face=False,
                                 llm="another-llm")).analyze(text=TEXT)  # fmt: skip
    assert "llm" in a.fusion


def test_open_vocabulary_words_become_the_records_label_set(tmp_path):
    assert parse_emotion_words("Happy, excited and relieved.") == ["happy", "excited", "relieved"]
    assert parse_emotion_words("1. joy\n2. fear") == ["joy"]
    assert parse_emotion_words("very happy / proud; PROUD") == ["very happy", "proud"]
    a = _pipe(open_vocab=True).analyze(text=TEXT)
    assert isinstance(a.open_vocabulary, list) and "open_vocab" in a.timings
    rec = record(EvalItem(id="x", text=TEXT), a)
    assert rec["labels"] == a.open_vocabulary == Prediction.from_record(rec).labels
    assert "labels" not in record(EvalItem(id="x", text=TEXT), _pipe().analyze(text=TEXT))


def test_an_explain_label_off_the_label_set_explains_the_decision(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps({"id": "a", "text": TEXT, "label": "elated"}) + "\n")
    cfg = PipelineOptions(backend="fake", context_model="none", face=False).config()
    run(load_inputs(p), cfg, tmp_path / "o.jsonl", BatchOptions(progress=False, explain_gold=True))
    rec = read_jsonl_records(tmp_path / "o.jsonl")[0]
    assert rec["explained_label"] is None and rec["explanation"].startswith(f"The speaker feels {rec['label']}.")
    assert any("'elated', is not on the label set" in n for n in rec["notes"])
