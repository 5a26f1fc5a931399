"""What ``batch`` and ``eval`` analyse: items (a text or a clip, with its earlier dialogue, and what to score
against — a gold label, a gold label set, a gold explanation) read from each dataset's own files, a JSONL
manifest, or a folder (:func:`affect_llm.batch.load_inputs`); and the JSONL records runs write.

==========  ======================================================  =================================================
name        files in ``data_dir``                                   gold
==========  ======================================================  =================================================
meld        ``{split}_sent_emo.csv``                                label (7), MELD's sentiment; clips with
                                                                    ``--media-dir`` as ``dia{D}_utt{U}.mp4``
emorynlp    ``emorynlp_{split}_final.csv``                          label (7)
emer-v1     ``emer_v1_gt_eng.csv`` (names, emotions, subtitles,     a free emotion word; the explanation
            reasons)
emer-v2     ``emer_v2_reason.csv`` (name, chinese, english) and,    the explanation; the open-vocabulary label set
            when there, ``ov_merd_openset_gold.csv``
ov-merd     ``ov_merd_openset_gold.csv`` (name, openset)            the open-vocabulary label set
jsonl       a file: one ``{id, media | text, label?, labels?,       whatever it holds
            explanation?, context?, speaker?}`` per line (``path``
            is taken for ``media``)
==========  ======================================================  =================================================

MELD and EmoryNLP items are text (each utterance with the dialogue before it as context, as ``chat --text …
--context …`` runs) unless clips are given; EMER v1 has subtitles, so it runs as text too. EMER v2 and OV-MERD
hold no words, only names of clips: running the pipeline on them needs ``--media-dir``; their predictions can
always be scored from a file (``--predictions``).
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path

from .data import DATASETS, Dialogue, dataset_labels, jsonl_values, load_dataset, read_csv_rows
from .errors import InputError
from .textnorm import normalize

EVAL_DATASETS = ("meld", "emorynlp", "emer-v1", "emer-v2", "ov-merd", "jsonl")
MEDIA_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".wav", ".flac", ".mp3", ".m4a")


@dataclass
class EvalItem:
    """One thing to analyse and its gold annotations (any of them may be absent)."""

    id: str
    text: str | None = None
    media: Path | None = None
    context: Dialogue | None = None  # the dialogue before the item
    speaker: str | None = None
    label: str | None = None  # gold label (from the closed set of ``EvalSet.labels`` when it has one)
    labels: list[str] | None = None  # gold open-vocabulary label set
    explanation: str | None = None  # gold explanation
    sentiment: str | None = None  # gold sentiment when the dataset annotates it

    @property
    def runnable(self) -> bool:
        return self.text is not None or self.media is not None


@dataclass
class EvalSet:
    name: str
    split: str | None
    items: list[EvalItem]
    labels: list[str] | None = None  # the closed label set, when the dataset has one
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def item(self, item_id: str) -> EvalItem | None:
        if not hasattr(self, "_by_id"):
            self._by_id = {x.id: x for x in self.items}
        return self._by_id.get(item_id)


def load_eval_set(
    name: str,
    data_dir: str | Path,
    split: str | None = None,
    *,
    media_dir: str | Path | None = None,
    limit: int | None = None,
) -> EvalSet:
    """The items of dataset ``name`` (see the module docstring). ``limit`` keeps the first N items."""
    name = name.lower()
    if name not in EVAL_DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(EVAL_DATASETS)}")
    data_dir = Path(data_dir)
    if name != "jsonl" and not data_dir.is_dir():
        raise InputError(f"{data_dir}: not a folder (--data-dir holds the dataset's original files)")
    media = Path(media_dir) if media_dir else None
    if media is not None and not media.is_dir():
        raise InputError(f"{media}: --media-dir is not a folder")
    if name in DATASETS:
        es = _dialogue_set(name, split or "dev", data_dir, media)
    elif name == "emer-v1":
        es = _emer_v1(data_dir, media)
    elif name == "emer-v2":
        es = _emer_v2(data_dir, media)
    elif name == "ov-merd":
        es = _ov_merd(data_dir, media)
    else:
        es = _jsonl(data_dir, media)
    if limit is not None:
        es.items = es.items[: max(0, limit)]
    if not es.items:
        raise InputError(f"{es.source}: no items to evaluate")
    return es


def dialogue_items(name: str, dialogues: list[Dialogue], media: Path | None, *, labelled_only: bool) -> list[EvalItem]:
    """One item per utterance of MELD/EmoryNLP ``dialogues``: its words (or, with ``media``, MELD's clip
    ``dia{D}_utt{U}.mp4``) with the dialogue before it as context. ``labelled_only``: skip utterances without a
    gold label (what an evaluation cannot score; a batch analyses them all)."""
    if media is not None and name != "meld":
        raise InputError("--media-dir: only MELD's clips have a known naming (dia{D}_utt{U}.mp4)")
    items = []
    for d in dialogues:
        for i, u in enumerate(d.utterances):
            if labelled_only and not u.label:
                continue
            clip = media / f"{u.id}.mp4" if media is not None else None  # a missing clip: that item's error
            items.append(EvalItem(id=u.id, text=None if clip else u.text, media=clip,
                                  context=Dialogue(id=d.id, utterances=d.utterances[:i]), speaker=u.speaker,
                                  label=u.label, sentiment=u.sentiment))  # fmt: skip
    return items


def _dialogue_set(name: str, split: str, data_dir: Path, media: Path | None) -> EvalSet:
    items = dialogue_items(name, load_dataset(name, split, data_dir), media, labelled_only=True)
    return EvalSet(name, split, items, labels=dataset_labels(name), source=str(data_dir))


def _rows(path: Path, need: set[str]) -> list[dict]:
    if not path.is_file():
        raise InputError(f"{path}: not found (expected the dataset's original file name)")
    rows = read_csv_rows(path)
    if missing := need - set(rows[0]):
        raise InputError(f"{path}: lacks the columns {sorted(missing)}")
    return rows


def find_media(media: Path | None, name: str) -> Path | None:
    """The clip called ``name`` (any common suffix) in ``media``; None without a folder. A name that is not
    there gives the path it was looked for at, so the item fails with that path in its error."""
    if media is None:
        return None
    for suffix in MEDIA_SUFFIXES:
        if (p := media / f"{name}{suffix}").is_file():
            return p
    return media / f"{name}.mp4"


def parse_label_set(value: str) -> list[str]:
    """``"['happy', 'excited']"`` (MER's files), ``happy, excited`` or a JSON list → ``["happy", "excited"]``."""
    v = (value or "").strip()
    if not v:
        return []
    if v.startswith("["):
        try:
            got = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            got = v.strip("[]").split(",")
        if isinstance(got, (list, tuple)):
            return [str(x).strip().strip("'\"").lower() for x in got if str(x).strip().strip("'\"")]
    return [x.strip().strip("'\"").lower() for x in v.split(",") if x.strip().strip("'\"")]


def _emer_v1(data_dir: Path, media: Path | None) -> EvalSet:
    path = data_dir / "emer_v1_gt_eng.csv"
    items = []
    for r in _rows(path, {"names", "emotions", "subtitles", "reasons"}):
        clip = find_media(media, r["names"].strip())
        items.append(EvalItem(id=r["names"].strip(), text=None if clip else normalize(r["subtitles"]), media=clip,
                              label=r["emotions"].strip().lower() or None,
                              explanation=normalize(r["reasons"]) or None))  # fmt: skip
    return EvalSet("emer-v1", None, items, source=str(path))


def _ov_gold(path: Path) -> dict[str, list[str]]:
    return {r["name"].strip(): parse_label_set(r["openset"]) for r in _rows(path, {"name", "openset"})}


def _emer_v2(data_dir: Path, media: Path | None) -> EvalSet:
    path = data_dir / "emer_v2_reason.csv"
    gold_path = data_dir / "ov_merd_openset_gold.csv"
    gold = _ov_gold(gold_path) if gold_path.is_file() else {}
    items = [EvalItem(id=r["name"].strip(), media=find_media(media, r["name"].strip()),
                      explanation=normalize(r["english"]) or None, labels=gold.get(r["name"].strip()))
             for r in _rows(path, {"name", "english"})]  # fmt: skip
    notes = [] if gold else [f"{gold_path.name} not found: no open-vocabulary labels to score"]
    return EvalSet("emer-v2", None, items, source=str(path), notes=notes)


def _ov_merd(data_dir: Path, media: Path | None) -> EvalSet:
    path = data_dir / "ov_merd_openset_gold.csv"
    items = [EvalItem(id=k, media=find_media(media, k), labels=v) for k, v in _ov_gold(path).items()]
    return EvalSet("ov-merd", None, items, source=str(path))


def _jsonl(path: Path, media: Path | None) -> EvalSet:
    if not path.is_file():
        raise InputError(f"{path}: --data-dir of the jsonl dataset is the JSONL file itself")
    base = media or path.parent
    items, seen = [], set()
    for n, o in jsonl_values(path.read_text(encoding="utf-8", errors="replace"), path):
        if isinstance(o, dict) and "media" not in o and "path" in o:  # a batch manifest's name for it
            o["media"] = o.pop("path")
        if not isinstance(o, dict) or not (isinstance(o.get("text"), str) or isinstance(o.get("media"), str)):
            raise InputError(f'{path}:{n}: expected {{"id": …, "media" (or "path") or "text": …}}')
        item_id = str(o.get("id") or f"line{n}")
        if item_id in seen:
            raise InputError(f"{path}:{n}: id {item_id!r} appears twice")
        seen.add(item_id)
        labels = o.get("labels")
        if isinstance(labels, str):
            labels = parse_label_set(labels)
        context = None
        if isinstance(o.get("context"), list):
            from .data import Utterance

            context = Dialogue(id=item_id, utterances=[
                Utterance(speaker=str(u.get("speaker") or "unknown"), text=normalize(str(u.get("text", ""))))
                for u in o["context"] if isinstance(u, dict)])  # fmt: skip
        items.append(EvalItem(
            id=item_id, text=normalize(o["text"]) if isinstance(o.get("text"), str) else None,
            media=(base / o["media"]) if isinstance(o.get("media"), str) else None, context=context,
            speaker=o.get("speaker"), label=(str(o["label"]).strip().lower() if o.get("label") else None),
            labels=[str(x).strip().lower() for x in labels] if isinstance(labels, list) else None,
            explanation=normalize(o["explanation"]) if isinstance(o.get("explanation"), str) else None,
            sentiment=o.get("sentiment"),
        ))  # fmt: skip
    return EvalSet("jsonl", None, items, source=str(path))


def read_jsonl_records(path: Path, *, repair: bool = False) -> list[dict]:
    """The records of a JSONL file. A last line cut short (a run killed while writing it) is dropped — and with
    ``repair`` cut from the file, so that appending goes on from a clean line end."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        if repair:
            with open(path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
        data = data[:cut]
    out = []
    for n, rec in jsonl_values(data.decode("utf-8", errors="replace"), path):
        if not isinstance(rec, dict) or "id" not in rec:
            raise InputError(f"{path}:{n}: a record needs an 'id'")
        out.append(rec)
    return out
