"""One options model for every front door: PipelineOptions (flat, the CLI's flags) builds PipelineConfig in one
place; the option models are immutable; `chat`, `eval`, `batch` and `serve` all offer every pipeline option and
build the same config from it as the Python API; equal configs share one pipeline. Fast: nothing is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from affect_llm import config as config_mod
from affect_llm.cli import app
from affect_llm.config import (
    EMORYNLP_LABELS,
    MELD_LABELS,
    FaceOptions,
    PipelineConfig,
    PipelineOptions,
    ReasonerOptions,
    as_config,
)
from affect_llm.types import Modality

MELD_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "meld" / "dev_sent_emo.csv"


def test_options_are_immutable_and_a_reused_stage_option_is_never_changed():
    face = FaceOptions(fps=2.0)
    cfg = PipelineConfig(face=face, modalities=["text", "speech"])
    assert cfg.face.enabled is False and cfg.scene.model is None  # left out: not run
    assert face.enabled is True  # the caller's object as it was (the old validator switched it off in place)
    assert PipelineConfig(face=face).face.enabled is True
    with pytest.raises(ValidationError, match="frozen"):
        cfg.reasoner.threads = 3
    with pytest.raises(ValidationError, match="frozen"):
        cfg.modalities = None


def test_a_misspelt_option_is_an_error_not_ignored():
    with pytest.raises(ValidationError, match="lmm"):
        PipelineOptions(lmm="x")
    with pytest.raises(ValidationError, match="max_new_token"):
        PipelineConfig.model_validate({"reasoner": {"max_new_token": 10}})


def test_updated_is_a_validated_copy():
    cfg = PipelineConfig()
    new = cfg.updated(reasoner={"threads": 1}, speech={"cpu_threads": 1})
    assert (new.reasoner.threads, new.speech.cpu_threads) == (1, 1)
    assert (cfg.reasoner.threads, cfg.speech.cpu_threads) == (0, 0)
    assert cfg.updated(modalities=["text"]).face.enabled is False
    with pytest.raises(ValidationError):
        cfg.updated(reasoner={"temperature": -1})
    with pytest.raises(ValueError, match="no option section"):
        cfg.updated(nonsense={})


@pytest.mark.parametrize(
    "dataset,given,context,labels",
    [
        (None, {}, "meld", MELD_LABELS),
        ("meld", {}, "meld", MELD_LABELS),
        ("emorynlp", {}, "emorynlp", EMORYNLP_LABELS),
        ("emer-v1", {}, "meld", MELD_LABELS),  # no shipped context model of its own
        (None, {"context_model": "emorynlp"}, "emorynlp", EMORYNLP_LABELS),  # the context model's labels
        ("meld", {"context_model": "emorynlp"}, "emorynlp", MELD_LABELS),  # the dataset's labels first
        ("meld", {"context_model": "None"}, None, MELD_LABELS),
        ("emorynlp", {"labels": "joy, anger"}, "emorynlp", ["joy", "anger"]),
    ],
)
def test_defaults_follow_the_dataset_then_the_context_model(dataset, given, context, labels):
    cfg = PipelineOptions(**given).config(dataset=dataset)
    assert cfg.context.model == context
    assert cfg.reasoner.labels == labels


def test_flat_options_map_onto_each_stage():
    cfg = PipelineOptions(llm="m", adapter="none", vllm_url="http://h:1/v1", vllm_deterministic=False,
                          dtype="float32", max_new_tokens=20, asr="a", asr_backend="openai-whisper", language="en",
                          max_duration=9, face=False, face_fps=2, clip="c", fusion="NONE",
                          modalities="text,speech").config()  # fmt: skip
    r = cfg.reasoner
    assert (r.model, r.adapter, r.backend, r.backend_options, r.dtype, r.max_new_tokens) == (
        "m", None, "vllm", {"url": "http://h:1/v1", "deterministic": False}, "float32", 20)  # a URL implies vLLM
    assert (cfg.speech.model, cfg.speech.backend, cfg.speech.language) == ("a", "openai-whisper", "en")
    assert (cfg.media.max_duration, cfg.face.enabled, cfg.face.fps, cfg.context.fusion) == (9, False, 2, None)
    assert cfg.modalities == [Modality.text, Modality.speech] and cfg.scene.model is None  # scene left out
    with pytest.raises(ValidationError, match="modalities"):
        PipelineOptions(modalities="face,smell")


def test_backend_options_belong_to_the_backend_and_are_checked_by_it():
    from affect_llm.llm.vllm import VLLMOptions, options_of

    cfg = PipelineOptions(backend="vllm", backend_option=["lora=merged", "deterministic=false"]).config()
    assert cfg.reasoner.backend_options == {"lora": "merged", "deterministic": False}  # checked and typed once
    assert options_of(cfg.reasoner) == VLLMOptions(lora="merged", deterministic=False)
    # the Python API may give a dict; the vLLM flags are the same options
    assert as_config(backend="vllm", backend_option={"url": "http://h:2/v1"}).reasoner.backend_options == {
        "url": "http://h:2/v1"}
    assert options_of(as_config(vllm_url="http://h:3/v1", vllm_deterministic=False).reasoner) == VLLMOptions(
        url="http://h:3/v1", deterministic=False)
    # the vLLM flags do nothing to another backend
    assert as_config(vllm_deterministic=False).reasoner.backend_options == {}
    with pytest.raises(ValidationError, match="lora"):
        PipelineOptions(backend="vllm", backend_option=["lora=sideways"]).config()
    with pytest.raises(ValidationError, match="colour"):
        PipelineOptions(backend="vllm", backend_option=["colour=red"]).config()
    with pytest.raises(ValidationError, match="takes no options"):
        PipelineOptions(backend="fake", backend_option=["url=http://h:1/v1"]).config()
    with pytest.raises(ValidationError, match="option url: Extra inputs are not permitted"):
        PipelineOptions(backend="transformers", backend_option=["url=http://h:1/v1"]).config()
    assert PipelineOptions(load_4bit=True).config().reasoner.backend_options == {"load_4bit": True}
    assert PipelineOptions(backend="vllm", load_4bit=True).config().reasoner.backend_options == {}
    with pytest.raises(ValidationError, match="KEY=VALUE"):
        PipelineOptions(backend_option=["just-a-word"])


def test_a_new_backend_with_options_is_one_module_and_one_registration(tmp_path, monkeypatch):
    """What a later backend needs: its module (a BACKEND with its options model) and one register() line."""
    import sys

    from affect_llm.llm import backends

    (tmp_path / "my_backend.py").write_text(
        "from pydantic import BaseModel, ConfigDict\n"
        "from affect_llm.llm import fake\n"
        "from affect_llm.llm.backends import Backend\n"
        "class MyOptions(BaseModel):\n"
        "    model_config = ConfigDict(frozen=True, extra='forbid')\n"
        "    temperature_boost: float = 0.0\n"
        "BACKEND = Backend(load=fake.BACKEND.load, chat=fake.BACKEND.chat, options=MyOptions)\n")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(backends.MODULES, "mine", "my_backend")
    try:
        r = as_config(backend="mine", backend_option=["temperature_boost=0.5"]).reasoner
        assert r.backend == "mine" and r.backend_options == {"temperature_boost": 0.5}
        with pytest.raises(ValidationError, match="temperature_boost"):
            as_config(backend="mine", backend_option=["temperature_boost=hot"])
    finally:
        sys.modules.pop("my_backend", None)


def test_as_config_takes_any_form_of_the_options():
    nested = PipelineConfig(reasoner=ReasonerOptions(max_new_tokens=7))
    assert as_config(nested) is nested
    assert as_config() == PipelineConfig()
    assert as_config(max_new_tokens=7).reasoner.max_new_tokens == 7
    assert as_config({"max_new_tokens": 7, "face": False}).face.enabled is False  # flat dict
    assert as_config({"reasoner": {"max_new_tokens": 7}, "face": {"fps": 1}}).face.fps == 1  # nested dict
    assert as_config(PipelineOptions(face=False)).face.enabled is False
    with pytest.raises(ValueError, match="not both"):
        as_config(nested, face=False)


def test_equal_configs_share_one_pipeline_whoever_built_them(monkeypatch):
    from affect_llm import pipeline as pl

    monkeypatch.setattr(pl, "_shared", {})
    a = pl.shared_pipeline(face=False)
    assert pl.shared_pipeline(PipelineOptions(face=False)) is a
    assert pl.shared_pipeline({"face": {"enabled": False}}) is a  # the same config, nested
    b = pl.shared_pipeline()
    assert b is not a and pl.shared_pipeline(PipelineConfig()) is b
    pl.shared_pipeline(max_new_tokens=5)  # a third config: the least recently used (a) goes
    assert len(pl._shared) == pl.SHARED_PIPELINES
    assert pl.shared_pipeline(face=False) is not a


# -- the CLI: every command, every option ---------------------------------------------------------------------

FLAGS = {name: ((f.json_schema_extra or {}).get("cli") or ["--" + name.replace("_", "-")])[0].split("/")[0]
         for name, f in PipelineOptions.model_fields.items()}  # fmt: skip


@pytest.mark.parametrize("command", [["chat"], ["eval"], ["batch"], ["serve"]])
def test_every_command_offers_every_pipeline_option(command):
    r = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    missing = [flag for flag in FLAGS.values() if flag not in r.output]
    assert not missing, f"{command[0]} --help lacks {missing}"
    assert "--no-face" in r.output and "--vllm-batched" in r.output


class _Captured(Exception):
    pass


@pytest.fixture
def captured(monkeypatch):
    """Each front door's config, taken where it would build its pipeline (nothing runs)."""
    got: dict = {}

    def grab(*args, config=None, **kwargs):
        got["config"] = config if config is not None else next(a for a in args if isinstance(a, PipelineConfig))
        raise _Captured

    class FakePipeline:
        def __init__(self, config=None):
            grab(config=config)

    import affect_llm.batch
    import affect_llm.evaluation
    import affect_llm.pipeline
    import affect_llm.server

    monkeypatch.setattr(affect_llm.pipeline, "Pipeline", FakePipeline)
    monkeypatch.setattr(affect_llm.server, "serve", lambda opts, config=None: grab(config=config))
    monkeypatch.setattr(affect_llm.evaluation, "evaluate", lambda *a, config=None, **k: grab(config=config))
    monkeypatch.setattr(affect_llm.batch, "run", lambda items, cfg, out, opts: grab(config=cfg))
    return got


