"""LangChain: the pipeline as a ``Runnable``, so it composes with LCEL chains (``analyzer | prompt | llm``).

    >>> from affect_llm.integrations.langchain import AffectAnalyzer
    >>> analyzer = AffectAnalyzer()
    >>> analyzer.invoke("clip.mp4")["label"]
    >>> analyzer.invoke({"text": "No way.", "context": "Monica: I got the job!"})["explanation"]
    >>> analyzer.batch(["a.mp4", "b.wav"])

Input: a media path (``str`` / ``Path``), or a dict with ``media`` or ``text`` and optionally ``context``
(anything :meth:`Pipeline.analyze` takes), ``speaker``, ``explain``, ``question`` (a follow-up question: the output
gets its checked ``answer``, as ``affect-llm chat --ask``). Output: the
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
    (models load once, on first use); ``batch`` gathers each input's cues, then reasons over all of them at once
    (:meth:`Pipeline.reason_many`: the explanations in one batched generation). Options as the CLI's flags, by
    keyword (``AffectAnalyzer(face=False)``: :class:`~affect_llm.config.PipelineOptions`), or a ``config``."""

    def __init__(self, pipeline=None, config=None, **options):
        from ..config import as_config

        if pipeline is not None and (config is not None or options):
            raise ValueError("give a pipeline, or a config or options for one, not both")
        self._pipeline = pipeline
        self._config = None if pipeline is not None else as_config(config, **options)

    @property
    def pipeline(self):
        if self._pipeline is None:
            from ..pipeline import shared_pipeline

            self._pipeline = shared_pipeline(self._config)
        return self._pipeline

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict:
        return self._call_with_config(self._analyze, input, config, run_type="chain", **kwargs)

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[dict]:  # fmt: skip
        return self._batch_with_config(self._analyze_many, inputs, config, return_exceptions=return_exceptions,
                                       run_type="chain", **kwargs)  # fmt: skip

    @staticmethod
    def _checked(input: Any) -> dict:
        if isinstance(input, (str, Path)):
            input = {"media": input}
        if not isinstance(input, dict) or (("media" in input) == ("text" in input)):
            raise InputError('give a media path, or a dict with "media" or "text" (and optionally "context")')
        return input

    @staticmethod
    def _out(a) -> dict:
        return a.model_dump(mode="json", exclude={"timeline", "evidence"})

    def _analyze(self, input: Any) -> dict:
        input = self._checked(input)
        a = self.pipeline.analyze(input.get("media"), text=input.get("text"), context=input.get("context"),
                                  speaker=input.get("speaker"), explain=input.get("explain"))  # fmt: skip
        return self._answered(a, input)

    def _answered(self, a, input: dict) -> dict:
        """The analysis as a dict, with ``"answer"`` when the input asks a ``"question"`` about it (the same
        checked answer as ``affect-llm chat --ask``)."""
        out = self._out(a)
        if input.get("question"):
            out["answer"] = self.pipeline.chat(a, [], str(input["question"]))
        return out

    def _analyze_many(self, inputs: list[Any]) -> list[dict | Exception]:
        """:meth:`Pipeline.analyze_many` over the inputs; an input that fails gets its exception in its place."""
        requests: list[dict | Exception] = []
        checked: list[dict] = []
        for raw in inputs:
            try:
                x = self._checked(raw)
                checked.append(x)
                requests.append({"source": x.get("media"), "text": x.get("text"), "context": x.get("context"),
                                 "speaker": x.get("speaker"), "explain": x.get("explain")})  # fmt: skip
            except InputError as e:
                requests.append(e)
                checked.append({})
        results = self.pipeline.analyze_many(requests)
        return [r if isinstance(r, Exception) else self._answered(r, x) for r, x in zip(results, checked)]
