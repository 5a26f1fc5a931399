"""Predictions: one record per item, as a run writes them (``predictions.jsonl``) or as a user brings them
(``--predictions FILE``: our JSONL, any JSONL of ``{id, label?, labels?, explanation?}``, or a CSV with an id
column — ``id``, ``name`` or ``names`` — and any of ``label``, ``openset``/``labels``, ``explanation``/``reasons``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..inputs import read_jsonl_records
from ..types import Cue


@dataclass
class Prediction:
    id: str
    label: str | None = None
    labels: list[str] | None = None  # an open-vocabulary label set, when the predictor gives one
    probabilities: dict[str, float] | None = None
    explanation: str | None = None
    cues: list[Cue] | None = None  # the evidence the explanation was written from (our runs)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    missing_modalities: list[str] = field(default_factory=list)

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> "Prediction":
        labels = r.get("labels") if r.get("labels") is not None else r.get("openset")
        if isinstance(labels, str):
            from ..inputs import parse_label_set

            labels = parse_label_set(labels)
        cues = r.get("cues")
        return cls(
            id=str(r["id"]),
            label=(str(r["label"]).strip().lower() or None) if r.get("label") else None,
            labels=[str(x).strip().lower() for x in labels] if isinstance(labels, list) else None,
            probabilities=r.get("probabilities") or None,
            explanation=r.get("explanation") if isinstance(r.get("explanation"), str) else None,
            cues=[Cue.model_validate(c) for c in cues] if isinstance(cues, list) else None,
            error=r.get("error"),
            timings=r.get("timings") or {},
            missing_modalities=list(r.get("missing_modalities") or []),
        )


def read_predictions(path: str | Path) -> dict[str, Prediction]:
    """Predictions by id from a JSONL or CSV file (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such predictions file")
    if p.suffix.lower() == ".csv":
        with open(p, encoding="utf-8", errors="replace", newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise InputError(f"{p}: no rows")
        key = next((k for k in ("id", "name", "names") if k in rows[0]), None)
        if key is None:
            raise InputError(f"{p}: needs an id column (id, name or names)")
        recs = []
        for r in rows:
            rec: dict[str, Any] = {"id": r[key].strip()}
            for src, dst in (("label", "label"), ("emotions", "label"), ("openset", "labels"), ("labels", "labels"),
                             ("explanation", "explanation"), ("reasons", "explanation")):  # fmt: skip
                if r.get(src):
                    rec.setdefault(dst, r[src])
            recs.append(rec)
    else:
        recs = read_jsonl_records(p)
    out: dict[str, Prediction] = {}
    for r in recs:
        pred = Prediction.from_record(r)
        if pred.id in out:
            raise InputError(f"{p}: id {pred.id!r} appears twice")
        out[pred.id] = pred
    if not out:
        raise InputError(f"{p}: no predictions")
    return out
