import numpy as np
import pytest

from affect_llm.errors import InputError
from affect_llm.fusion import ProbabilityFusion
from affect_llm.metrics import expected_calibration_error

LABELS = ["neutral", "joy", "anger"]


def _synthetic(n=600, seed=0):
    """'good' is right 80% of the time but overconfident; 'noise' is uniform-ish and useless; 'joyspot' is only
    reliable about joy."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 3, n)
    good = np.full((n, 3), 0.01)
    hit = rng.random(n) < 0.8
    good[np.arange(n), np.where(hit, gold, (gold + 1) % 3)] = 0.98
    noise = rng.dirichlet([5, 5, 5], n)
    joyspot = np.full((n, 3), 1 / 3)
    joyspot[gold == 1] = [0.05, 0.9, 0.05]
    return {"good": good / good.sum(1, keepdims=True), "noise": noise, "joyspot": joyspot}, gold


def _nll(p, gold):
    return float(-np.log(p[np.arange(len(gold)), gold]).mean())


def test_fit_learns_to_trust_the_reliable_modality_and_calibrates():
    probs, gold = _synthetic()
    fus = ProbabilityFusion(LABELS, ["good", "noise", "joyspot", "face"]).fit(probs, gold)
    fused = fus.predict(probs)
    assert _nll(fused, gold) < _nll(probs["good"], gold)  # better than the best single modality
    assert expected_calibration_error(fused, gold) < expected_calibration_error(probs["good"], gold)
    assert fus.temperatures["good"] > 1.5  # the overconfident modality is softened
    w = fus.fuse({m: dict(zip(LABELS, probs[m][0])) for m in ["good", "noise"]}).weights
    assert w["good"] > w["noise"]
    assert fus.fitted == {"good": True, "noise": True, "joyspot": True, "face": False}


def test_missing_modality_drops_out_and_weights_renormalise():
    probs, gold = _synthetic()
    fus = ProbabilityFusion(LABELS, ["good", "noise", "joyspot"]).fit(probs, gold)
    one = fus.fuse({"noise": {"neutral": 0.2, "joy": 0.5, "anger": 0.3}})
    assert one.used == ["noise"] and one.weights == {"noise": 1.0}
    assert abs(sum(one.distribution.values()) - 1) < 1e-9
    assert max(one.distribution, key=one.distribution.get) == "joy"
    # NaN rows in batch prediction behave as missing
    p2 = {k: v.copy() for k, v in probs.items()}
    p2["good"][:] = np.nan
    both = fus.predict(p2)
    alone = fus.predict({k: v for k, v in probs.items() if k != "good"})
    np.testing.assert_allclose(both, alone)


def test_ignores_unknown_and_mismatched_and_refuses_empty():
    fus = ProbabilityFusion(LABELS, ["good", "face"])
    r = fus.fuse({"good": {"neutral": 0.5, "joy": 0.3, "anger": 0.2}, "face": {"happy": 1.0}, "x": {}})
    assert r.used == ["good"] and set(r.ignored) == {"face", "x"}
    with pytest.raises(InputError):
        fus.fuse({"face": {"happy": 1.0}})


def test_save_load_roundtrip(tmp_path):
    probs, gold = _synthetic(200)
    fus = ProbabilityFusion(LABELS, ["good", "noise", "face"]).fit(probs, gold, steps=50)
    fus.save(tmp_path / "f.json")
    back = ProbabilityFusion.load(tmp_path / "f.json")
    np.testing.assert_allclose(back.predict(probs), fus.predict(probs), atol=1e-5)
    # the unfitted modality sits below the fitted ones by the prior
    d = {"good": dict(zip(LABELS, probs["good"][0])), "face": dict(zip(LABELS, probs["noise"][0]))}
    w = back.fuse(d).weights
    assert w["face"] < w["good"]


def test_fit_report_scores_carry_per_class_f1():
    from affect_llm.training.fusion import scores

    labels = ["neutral", "joy", "fear"]
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8]])
    gold = np.array([0, 1, 2, 2])  # one fear missed (called neutral), one found
    s = scores(probs, gold, labels)
    assert s["accuracy"] == 75.0 and s["n"] == 4
    # fear: P 1, R 0.5 -> F1 66.7; neutral: P 0.5, R 1 -> 66.7; joy perfect
    assert s["per_class_f1"] == {"neutral": 66.7, "joy": 100.0, "fear": 66.7}


def test_fit_cache_key_changes_with_the_context_models_weights(tmp_path):
    """The distributions collected for a fusion fit are cached under a key of the models that made them: a context
    model retrained in place (same folder, same name) must not reuse the old model's distributions."""
    from types import SimpleNamespace

    from affect_llm.config import PipelineConfig
    from affect_llm.training.fusion import _models_key

    folder = tmp_path / "context-x"
    (folder / "encoder_lora").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "broad_mamba.safetensors").write_bytes(b"weights one")
    cfg = PipelineConfig.model_validate({"reasoner": {"adapter": None}, "context": {"model": str(folder)}})
    pipe = SimpleNamespace(config=cfg)
    before = _models_key(pipe)
    assert _models_key(pipe) == before
    (folder / "broad_mamba.safetensors").write_bytes(b"weights two")
    assert _models_key(pipe) != before
    none = SimpleNamespace(config=cfg.updated(context={"model": None}))
    assert _models_key(none) != _models_key(pipe)


