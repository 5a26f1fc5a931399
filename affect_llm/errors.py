"""Typed errors. Stages raise these; the front doors (CLI, server) turn them into one-line messages."""

from __future__ import annotations

from pathlib import Path


class AffectLLMError(Exception):
    """Base class of every error this package raises on purpose."""

    #: process exit code the CLI uses for this error
    exit_code: int = 1

    def one_line(self) -> str:
        return " ".join(str(self).split())


class MediaError(AffectLLMError):
    """A media file that cannot be used: missing, empty, corrupt, unsupported, too long."""

    exit_code = 2

    def __init__(self, path: str | Path, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class MediaTooLong(MediaError):
    """The input is longer than the configured ``max_duration``."""

    def __init__(self, path: str | Path, duration: float, max_duration: float):
        self.duration = duration
        self.max_duration = max_duration
        super().__init__(
            path,
            f"{duration:.1f} s of media is longer than max_duration={max_duration:g} s "
            "(raise it with --max-duration, or cut the clip)",
        )


class ModelNotFound(AffectLLMError):
    """A model is not in the local cache and downloads are off."""

    exit_code = 3


class ModelIntegrityError(AffectLLMError):
    """A fetched model file does not match its pinned checksum."""

    exit_code = 3


class InputError(AffectLLMError):
    """Bad arguments or malformed input other than media (empty text, unknown label set, ...)."""

    exit_code = 2


class BackendError(AffectLLMError):
    """The LLM backend cannot be reached, will not start, or refused a request (e.g. a vLLM server)."""

    exit_code = 4


class MissingExtra(AffectLLMError):
    """An optional dependency a feature needs is not installed (the message names the extra to install)."""

    exit_code = 3


def require(module: str, extra: str, feature: str):
    """``import module``, or a :class:`MissingExtra` saying which extra of affect-llm provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise MissingExtra(f"{feature} needs {top}, which is not installed: pip install 'affect-llm[{extra}]'") from None
