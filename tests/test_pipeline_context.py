"""The dialogue as context: the shipped context model and fusion inside the pipeline and the CLI."""

import json
import os
import subprocess
import sys

import pytest

from affect_llm.config import MELD_LABELS, PipelineConfig
from affect_llm.context.model import default_path
from affect_llm.errors import InputError, ModelNotFound
from affect_llm.pipeline import Pipeline
from affect_llm.types import Analysis, Modality

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (default_path("meld") / "config.json").is_file(), reason="adapters/context-meld not trained"),
]

DIALOGUE = [
    {"speaker": "Monica", "text": "Guess what? I got the job at the restaurant!"},
    {"speaker": "Rachel", "text": "Oh my God, that is amazing!"},
]


@pytest.fixture(scope="module")
def pipe():
    return Pipeline()


def test_text_with_dialogue_context(pipe, tmp_path):
    ctx = tmp_path / "d.jsonl"
    ctx.write_text("\n".join(json.dumps(u) for u in DIALOGUE) + "\n")
    a = pipe.analyze(text="We have to celebrate tonight!", context=ctx, speaker="Monica", explain=False)
    assert set(a.distributions) >= {"context", "llm"}
    assert set(a.distributions["context"]) == set(MELD_LABELS)
    assert set(a.fusion) == {"context", "llm"} and sum(a.fusion.values()) == pytest.approx(1, abs=1e-3)
    assert sum(a.probabilities.values()) == pytest.approx(1, abs=1e-6)
    assert a.label == max(a.probabilities, key=a.probabilities.get)
    d1 = a.cue("D1")
    assert d1 is not None and d1.modality == Modality.context and "2 earlier utterances" in d1.text
    assert "[D1]" in a.evidence and "(dialogue)" in a.evidence
    assert a.models["context"] == "meld" and "context" in a.timings
    # the context changes the context model's reading of the same words
    alone = pipe.analyze(text="We have to celebrate tonight!", explain=False)
    assert "utterance alone" in alone.cue("D1").text
    assert alone.distributions["context"] != a.distributions["context"]


def test_context_as_speaker_lines_and_bad_context(pipe, tmp_path):
    a = pipe.analyze(text="No way.", context="Ross: I'm moving to Paris.\nRachel: What?", explain=False)
    assert "2 earlier utterances" in a.cue("D1").text
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(InputError, match="bad.jsonl:1"):
        pipe.analyze(text="Hi.", context=bad)


@pytest.mark.skipif(not (default_path("meld").parent / "reasoner-meld" / "reasoner.json").is_file(),
                    reason="adapters/reasoner-meld not trained")
def test_tuned_reasoner_is_the_default_and_reads_the_soft_prompt(pipe):
    a = pipe.analyze(text="We have to celebrate tonight!", context="Monica: I got the job!", speaker="Monica")
    assert a.models["adapter"].endswith("reasoner-meld")
    r = pipe.reasoner()
    assert r.projector is not None and r.calibrate is False
    # the same evidence without the soft prompt gives other label scores: the context embedding is read
    gathering = pipe.gather(text="We have to celebrate tonight!", context="Monica: I got the job!")
    evidence, dialogue = gathering.evidence, gathering.dialogue
    soft = r.soft_prompt(gathering.findings.context_embedding, "meld", pipe.context_model().fingerprint)
    assert soft is not None
    ev = evidence.render()
    assert r.label_distribution(ev, None, soft) != r.label_distribution(ev, None, None)
    # the tuned model cites on its own (no seeded id): whatever it cites is checked against the evidence
    assert a.explanation.startswith("The speaker feels ") and not a.uncited_ids
    base = Pipeline(PipelineConfig.model_validate({"reasoner": {"adapter": None}}))
    b = base.analyze(text="We have to celebrate tonight!", explain=False)
    assert "adapter" not in b.models and base.reasoner().adapter is None and base.reasoner().calibrate is True


def test_switches_and_missing_adapter(tmp_path):
    off = Pipeline(PipelineConfig.model_validate({"context": {"model": None, "fusion": None}}))
    a = off.analyze(text="I am so angry with you!", explain=False)
    assert set(a.distributions) == {"llm"} and a.fusion == {} and a.cue("D1") is None
    assert a.probabilities == a.distributions["llm"]
    custom = Pipeline(PipelineConfig.model_validate({"reasoner": {"labels": ["positive", "negative", "neutral"]}}))
    b = custom.analyze(text="I am so angry with you!", explain=False)
    assert set(b.probabilities) == {"positive", "negative", "neutral"} and b.fusion == {}
    assert any("are not the fusion's" in n for n in b.notes)
    # another dataset's context model under MELD's fusion: nothing matches, the LLM decides, the note says why
    if (default_path("emorynlp") / "config.json").is_file():
        from affect_llm.data import dataset_labels

        cross = Pipeline(PipelineConfig.model_validate({"context": {"model": "emorynlp", "fusion": "meld"},
                                                        "reasoner": {"labels": dataset_labels("emorynlp")}}))  # fmt: skip
        c = cross.analyze(text="I am so angry with you!", explain=False)
        assert c.probabilities == c.distributions["llm"] and c.fusion == {}
        assert any(n.startswith("not fused, the LLM's distribution decides") and "are not the fusion's" in n
                   for n in c.notes)  # fmt: skip
    missing = Pipeline(PipelineConfig.model_validate({"context": {"model": str(tmp_path / "nope")}}))
    with pytest.raises(ModelNotFound):
        missing.analyze(text="Hello there.", explain=False)
    no_adapter = Pipeline(PipelineConfig.model_validate({"reasoner": {"adapter": str(tmp_path / "nope")}}))
    with pytest.raises(ModelNotFound, match="adapter"):
        no_adapter.analyze(text="Hello there.", explain=False)


