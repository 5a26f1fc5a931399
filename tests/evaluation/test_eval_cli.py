"""`affect-llm eval` end to end: real models on MELD dev items, predictions files scored without a model, a run
killed with SIGKILL and resumed, two runs compared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not here")
    return path


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "affect_llm.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)  # fmt: skip


def _ids(run: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (run / "predictions.jsonl").read_text().splitlines()]


def test_scoring_a_predictions_file_without_a_model(tmp_path):
    emer = _need(SHARED / "emer")
    run = tmp_path / "ov"
    r = _cli("eval", "--dataset", "ov-merd", "--data-dir", str(emer), "--predictions",
             str(emer / "ov_merd_openset_example_pred.csv"), "--out", str(run), timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_items"] == 332 and m["n_scored"] + m["n_missing"] == 332 and m["n_errors"] == 0
    for level in ("level1", "level2"):
        o = m["openset"][level]
        assert 0 < o["precision"] < 1 and 0 < o["recall"] < 1
        assert o["f"] == pytest.approx(2 * o["precision"] * o["recall"] / (o["precision"] + o["recall"]), abs=0.02)
    assert "torch" not in r.stderr and "Open-vocabulary" in r.stdout
    page = (run / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "http" not in page.replace("http-equiv", "")  # self-contained
    # the gold labels scored as predictions are perfect, and `compare` shows the difference
    gold = tmp_path / "gold"
    r = _cli("eval", "--dataset", "ov-merd", "--data-dir", str(emer), "--predictions",
             str(emer / "ov_merd_openset_gold.csv"), "--out", str(gold), timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    g = json.loads((gold / "metrics.json").read_text())
    assert g["openset"]["level1"]["f"] == pytest.approx(1.0) and g["openset"]["level2"]["f"] == pytest.approx(1.0)
    r = _cli("eval", "compare", str(run), str(gold), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "openset.level1.f" in r.stdout and "B − A" in r.stdout


def test_bad_arguments_are_one_line_errors(tmp_path):
    r = _cli("eval", "--dataset", "nope", "--data-dir", str(tmp_path), timeout=60)
    assert r.returncode == 2 and "unknown dataset" in r.stderr and "Traceback" not in r.stderr
    r = _cli("eval", "compare", str(tmp_path), str(tmp_path), timeout=60)
    assert r.returncode == 2 and "no metrics.json" in r.stderr


@pytest.mark.slow
def test_meld_dev_run_resume_and_reports(tmp_path):
    meld = _need(SHARED / "meld")
    run = tmp_path / "meld"
    args = ("eval", "--dataset", "meld", "--data-dir", str(meld), "--limit", "6", "--explain-sample", "2",
            "--out", str(run))  # fmt: skip
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert sorted(_ids(run)) == sorted(set(_ids(run))) and len(_ids(run)) == 6
    m = json.loads((run / "metrics.json").read_text())
    c = m["classification"]
    assert c["n"] == 6 and sum(c["predicted"].values()) == 6 and sum(map(sum, c["confusion"])) == 6
    assert 0 <= c["weighted_f1"] <= 1 and 0 <= c["ece"] <= 1 and m["sentiment"]["gold_from"] == "dataset annotation"
    recs = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    explained = [x for x in recs if x["explanation"]]
    assert len(explained) == 2 and all(x["cues"] and x["cues"][0]["id"] for x in explained)
    assert m["faithfulness"]["n"] == 2 and 0 <= m["faithfulness"]["cited_ids_exist"] <= 1
    assert "Labels (%)" in (run / "report.md").read_text() and "<img" in (run / "report.html").read_text()
    # the same command again: nothing is redone
    r = _cli(*args)
    assert r.returncode == 0 and "0 items run (6 already done)" in r.stdout and len(_ids(run)) == 6
    # other settings into the same folder are refused
    r = _cli("eval", "--dataset", "meld", "--data-dir", str(meld), "--limit", "6", "--out", str(run))
    assert r.returncode == 2 and "other settings" in r.stderr


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_without_duplicates(tmp_path):
    meld = _need(SHARED / "meld")
    run = tmp_path / "killed"
    args = [sys.executable, "-m", "affect_llm.cli", "eval", "--dataset", "meld", "--data-dir", str(meld),
            "--limit", "14", "--no-explain", "--llm-batch", "2", "--out", str(run)]  # fmt: skip
    p = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    preds = run / "predictions.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and (not preds.exists() or len(preds.read_bytes().splitlines()) < 3):
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    got = len(preds.read_bytes().splitlines())
    assert 3 <= got < 14, "the kill should land mid-run"
    r = _cli(*args[3:])
    assert r.returncode == 0, r.stderr
    ids = _ids(run)
    assert len(ids) == 14 and len(set(ids)) == 14
    assert json.loads((run / "metrics.json").read_text())["classification"]["n"] == 14
