"""A model with a LoRA adapter merged into its weights, made once and kept in the model cache: the reasoning LLM
with its adapter (:mod:`affect_llm.llm.hf`, vLLM's merged mode) and the context model's utterance encoder with its
own (:mod:`affect_llm.context.model`).

Merging costs an import of peft and a pass over every adapted matrix on each start (about a second on 2 cores
for SmolLM2-135M, a quarter of ``chat``'s model loading). The merged weights are a pure function of the base
model's files, the adapter's files, the model class, the dtype the merge ran in and the library versions doing
it, so they are saved under a key made of exactly those and loaded directly the next time: the same tensors, bit
for bit, as a fresh merge (the merge runs in the dtype the model is used in, and the copy is stored in that
dtype).

A cache that cannot be written (read-only or full disk) or read (a damaged copy) is never an error: the model is
merged in memory as before, and a damaged copy is replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from . import models

_DONE = "merged.json"  # written last: a folder without it is an unfinished or foreign copy
KEEP = 2


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _files_identity(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime) of every file of a local model: it changes when the model is replaced."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [(p.relative_to(root).as_posix() if p != root else p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for p in files]  # fmt: skip


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "?"


def cache_key(base: Path, adapter: str | Path, dtype: Any, auto_class: str = "AutoModelForCausalLM") -> str:
    """What the merged weights depend on: the base model's files, the adapter's bytes, the transformers class
    that loads the base, the dtype the merge runs in, and the torch / transformers / peft versions."""
    h = hashlib.sha256()
    adapter = Path(adapter)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        f = adapter / name
        h.update(name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest() if f.is_file() else b"-")
    record = {"base": str(base.resolve()), "files": _files_identity(base), "dtype": _dtype_name(dtype),
              "class": auto_class, "versions": [_version(p) for p in ("torch", "transformers", "peft")]}  # fmt: skip
    h.update(json.dumps(record, sort_keys=True).encode())
    return h.hexdigest()[:16]


def cache_folder(ref: str, base: Path, adapter: str | Path, dtype: Any, auto_class: str = "AutoModelForCausalLM") -> Path:
    """Where the merge of ``adapter`` into ``base`` (the model ``ref`` resolves to) in ``dtype`` is kept."""
    prefix = f"{_name(ref)}+{_adapter_name(adapter)}-{_dtype_name(dtype)}"
    return cache_root() / f"{prefix}-{cache_key(base, adapter, dtype, auto_class)}"


def _adapter_name(adapter: str | Path) -> str:
    """The adapter folder's name, or its parent's for a generic one (``context-meld/encoder_lora``)."""
    p = Path(adapter).resolve()
    return f"{p.parent.name}.{p.name}" if p.name == "encoder_lora" else p.name


def cache_root() -> Path:
    return models.home() / "cache" / "merged"


def _name(ref: str) -> str:
    try:
        return models.get(ref).name
    except Exception:
        return Path(str(ref)).name or "model"


def is_complete(folder: Path) -> bool:
    return (folder / _DONE).is_file() and (folder / "config.json").is_file()


def _auto(auto_class: str):
    import transformers

    return getattr(transformers, auto_class)


def merge(location: str, adapter: str | Path, dtype: Any, local_only: bool = True,
          auto_class: str = "AutoModelForCausalLM"):  # fmt: skip
    """The base model at ``location`` loaded (by transformers' ``auto_class``) in ``dtype`` with ``adapter``
    merged in (peft), in memory."""
    from peft import PeftModel

    model = _auto(auto_class).from_pretrained(location, local_files_only=local_only, dtype=dtype)
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=False).merge_and_unload()


def save(model, folder: Path, tokenizer=None) -> bool:
    """Write ``model`` (and ``tokenizer``) to ``folder`` atomically: a temporary folder beside it, renamed into
    place once complete. Of the older copies of the same model + adapter + dtype (other keys) the :data:`KEEP`
    most recent stay (two checkouts with different adapters of one name do not evict each other). False when the
    cache cannot be written; another process writing the same copy first is fine."""
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".merge-", dir=parent))
    except OSError:
        return False
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / _DONE).write_text(json.dumps({"folder": folder.name}) + "\n")
        if folder.exists() and not is_complete(folder):
            shutil.rmtree(folder, ignore_errors=True)  # a damaged copy
        os.replace(tmp, folder)
    except OSError:
        return is_complete(folder)  # another process made it first, or the disk is full / read-only
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    stem = folder.name.rsplit("-", 1)[0]
    older = [p for p in parent.glob(f"{stem}-*") if p != folder and p.is_dir() and len(p.name) == len(folder.name)]
    for old in sorted(older, key=lambda p: p.stat().st_mtime)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)  # the same model + adapter + dtype under older keys
    return True


def load_merged(ref: str, location: str, base: Path | None, adapter: str | Path, dtype: Any, local_only: bool = True,
                tokenizer=None, auto_class: str = "AutoModelForCausalLM"):  # fmt: skip
    """The merged model: from the cache when a complete copy is there, else merged now and (when the base is a
    local model, so its files can be keyed) saved for next time, with ``tokenizer`` beside it (so that the copy is
    a model folder a server can load, :func:`merged_folder`). A copy that fails to load is merged again."""
    if base is None:  # a model fetched from the hub by id this run: no files to key a copy on
        return merge(location, adapter, dtype, local_only, auto_class)
    folder = cache_folder(ref, base, adapter, dtype, auto_class)
    if is_complete(folder):
        try:
            return _auto(auto_class).from_pretrained(folder, local_files_only=True, dtype=dtype)
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
    model = merge(location, adapter, dtype, local_only, auto_class)
    save(model, folder, tokenizer)
    return model


def merged_folder(ref: str, adapter: str | Path, dtype: Any = "float32") -> Path:
    """A folder holding the merged model and its tokenizer (what a server that takes a model folder needs), made
    once. Raises when it cannot be written."""
    import torch
    from transformers import AutoTokenizer

    r = models.resolve(ref, kind="llm")
    local = r.path is not None or not models.downloads_allowed()
    dt = getattr(torch, _dtype_name(dtype))
    base = Path(r.path) if r.path is not None else None
    if base is None:
        raise ValueError(f"{ref!r} has no local files to key a merged copy on; pull it or pass a local path")
    folder = cache_folder(ref, base, adapter, dt)
    if not is_complete(folder):
        model = merge(r.location, adapter, dt, local)
        if not save(model, folder, AutoTokenizer.from_pretrained(r.location, local_files_only=local)):
            raise OSError(f"cannot write the merged model to {folder}")
    return folder
