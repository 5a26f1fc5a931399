"""`affect-llm batch`: inputs, crash safety (a real SIGKILL), bad items, the worker-process and Ray engines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from affect_llm.batch import load_inputs, prepare
from affect_llm.errors import InputError
from tests._synth import shared_media

REPO = Path(__file__).resolve().parents[1]
MELD_DEV = REPO.parent / "shared" / "data" / "meld" / "dev_sent_emo.csv"


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "affect_llm.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)  # fmt: skip


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _need_meld() -> Path:
    if not MELD_DEV.exists():
        pytest.skip("MELD dev CSV not here")
    return MELD_DEV


def test_inputs_csv_manifest_and_folder(tmp_path):
    es = load_inputs(_need_meld(), limit=3)
    assert es.name == "meld" and [x.id for x in es.items] == ["dia0_utt0", "dia0_utt1", "dia1_utt0"]
    assert es.items[1].context.utterances[0].text == es.items[0].text and es.items[1].text
    (tmp_path / "clips" / "sub").mkdir(parents=True)
    for name in ("a.mp4", "sub/b.flac", "notes.txt"):
        (tmp_path / "clips" / name).write_bytes(b"x")
    folder = load_inputs(tmp_path / "clips")
    assert [x.id for x in folder.items] == ["a.mp4", "sub/b.flac"] and folder.items[0].media.is_absolute()
    m = tmp_path / "m.jsonl"
    m.write_text('{"id": "x", "path": "clips/a.mp4"}\n{"id": "y", "text": "hello", "label": "joy"}\n')
    man = load_inputs(m)
    assert man.items[0].media == tmp_path / "clips" / "a.mp4" and man.items[1].text == "hello"
    m.write_text('{"id": "x", "path": "a.mp4"}\n{"id": "x", "text": "again"}\n')
    with pytest.raises(InputError, match=r"m\.jsonl:2: id 'x' appears twice"):
        load_inputs(m)
    with pytest.raises(InputError, match="no such file"):
        load_inputs(tmp_path / "nope.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a MELD or EmoryNLP CSV"):
        load_inputs(tmp_path / "other.csv")


def test_a_results_file_is_not_resumed_with_other_settings(tmp_path):
    out = tmp_path / "r.jsonl"
    prepare(out, {"source": "a", "explain": True})
    out.write_text('{"id": "1"}\n')
    prepare(out, {"source": "a", "explain": True})  # the same command resumes
    with pytest.raises(InputError, match=r"other settings \(explain\)"):
        prepare(out, {"source": "a", "explain": False})


@pytest.mark.slow
def test_sigkill_mid_batch_then_resume_writes_every_id_once(tmp_path):
    out = tmp_path / "r.jsonl"
    args = ["batch", str(_need_meld()), "--out", str(out), "--limit", "16", "--no-explain", "--llm-batch", "2"]
    p = subprocess.Popen([sys.executable, "-m", "affect_llm.cli", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 4):
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    before = out.read_bytes().count(b"\n")
    assert 4 <= before < 16, "the kill should land mid-batch"
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert f"({before} already done)" in r.stdout.replace("\n", " ")
    ids = [x["id"] for x in _records(out)]
    assert len(ids) == 16 and len(set(ids)) == 16
    assert ids == [x.id for x in load_inputs(MELD_DEV, limit=16).items]  # in order, nothing lost or repeated


@pytest.mark.slow
def test_a_manifest_with_broken_files_on_worker_processes(tmp_path, truncated_flac):
    (tmp_path / "empty.mp4").write_bytes(b"")
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps(x) for x in [
        {"id": "jfk", "path": str(shared_media() / "jfk.flac")},
        {"id": "empty", "path": "empty.mp4"},
        {"id": "gone", "path": "gone.mp4"},
        {"id": "cut", "path": str(truncated_flac)},
        {"id": "said", "text": "I can't believe you did this to me!"},
    ]) + "\n")  # fmt: skip
    out = tmp_path / "r.jsonl"
    r = _cli("batch", str(m), "--out", str(out), "--workers", "1", "--no-explain", "--no-face")
    assert r.returncode == 0, r.stderr
    recs = {x["id"]: x for x in _records(out)}
    assert set(recs) == {"jfk", "empty", "gone", "cut", "said"}
    assert "empty" in recs["empty"]["error"] and recs["empty"]["error"].startswith("MediaError")
    assert "gone.mp4" in recs["gone"]["error"]
    assert recs["jfk"]["error"] is None and "ask not" in recs["jfk"]["transcript"]
    assert recs["said"]["error"] is None and recs["said"]["cues"][0]["id"] == "T1"
    # the FLAC cut at 40 %: what decodes is analysed, and the record says the file was cut short
    assert recs["cut"]["error"] is None and any("truncated" in n for n in recs["cut"]["notes"]), recs["cut"]
    assert "errors" in r.stdout and "Traceback" not in r.stderr
    # the worker process gathered what one process would have: same label, same probabilities
    one = _cli("chat", str(shared_media() / "jfk.flac"), "--json", "--no-explain", "--no-face")
    a = json.loads(one.stdout)
    assert a["label"] == recs["jfk"]["label"]
    assert a["probabilities"] == pytest.approx(recs["jfk"]["probabilities"], abs=1e-5)


@pytest.mark.slow
def test_ray_engine_gives_the_local_engines_labels(tmp_path):
    pytest.importorskip("ray")
    local, on_ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    common = [str(_need_meld()), "--limit", "4", "--no-explain"]
    assert _cli("batch", *common, "--out", str(local)).returncode == 0
    r = _cli("batch", *common, "--out", str(on_ray), "--engine", "ray", "--workers", "1")
    assert r.returncode == 0, r.stderr
    a = {x["id"]: x for x in _records(local)}
    b = {x["id"]: x for x in _records(on_ray)}
    assert set(a) == set(b) and len(a) == 4
    for k in a:
        assert a[k]["label"] == b[k]["label"]
        assert a[k]["probabilities"] == pytest.approx(b[k]["probabilities"], abs=1e-4)


@pytest.mark.slow
def test_batched_reasoning_equals_one_item_at_a_time():
    """Items reasoned together (labels one by one, explanations in one batched generation) get, in float32, the
    label, probabilities and explanation each gets alone; a bad item in the chunk gets its error, the rest go on."""
    from affect_llm.batch import analyze_item, analyze_items
    from affect_llm.config import PipelineConfig
    from affect_llm.data import Dialogue, Utterance
    from affect_llm.inputs import EvalItem
    from affect_llm.pipeline import Pipeline

    talk = Dialogue(id="d", utterances=[Utterance(id="u0", speaker="Ross", text="We were on a break!"),
                                        Utterance(id="u1", speaker="Rachel", text="Oh, you did not just say that.")])  # fmt: skip
    items = [
        EvalItem(id="a", text="I got the job! I actually got it!"),
        EvalItem(id="b", text="Get out. Just get out of my apartment.", context=talk, speaker="Rachel"),
        EvalItem(id="bad", text="   "),
        EvalItem(id="c", text="Okay, see you at six then.", context=talk, speaker="Ross"),
        EvalItem(id="d", text="Wait, what? Since when?"),
    ]
    pipe = Pipeline(PipelineConfig.model_validate({"reasoner": {"dtype": "float32"}, "face": {"enabled": False}}))
    together = analyze_items(pipe, items, [True] * len(items))
    alone = [analyze_item(pipe, x, True) for x in items]
    assert [r["id"] for r in together] == [x.id for x in items]
    assert together[2]["error"].startswith("InputError") and alone[2]["error"] == together[2]["error"]
    for t, a in zip(together, alone):
        if t["error"] is None:
            assert t["label"] == a["label"] and t["explanation"] == a["explanation"] and t["explanation"]
            assert t["probabilities"] == pytest.approx(a["probabilities"], abs=1e-5)


class _FlakyPipeline:
    """A stand-in for Pipeline.analyze_many: 'bad' is the item's own error, 'flaky' fails until healed."""

    def __init__(self, healed: bool):
        self.healed, self.seen = healed, []

    def analyze_many(self, inputs):
        from affect_llm.errors import BackendError
        from affect_llm.types import Analysis

        out = []
        for x in inputs:
            self.seen.append(x["text"])
            if x["text"] == "bad":
                out.append(InputError("empty text"))
            elif x["text"] == "flaky" and not self.healed:
                out.append(BackendError("the vLLM server went away"))
            else:
                out.append(Analysis(source="text", label="joy", probabilities={"joy": 0.7, "neutral": 0.3}))
        return out


