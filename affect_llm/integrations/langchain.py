"""LangChain: the pipeline as a ``Runnable``, so it composes with LCEL chains (``analyzer | prompt | llm``).

    >>> from affect_llm.integrations.langchain import AffectAnalyzer
    >>> analyzer = AffectAnalyzer()
    >>> analyzer.invoke("clip.mp4")["label"]
    >>> analyzer.invoke({"text": "No way.", "context": "Monica: I got the job!"})["explanation"]
    >>> analyzer.batch(["a.mp4", "b.wav"])

Input: a media path (``str`` / ``Path``), or a dict with ``media`` or ``text`` and optionally ``context``
(anything :meth:`Pipeline.analyze` takes), ``speaker``, ``explain``. Output: the
:class:`~affect_llm.types.Analysis` as a JSON-ready dict (label, probabilities, distributions, explanation,
cited_cues, cues, transcript, missing_modalities, notes, timings …).

Against a running ``affect-llm serve``, LangChain's own OpenAI chat model works unmodified::

    from langchain_openai import ChatOpenAI
    chat = ChatOpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY", model="affect-llm")
    chat.invoke("I can't believe you did this!").content      # the explanation
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from ..errors import InputError


class AffectAnalyzer(Runnable[Any, dict]):
    """The pipeline as a LangChain Runnable (see the module docstring). One pipeline is shared by every call
    (models load once, on first use); ``batch`` runs inputs on LangChain's thread pool, taking turns on the LLM."""

    def __init__(self, pipeline=None, config=None):
        self._pipeline = pipeline
        self._config = config

    @property
    def pipeline(self):
        if self._pipeline is None:
            from ..pipeline import Pipeline

            self._pipeline = Pipeline(self._config)
        return self._pipeline

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict:
        return self._call_with_config(self._analyze, input, config, run_type="chain", **kwargs)

    def _analyze(self, input: Any) -> dict:
        if isinstance(input, (str, Path)):
            input = {"media": input}
        if not isinstance(input, dict) or (("media" in input) == ("text" in input)):
            raise InputError('give a media path, or a dict with "media" or "text" (and optionally "context")')
        a = self.pipeline.analyze(input.get("media"), text=input.get("text"), context=input.get("context"),
                                  speaker=input.get("speaker"), explain=input.get("explain"))  # fmt: skip
        return a.model_dump(mode="json", exclude={"timeline", "evidence"})
