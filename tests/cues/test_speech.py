"""ASR on real speech (jfk.flac) and espeak-ng speech, with the embedded faster-whisper tiny.en."""

import re

import numpy as np
import pytest

from affect_llm import media
from affect_llm.config import SpeechOptions
from affect_llm.cues import speech
from tests._synth import espeak, shared_media

pytestmark = pytest.mark.slow

JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", s.lower()).split())


def test_jfk_wer_and_word_timestamps():
    import jiwer

    audio = media.load_audio(shared_media() / "jfk.flac")
    tr = speech.transcribe(audio.samples)
    wer = jiwer.wer(_norm(JFK), _norm(tr.text))
    assert wer <= 0.10, (wer, tr.text)
    assert tr.language == "en"
    words = tr.words
    assert len(words) >= 20
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= audio.duration + 0.5 for w in words)
    assert all(0 <= w.probability <= 1 for w in words)
    for s in tr.segments:
        assert s.no_speech_prob is not None and s.avg_logprob is not None
        assert s.words[0].start >= s.start - 0.05 and s.words[-1].end <= s.end + 0.05
    cues = speech.speech_cues(tr)
    assert [c.id for c in cues] == [f"S{i}" for i in range(1, len(tr.segments) + 1)]
    assert "ASR confidence" in cues[0].text and 0 < cues[0].value["confidence"] <= 1


def test_espeak_sentence(tmp_path):
    import jiwer

    text = "The weather is lovely today and I am going for a long walk in the park."
    wav = espeak(text, tmp_path / "s.wav", speed=140)
    tr = speech.transcribe(media.load_audio(wav).samples)
    assert jiwer.wer(_norm(text), _norm(tr.text)) <= 0.25, tr.text


def test_silence_and_noise_give_no_transcript():
    sr = 16_000
    assert speech.transcribe(np.zeros(3 * sr, np.float32)).segments == []
    rng = np.random.default_rng(0)
    noise = (0.01 * rng.standard_normal(3 * sr)).astype(np.float32)
    assert speech.transcribe(noise).segments == []


def test_transcriber_is_cached_per_options():
    a = speech.load_transcriber(SpeechOptions())
    assert speech.load_transcriber(SpeechOptions()) is a
    assert speech.load_transcriber(SpeechOptions(beam_size=1)) is not a
