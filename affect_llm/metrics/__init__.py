"""Metrics, each defined in its docstring.

- :mod:`.classification`: accuracy, weighted-F1, per-class F1, confusion matrix, expected calibration error;
- :mod:`.wheel` / :mod:`.emotion_words` / :mod:`.openset`: emotion wheels (MER's files or our built-in
  taxonomy), free text → emotion words, MER-UniBench's HIT rate, open-vocabulary set precision / recall / F,
  sentiment, label–explanation consistency;
- :mod:`.explanation`: explanations against gold explanations (BLEU-4, ROUGE-L, METEOR, MiniLM similarity);
- :mod:`.faithfulness`: explanations against their own evidence (cited ids that exist, supported sentences).
"""

from .classification import accuracy, confusion_matrix, expected_calibration_error, per_class_f1, weighted_f1
from .emotion_words import EmotionWordExtractor, LexiconExtractor, emotion_words
from .explanation import bleu4, embedding_similarity, explanation_scores, meteor, rouge_l
from .faithfulness import faithfulness_scores
from .openset import (
    hit_rate,
    label_explanation_consistency,
    openset_report,
    openset_scores,
    read_openset_csv,
    sentiment_of,
    sentiment_scores,
    vocabulary_coverage,
)
from .wheel import Wheel, WheelSet, builtin_wheels, default_wheels, load_mer_wheels, parse_word_list

__all__ = [
    "EmotionWordExtractor", "LexiconExtractor", "Wheel", "WheelSet", "accuracy", "bleu4", "builtin_wheels",
    "confusion_matrix", "default_wheels", "embedding_similarity", "emotion_words", "expected_calibration_error",
    "explanation_scores", "faithfulness_scores", "hit_rate", "label_explanation_consistency", "load_mer_wheels",
    "meteor", "openset_report", "openset_scores", "parse_word_list", "per_class_f1", "read_openset_csv", "rouge_l",
    "sentiment_of", "sentiment_scores", "vocabulary_coverage", "weighted_f1",
]  # fmt: skip