ARGS = ["--llm", "m", "--adapter", "none", "--no-face", "--labels", "joy,anger", "--max-new-tokens", "9",
        "--modalities", "text,speech", "--vllm-batched", "--dtype", "float32", "--context-model", "none",
        "--backend", "vllm", "--backend-option", "lora=merged", "--backend-option", "url=http://127.0.0.1:9/v1"]  # fmt: skip


@pytest.mark.parametrize("command", ["chat", "eval", "batch", "serve"])
def test_every_command_builds_the_config_the_python_api_builds(command, captured, tmp_path):
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"id": "a", "text": "hello"}\n')
    extra = {"chat": ["--text", "hi"], "eval": ["--dataset", "jsonl", "--data-dir", str(jsonl)],
             "batch": [str(jsonl), "--out", str(tmp_path / "out.jsonl")], "serve": []}[command]  # fmt: skip
    r = CliRunner().invoke(app, [command, *extra, *ARGS])
    assert isinstance(r.exception, _Captured) or "config" in captured, r.output
    want = PipelineOptions(llm="m", adapter="none", face=False, labels=["joy", "anger"], max_new_tokens=9,
                           modalities=["text", "speech"], vllm_deterministic=False, dtype="float32",
                           context_model="none", backend="vllm",
                           backend_option={"lora": "merged", "url": "http://127.0.0.1:9/v1"}).config()  # fmt: skip
    assert captured["config"].reasoner.backend_options == {"lora": "merged", "url": "http://127.0.0.1:9/v1",
                                                           "deterministic": False}  # fmt: skip
    assert captured["config"].model_dump(exclude={"context": {"speaker"}}) == want.model_dump(
        exclude={"context": {"speaker"}})


