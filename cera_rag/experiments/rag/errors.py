"""Errors of the RAG layer: each says what went wrong and what to do, without a stack trace."""

from __future__ import annotations

from cera_rag.errors import CERAError


class EndpointError(CERAError, RuntimeError):
    """An OpenAI-compatible LLM endpoint is down, refuses the request or answers garbage."""


class LocalLLMError(CERAError, RuntimeError):
    """The embedded llama-cpp-python server could not be found, started or reached."""
