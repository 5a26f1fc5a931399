import numpy as np
import pytest

from affect_llm.metrics import accuracy, confusion_matrix, expected_calibration_error, per_class_f1, weighted_f1

GOLD = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "a", "b", "b", "c", "c"]


def test_by_hand():
    # a: P=2/2 R=2/3 F=0.8; b: P=1/2 R=1/2 F=0.5; c: P=1/2 R=1/1 F=2/3
    f1 = per_class_f1(GOLD, PRED)
    assert f1 == pytest.approx({"a": 0.8, "b": 0.5, "c": 2 / 3})
    assert weighted_f1(GOLD, PRED) == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert accuracy(GOLD, PRED) == pytest.approx(4 / 6)
    assert confusion_matrix(GOLD, PRED, ["a", "b", "c"]).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # a class never predicted nor gold contributes nothing; one predicted but never gold has weight 0
    assert weighted_f1(["a", "a"], ["a", "z"]) == pytest.approx(2 / 3)


def test_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    g, p = rng.integers(0, 5, 300).tolist(), rng.integers(0, 5, 300).tolist()
    assert weighted_f1(g, p) == pytest.approx(sk.f1_score(g, p, average="weighted"))
    assert confusion_matrix(g, p, range(5)).tolist() == sk.confusion_matrix(g, p).tolist()


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    gold = [0, 1, 0, 1]
    # bins: conf 0.9 (2 samples, acc 0.5) -> |0.5-0.9|; conf 0.6 (acc 1) -> 0.4; conf 0.7 (acc 1) -> 0.3
    assert expected_calibration_error(probs, gold, n_bins=10) == pytest.approx(0.5 * 0.4 + 0.25 * 0.4 + 0.25 * 0.3)
    assert expected_calibration_error(np.eye(2), [0, 1]) == 0.0
    with pytest.raises(ValueError):
        expected_calibration_error(probs, [0])
    with pytest.raises(ValueError):
        accuracy([1], [1, 2])


def test_weighted_f1_with_gold_outside_the_label_set_matches_sklearn():
    """Gold labels the label set does not list (a dataset's extra class): the weights are the listed labels'
    supports, as scikit-learn computes them (dividing by all items under-counted the score)."""
    sk = pytest.importorskip("sklearn.metrics")
    gold = ["joy", "joy", "anger", "other", "other", "neutral", "anger"]
    pred = ["joy", "anger", "anger", "joy", "neutral", "neutral", "neutral"]
    labels = ["joy", "anger", "neutral"]
    assert weighted_f1(gold, pred, labels) == pytest.approx(sk.f1_score(gold, pred, labels=labels, average="weighted"))
    assert weighted_f1(["x"], ["x"], ["a", "b"]) == 0.0  # nothing in the label set to weigh