@pytest.mark.skipif(not MELD_DEV.is_file(), reason="needs ../shared/data/meld")
def test_eval_and_batch_on_a_dataset_default_to_its_context_model_and_labels(captured, tmp_path):
    for argv in (["eval", "--dataset", "meld", "--data-dir", str(MELD_DEV.parent)],
                 ["batch", str(MELD_DEV), "--out", str(tmp_path / "o.jsonl"), "--limit", "1"]):  # fmt: skip
        captured.clear()
        CliRunner().invoke(app, argv)
        assert captured["config"] == PipelineOptions().config(dataset="meld"), argv


@pytest.mark.parametrize("argv", [["--backend", "tpu"], ["--modalities", "face,smell"], ["--face-fps", "0"],
                                  ["--labels", "joy"]])  # fmt: skip
def test_a_bad_option_value_is_an_invalid_option_error(argv, captured):
    r = CliRunner().invoke(app, ["serve", *argv])
    assert r.exit_code == 2, r.output
    assert "invalid option" in r.output and "Traceback" not in r.output
    assert "config" not in captured  # refused before anything was built


def test_the_label_sets_are_defined_once():
    from affect_llm import data

    assert data.MELD_LABELS is config_mod.MELD_LABELS and data.EMORYNLP_LABELS is config_mod.EMORYNLP_LABELS
