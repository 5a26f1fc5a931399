"""Dialogue datasets: MELD and EmoryNLP under their original CSV names, a JSONL transcript, a MELD-style CSV.

Everything is read into :class:`Dialogue` objects (utterances in order, speakers, gold labels when present), with
the text normalised (:func:`affect_llm.textnorm.normalize`: MELD's cp1252 bytes such as ``\\x92`` become ``'``).

    >>> dialogues = load_dataset("meld", "dev", "../shared/data/meld")
    >>> dialogues[0].utterances[0].text, dialogues[0].utterances[0].label
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from .config import EMORYNLP_LABELS, MELD_LABELS
from .errors import InputError
from .textnorm import normalize

DATASETS: dict[str, dict] = {
    "meld": {"labels": MELD_LABELS, "file": "{split}_sent_emo.csv"},
    "emorynlp": {"labels": EMORYNLP_LABELS, "file": "emorynlp_{split}_final.csv"},
}


@dataclass
class Utterance:
    speaker: str
    text: str
    label: str | None = None
    id: str = ""
    start: str | None = None
    end: str | None = None
    index: int = 0  # position in the source's own numbering (MELD/EmoryNLP Utterance_ID)
    sentiment: str | None = None  # MELD's own per-utterance sentiment annotation (positive, negative, neutral)


@dataclass
class Dialogue:
    id: str
    utterances: list[Utterance] = field(default_factory=list)

    def speaker_ids(self, max_speakers: int | None = None) -> list[int]:
        """Speakers numbered by order of first appearance (0, 1, ...), capped at ``max_speakers - 1``."""
        seen: dict[str, int] = {}
        ids = [seen.setdefault(u.speaker, len(seen)) for u in self.utterances]
        return [min(i, max_speakers - 1) for i in ids] if max_speakers else ids

    def __len__(self) -> int:
        return len(self.utterances)


def dataset_labels(name: str) -> list[str]:
    try:
        return list(DATASETS[name]["labels"])
    except KeyError:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def dataset_file(name: str, split: str, data_dir: str | Path) -> Path:
    dataset_labels(name)
    path = Path(data_dir) / DATASETS[name]["file"].format(split=split)
    if not path.is_file():
        raise InputError(f"{name} {split}: {path} not found (expected the dataset's original file name)")
    return path


def load_dataset(name: str, split: str, data_dir: str | Path) -> list[Dialogue]:
    """The dialogues of ``name`` (``meld`` or ``emorynlp``) ``split`` from ``data_dir``, in file order."""
    return load_csv(dataset_file(name, split, data_dir), name, split)


def csv_dataset_name(path: str | Path) -> str | None:
    """``meld`` or ``emorynlp`` from a CSV's header (MELD: ``Dialogue_ID``; EmoryNLP: ``Scene_ID``), else None."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            header = next(csv.reader(f), [])
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    if "Dialogue_ID" in header and "Utterance" in header:
        return "meld"
    if "Scene_ID" in header and "Utterance" in header:
        return "emorynlp"
    return None


def load_csv(path: str | Path, name: str | None = None, split: str | None = None) -> list[Dialogue]:
    """The dialogues of one MELD or EmoryNLP CSV file (``name`` detected from the header when not given)."""
    path = Path(path)
    name = name or csv_dataset_name(path)
    if name not in DATASETS:
        raise InputError(f"{path}: not a MELD or EmoryNLP CSV (no Dialogue_ID / Scene_ID column)")
    split = split or path.stem
    rows = read_csv_rows(path)
    if name == "meld":
        return _group(rows, key=lambda r: r["Dialogue_ID"], speaker=lambda r: r["Speaker"], prefix=f"meld-{split}-",
                      uid=lambda r: f"dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}", labels=MELD_LABELS)  # fmt: skip
    return _group(rows, key=lambda r: f"s{r['Season']}e{r['Episode']}c{r['Scene_ID']}", speaker=_emory_speaker,
                  prefix=f"emorynlp-{split}-", uid=lambda r: f"s{r['Season']}e{r['Episode']}c{r['Scene_ID']}u{r['Utterance_ID']}",
                  labels=EMORYNLP_LABELS)  # fmt: skip


