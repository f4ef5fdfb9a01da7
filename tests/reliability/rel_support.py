"""Helpers shared by the reliability tests (not a conftest: the repository's tests import ``conftest`` by name).

* ``FakeHTTPServer``: a threaded HTTP server on 127.0.0.1 whose answers a test scripts per path
  (a fake OpenAI-compatible LLM, or one that answers garbage).
* ``openai_chat_reply`` / ``openai_models_reply``: minimal valid OpenAI API bodies.
* ``free_port``, ``chroma_executable``, ``subprocess_env``: plumbing for the subprocess tests.
* ``wait_for``: poll a condition with a deadline (subprocess tests).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chroma_executable() -> str | None:
    candidate = Path(sys.executable).with_name("chroma")
    return str(candidate) if candidate.exists() else shutil.which("chroma")


def subprocess_env(cache_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``cera-rag``/python subprocess: offline, a private cache, no telemetry."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        CERA_CACHE_DIR=str(cache_dir),
        ANONYMIZED_TELEMETRY="False",
        RAGAS_DO_NOT_TRACK="true",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    env.update(extra)
    return env


def wait_for(condition: Callable[[], bool], timeout: float, what: str, proc: Any = None) -> None:
    """Poll ``condition`` every 50 ms; fail with ``what`` after ``timeout`` s or when ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------------------ fake HTTP servers
Reply = tuple[int, str, bytes]  # (status, content type, body)


def json_reply(obj: Any, status: int = 200) -> Reply:
    return status, "application/json", json.dumps(obj).encode()


def openai_models_reply(model: str = "fake-model") -> Reply:
    return json_reply({"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "me"}]})


def openai_chat_reply(content: str, model: str = "fake-model") -> Reply:
    return json_reply(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


class FakeHTTPServer:
    """A local HTTP server answering from ``routes``: ``{path suffix: Reply or callable() -> Reply}``.

    Unknown paths answer 404. ``delay`` seconds are slept before every chat completion (to give an
    interrupting test time to act). ``requests`` counts the requests per matched suffix.
    """

    def __init__(self, routes: dict[str, Reply | Callable[[], Reply]], delay: float = 0.0) -> None:
        self.routes = routes
        self.delay = delay
        self.requests: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                for suffix, reply in outer.routes.items():
                    if path.endswith(suffix):
                        outer.requests[suffix] = outer.requests.get(suffix, 0) + 1
                        if suffix.endswith("completions") and outer.delay:
                            time.sleep(outer.delay)
                        status, ctype, body = reply() if callable(reply) else reply
                        break
                else:
                    status, ctype, body = 404, "application/json", b'{"error": {"message": "no such path"}}'
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _answer  # noqa: N815
            do_POST = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeHTTPServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
