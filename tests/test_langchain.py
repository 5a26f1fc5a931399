"""The LangChain Runnable over the pipeline, composed in an LCEL chain."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_core")

from langchain_core.runnables import RunnableLambda  # noqa: E402

from affect_llm.config import MELD_LABELS  # noqa: E402
from affect_llm.errors import InputError  # noqa: E402
from affect_llm.integrations.langchain import AffectAnalyzer  # noqa: E402
from tests._synth import shared_media  # noqa: E402
from tests.conftest import count_reason_many  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analyzer():
    from affect_llm.config import PipelineConfig

    return AffectAnalyzer(config=PipelineConfig.model_validate({"face": {"enabled": False}}))


def test_runnable_on_text_media_and_in_a_chain(analyzer):
    a = analyzer.invoke({"text": "We won the final! I can't stop smiling!", "context": "Coach: Final whistle!"})
    assert a["label"] in MELD_LABELS and a["explanation"] and a["cues"][0]["id"] == "T1"
    assert a["distributions"]["context"] and abs(sum(a["probabilities"].values()) - 1) < 1e-6
    chain = analyzer | RunnableLambda(lambda x: (x["label"], x["transcript"]["text"]))
    label, said = chain.invoke(str(shared_media() / "jfk.flac"))
    assert label in MELD_LABELS and "ask not" in said
    many = analyzer.batch([{"text": "I hate this.", "explain": False}, {"text": "Thank you so much!", "explain": False}])
    assert [x["explanation"] for x in many] == ["", ""] and all(x["label"] in MELD_LABELS for x in many)
    with pytest.raises(InputError):
        analyzer.invoke({"media": "a.mp4", "text": "both"})


def test_batch_reasons_in_one_call_and_keeps_errors_in_place(analyzer, monkeypatch):
    """``batch`` reasons over the inputs together (one Pipeline.reason_many call, explanations batched), each
    answer in its input's place; a bad input raises, or with return_exceptions=True stands as its error."""
    calls = count_reason_many(monkeypatch, analyzer.pipeline)
    out = analyzer.batch([{"text": "I got the job!"}, {"text": "   "}, str(shared_media() / "jfk.flac")],
                         return_exceptions=True)  # fmt: skip
    assert calls == [2]
    assert out[0]["cues"][0]["text"] == '"I got the job!"'
    assert out[0]["explanation"].startswith(f"The speaker feels {out[0]['label']}")
    assert isinstance(out[1], InputError)
    assert "ask not" in out[2]["transcript"]["text"] and out[2]["explanation"]
    with pytest.raises(InputError):
        analyzer.batch([{"text": "fine"}, {"text": ""}])


def test_a_question_gets_the_checked_answer(analyzer):
    """A follow-up through LangChain: the same answer path as chat --ask (sentences citing the evidence)."""
    from affect_llm.evidence import cited_ids

    a = analyzer.invoke({"text": "I can't believe you forgot my birthday again.", "question": "Why do you think so?"})
    assert len(a["answer"].split()) >= 8 and "T1" in cited_ids(a["answer"])
    many = analyzer.batch([{"text": "Fine.", "question": "What would change your mind?"}, {"text": "Fine."}])
    assert cited_ids(many[0]["answer"]) and "answer" not in many[1]
