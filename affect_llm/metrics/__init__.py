"""Metrics, each defined in its docstring: classification (accuracy, weighted-F1, per-class F1, confusion matrix)
and calibration (expected calibration error)."""

from .classification import accuracy, confusion_matrix, expected_calibration_error, per_class_f1, weighted_f1

__all__ = ["accuracy", "confusion_matrix", "expected_calibration_error", "per_class_f1", "weighted_f1"]