def test_cli_context_flag(tmp_path):
    ctx = tmp_path / "d.jsonl"
    ctx.write_text("\n".join(json.dumps(u) for u in DIALOGUE) + "\n")
    r = subprocess.run([sys.executable, "-m", "affect_llm.cli", "chat", "--text", "We have to celebrate!",
                        "--context", str(ctx), "--speaker", "Monica", "--json", "--no-explain"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "120"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    a = Analysis.model_validate_json(r.stdout)
    assert "context" in a.distributions and a.fusion
    r2 = subprocess.run([sys.executable, "-m", "affect_llm.cli", "chat", "--text", "Hi.", "--context",
                         str(tmp_path / "missing.jsonl")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r2.returncode == 2 and "no such context file" in r2.stderr and "Traceback" not in r2.stderr
    r3 = subprocess.run([sys.executable, "-m", "affect_llm.cli", "chat", "--text", "Hi there, how are you?",
                         "--context", str(ctx)], capture_output=True, text=True, timeout=300, input="",
                        env={**os.environ, "COLUMNS": "120"})  # fmt: skip
    assert r3.returncode == 0, r3.stderr
    assert "fused from:" in r3.stdout and "context" in r3.stdout
    r4 = subprocess.run([sys.executable, "-m", "affect_llm.cli", "chat", "--text", "Hi.", "--adapter", "none", "--json",
                         "--no-explain"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r4.returncode == 0, r4.stderr
    assert "adapter" not in Analysis.model_validate_json(r4.stdout).models


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_same_input_same_analysis_whatever_ran_before(dtype):
    """One Pipeline analysing A, B, A -- and A, B, A each with a dialogue -- gives bit-identical labels,
    probabilities and explanations for the two A's; so does a batch (analyze_many) holding A among others."""
    pipe = Pipeline(PipelineConfig.model_validate({"reasoner": {"dtype": dtype, "max_new_tokens": 32}}))
    a, b = "I can't believe you forgot my birthday again.", "Oh wow, we won the lottery!"
    lines = "\n".join(f"{u['speaker']}: {u['text']}" for u in DIALOGUE)

    def key(x: Analysis):
        return x.label, x.probabilities, x.distributions, x.explanation, x.cited_cues

    first = key(pipe.analyze(text=a))
    pipe.analyze(text=b)
    assert key(pipe.analyze(text=a)) == first
    with_ctx = key(pipe.analyze(text=a, context=lines, speaker="Monica"))
    pipe.analyze(text=b, context=lines, speaker="Monica")
    assert key(pipe.analyze(text=a, context=lines, speaker="Monica")) == with_ctx
    batch = pipe.analyze_many([{"text": b}, {"text": "Fine."}, {"text": a}])
    assert key(batch[2]) == first
    assert first[3]  # there was an explanation to compare


def test_one_pipeline_from_eight_threads_equals_sequential_use():
    """A fresh Pipeline hit by 8 threads at once (its lazy loaders racing, as in the server and LangChain's
    abatch) loads each model once and gives every input the analysis sequential use gives it."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = PipelineConfig.model_validate({"reasoner": {"max_new_tokens": 24}})
    texts = ["I can't believe you forgot my birthday again.", "Oh wow, we won the lottery!", "Fine.",
             "Get out of my house!", "I miss her every day.", "Is that a spider on my arm?", "Ugh, this soup is off.",
             "See you tomorrow then."]  # fmt: skip

    def key(x: Analysis):
        return x.label, x.probabilities, x.explanation

    seq = Pipeline(cfg)
    expected = [key(seq.analyze(text=t)) for t in texts]
    shared = Pipeline(cfg)
    loads = []
    real = shared.models._load_reasoner  # the models' lifecycle: affect_llm.loaded.LoadedModels
    shared.models._load_reasoner = lambda: loads.append(1) or real()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda t: key(shared.analyze(text=t)), texts))
    assert got == expected
    assert len(loads) == 1
