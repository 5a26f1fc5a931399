"""Scoring predictions against an evaluation set's gold: every metric the data allows, in one dict
(``metrics.json``).

- **classification** (a closed label set: MELD, EmoryNLP): accuracy, weighted-F1, per-class F1, confusion
  matrix, ECE of the probabilities, the predicted-label counts;
- **sentiment**: positive / negative / neutral accuracy and weighted-F1 — gold from the dataset's own sentiment
  annotation when it has one (MELD), else mapped from the gold label; the prediction is the sentiment with the
  most probability mass;
- **hit_rate** (a single gold emotion: MELD, EmoryNLP, EMER v1): MER-UniBench's HIT rate over emotion wheels, gold
  ``neutral`` excluded;
- **openset** (a gold label set: OV-MERD, EMER v2): set-level precision / recall / F over emotion wheels, at
  wheel levels 1 and 2;
- **explanation** (gold explanations: EMER v1/v2): BLEU-4, ROUGE-L, METEOR, MiniLM similarity;
- **faithfulness** (predictions that carry their evidence: our runs): cited ids that exist, explanations citing
  an existing cue, supported claim sentences, label–explanation consistency.

The predicted emotion words for the wheel metrics are the predictor's label set when it gives one (an
open-vocabulary file), else its one label — not words picked out of the explanation, which would reward long
explanations (HIT rate does not penalise extra groups); only a predictor that gives nothing but free text has
its emotion words extracted (``extractor``: the deterministic lexicon reader, or an LLM). Items whose prediction is an error or missing are
counted (``n_errors``, ``n_missing``) and left out of the scores.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..inputs import EvalSet
from .predictions import Prediction


def score(eval_set: EvalSet, predictions: dict[str, Prediction], *, wheels=None, embed: bool = True,
          extractor=None) -> dict[str, Any]:  # fmt: skip
    """All metrics of ``predictions`` against ``eval_set`` (see the module docstring). ``wheels``: a
    :class:`~affect_llm.metrics.wheel.WheelSet` (default: :func:`~affect_llm.metrics.wheel.default_wheels`);
    ``embed=False`` skips the metrics that load MiniLM; ``extractor``: free text → emotion words (default: the
    deterministic :class:`~affect_llm.metrics.emotion_words.LexiconExtractor`; or
    :class:`~affect_llm.evaluation.llm_extractor.LLMExtractor`)."""
    from ..metrics.emotion_words import LexiconExtractor
    from ..metrics.wheel import default_wheels

    wheels = wheels if wheels is not None else default_wheels()
    extract = extractor or LexiconExtractor(wheels)
    pairs, errors, missing = [], 0, 0
    for item in eval_set.items:
        pred = predictions.get(item.id)
        if pred is None:
            missing += 1
        elif pred.error:
            errors += 1
        else:
            pairs.append((item, pred))
    out: dict[str, Any] = {
        "dataset": eval_set.name,
        "split": eval_set.split,
        "n_items": len(eval_set.items),
        "n_scored": len(pairs),
        "n_errors": errors,
        "n_missing": missing,
        "unknown_ids": sorted(set(predictions) - {x.id for x in eval_set.items})[:20],
        "wheels": getattr(wheels, "name", None),
        "extractor": type(extract).__name__,
    }
    if eval_set.labels:
        out["classification"] = _classification(eval_set.labels, pairs)
        out["sentiment"] = _sentiment(pairs)
    single = [(it, p) for it, p in pairs if it.label]  # an empty prediction is a miss, not left out
    if single:
        from ..metrics.openset import hit_rate

        out["hit_rate"] = hit_rate([it.label for it, _ in single], [_words(p, extract) for _, p in single], wheels)
    sets = [(it, p) for it, p in pairs if it.labels]
    if sets:
        from ..metrics.openset import openset_scores

        gold, pred = [it.labels for it, _ in sets], [_words(p, extract) for _, p in sets]
        out["openset"] = {lv: openset_scores(gold, pred, wheels, level=lv) for lv in ("level1", "level2")}
    explained = [(it, p) for it, p in pairs if it.explanation and p.explanation is not None]
    if explained:
        from ..metrics.explanation import explanation_scores

        out["explanation"] = explanation_scores([p.explanation or "" for _, p in explained],
                                                [it.explanation for it, _ in explained], embed=embed)  # fmt: skip
        out["explanation"].pop("per_sample", None)
    grounded = [p for _, p in pairs if p.cues is not None and p.explanation]
    if grounded:
        from ..metrics.faithfulness import faithfulness_scores
        from ..metrics.openset import label_explanation_consistency

        f = faithfulness_scores([p.explanation for p in grounded], [p.cues for p in grounded], embed=embed,
                                decided=[p.label for p in grounded])  # fmt: skip
        f.pop("per_sample", None)
        f["label_consistency"] = label_explanation_consistency([p.label for p in grounded],
                                                               [p.explanation for p in grounded], wheels,
                                                               extractor=extract)  # fmt: skip
        out["faithfulness"] = f
    out["timings"] = _timings([p for _, p in pairs])
    return out


def _words(p: Prediction, extract) -> list[str]:
    """The predicted emotion words: the predictor's label set, else its label, else (a free-text predictor)
    the emotion words of its explanation."""
    if p.labels is not None:
        return list(p.labels)
    if p.label:
        return [p.label]
    return extract(p.explanation) if p.explanation else []


def _classification(labels: list[str], pairs) -> dict[str, Any]:
    from ..metrics.classification import (
        accuracy,
        confusion_matrix,
        expected_calibration_error,
        per_class_f1,
        weighted_f1,
    )

    gold = [it.label for it, _ in pairs]
    pred = [p.label for _, p in pairs]
    res: dict[str, Any] = {"labels": labels, "n": len(pairs)}
    if not pairs:
        return res
    res |= {
        "accuracy": accuracy(gold, pred),
        "weighted_f1": weighted_f1(gold, pred, labels),
        "macro_f1": float(np.mean(list(per_class_f1(gold, pred, labels).values()))),
        "per_class_f1": per_class_f1(gold, pred, labels),
        "support": {lab: gold.count(lab) for lab in labels},
        "predicted": {lab: pred.count(lab) for lab in labels},
        "other_predictions": dict(Counter(x for x in pred if x not in labels)),
        "confusion": confusion_matrix(gold, pred, labels).tolist(),
    }
    with_probs = [(it, p) for it, p in pairs if p.probabilities and set(labels) <= set(p.probabilities)]
    if with_probs:
        probs = np.array([[p.probabilities[lab] for lab in labels] for _, p in with_probs], dtype=np.float64)
        probs /= probs.sum(1, keepdims=True)
        res["ece"] = expected_calibration_error(probs, [labels.index(it.label) for it, _ in with_probs])
        res["ece_n"] = len(with_probs)
    return res


def _sentiment(pairs) -> dict[str, Any]:
    from ..metrics.openset import sentiment_of, sentiment_scores

    gold, pred, from_data = [], [], 0
    for it, p in pairs:
        g = it.sentiment or sentiment_of(it.label)
        s = _predicted_sentiment(p, sentiment_of)
        if g is None or s is None:
            continue
        from_data += it.sentiment is not None
        gold.append(g)
        pred.append(s)
    if not gold:
        return {"n": 0}
    res = sentiment_scores(gold, pred)
    res["n"] = len(gold)
    res["gold_from"] = "dataset annotation" if from_data == len(gold) else "mapped from labels"
    return res


def _predicted_sentiment(p: Prediction, sentiment_of) -> str | None:
    """The sentiment with the most probability mass (a label of no fixed sentiment, like MELD's ``surprise``,
    gives half to positive and half to negative); without probabilities, the label's own sentiment."""
    if p.probabilities:
        mass = {"positive": 0.0, "negative": 0.0, "neutral": 0.0}
        for lab, v in p.probabilities.items():
            s = sentiment_of(lab)
            if s is None:
                mass["positive"] += v / 2
                mass["negative"] += v / 2
            else:
                mass[s] += v
        return max(mass, key=mass.__getitem__)
    return sentiment_of(p.label) if p.label else None


def _timings(preds: list[Prediction]) -> dict[str, Any]:
    """Per stage: how many items ran it, its mean seconds when it ran, and its seconds per item over all items
    (amortised: a model loaded once costs a fraction of a second per item). ``total`` is wall time per item."""
    stages: dict[str, list[float]] = {}
    for p in preds:
        for k, v in p.timings.items():
            stages.setdefault(k, []).append(float(v))
    n = len(preds)
    return {"n": n, "stages": {k: {"items": len(v), "mean_when_run": round(float(np.mean(v)), 4),
                                   "per_item": round(float(np.sum(v)) / n, 4)} for k, v in stages.items()}}  # fmt: skip
