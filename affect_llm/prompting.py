"""Prompt templates (Jinja2) from the repository's ``prompts/`` folder.

The folder ships inside the wheel as ``affect_llm/_prompts``; ``AFFECT_LLM_PROMPTS`` points to another folder
to experiment without touching the package.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import jinja2

_PKG = Path(__file__).resolve().parent


def prompts_dir() -> Path:
    env = os.environ.get("AFFECT_LLM_PROMPTS")
    if env:
        return Path(env)
    for candidate in (_PKG.parent / "prompts", _PKG / "_prompts"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("prompt templates not found (set AFFECT_LLM_PROMPTS)")


@lru_cache(maxsize=4)
def _env(directory: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render(name: str, **variables) -> str:
    return _env(str(prompts_dir())).get_template(name).render(**variables).strip()


def text(name: str) -> str:
    return (prompts_dir() / name).read_text(encoding="utf-8").strip()


#: the LLM reads at most this many earlier utterances (the context model reads them all)
LLM_CONTEXT_UTTERANCES = 8


def dialogue_text(dialogue) -> str | None:
    """The earlier dialogue as the LLM's prompts show it (the last :data:`LLM_CONTEXT_UTTERANCES` turns,
    ``Speaker: text`` each), or None without one. ``dialogue``: a :class:`~affect_llm.data.Dialogue` or None."""
    if not dialogue or not dialogue.utterances:
        return None
    lines = [f"{u.speaker}: {u.text}" for u in dialogue.utterances[-LLM_CONTEXT_UTTERANCES:]]
    return "Earlier in the conversation:\n" + "\n".join(lines)
