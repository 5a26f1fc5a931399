"""The real pipeline, server, batch and LangChain runnable over the deterministic fake LLM backend
(``backend="fake"``: no weights, no pulled model), so their logic is tested in the fast suite: the label decision
follows the LLM's scores, explanations are checked and cite their cue, the same input gives the same output
whatever ran before, follow-up answers cite, many concurrent requests each get their own analysis, a batch
resumes without writing an id twice, and LangChain gives what the pipeline gives."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from affect_llm.config import PipelineOptions
from affect_llm.llm.fake import LEXICON, FakeLM, tokenizer
from affect_llm.pipeline import Pipeline

#: no context model (the text is all there is), no face or CLIP: nothing to load but the fake LLM
OPTIONS = PipelineOptions(backend="fake", context_model="none", face=False)
TEXTS = ["Oh wow, we won! I am so happy!", "Get out, I hate you, you never listen.", "I miss her, I am so sad.",
         "Is that a spider? I am scared.", "Okay, see you tomorrow.", "Ew, that is gross and disgusting."]  # fmt: skip
WANT = ["joy", "anger", "sadness", "fear", "neutral", "disgust"]


def key(a):
    return a.label, a.probabilities, a.explanation, a.cited_cues


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(OPTIONS)


def test_the_fake_tokenizer_is_lossless_and_chat_formatted():
    tok = tokenizer()
    text = "Ça va? «Oui» — 😀 [T1]"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert FakeLM().prompt([{"role": "user", "content": "hi"}]).ids == tok(chat, add_special_tokens=False)["input_ids"]


def test_labels_follow_the_llm_scores_and_explanations_cite_and_quote_their_cue(pipe):
    for text, want in zip(TEXTS, WANT):
        a = pipe.analyze(text=text)
        assert a.label == want, (text, a.probabilities)
        assert max(a.probabilities, key=a.probabilities.get) == want
        assert sum(a.probabilities.values()) == pytest.approx(1.0)
        assert set(a.distributions) == {"llm"} and "LLM's label scores alone" in a.decision
        assert a.cited_cues == ["T1"] and f"feels {want}" in a.explanation
        quoted = a.explanation.split('"')[1]
        assert quoted and quoted in text  # an exact span of the words


def test_same_input_same_output_whatever_ran_before():
    one = Pipeline(OPTIONS)
    first = key(one.analyze(text=TEXTS[0]))
    for t in TEXTS[1:]:
        one.analyze(text=t)
    assert key(one.analyze(text=TEXTS[0])) == first
    assert key(Pipeline(OPTIONS).analyze(text=TEXTS[0])) == first  # a fresh pipeline too
    many = Pipeline(OPTIONS).analyze_many([{"text": t} for t in TEXTS])  # reasoned and explained together
    assert [key(a) for a in many] == [key(one.analyze(text=t)) for t in TEXTS]


def test_wordless_or_empty_input_is_a_clear_error_not_a_guess(pipe):
    from affect_llm.errors import InputError

    with pytest.raises(InputError):
        pipe.analyze(text="   ")


def test_a_follow_up_answer_cites_a_cue_and_is_not_a_label_word(pipe):
    a = pipe.analyze(text=TEXTS[1])
    answer = pipe.chat(a, [], "Why do you think so?")
    assert len(answer.split()) >= 8 and "[T1]" in answer
    assert answer.strip().lower() not in LEXICON
    again = pipe.chat(a, [("Why do you think so?", answer)], "What would change your mind?")
    assert again and "[T1]" in again


# -- the server ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from affect_llm.server import ServeOptions, create_app

    app = create_app(ServeOptions(max_concurrency=64, batch_wait_ms=5), config=OPTIONS)
    with TestClient(app) as c:
        yield c


def _ask(client, messages, **extra):
    r = client.post("/v1/chat/completions", json={"model": "affect-llm", "messages": messages, **extra})
    assert r.status_code == 200, r.text
    return r


def test_the_server_answers_what_the_pipeline_answers(client):
    direct = Pipeline(OPTIONS).analyze(text=TEXTS[2])
    body = _ask(client, [{"role": "user", "content": TEXTS[2]}]).json()
    assert body["choices"][0]["message"]["content"] == direct.explanation
    assert body["affect"]["label"] == direct.label and body["affect"]["probabilities"] == direct.probabilities


def test_streaming_gives_the_same_text_as_one_reply(client):
    whole = _ask(client, [{"role": "user", "content": TEXTS[3]}]).json()["choices"][0]["message"]["content"]
    r = _ask(client, [{"role": "user", "content": TEXTS[3]}], stream=True)
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == whole
    assert r.text.rstrip().endswith("data: [DONE]")


def test_a_follow_up_turn_is_answered_about_the_first_message(client):
    first = _ask(client, [{"role": "user", "content": TEXTS[0]}]).json()
    said = first["choices"][0]["message"]["content"]
    follow = _ask(client, [{"role": "user", "content": TEXTS[0]}, {"role": "assistant", "content": said},
                           {"role": "user", "content": "Why do you think so?"}]).json()  # fmt: skip
    answer = follow["choices"][0]["message"]["content"]
    assert answer != said and "[T1]" in answer and len(answer.split()) >= 8
    assert follow["affect"]["label"] == "joy"  # the analysis of the first message, not of the question


def test_fifty_distinct_concurrent_requests_each_get_their_own_analysis(client):
    """50 different inputs at once (no cache hit): every reply is the one its own input gets alone."""
    texts = [f"Take {i}: {TEXTS[i % len(TEXTS)]}" for i in range(50)]
    alone = {t: Pipeline(OPTIONS).analyze(text=t).explanation for t in texts[:6]}
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda t: _ask(client, [{"role": "user", "content": t}]).json(), texts))
    for i, (t, r) in enumerate(zip(texts, replies)):
        content = r["choices"][0]["message"]["content"]
        assert f'"Take {i}:' in content, content  # its own words quoted, not another input's
        assert r["affect"]["label"] == WANT[i % len(WANT)]
        if t in alone:
            assert content == alone[t]


# -- batch -----------------------------------------------------------------------------------------------


def test_a_batch_resumes_where_it_stopped_and_never_writes_an_id_twice(tmp_path):
    from affect_llm.batch import BatchOptions, load_inputs, run

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"u{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    out = tmp_path / "out.jsonl"
    cfg = OPTIONS.config()
    opts = BatchOptions(progress=False, llm_batch=2)
    first = run(load_inputs(src, limit=3), cfg, out, opts)
    assert (first.done, first.skipped) == (3, 0)
    second = run(load_inputs(src), cfg, out, opts)
    assert (second.done, second.skipped) == (3, 3)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in recs] == [f"u{i}" for i in range(6)]
    assert [r["label"] for r in recs] == WANT
    one = Pipeline(OPTIONS).analyze(text=TEXTS[4])
    assert recs[4]["explanation"] == one.explanation


def test_a_batch_killed_part_way_keeps_every_finished_line(tmp_path):
    """An exception while items are analysed (what a kill mid-chunk leaves): every line written before it is
    whole, and the rerun completes without duplicates."""
    from affect_llm.batch import BatchOptions, load_inputs, run

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"u{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    out = tmp_path / "out.jsonl"
    seen = []

    def stop_after_two(rec):
        seen.append(rec["id"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(load_inputs(src), OPTIONS.config(), out, BatchOptions(progress=False, llm_batch=1), on_record=stop_after_two)
    kept = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert kept == ["u0", "u1"]
    run(load_inputs(src), OPTIONS.config(), out, BatchOptions(progress=False))
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == [f"u{i}" for i in range(6)]


def test_a_batch_on_a_worker_process_gives_what_one_process_gives(tmp_path):
    from affect_llm.batch import BatchOptions, load_inputs, run

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"u{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    inline, workers = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    run(load_inputs(src), OPTIONS.config(), inline, BatchOptions(progress=False))
    run(load_inputs(src), OPTIONS.config(), workers, BatchOptions(progress=False, workers=1))

    def labels(p):
        return {(r := json.loads(line))["id"]: (r["label"], r["probabilities"], r["explanation"])
                for line in p.read_text().splitlines()}  # fmt: skip

    assert labels(workers) == labels(inline)


# -- LangChain -------------------------------------------------------------------------------------------


def test_langchain_gives_what_the_pipeline_gives():
    pytest.importorskip("langchain_core")
    from affect_llm.integrations.langchain import AffectAnalyzer

    analyzer = AffectAnalyzer(backend="fake", context_model="none", face=False)
    one = analyzer.invoke({"text": TEXTS[0], "question": "Why do you think so?"})
    direct = Pipeline(OPTIONS).analyze(text=TEXTS[0])
    assert (one["label"], one["explanation"]) == (direct.label, direct.explanation)
    assert "[T1]" in one["answer"]
    many = analyzer.batch([{"text": t} for t in TEXTS[:3]] + ["missing.mp4"], return_exceptions=True)
    assert [m["label"] for m in many[:3]] == WANT[:3]
    assert isinstance(many[3], Exception)


def test_many_threads_on_one_pipeline(pipe):
    results: dict[str, str] = {}
    lock = threading.Lock()

    def go(t):
        a = pipe.analyze(text=t)
        with lock:
            results[t] = a.label

    threads = [threading.Thread(target=go, args=(t,)) for t in TEXTS * 3]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert [results[t] for t in TEXTS] == WANT


# -- the media path, with the fake transcriber --------------------------------------------------------------


def _two_bursts(path):
    """0.5 s silence, 1.2 s of a 180 Hz voice-like tone, 0.6 s silence, 0.8 s at 220 Hz, 0.4 s silence."""
    import wave

    import numpy as np

    sr = 16_000

    def tone(hz, s):
        t = np.arange(int(sr * s)) / sr
        return 0.4 * np.sin(2 * np.pi * hz * t) + 0.1 * np.sin(4 * np.pi * hz * t)

    x = np.concatenate([np.zeros(sr // 2), tone(180, 1.2), np.zeros(int(sr * 0.6)), tone(220, 0.8),
                        np.zeros(int(sr * 0.4))])  # fmt: skip
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


def test_an_audio_clip_goes_through_decoding_asr_prosody_and_reasoning_without_a_model(tmp_path):
    """The media path with the fake transcriber and LLM (no pulled model): each voiced stretch is a timed
    S-cue, the voice is measured (P-cues), the label is decided from the words' scores, and the explanation
    cites a cue; the same file twice gives the same analysis."""
    clip = _two_bursts(tmp_path / "two.wav")
    pipe = Pipeline(PipelineOptions(backend="fake", asr_backend="fake", context_model="none", face=False))
    a = pipe.analyze(clip)
    speech = [c for c in a.cues if c.modality.value == "speech"]
    assert [c.id for c in speech] == ["S1", "S2"]
    assert speech[0].start == pytest.approx(0.5, abs=0.05) and speech[0].end == pytest.approx(1.7, abs=0.05)
    assert speech[1].start == pytest.approx(2.3, abs=0.05) and speech[1].end == pytest.approx(3.1, abs=0.05)
    assert any(c.modality.value == "prosody" for c in a.cues)
    assert a.media.has_audio and not a.media.has_video and "face" in [m.value for m in a.missing_modalities]
    assert a.label in a.probabilities and a.cited_cues and a.timings["asr"] >= 0
    assert key(pipe.analyze(clip)) == key(a)


def test_silence_through_the_fake_transcriber_is_a_result_that_says_so(tmp_path):
    import wave

    path = tmp_path / "quiet.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(b"\0\0" * 16_000)
    a = Pipeline(PipelineOptions(backend="fake", asr_backend="fake", context_model="none", face=False)).analyze(path)
    assert a.label == "neutral" and not a.cues and "speech" in [m.value for m in a.missing_modalities]
    assert "silent" in " ".join(a.notes)


def test_each_step_runs_alone_gather_decide_finish(pipe):
    """gather → decide → (explain) → finish, each callable on its own: the decided label and the explanation
    job before any generation; finish without an explanation gives the labelled Analysis."""
    g = pipe.gather(text=TEXTS[3])
    assert g.source == "text" and [c.id for c in g.evidence.cues] == ["T1"] and g.media is None
    d = pipe.decide(g)
    assert d.label == "fear" and d.job.label == "fear" and d.job.evidence is g.evidence
    a = pipe.finish(d, explain=False)
    assert (a.label, a.explanation, a.probabilities) == ("fear", "", d.probs)
    assert pipe.reason(pipe.gather(text=TEXTS[3])).label == "fear"