def _emory_speaker(r: dict) -> str:
    s = r["Speaker"].strip()
    if s.startswith("["):  # "['Rachel Green']" or "['Rachel Green', 'Monica Geller']"
        try:
            names = json.loads(s.replace("'", '"'))
            return " & ".join(names) if names else "unknown"
        except json.JSONDecodeError:
            return s.strip("[]'\"")
    return s


def read_csv_rows(path: Path) -> list[dict]:
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error) as e:
        raise InputError(f"{path}: cannot read CSV ({e})") from e
    if not rows:
        raise InputError(f"{path}: no rows")
    return rows


def _group(rows, key, speaker, prefix, uid, labels) -> list[Dialogue]:
    need = {"Utterance", "Speaker", "Emotion"}
    if missing := need - set(rows[0]):
        raise InputError(f"CSV lacks columns {sorted(missing)}")
    out: dict[str, Dialogue] = {}
    for r in rows:
        label = r["Emotion"].strip().lower() or None
        if label is not None and label not in labels:
            raise InputError(f"unknown label {r['Emotion']!r} (expected one of {labels})")
        d = out.setdefault(key(r), Dialogue(id=prefix + key(r)))
        d.utterances.append(Utterance(speaker=speaker(r), text=normalize(r["Utterance"]), label=label, id=uid(r),
                                      start=r.get("StartTime") or r.get("Start_Time"),
                                      end=r.get("EndTime") or r.get("End_Time"),
                                      index=int(r["Utterance_ID"]) if r.get("Utterance_ID", "").isdigit() else 0,
                                      sentiment=(r.get("Sentiment") or "").strip().lower() or None))  # fmt: skip
    for d in out.values():  # the files are in order already; make sure of it (Utterance_ID is numeric in both)
        d.utterances.sort(key=lambda u: u.index)
    return list(out.values())


def jsonl_values(text: str, path: str | Path) -> list[tuple[int, object]]:
    """(line number, parsed value) of every non-blank line of a JSONL text; a line that is not JSON is an
    :class:`InputError` naming ``path:line``."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{n}: not JSON ({e.msg})") from None
    return out


def read_dialogue(path: str | Path) -> Dialogue:
    """A single dialogue given as context: JSONL (one ``{"speaker": ..., "text": ...}`` per line, ``label``
    optional) or a MELD/EmoryNLP-style CSV (columns ``Speaker``, ``Utterance``; all rows are one dialogue)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such context file")
    if p.suffix.lower() == ".csv":
        rows = read_csv_rows(p)
        if not {"Speaker", "Utterance"} <= set(rows[0]):
            raise InputError(f"{p}: a context CSV needs the columns Speaker and Utterance")
        utts = [Utterance(speaker=_emory_speaker(r), text=normalize(r["Utterance"]),
                          label=(r.get("Emotion") or "").strip().lower() or None) for r in rows]  # fmt: skip
    else:
        utts = []
        for n, obj in jsonl_values(p.read_text(encoding="utf-8", errors="replace"), p):
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise InputError(f'{p}:{n}: expected {{"speaker": ..., "text": ...}}')
            utts.append(Utterance(speaker=str(obj.get("speaker") or "unknown"), text=normalize(obj["text"]),
                                  label=(obj.get("label") or None)))  # fmt: skip
    if not utts:
        raise InputError(f"{p}: no utterances")
    return Dialogue(id=p.stem, utterances=utts)


def as_dialogue(context: "Dialogue | str | Path | None") -> "Dialogue | None":
    """A dialogue given any way a front door takes one: a :class:`Dialogue` already, a JSONL/CSV file
    (:func:`read_dialogue`), or text with one ``Speaker: utterance`` per line (a line without a speaker, or with
    a "speaker" longer than 40 characters, is spoken by ``unknown``)."""
    if context is None or isinstance(context, Dialogue):
        return context
    if isinstance(context, Path) or (len(str(context)) < 4096 and "\n" not in str(context)
                                     and Path(str(context)).suffix.lower() in (".jsonl", ".csv", ".json")):
        return read_dialogue(context)
    utts = []
    for line in str(context).splitlines():
        speaker, sep, said = line.partition(":")
        if not line.strip():
            continue
        if not sep or len(speaker) > 40:
            speaker, said = "unknown", line
        utts.append(Utterance(speaker=speaker.strip() or "unknown", text=normalize(said)))
    return Dialogue(id="context", utterances=utts)
