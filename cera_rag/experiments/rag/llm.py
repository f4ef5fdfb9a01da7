"""OpenAI-compatible LLM endpoints for the generator and the judge, through each framework's own client.

An ``LLMEndpoint`` names a server (``base_url`` ending in ``/v1``), a model and a key. The same
endpoint becomes a LlamaIndex ``OpenAILike`` (``llamaindex_llm``) or a LangChain ``ChatOpenAI``
(``langchain_llm``), so both pipelines send the same request to the same model.

``check_endpoint`` asks ``GET /models`` before any work starts, and ``endpoint_errors`` turns
whatever the ``openai`` client raises mid-run (connection refused, HTTP errors, a body that is
not the OpenAI API) into one ``EndpointError`` whose message says what to do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from cera_rag.experiments.rag.errors import EndpointError

logger = logging.getLogger(__name__)

#: Placeholder key for servers that need none (the local llama-cpp server ignores it).
NO_KEY = "sk-no-key-needed"


@dataclass(frozen=True)
class LLMEndpoint:
    """An OpenAI-compatible chat endpoint and the generation settings used with it.

    Attributes:
        base_url: Server URL ending in ``/v1`` (e.g. ``http://127.0.0.1:8080/v1``).
        model: Model name sent with every request.
        api_key: API key (``$OPENAI_API_KEY`` for remote servers; any string for local ones).
        max_tokens: Completion budget per request.
        temperature: Sampling temperature (0: as deterministic as the server allows).
        timeout: Seconds per request before it counts as failed.
        max_retries: Client-side retries of a failed request.
        json_mode: Ask for ``response_format={"type": "json_object"}`` (servers with JSON grammars,
            such as llama-cpp, then always return parseable JSON).
        local: Whether this is the embedded llama-cpp server.
    """

    base_url: str
    model: str
    api_key: str = NO_KEY
    max_tokens: int = 512
    temperature: float = 0.0
    timeout: float = 300.0
    max_retries: int = 1
    json_mode: bool = False
    local: bool = False

    def describe(self) -> str:
        """``model @ base_url`` for messages and reports (never the key)."""
        return f"{self.model} @ {self.base_url}" + (" (embedded llama-cpp server)" if self.local else "")

    def with_options(self, **changes: Any) -> LLMEndpoint:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def public(self) -> dict[str, Any]:
        """The settings without the key (recorded with results)."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "json_mode": self.json_mode,
            "local": self.local,
        }


def api_key_from_env(explicit: str | None = None) -> str:
    """``explicit``, else ``$OPENAI_API_KEY``, else a placeholder (local servers need none)."""
    return explicit or os.environ.get("OPENAI_API_KEY") or NO_KEY


def _describe_error(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _translate(exc: BaseException, endpoint: LLMEndpoint, what: str) -> EndpointError:
    import openai

    where = endpoint.describe()
    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)) or _is_connection_error(exc):
        return EndpointError(
            f"The {what} LLM endpoint {where} is not reachable ({_describe_error(exc)}). Start the server or "
            "fix --llm-base-url/--judge-base-url; finished rows are saved and a rerun resumes from them."
        )
    if isinstance(exc, openai.AuthenticationError):
        return EndpointError(
            f"The {what} LLM endpoint {where} refused the API key (HTTP 401). Set OPENAI_API_KEY to a valid key."
        )
    if isinstance(exc, openai.NotFoundError):
        return EndpointError(
            f"The {what} LLM endpoint {where} answered 404 ({_describe_error(exc)}): check the model name "
            "(--llm-model/--judge-model) and that the URL ends in /v1."
        )
    if isinstance(exc, openai.APIStatusError):
        return EndpointError(
            f"The {what} LLM endpoint {where} answered HTTP {exc.status_code} ({_describe_error(exc)}). "
            "Finished rows are saved; rerun to resume once the endpoint works."
        )
    return EndpointError(
        f"The {what} LLM endpoint {where} returned something that is not an OpenAI-compatible answer "
        f"({_describe_error(exc)}). Check that --llm-base-url/--judge-base-url point at an OpenAI-compatible "
        "API (the URL usually ends in /v1); finished rows are saved and a rerun resumes from them."
    )


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import httpx
    except ImportError:  # pragma: no cover - openai depends on httpx
        return isinstance(exc, ConnectionError)
    return isinstance(exc, (httpx.ConnectError, httpx.TimeoutException, ConnectionError))


#: Exceptions that mean "the endpoint misbehaved", as opposed to a bug in the caller.
def endpoint_exception_types() -> tuple[type[BaseException], ...]:
    """The exception types ``endpoint_errors`` translates."""
    import openai

    types: list[type[BaseException]] = [openai.OpenAIError, ConnectionError, json.JSONDecodeError]
    try:
        import httpx

        types.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


#: Client packages whose parsing of a response fails with plain TypeError/AttributeError/... on a body
#: that is JSON but no OpenAI answer (``'list' object has no attribute 'choices'``).
_CLIENT_PACKAGES = ("openai", "llama_index.llms.openai", "llama_index.llms.openai_like", "langchain_openai")


