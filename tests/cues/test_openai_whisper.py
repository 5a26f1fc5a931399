"""The openai-whisper backend, run for real on a tiny randomly initialised Whisper checkpoint.

Random weights give garbage text; these tests check the code path against the installed openai-whisper API
(load_model on a local file, transcribe() arguments, result keys, word timestamps) and the types that come out,
not the words. Nothing is downloaded: ``whisper._download`` is replaced by a function that fails the test.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

whisper = pytest.importorskip("whisper")
torch = pytest.importorskip("torch")

from whisper.model import ModelDimensions, Whisper

from affect_llm.config import SpeechOptions
from affect_llm.cues.speech import OpenAIWhisper, load_transcriber
from affect_llm.errors import ModelNotFound
from affect_llm.types import Segment, Transcript, Word

SR = 16_000


def _save_checkpoint(
    path, *, n_vocab=51864, n_state=64, n_text_head=2, n_text_layer=1, n_text_ctx=16, seed=0
):
    """A checkpoint in openai-whisper's own format: {"dims": ..., "model_state_dict": ...}.

    n_audio_ctx must stay 1500 (30 s windows of 3000 mel frames); n_vocab 51864 is the English-only vocabulary.
    The rest is tiny, and two things keep the decoding short (the code path is the same as for a real model):
    n_text_ctx (real models: 448) bounds the tokens decoded per window to n_text_ctx // 2, and random weights
    never emit end-of-text; and the token embedding (tied to the output layer) is scaled up so that greedy
    decoding is confident (avg_logprob > -1), which spares most of the five temperature fallbacks.
    """
    torch.manual_seed(seed)
    dims = ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=n_state, n_audio_head=2, n_audio_layer=1,
        n_vocab=n_vocab, n_text_ctx=n_text_ctx, n_text_state=n_state, n_text_head=n_text_head,
        n_text_layer=n_text_layer,
    )  # fmt: skip
    model = Whisper(dims)
    with torch.no_grad():
        # TextDecoder.positional_embedding is torch.empty() (uninitialised memory: real checkpoints overwrite
        # it); left as is it can hold NaN/huge values that make the decoder output NaN
        torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
        model.decoder.token_embedding.weight.mul_(10.0)
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch, tmp_path):
    """Fail on any openai-whisper download, and point its cache at an empty folder."""

    def _download(url, *args, **kwargs):
        pytest.fail(f"openai-whisper tried to download {url}")

    monkeypatch.setattr(whisper, "_download", _download)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _save_checkpoint(tmp_path_factory.mktemp("openai-whisper") / "tiny-random.pt")


def _audio(seconds=2.0, dtype=np.float32):
    """A 220 Hz tone in a little noise, 16 kHz mono."""
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * noise).astype(dtype)


def _check_transcript(tr):
    assert isinstance(tr, Transcript)
    assert tr.language == "en"
    assert isinstance(tr.segments, list) and tr.segments, "random weights still give some (garbage) segments"
    assert tr.text == " ".join(s.text for s in tr.segments)
    for s in tr.segments:
        assert isinstance(s, Segment)
        assert type(s.start) is float and type(s.end) is float
        assert 0.0 <= s.start <= s.end <= 2.0 + 0.02
        assert isinstance(s.text, str) and s.text == s.text.strip() and s.text
        assert type(s.avg_logprob) is float and s.avg_logprob <= 0.0
        assert type(s.no_speech_prob) is float and 0.0 <= s.no_speech_prob <= 1.0
        assert isinstance(s.words, list)
        for w in s.words:
            assert isinstance(w, Word)
            assert type(w.start) is float and type(w.end) is float and type(w.probability) is float
            assert s.start - 0.02 <= w.start <= w.end <= s.end + 0.02
            assert isinstance(w.word, str) and w.word == w.word.strip()
            assert 0.0 <= w.probability <= 1.0
    assert tr.words, "word_timestamps=True gave no words"


def test_transcribe_tiny_random_checkpoint(ckpt):
    asr = OpenAIWhisper(SpeechOptions(model=str(ckpt), backend="openai-whisper", language="en", beam_size=1))
    assert asr.name == str(ckpt)
    assert isinstance(asr.model, Whisper) and not asr.model.is_multilingual
    torch.manual_seed(0)  # the fallback temperatures sample
    _check_transcript(asr.transcribe(_audio()))


def test_transcribe_float64_audio_and_beam_search(ckpt):
    # float64 audio used to fail inside whisper's mel filterbank (float32 @ float64); beam_size > 1 takes
    # the beam-search path at temperature 0.
    asr = OpenAIWhisper(SpeechOptions(model=str(ckpt), backend="openai-whisper", language="en", beam_size=2))
    torch.manual_seed(0)
    _check_transcript(asr.transcribe(_audio(dtype=np.float64)))


@pytest.mark.parametrize("name", ["no-such-size", "tiny.en", "turbo"])
def test_missing_checkpoint_is_not_downloaded(name):
    with pytest.raises(ModelNotFound, match="not downloaded") as exc:
        OpenAIWhisper(SpeechOptions(model=name, backend="openai-whisper"))
    assert repr(name) in str(exc.value)


def test_checkpoint_found_in_whisper_cache_by_official_file_name(ckpt, tmp_path):
    # openai-whisper stores "turbo" as large-v3-turbo.pt; its alignment heads (4 x 20) do not fit this
    # checkpoint, so the default heads stay.
    cache = tmp_path / "xdg-cache" / "whisper"
    cache.mkdir(parents=True)
    shutil.copy(ckpt, cache / "large-v3-turbo.pt")
    asr = OpenAIWhisper(SpeechOptions(model="turbo", backend="openai-whisper"))
    assert asr.name == "turbo"
    assert asr.model.alignment_heads.to_dense().all()


def test_official_alignment_heads_set_for_a_checkpoint_given_by_path(tmp_path):
    # a file named like an official checkpoint (tiny.en: 4 text layers x 6 heads) gets that model's heads,
    # which whisper.load_model() only sets when it is given the bare size name
    path = _save_checkpoint(tmp_path / "tiny.en.pt", n_state=48, n_text_head=6, n_text_layer=4)
    asr = OpenAIWhisper(SpeechOptions(model=str(path), backend="openai-whisper"))
    expected = Whisper(asr.model.dims)
    expected.set_alignment_heads(whisper._ALIGNMENT_HEADS["tiny.en"])
    got = asr.model.alignment_heads.to_dense()
    assert torch.equal(got, expected.alignment_heads.to_dense())
    assert 0 < int(got.sum()) < got.numel()


def test_auto_backend_picks_openai_whisper_for_pt_path(ckpt):
    asr = load_transcriber(SpeechOptions(model=str(ckpt)))  # backend="auto"
    assert isinstance(asr, OpenAIWhisper)
    assert load_transcriber(SpeechOptions(model=str(ckpt))) is asr  # cached per options
