"""Text clean-up for transcripts and dataset text (MELD's CSVs hold cp1252 bytes read as Latin-1)."""

from __future__ import annotations

import re
import unicodedata

_C1 = re.compile("[\u0080-\u009f]")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-", "\u2026": "..."})


def _cp1252(m: re.Match) -> str:
    try:
        return bytes([ord(m.group(0))]).decode("cp1252")
    except UnicodeDecodeError:
        return ""


def normalize(text: str) -> str:
    """C1 control characters decoded as the cp1252 bytes they were (``\\x92`` -> ``'``), typographic quotes and
    dashes made ASCII, Unicode NFKC, whitespace collapsed."""
    text = _C1.sub(_cp1252, text)
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    return " ".join(text.split())
