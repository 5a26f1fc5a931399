"""The LLM backends, each in its own module behind one interface (:class:`~affect_llm.llm.hf.LLMBackend`),
registered here by name: what ``ReasonerOptions.backend`` (``--backend``) chooses.

A backend module defines ``BACKEND = Backend(...)``; a new one is that module plus one line in :data:`MODULES`
(or :func:`register` at run time). Its own options (a server URL, …) are a pydantic model in that module
(:attr:`Backend.options`), given as ``ReasonerOptions.backend_options`` (``--backend-option KEY=VALUE``).
Nothing outside a backend's module knows what it runs on: the reasoner loads through :func:`get`, batch and
``serve`` share one started server through :attr:`Backend.shared`, and the CLI's teardown calls :func:`stop_all`.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from ..config import ReasonerOptions
    from .hf import LLMBackend

#: backend name → the module that defines its ``BACKEND``
MODULES: dict[str, str] = {
    "transformers": "affect_llm.llm.hf",  # in process (torch, peft)
    "vllm": "affect_llm.llm.vllm",  # a vLLM OpenAI-compatible server (prompt_embeds)
    "openai": "affect_llm.llm.openai_chat",  # any OpenAI-compatible chat endpoint (no adapter, no soft prompt)
    "fake": "affect_llm.llm.fake",  # deterministic, no weights: tests and integration checks
}


@dataclass(frozen=True)
class Backend:
    #: the reasoner's model: (options, the adapter folder or None) → a loaded backend (cached by the module)
    load: Callable[["ReasonerOptions", Optional[str]], "LLMBackend"]
    #: the model that answers follow-up questions: the base instruct LLM, without the label-tuned adapter
    chat: Callable[["ReasonerOptions"], "LLMBackend"]
    #: the pydantic model that checks ``ReasonerOptions.backend_options`` (``--backend-option KEY=VALUE``);
    #: None: the backend takes no options
    options: Optional[type] = None
    #: options under which several processes share one model (batch workers): e.g. a started server's URL;
    #: None: each process loads its own
    shared: Optional[Callable[["ReasonerOptions"], dict]] = None
    #: whether ``serve`` loads the model before it accepts requests (a backend that starts a server)
    eager: bool = False
    #: stop whatever the backend started in this process (servers); None: nothing to stop
    stop_all: Optional[Callable[[], None]] = None
    kill_all: Optional[Callable[[], None]] = None
    #: whether the model takes the reasoner's LoRA adapter and soft prompt (trained for the shipped SmolLM2);
    #: False: the base instruct prompts only, the label scores calibrated
    adapters: bool = True


def register(name: str, module: str) -> None:
    """Make ``--backend NAME`` load the ``BACKEND`` of ``module`` (imported when first used)."""
    MODULES[name] = module


def names() -> list[str]:
    return list(MODULES)


def get(name: str) -> Backend:
    from ..errors import InputError

    if name not in MODULES:
        raise InputError(f"unknown LLM backend {name!r}; known: {', '.join(MODULES)}")
    return importlib.import_module(MODULES[name]).BACKEND


def _loaded() -> list[Backend]:
    """The backends whose module this process has imported (only those can have started anything)."""
    return [sys.modules[m].BACKEND for m in MODULES.values() if m in sys.modules and hasattr(sys.modules[m], "BACKEND")]


def stop_all() -> None:
    """Stop what every loaded backend started (the CLI runs it however a command ends)."""
    for b in _loaded():
        if b.stop_all:
            b.stop_all()


def kill_all() -> None:
    """Kill at once what every loaded backend started (a second Ctrl-C while :func:`stop_all` waits)."""
    for b in _loaded():
        if b.kill_all:
            b.kill_all()