def _raised_parsing_a_response(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by an OpenAI client library itself (one of the 3 innermost frames)."""
    if not isinstance(exc, (TypeError, AttributeError, KeyError, IndexError, ValueError)):
        return False
    modules = []
    tb = exc.__traceback__
    while tb is not None:
        modules.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    return any(m == p or m.startswith(p + ".") for m in modules[-3:] for p in _CLIENT_PACKAGES)


@contextlib.contextmanager
def endpoint_errors(endpoint: LLMEndpoint, what: str = "generator") -> Iterator[None]:
    """Turn client errors raised inside the block into an ``EndpointError`` with a clear message.

    Besides the client's own exceptions, a TypeError/AttributeError/... that the OpenAI client
    libraries raise while reading a body that is not an OpenAI answer is translated too.

    Args:
        endpoint: The endpoint being called (named in the message).
        what: ``"generator"`` or ``"judge"``.
    """
    try:
        yield
    except EndpointError:
        raise
    except endpoint_exception_types() as exc:
        raise _translate(exc, endpoint, what) from exc
    except Exception as exc:
        if _raised_parsing_a_response(exc):
            raise _translate(exc, endpoint, what) from exc
        raise


def check_endpoint(endpoint: LLMEndpoint, what: str = "generator", timeout: float = 10.0) -> list[str]:
    """Ask ``GET {base_url}/models`` and return the model ids, or raise a clear ``EndpointError``.

    A model missing from the list only logs a warning: some proxies list a subset.
    """
    import openai

    client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=timeout, max_retries=0)
    try:
        with endpoint_errors(endpoint, what):
            page = client.models.list()
            ids = [str(getattr(m, "id", "")) for m in page.data]
    except (TypeError, AttributeError, ValueError) as exc:  # a body that parses but is no model list
        raise _translate(exc, endpoint, what) from exc
    finally:
        client.close()
    if endpoint.model not in ids:
        logger.warning(
            "%s endpoint %s does not list model %r (it lists %s)", what, endpoint.base_url, endpoint.model, ids
        )
    return ids


def check_answer(text: Any, endpoint: LLMEndpoint, what: str = "generator") -> str:
    """The answer text, or ``EndpointError`` when the endpoint returned no text at all."""
    if not isinstance(text, str):
        raise EndpointError(
            f"The {what} LLM endpoint {endpoint.describe()} returned no text (got {type(text).__name__}); "
            "check that it is an OpenAI-compatible chat endpoint."
        )
    return text


class RequestRecorder:
    """Records the JSON body of every chat request an ``httpx.Client`` sends (``client()``).

    Both pipelines' LLM clients take the recorder's client, so the evaluation can check that
    LlamaIndex and LangChain sent the same request (``chat_request`` keeps what matters).
    """

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def _hook(self, request: Any) -> None:
        if request.url.path.endswith("/chat/completions"):
            try:
                self.bodies.append(json.loads(request.content or b"{}"))
            except ValueError:
                self.bodies.append({"unparsed": True})

    def client(self, timeout: float) -> Any:
        """An ``httpx.Client`` that records its requests."""
        import httpx

        return httpx.Client(timeout=timeout, event_hooks={"request": [self._hook]})

    def take(self) -> list[dict[str, Any]]:
        """The bodies recorded since the last call."""
        out, self.bodies = self.bodies, []
        return out


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """What the model sees of a chat request: messages, model, temperature and the token budget."""
    messages = [{"role": m.get("role"), "content": m.get("content")} for m in body.get("messages", [])]
    budget = body.get("max_tokens", body.get("max_completion_tokens"))
    return {
        "model": body.get("model"),
        "messages": messages,
        "temperature": body.get("temperature"),
        "max_tokens": budget,
    }


def llamaindex_llm(endpoint: LLMEndpoint, context_window: int = 4096, http_client: Any = None) -> Any:
    """A LlamaIndex ``OpenAILike`` chat model for ``endpoint`` (``llama-index-llms-openai-like``)."""
    from llama_index.llms.openai_like import OpenAILike

    extra: dict[str, Any] = {}
    if endpoint.json_mode:
        extra["response_format"] = {"type": "json_object"}
    return OpenAILike(
        model=endpoint.model,
        api_base=endpoint.base_url,
        api_key=endpoint.api_key,
        max_tokens=endpoint.max_tokens,
        temperature=endpoint.temperature,
        timeout=endpoint.timeout,
        max_retries=endpoint.max_retries,
        is_chat_model=True,
        is_function_calling_model=False,
        context_window=context_window,
        additional_kwargs=extra,
        http_client=http_client,
    )


def sends_legacy_max_tokens(base_url: str) -> bool:
    """Whether to send ``max_tokens`` too: for every server but OpenAI's and Azure's own."""
    host = base_url.lower()
    return not any(h in host for h in ("api.openai.com", "openai.azure.com", "azure-api.net"))


def langchain_llm(endpoint: LLMEndpoint, http_client: Any = None) -> Any:
    """A LangChain ``ChatOpenAI`` for ``endpoint`` (``langchain-openai``)."""
    from langchain_openai import ChatOpenAI

    kwargs: dict[str, Any] = {}
    if endpoint.json_mode:
        kwargs["model_kwargs"] = {"response_format": {"type": "json_object"}}
    if sends_legacy_max_tokens(endpoint.base_url):
        # ChatOpenAI sends the budget as ``max_completion_tokens`` only, which llama-cpp-python's server
        # (and other OpenAI-compatible servers) ignore: they then generate until the context is full.
        kwargs["extra_body"] = {"max_tokens": endpoint.max_tokens}
    return ChatOpenAI(
        model=endpoint.model,
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        max_tokens=endpoint.max_tokens,
        temperature=endpoint.temperature,
        timeout=endpoint.timeout,
        max_retries=endpoint.max_retries,
        http_client=http_client,
        **kwargs,
    )
