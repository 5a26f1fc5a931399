"""affect_llm.analyze("...") tells words from a media path without loading anything."""

from affect_llm import _looks_like_text


def test_abbreviations_and_dotted_words_are_text(tmp_path):
    for s in ["U.S.A", "ok.sure", "I said no.", "Fine", "version 2.0 is out", "e.g. this"]:
        assert _looks_like_text(s), s
    for s in ["clip.mp4", "talk.FLAC", "/data/missing.wav"]:
        assert not _looks_like_text(s), s
    f = tmp_path / "notes.bin"
    f.write_bytes(b"x")
    assert not _looks_like_text(str(f))  # an existing file is a path whatever its name
