"""Training the reasoner (a few steps): examples as the pipeline builds them, checkpoints, a real kill -9 and a
resume that ends where an uninterrupted run ends, and the saved adapter loading into the reasoner."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from affect_llm.context.model import default_path
from affect_llm.data import dataset_labels

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "meld"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/meld not present"),
    pytest.mark.skipif(not (default_path("meld") / "config.json").is_file(), reason="adapters/context-meld missing"),
]


def _cmd(out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "affect_llm.cli", "train", "reasoner", "--data-dir", str(SHARED), "--out", str(out),
            "--samples", "24", "--batch", "4", "--max-steps", str(steps), "--checkpoint-every", "2",
            "--threads", "1"]  # fmt: skip


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {**load_file(str(folder / "adapter_model.safetensors")),
            **{"projector." + k: v for k, v in load_file(str(folder / "projector.safetensors")).items()}}  # fmt: skip


def test_examples_match_the_pipeline_prompts():
    from affect_llm.evidence import cited_ids
    from affect_llm.llm.hf import TransformersLM
    from affect_llm.training.reasoner import ReasonerTrainOptions, build_examples

    lm = TransformersLM("smollm2-135m", dtype="float32")
    tok = lm.tokenizer
    opts = ReasonerTrainOptions(data_dir=str(SHARED), samples=30, explain_share=1.0, drop_context=0.3, soft_tokens=4)
    ex = build_examples(opts, lm, dataset_labels("meld"))
    labels = [e for e in ex if e.task == "label"]
    assert len(labels) == 30 and len(ex) == 60
    for e in ex:
        prompt, target = tok.decode([max(i, 0) for i in e.ids[: e.target_start]]), tok.decode(e.ids[e.target_start :])
        n_soft = sum(i < 0 for i in e.ids)
        assert n_soft == (4 if e.embedding is not None else 0)
        assert ("[D1]" in prompt) == (e.embedding is not None)  # D1 and the soft prompt are dropped together
        assert target.endswith("<|im_end|>")
        if e.task == "label":
            assert target.removesuffix("<|im_end|>") in dataset_labels("meld")
        else:  # the silver explanation cites only ids of its own evidence block
            shown = set(cited_ids(prompt.split("Evidence:")[1].split("The speaker's emotion is")[0]))
            assert set(cited_ids(target)) <= shown and cited_ids(target)
    assert any(e.embedding is None for e in ex) and any(e.embedding is not None for e in ex)


def test_kill_resume_equals_uninterrupted_and_the_adapter_loads(tmp_path):
    env = {**os.environ, "COLUMNS": "120"}
    straight = tmp_path / "straight"
    r = subprocess.run(_cmd(straight, 6), capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    rec = json.loads((straight / "training.json").read_text())
    assert rec["steps"] == 6 and not (straight / "checkpoint").exists()

    killed = tmp_path / "killed"
    p = subprocess.Popen(_cmd(killed, 6), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 500
    while not (killed / "checkpoint" / "state.pt").exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (killed / "checkpoint" / "state.pt").exists() and not (killed / "training.json").exists()
    r = subprocess.run(_cmd(killed, 6), capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stderr
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)

    # the folder is a reasoner adapter: LoRA merged into the LLM, projector for the meld context model
    from affect_llm.config import ReasonerOptions
    from affect_llm.llm.reasoner import Reasoner

    meta = json.loads((straight / "reasoner.json").read_text())
    assert meta["base"] == "smollm2-135m" and meta["context_model"] == "meld" and len(meta["base_sha256"]) == 64
    r = Reasoner(ReasonerOptions(adapter=str(straight), dtype="float32"))
    assert r.adapter.path == straight and r.projector is not None and r.calibrate is False
    from affect_llm.context.model import load_context_model

    assert meta["context_fingerprint"] == load_context_model("meld").fingerprint
    soft = r.soft_prompt(torch.randn(r.projector.cfg.d_in).numpy(), "meld", meta["context_fingerprint"])
    assert soft.shape == (4, r.lm.model.get_input_embeddings().embedding_dim)
    assert r.soft_prompt(torch.randn(r.projector.cfg.d_in).numpy(), "emorynlp") is None
    # the same model given as a folder (its fingerprint matches) keeps its soft prompt
    from affect_llm.context.model import context_model_path

    folder = str(context_model_path("meld"))
    assert r.soft_prompt(torch.randn(r.projector.cfg.d_in).numpy(), folder, meta["context_fingerprint"]) is not None
    # the same name with other weights (a retrained context model) is not read either
    assert r.soft_prompt(torch.randn(r.projector.cfg.d_in).numpy(), "meld", "0" * 64) is None
    ev = 'Evidence:\n[T1] (text): "I love you!"'
    with_soft, without = r.label_distribution(ev, soft=soft), r.label_distribution(ev)
    assert sum(with_soft.values()) == pytest.approx(1) and with_soft != without


def test_media_examples_join_the_training_set():
    """--media-examples: face/voice evidence in the pipeline's own prompt shape, label tasks only where the
    evidence determines the label, every explanation target citing only its own cues."""
    from affect_llm.evidence import cited_ids
    from affect_llm.llm.hf import TransformersLM
    from affect_llm.training.reasoner import ReasonerTrainOptions, build_examples

    lm = TransformersLM("smollm2-135m", dtype="float32")
    tok = lm.tokenizer
    opts = ReasonerTrainOptions(data_dir=str(SHARED), samples=10, explain_share=0.0, media_examples=40)
    ex = [e for e in build_examples(opts, lm, dataset_labels("meld")) if e.uid.startswith("media-")]
    explain = [e for e in ex if e.task == "explain"]
    label = [e for e in ex if e.task == "label"]
    assert len(explain) == 40 and 0 < len(label) < 40
    for e in ex:
        assert e.embedding is None and not any(i < 0 for i in e.ids)
        prompt, target = tok.decode(e.ids[: e.target_start]), tok.decode(e.ids[e.target_start :])
        assert "[F1]" in prompt and "[D1]" not in prompt
        if e.task == "explain":
            assert set(cited_ids(target)) <= set(cited_ids(prompt.split("Evidence:")[1])) and cited_ids(target)
    assert not any(e.uid.endswith(("-low", "-blend", "-voice")) for e in label)


def test_building_examples_in_a_log_prints_its_progress():
    """A background run's log says how far the (long) example building is: a line at every tenth."""
    import io

    from rich.console import Console

    from affect_llm.training.reasoner import _progress

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    assert list(_progress(range(25), console, "building train examples")) == list(range(25))
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("building train examples: 2/25 (") and "25/25" in lines[-1]
