"""Instruction-tuning datasets from batch results (``affect-llm batch … --export sharegpt|alpaca FILE``), and
their reading back for training (``affect-llm train reasoner --data FILE``).

Each analysed item becomes one record: the system prompt and the evidence (the cue block exactly as the reasoner
read it, the dialogue before the utterance when there was one) with the question, and the answer — the label's
sentence and the explanation citing cue ids ("The speaker feels joy. In [S1] …"). With ``--explain-gold`` the
answer explains the item's dataset label (rationale mode), as in MERR-style emotion-reasoning sets; otherwise it
is the pipeline's own decision. Every record also keeps ``id``, ``media`` (the clip's path), ``label``,
``label_source`` (``gold`` or ``predicted``), ``labels`` (the label set), ``evidence`` and ``cues`` (id, modality,
start and end in seconds, text), so a record can be traced to the clip and the moment each cue came from.

- ``sharegpt``: ``{"conversations": [{"from": "system"|"human"|"gpt", "value": …}, …], …}``
- ``alpaca``: ``{"system": …, "instruction": …, "input": …, "output": …, …}`` (the question as the instruction,
  the evidence as the input)

Items that failed or were not explained are left out (and counted). :func:`read_training_records` reads either
format back, and any other file in them (the fields above beyond the turns are optional).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Optional

from . import prompting
from .errors import InputError

Format = Literal["sharegpt", "alpaca"]
FORMATS: tuple[str, ...] = ("sharegpt", "alpaca")


def ask(labels: list[str]) -> str:
    """The question of an exported record (``prompts/export.j2``)."""
    return prompting.render("export.j2", labels=labels).strip()


def evidence_part(evidence_text: str, context: Optional[str] = None) -> str:
    """What the question is asked of: the dialogue before the utterance (when there is one) and the evidence."""
    return f"{context}\n\n{evidence_text}" if context else evidence_text


def export_record(rec: dict[str, Any], fmt: Format, labels: list[str], *, media: Optional[str] = None,
                  context: Optional[str] = None, gold: Optional[str] = None) -> Optional[dict[str, Any]]:  # fmt: skip
    """One batch result record (:func:`affect_llm.batch.record`) as an instruction-tuning record, or None when
    it holds no explanation (a failed item, labels only). ``gold``: the item's dataset label when the batch
    explained gold labels (``--explain-gold``): the record's ``label_source`` is ``gold`` when that is the label
    explained (also when the decision was the same label)."""
    if rec.get("error") or not rec.get("explanation") or not rec.get("evidence"):
        return None
    label = rec.get("explained_label") or rec["label"]
    from_gold = rec.get("explained_label") is not None or (gold is not None and gold == label)
    system = prompting.text("system.txt")
    meta = {"id": rec["id"], "media": media, "label": label, "label_source": "gold" if from_gold else "predicted",
            "labels": list(labels), "evidence": rec["evidence"], "context": context,
            "cues": [{k: c.get(k) for k in ("id", "modality", "start", "end", "text")} for c in rec.get("cues", [])]}  # fmt: skip
    if fmt == "sharegpt":
        user = evidence_part(rec["evidence"], context) + "\n" + ask(labels)
        turns = [{"from": "system", "value": system}, {"from": "human", "value": user},
                 {"from": "gpt", "value": rec["explanation"]}]  # fmt: skip
        return {"conversations": turns, **meta}
    if fmt == "alpaca":
        return {"system": system, "instruction": ask(labels), "input": evidence_part(rec["evidence"], context),
                "output": rec["explanation"], **meta}  # fmt: skip
    raise InputError(f"unknown export format {fmt!r} ({', '.join(FORMATS)})")


def write_export(records: Iterable[dict[str, Any]], fmt: Format, path: str | Path, labels: list[str],
                 items: dict[str, Any] | None = None, explain_gold: bool = False) -> tuple[int, int]:  # fmt: skip
    """Write the export of batch ``records`` to ``path`` (atomically: a temp file renamed over it). ``items``:
    id → :class:`~affect_llm.inputs.EvalItem` (for the media path, the dialogue and, with ``explain_gold``,
    the gold label). Returns (written, left out)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r} ({', '.join(FORMATS)})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    written = left = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in records:
                item = (items or {}).get(rec.get("id"))
                media = str(item.media) if item is not None and item.media is not None else None
                context = prompting.dialogue_text(item.context) if item is not None and item.context else None
                gold = item.label if explain_gold and item is not None else None
                out = export_record(rec, fmt, labels, media=media, context=context or None, gold=gold)
                if out is None:
                    left += 1
                    continue
                f.write(json.dumps(out, ensure_ascii=False) + "\n")
                written += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return written, left


@dataclass
class TrainingRecord:
    """One record of an instruction-tuning file as the reasoner's trainer takes it: the chat turns (the last one
    the assistant's target) and, for a record this package exported, the evidence and label, from which the
    label-scoring prompt is built too."""

    messages: list[dict[str, str]]
    uid: str = ""
    evidence: Optional[str] = None
    label: Optional[str] = None
    context: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)


_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def read_training_records(path: str | Path) -> list[TrainingRecord]:
    """The records of a ShareGPT or Alpaca JSONL (or JSON list) file; a line that is neither is an error naming
    the line."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    text = p.read_text(encoding="utf-8")
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else None
    except ValueError:
        rows = None
    if rows is None:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise InputError(f"{p}:{n}: not JSON ({e.msg})") from None
    out = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise InputError(f"{p}: record {n} is not an object")
        if "conversations" in row:
            msgs = []
            for t in row["conversations"]:
                role = _ROLES.get(str(t.get("from", t.get("role", ""))).lower())
                if role is None:
                    raise InputError(f"{p}: record {n}: unknown turn {t.get('from')!r}")
                msgs.append({"role": role, "content": str(t.get("value", t.get("content", "")))})
        elif "instruction" in row and "output" in row:
            user = "\n".join(x for x in (row.get("input", ""), row["instruction"]) if x)
            msgs = ([{"role": "system", "content": row["system"]}] if row.get("system") else []) + [
                {"role": "user", "content": user}, {"role": "assistant", "content": str(row["output"])}]  # fmt: skip
        else:
            raise InputError(f"{p}: record {n} is neither ShareGPT (conversations) nor Alpaca (instruction, output)")
        if not msgs or msgs[-1]["role"] != "assistant":
            raise InputError(f"{p}: record {n} does not end with the assistant's answer")
        cues = row.get("cues") if isinstance(row.get("cues"), list) else None
        out.append(TrainingRecord(msgs, str(row.get("id", n)), row.get("evidence"), row.get("label"),
                                  row.get("context"), {"cues": cues} if cues else {}))  # fmt: skip
    if not out:
        raise InputError(f"{p}: no records")
    return out