def test_a_resumed_run_retries_errors_that_were_not_the_items_own(tmp_path):
    """Resume: an item lost to a backend or worker failure runs again (its error record replaced, one record per
    id), an item whose own input is bad does not."""
    from affect_llm.batch import BatchOptions, run

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                                for i, t in [("a", "fine"), ("b", "flaky"), ("c", "bad")]))  # fmt: skip
    out = tmp_path / "r.jsonl"
    opts = BatchOptions(progress=False)
    first = run(load_inputs(manifest), None, out, opts, pipeline=_FlakyPipeline(healed=False))
    assert first.errors == 2
    recs = {r["id"]: r for r in _records(out)}
    assert recs["b"]["retry"] is True and recs["c"]["retry"] is False
    again = _FlakyPipeline(healed=True)
    second = run(load_inputs(manifest), None, out, opts, pipeline=again)
    assert again.seen == ["flaky"] and second.done == 1 and second.errors == 0
    final = _records(out)
    assert sorted(r["id"] for r in final) == ["a", "b", "c"]
    assert {r["id"]: r["label"] for r in final} == {"a": "joy", "b": "joy", "c": None}
    # a record from before the 'retry' field is judged by its error's type
    out.write_text(json.dumps({"id": "b", "label": None, "error": "RuntimeError: worker died"}) + "\n"
                   + json.dumps({"id": "c", "label": None, "error": "InputError: empty text"}) + "\n")
    third = _FlakyPipeline(healed=True)
    run(load_inputs(manifest), None, out, opts, pipeline=third)
    assert sorted(third.seen) == ["fine", "flaky"]
