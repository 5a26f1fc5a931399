"""CLIP scene matching: the aggregation on hand-made similarities, and the model path on a tiny random CLIP.

The numbers (softmax per frame, then the mean over frames) are checked against values worked out by hand.
The model path runs on a randomly initialised CLIP (hidden size 32, one layer, 32 px images) saved with
``save_pretrained`` together with a byte-level tokenizer written offline, so nothing is downloaded; random
weights give meaningless labels, so those tests check shapes, normalisation and determinism, not the labels.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from affect_llm.config import MELD_LABELS, SceneOptions
from affect_llm.cues import clip
from affect_llm.cues.clip import SceneResult, aggregate, frame_distributions, load_matcher, scene_cues
from affect_llm.errors import ModelNotFound
from affect_llm.media import Frame
from affect_llm.types import Modality, Segment

# -- aggregation (pure numpy) ------------------------------------------------------------------------------


def test_one_frame_softmax_by_hand():
    # logits = 2 * sims = [ln 3, 0] -> e^logits = [3, 1] -> [3/4, 1/4]
    d = frame_distributions(np.array([[math.log(3) / 2, 0.0]]), logit_scale=2.0)
    np.testing.assert_allclose(d, [[0.75, 0.25]])
    np.testing.assert_allclose(aggregate(d), [0.75, 0.25])
    # equal similarities: uniform, whatever the scale
    np.testing.assert_allclose(frame_distributions(np.full((1, 4), 0.3), 100.0), [[0.25] * 4])


def test_two_frames_mean_of_softmaxes_by_hand():
    # frame 1 logits [ln 2, 0, 0] -> [2, 1, 1] / 4 = [.5, .25, .25]
    # frame 2 logits [0, ln 3, 0] -> [1, 3, 1] / 5 = [.2, .6, .2]
    # mean -> [.35, .425, .225]
    scale = 100.0
    sims = np.array([[math.log(2), 0, 0], [0, math.log(3), 0]]) / scale
    d = frame_distributions(sims, scale)
    np.testing.assert_allclose(d, [[0.5, 0.25, 0.25], [0.2, 0.6, 0.2]])
    np.testing.assert_allclose(aggregate(d), [0.35, 0.425, 0.225])
    # the recipe is the mean of softmaxes, not the softmax of the mean similarity ([√2, √3, 1] / Σ)
    softmax_of_mean = np.array([math.sqrt(2), math.sqrt(3), 1.0]) / (math.sqrt(2) + math.sqrt(3) + 1)
    assert not np.allclose(aggregate(d), softmax_of_mean, atol=1e-3)


def test_label_order_is_preserved():
    scale = 100.0
    sims = np.array([[math.log(2), 0, 0], [0, math.log(3), 0]]) / scale
    perm = [2, 0, 1]
    np.testing.assert_allclose(
        aggregate(frame_distributions(sims[:, perm], scale)), np.array([0.35, 0.425, 0.225])[perm]
    )


def test_many_frames_and_large_logits():
    rng = np.random.default_rng(0)
    sims = rng.uniform(-1, 1, size=(1000, 7))
    d = frame_distributions(sims, 100.0)  # logits up to 100: must not overflow
    assert d.shape == (1000, 7) and np.all(np.isfinite(d))
    np.testing.assert_allclose(d.sum(axis=1), 1.0)
    np.testing.assert_allclose(aggregate(d), d.mean(axis=0))
    assert aggregate(d).sum() == pytest.approx(1.0)
    # a frame whose similarities are all equal (say, a black frame) is uniform
    np.testing.assert_allclose(frame_distributions(np.ones((3, 7)), 100.0), np.full((3, 7), 1 / 7))


def test_bad_shapes():
    with pytest.raises(ValueError):
        frame_distributions(np.zeros(3), 1.0)
    with pytest.raises(ValueError):
        aggregate(np.zeros((0, 3)))


def test_ensemble_is_mean_of_normalised_prompts():
    e = clip.ensemble(np.array([[3.0, 0.0], [0.0, 0.5]]))  # normalised: [1, 0], [0, 1] -> mean [.5, .5]
    np.testing.assert_allclose(e, [1 / math.sqrt(2), 1 / math.sqrt(2)])


# -- prompts -----------------------------------------------------------------------------------------------


def test_prompt_ensemble_per_label():
    joy = clip.label_prompts("joy")
    assert "a photo of a happy person" in joy and "a photo of a joyful person" in joy
    assert "a face showing joy" in joy and "a person feeling happy" in joy
    assert len(joy) == len(set(joy)) >= 10
    fear = clip.label_prompts("fear")
    assert "a photo of an afraid person" in fear and "a person feeling scared" in fear
    assert "a photo of a angry person" not in clip.label_prompts("anger")
    for label in MELD_LABELS:
        assert len(clip.label_prompts(label)) >= 8
    # a label outside the table is used as itself
    assert "a photo of a bored person" in clip.label_prompts("bored")
    assert "a face showing bored" in clip.label_prompts("bored")


# -- cues --------------------------------------------------------------------------------------------------


def _result(times, dists, labels=("joy", "surprise", "neutral")):
    d = np.asarray(dists, dtype=float)
    return SceneResult(labels=list(labels), times=np.asarray(times, float), frame_dists=d, mean=aggregate(d))


def test_scene_cue_for_the_clip():
    r = _result([0.0, 1.0], [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]])
    (c,) = scene_cues(r)
    assert c.id == "C1" and c.modality is Modality.scene
    assert (c.start, c.end) == (0.0, 1.0)
    assert c.value == {"joy": 0.6, "surprise": 0.25, "neutral": 0.15}
    assert c.text == "2 frames match 'joy' best (0.60), then 'surprise' (0.25)"
    assert r.distribution == pytest.approx({"joy": 0.6, "surprise": 0.25, "neutral": 0.15})


def test_scene_cues_per_span():
    r = _result([0.0, 1.0, 2.0, 3.0], [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]])
    spans = [
        (0.0, 1.0),  # frames 0, 1
        Segment(start=2.4, end=2.6, text="x"),  # no frame inside: the nearest (2.0) stands in
        (10.0, 12.0),  # no frame within a second: skipped
        (2.9, 3.5),  # frame 3
    ]
    cues = scene_cues(r, spans)
    assert [c.id for c in cues] == ["C1", "C2", "C3"]
    assert [(c.start, c.end) for c in cues] == [(0.0, 1.0), (2.4, 2.6), (2.9, 3.5)]
    assert cues[0].value == {"joy": 0.7, "surprise": 0.2, "neutral": 0.1}
    assert cues[1].text == "the frame matches 'neutral' best (0.80), then 'joy' (0.10)"
    assert cues[2].value["surprise"] == 0.7


def test_weak_match_is_said():
    r = _result([0.0], [[0.36, 0.34, 0.30]])  # best below 1.5 x uniform (1.5 / 3 labels = 0.5)
    (c,) = scene_cues(r)
    assert c.text == "the frame matches no label clearly: 'joy' (0.36) leads, then 'surprise' (0.34)"


def test_no_frames_no_cues():
    r = SceneResult(labels=["a", "b"], times=np.zeros(0), frame_dists=np.zeros((0, 2)), mean=None)
    assert scene_cues(r) == [] and scene_cues(r, [(0, 1)]) == []
    assert r.distribution == {}


# -- loading -----------------------------------------------------------------------------------------------


def test_no_model_configured():
    assert load_matcher(SceneOptions(), MELD_LABELS) is None
    assert clip.NO_MODEL_NOTE == "no CLIP weights configured (--clip MODEL)"


def test_uncached_hf_id_raises(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("AFFECT_LLM_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(ModelNotFound, match="not in the local Hugging Face cache"):
        clip.ClipMatcher("affect-llm-tests/no-such-clip", MELD_LABELS)
    with pytest.raises(ModelNotFound):
        load_matcher(SceneOptions(model="affect-llm-tests/no-such-clip"), MELD_LABELS)


def test_labels_are_checked():
    with pytest.raises(ValueError):
        clip.ClipMatcher("affect-llm-tests/no-such-clip", ["joy"])


# -- a tiny random CLIP (slow: importing torch and transformers alone takes seconds) ------------------------


def _byte_chars() -> list[str]:
    """GPT-2 / CLIP byte-level alphabet: the 256 printable stand-ins for bytes."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_tiny_clip(path, seed=0):
    """Save a random CLIP (model + processor) to ``path``: byte-level BPE with no merges (every character a
    token, ``</w>`` marking word ends), 514 tokens with the special tokens last."""
    torch = pytest.importorskip("torch")
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    path.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": 256 + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": 512, "<|endoftext|>": 513}
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer.from_pretrained(str(path))
    torch.manual_seed(seed)
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    specials = {"bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513}
    text = small | specials | {"vocab_size": 514, "max_position_embeddings": 64}
    vision = small | {"image_size": 32, "patch_size": 8}
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(
        str(path)
    )
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def _frames(n, seed=0, shape=(48, 64, 3)):
    rng = np.random.default_rng(seed)
    return [Frame(t=0.5 * i, rgb=rng.integers(0, 256, shape, dtype=np.uint8)) for i in range(n)]


@pytest.mark.slow
def test_tiny_clip_match(tiny_clip):
    m = clip.ClipMatcher(str(tiny_clip), MELD_LABELS, batch_size=4)
    assert m.text_embeddings.shape == (7, 16)
    np.testing.assert_allclose(np.linalg.norm(m.text_embeddings, axis=1), 1.0)
    assert m.logit_scale == pytest.approx(math.exp(2.6592), rel=1e-4)  # CLIPConfig's initial value

    r = m.match(iter(_frames(10)))  # a generator is fine; 10 frames = batches of 4, 4, 2
    assert r.labels == MELD_LABELS and len(r) == 10
    assert r.frame_dists.shape == (10, 7)
    np.testing.assert_allclose(r.frame_dists.sum(axis=1), 1.0)
    np.testing.assert_allclose(r.times, 0.5 * np.arange(10))
    np.testing.assert_allclose(r.mean, r.frame_dists.mean(axis=0))
    assert sum(r.distribution.values()) == pytest.approx(1.0)
    # the same numbers through the pure functions
    sims = m.similarities([f.rgb for f in _frames(10)])
    np.testing.assert_allclose(r.frame_dists, frame_distributions(sims, m.logit_scale), atol=1e-6)
    # batching does not change anything
    one_batch = clip.ClipMatcher(str(tiny_clip), MELD_LABELS, batch_size=16).match(_frames(10))
    np.testing.assert_allclose(one_batch.frame_dists, r.frame_dists, atol=1e-6)

    (c,) = scene_cues(r)
    assert c.id == "C1" and set(c.value) == set(MELD_LABELS) and "frames match" in c.text
    assert sum(c.value.values()) == pytest.approx(1.0, abs=1e-3)

    empty = m.match([])
    assert empty.mean is None and empty.frame_dists.shape == (0, 7) and scene_cues(empty) == []


@pytest.mark.slow
def test_tiny_clip_deterministic_with_seed(tiny_clip, tmp_path):
    a = clip.ClipMatcher(str(tiny_clip), MELD_LABELS).match(_frames(3))
    b = clip.ClipMatcher(str(build_tiny_clip(tmp_path / "again", seed=0)), MELD_LABELS).match(_frames(3))
    np.testing.assert_array_equal(a.frame_dists, b.frame_dists)
    c = clip.ClipMatcher(str(build_tiny_clip(tmp_path / "other", seed=1)), MELD_LABELS).match(_frames(3))
    assert not np.allclose(a.frame_dists, c.frame_dists)


@pytest.mark.slow
def test_load_matcher_uses_scene_labels(tiny_clip):
    m = load_matcher(SceneOptions(model=str(tiny_clip), labels=["calm", "joy", "anger"]), MELD_LABELS)
    assert m.labels == ["calm", "joy", "anger"]
    r = m.match(_frames(2, shape=(20, 30, 3)))  # smaller than the model's 32 px input
    assert r.frame_dists.shape == (2, 3)
    assert load_matcher(SceneOptions(model=str(tiny_clip)), MELD_LABELS).labels == MELD_LABELS


@pytest.mark.slow
def test_a_directory_that_is_not_clip(tmp_path):
    pytest.importorskip("transformers")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelNotFound, match="could not be loaded as a CLIP model"):
        clip.ClipMatcher(str(tmp_path), MELD_LABELS)