def test_fit_reports_crossfitting_repeated_over_random_splits(tmp_path):
    """``train fusion``'s report from cached distributions (no model runs): the cross-fitted score of the seed's
    split, and the mean ± sd over ``repeats`` splits, each split's fused rows coming from a fusion fitted on the
    other dialogues only."""
    from types import SimpleNamespace

    from affect_llm.config import PipelineConfig
    from affect_llm.data import MELD_LABELS
    from affect_llm.training import fusion as tf
    from tests.test_data import write_meld

    n, k = 120, len(MELD_LABELS)
    rng = np.random.default_rng(0)
    gold = rng.integers(0, k, n)
    write_meld(tmp_path / "meld", "dev", [(f"line {i}", "Ross", MELD_LABELS[g], i // 4, i % 4) for i, g in enumerate(gold)])
    context = rng.dirichlet(np.ones(k), n)
    context[np.arange(n), gold] += 0.3 * rng.random(n)  # informative, noisily
    data = {"ids": np.arange(n), "gold": gold, "dialogue": np.arange(n) // 4,
            "context": context / context.sum(1, keepdims=True), "llm": rng.dirichlet(np.ones(k), n)}
    cfg = PipelineConfig.model_validate({"reasoner": {"adapter": None}, "context": {"model": None}})
    pipe = SimpleNamespace(config=cfg, reasoner=lambda: SimpleNamespace(identity=lambda: "fake"))
    opts = tf.FusionFitOptions(data_dir=str(tmp_path / "meld"), out=str(tmp_path / "f.json"),
                               work_dir=str(tmp_path / "cache"), repeats=4)  # fmt: skip
    (tmp_path / "cache").mkdir()
    np.savez(tmp_path / "cache" / f"meld-dev-{n}-{tf._models_key(pipe)}.npz", **data)
    report = tf.fit(opts, pipe=pipe)
    present = ["context", "llm"]
    runs = [tf.scores(tf.crossfit(data, present, MELD_LABELS, 2, s), gold, MELD_LABELS) for s in range(4)]
    assert report["fused_crossfit"] == runs[0]
    rep = report["fused_crossfit_repeated"]
    assert rep["splits"] == 4
    assert rep["weighted_f1_mean"] == round(float(np.mean([r["weighted_f1"] for r in runs])), 2)
    assert rep["weighted_f1_sd"] == round(float(np.std([r["weighted_f1"] for r in runs])), 2) > 0  # splits differ
    # out of fold: changing one dialogue's inputs changes its own rows, and leaves the other rows of its fold alone
    # (the fusion that scored them was fitted on the other fold only)
    a = tf.crossfit(data, present, MELD_LABELS, 2, 0)
    moved = {**data, "context": data["context"].copy()}
    first = data["dialogue"] == 0
    moved["context"][first] = np.eye(k)[(gold[first] + 1) % k]  # change one dialogue's inputs only
    b = tf.crossfit(moved, present, MELD_LABELS, 2, 0)
    fold_of = dict(zip(np.unique(data["dialogue"]), np.random.default_rng(0).permutation(n // 4) % 2))
    same_fold = np.array([fold_of[d] == fold_of[0] for d in data["dialogue"]]) & ~first
    assert np.allclose(a[same_fold], b[same_fold]) and not np.allclose(a[first], b[first])
