"""Single-label classification metrics over label strings (or indices), written out so that their definitions
are visible: they match scikit-learn's ``f1_score(average="weighted")`` and friends, which MELD/EmoryNLP papers
report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy(gold: Sequence, pred: Sequence) -> float:
    """Share of samples whose prediction equals the gold label."""
    _check(gold, pred)
    return float(np.mean([g == p for g, p in zip(gold, pred)])) if len(gold) else 0.0


def per_class_f1(gold: Sequence, pred: Sequence, labels: Sequence | None = None) -> dict:
    """For each class c: P = TP/(TP+FP), R = TP/(TP+FN), F1 = 2PR/(P+R); 0 when undefined.
    ``labels`` defaults to the sorted union of gold and predicted labels."""
    _check(gold, pred)
    labels = list(labels) if labels is not None else sorted(set(gold) | set(pred), key=str)
    out = {}
    for c in labels:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        out[c] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return out


def weighted_f1(gold: Sequence, pred: Sequence, labels: Sequence | None = None) -> float:
    """Per-class F1 averaged with weights = each class's share of the gold labels (its support), over ``labels``
    (default: every label in gold or pred). As scikit-learn's ``f1_score(average="weighted", labels=...)``: gold
    items whose label is outside ``labels`` count as errors of the classes they were predicted as, and the
    weights are the supports of the listed labels only."""
    f1 = per_class_f1(gold, pred, labels)
    support = {c: sum(g == c for g in gold) for c in f1}
    total = sum(support.values())
    if not total:
        return 0.0
    return float(sum(f1[c] * support[c] for c in f1) / total)


def confusion_matrix(gold: Sequence, pred: Sequence, labels: Sequence) -> np.ndarray:
    """``M[i, j]`` = number of samples with gold ``labels[i]`` predicted as ``labels[j]`` (others ignored)."""
    _check(gold, pred)
    idx = {c: i for i, c in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for g, p in zip(gold, pred):
        if g in idx and p in idx:
            m[idx[g], idx[p]] += 1
    return m


def expected_calibration_error(probs: np.ndarray, gold: Sequence[int], n_bins: int = 15) -> float:
    """ECE (Guo et al., 2017): confidences ``max_k p_k`` put into ``n_bins`` equal-width bins over (0, 1];
    ECE = sum over bins of (|bin| / N) * |accuracy(bin) - mean confidence(bin)|."""
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(gold)
    if probs.ndim != 2 or len(probs) != len(gold):
        raise ValueError("probs must be (N, K) with one gold index per row")
    if not len(gold):
        return 0.0
    conf = probs.max(1)
    correct = probs.argmax(1) == gold
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def _check(gold: Sequence, pred: Sequence) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
