"""The registry: pull from wheels with checksums, offline errors, resolution order."""

import hashlib
import zipfile

import pytest

from affect_llm import models
from affect_llm.errors import ModelIntegrityError, ModelNotFound


def _wheel(dir_, package, version, members: dict[str, bytes]):
    norm = package.replace("-", "_")
    path = dir_ / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFECT_LLM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AFFECT_LLM_ALLOW_DOWNLOAD", raising=False)
    return tmp_path / "home"


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A two-wheel model whose big file is split across both wheels (like whisper-base)."""
    a, b, cfg = b"A" * 1000, b"B" * 500, b'{"x": 1}'
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "toy-part1", "1.0", {"toy1/data/model.bin.part1": a, "toy1/data/config.json": cfg})
    _wheel(wheels, "toy-part2", "1.0", {"toy2/data/model.bin.part2": b})
    spec = models.ModelSpec(
        name="toy",
        kind="asr",
        summary="test model",
        assets=(
            models.Asset("config.json", hashlib.sha256(cfg).hexdigest(), len(cfg),
                         (models.WheelMember("toy-part1", "1.0", "toy1/data/config.json"),)),
            models.Asset("model.bin", hashlib.sha256(a + b).hexdigest(), len(a + b),
                         (models.WheelMember("toy-part1", "1.0", "toy1/data/model.bin.part1"),
                          models.WheelMember("toy-part2", "1.0", "toy2/data/model.bin.part2"))),
        ),
    )  # fmt: skip
    monkeypatch.setitem(models._MODELS, "toy", spec)
    return spec, wheels, a + b


def test_missing_model_names_the_pull_command(home, toy):
    with pytest.raises(ModelNotFound, match="affect-llm models pull toy"):
        models.path("toy")
    with pytest.raises(ModelNotFound, match="affect-llm models pull toy"):
        models.resolve("toy")


def test_pull_concatenates_parts_verifies_and_is_idempotent(home, toy):
    spec, wheels, data = toy
    p = models.pull("toy", wheel_dir=wheels)
    assert p == home / "models" / "toy"
    assert (p / "model.bin").read_bytes() == data
    assert (p / models.MANIFEST).is_file()
    assert models.verify("toy") == []
    assert models.resolve("toy").path == p
    mtime = (p / "model.bin").stat().st_mtime_ns
    models.pull("toy", wheel_dir=wheels)  # already there: nothing rewritten
    assert (p / "model.bin").stat().st_mtime_ns == mtime
    (p / "model.bin").write_bytes(b"tampered")
    assert models.verify("toy") == ["model.bin"]


def test_checksum_mismatch_leaves_no_model(home, toy, monkeypatch):
    spec, wheels, _ = toy
    bad = spec.assets[1].__class__(**{**spec.assets[1].__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(models._MODELS, "toy", models.ModelSpec(**{**spec.__dict__, "assets": (spec.assets[0], bad)}))
    with pytest.raises(ModelIntegrityError, match="does not match"):
        models.pull("toy", wheel_dir=wheels)
    assert not models.is_pulled("toy")
    assert not (home / "models" / "toy").exists()


def test_missing_member_is_an_integrity_error(home, toy, monkeypatch):
    spec, wheels, _ = toy
    wrong = models.Asset("x", "0" * 64, 1, (models.WheelMember("toy-part1", "1.0", "toy1/nope"),))
    monkeypatch.setitem(models._MODELS, "toy", models.ModelSpec(**{**spec.__dict__, "assets": (wrong,)}))
    with pytest.raises(ModelIntegrityError, match="has no file toy1/nope"):
        models.pull("toy", wheel_dir=wheels)


def test_resolve_order_and_offline_hub(home, tmp_path, monkeypatch):
    local = tmp_path / "my-model"
    local.mkdir()
    assert models.resolve(str(local)).path == local
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="AFFECT_LLM_ALLOW_DOWNLOAD=1"):
        models.resolve("nobody/no-such-model-xyz")
    monkeypatch.setenv("AFFECT_LLM_ALLOW_DOWNLOAD", "1")
    assert models.resolve("nobody/no-such-model-xyz").hub_id == "nobody/no-such-model-xyz"
    with pytest.raises(ModelNotFound, match="neither a registered model"):
        models.resolve("not a model ref")
    with pytest.raises(ModelNotFound, match="unknown model"):
        models.get("nope")


def _split_zip_model(tmp_path, files: dict[str, bytes], pinned: dict[str, bytes]):
    """A model shipped as one zip (root folder ``m/``) cut into two wheels, as all-mpnet-base-v2 is."""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"m/{name}", data)
    raw = buf.getvalue()
    cut = len(raw) // 2
    wheels = tmp_path / "zwheels"
    wheels.mkdir()
    _wheel(wheels, "z-part1", "1.0", {"z1/m.zip.001": raw[:cut]})
    _wheel(wheels, "z-part2", "1.0", {"z2/m.zip.002": raw[cut:]})
    return wheels, models.ModelSpec(
        name="zipped", kind="text-embedding", summary="test", entry="hf", prepare="unzip", unpack_root="m",
        assets=(models.Asset("m.zip", hashlib.sha256(raw).hexdigest(), len(raw),
                             (models.WheelMember("z-part1", "1.0", "z1/m.zip.001"),
                              models.WheelMember("z-part2", "1.0", "z2/m.zip.002"))),),
        unpacked=tuple(models.Asset(n, hashlib.sha256(d).hexdigest(), len(d), ()) for n, d in pinned.items()),
    )  # fmt: skip


def test_a_split_zip_is_joined_checked_unpacked_and_dropped(home, tmp_path, monkeypatch):
    files = {"config.json": b'{"a": 1}', "sub/w.bin": bytes(range(256)) * 400, "desktop.ini": b"junk"}
    wheels, spec = _split_zip_model(tmp_path, files, {k: v for k, v in files.items() if k != "desktop.ini"})
    monkeypatch.setitem(models._MODELS, "zipped", spec)
    p = models.pull("zipped", wheel_dir=wheels)
    assert p == home / "models" / "zipped" / "hf"
    assert (p / "sub" / "w.bin").read_bytes() == files["sub/w.bin"] and (p / "config.json").is_file()
    assert not (p / "desktop.ini").exists()  # only the pinned files are taken out
    assert not (p.parent / "m.zip").exists()  # the archive is deleted once its contents check out
    assert models.verify("zipped") == [] and models.path("zipped") == p
    (p / "sub" / "w.bin").write_bytes(b"tampered")
    assert models.verify("zipped") == ["sub/w.bin"]


def test_an_unpacked_file_that_does_not_match_leaves_the_model_unprepared(home, tmp_path, monkeypatch):
    files = {"config.json": b'{"a": 1}'}
    wheels, spec = _split_zip_model(tmp_path, files, {"config.json": b"something else"})
    monkeypatch.setitem(models._MODELS, "zipped", spec)
    with pytest.raises(ModelIntegrityError, match="zipped/config.json: sha256"):
        models.pull("zipped", wheel_dir=wheels)
    d = home / "models" / "zipped"
    assert not (d / "hf").exists() and not (d / "hf.partial").exists()
    with pytest.raises(ModelIntegrityError):  # the next use tries again and fails the same way, never half-made
        models.path("zipped")


def test_kind_is_checked(home, toy):
    spec, wheels, _ = toy
    models.pull("toy", wheel_dir=wheels)
    with pytest.raises(ModelNotFound, match="is a asr model, not llm"):
        models.resolve("toy", kind="llm")


def test_registry_pins_every_file():
    for spec in models._MODELS.values():
        assert spec.assets
        for a in spec.assets:
            assert len(a.sha256) == 64 and a.size > 0 and a.parts
        for a in spec.unpacked:
            assert len(a.sha256) == 64 and a.size > 0 and spec.prepare == "unzip"
    assert {s.name for s in models._MODELS.values() if s.default} >= {"smollm2-135m", "whisper-tiny.en", "face-landmarker", "fer-mini"}
    assert models.get("tiny.en").name == "whisper-tiny.en"
    mpnet = models.get("all-mpnet-base-v2")
    assert len(mpnet.assets[0].parts) == 5 and not mpnet.default  # pulled when a shipped context model needs it
    assert {a.path: a.sha256 for a in mpnet.unpacked}["model.safetensors"].startswith("78c0197b")


@pytest.mark.slow
def test_default_models_are_pulled_and_intact():
    """The installed cache (scripts/install.sh pulls it) matches the pinned checksums."""
    for name in ("smollm2-135m", "whisper-tiny.en", "face-landmarker", "fer-mini", "minilm-l6"):
        assert models.is_pulled(name), f"{name} not pulled (run: affect-llm models pull)"
        assert models.verify(name) == []
    hf = models.path("smollm2-135m")
    assert (hf / "model.safetensors").is_file() and (hf / "config.json").is_file()


def test_the_default_set_adds_the_encoders_shipped_context_models_are_built_on(tmp_path):
    base = [s.name for s, _ in models.list_models() if s.default]
    assert "mpnet-base" not in base  # 438 MB: pulled only when a shipped model needs it
    (tmp_path / "context-a").mkdir()
    (tmp_path / "context-a" / "config.json").write_text('{"encoder": "mpnet-base"}')
    (tmp_path / "context-b").mkdir()
    (tmp_path / "context-b" / "config.json").write_text('{"encoder": "/some/local/path"}')  # not registered
    (tmp_path / "context-c").mkdir()
    (tmp_path / "context-c" / "config.json").write_text("{not json")
    assert models.default_names(tmp_path) == base + ["mpnet-base"]
    assert models.default_names(tmp_path / "missing") == base
