"""Utterance features from the embedded all-MiniLM-L6-v2."""

import numpy as np
import pytest

from affect_llm.embeddings import load_encoder

pytestmark = pytest.mark.slow


def test_embeddings_are_unit_vectors_that_rank_paraphrases_first():
    enc = load_encoder()
    texts = ["I am so happy today!", "What a wonderful day, I feel great.", "The invoice is attached to this email."]
    v = enc.encode(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[0, 1] > sim[1, 2] + 0.3
    # batching does not change an utterance's embedding (padding is masked out of the mean)
    np.testing.assert_allclose(enc.encode(texts, batch_size=1), v, atol=1e-5)
    # MELD's cp1252 bytes are normalised before encoding
    np.testing.assert_allclose(enc.encode(["he\x92s lost it"]), enc.encode(["he's lost it"]), atol=1e-6)
    assert enc.encode([]).shape == (0, 384)
