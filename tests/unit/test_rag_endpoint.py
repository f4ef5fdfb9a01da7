"""OpenAI-compatible endpoints: same prompt on the wire for both frameworks, clear errors for dead or garbage ones.

A tiny in-process HTTP server plays the endpoint (``FakeOpenAI``; other ``test_rag_*`` modules import it).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openai")

from cera_rag.experiments.rag.errors import EndpointError  # noqa: E402
from cera_rag.experiments.rag.llm import LLMEndpoint, check_answer, check_endpoint, endpoint_errors  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class FakeOpenAI:
    """A loopback OpenAI-compatible server: ``mode`` is ``ok``, ``garbage`` (HTML) or ``error`` (HTTP 500).

    ``answer`` is the reply's content, or a function of the request body that returns it.
    """

    def __init__(self, answer: Any = "Pain was significantly lower with aspirin.", mode: str = "ok") -> None:
        self.answer = answer
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _reply(self, payload: dict[str, Any]) -> None:
                if owner.mode == "garbage":
                    self._send(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
                elif owner.mode == "error":
                    self._send(500, b'{"error": {"message": "model crashed"}}')
                else:
                    self._send(200, json.dumps(payload).encode())

            def do_GET(self) -> None:
                self._reply({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                owner.requests.append({"path": self.path, "body": body})
                self._reply(
                    {
                        "id": "c1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", "fake-model"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {
                                    "role": "assistant",
                                    "content": owner.answer(body) if callable(owner.answer) else owner.answer,
                                },
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def endpoint(self, **kw: Any) -> LLMEndpoint:
        return LLMEndpoint(base_url=self.base_url, model="fake-model", max_tokens=77, timeout=10, max_retries=0, **kw)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def fake_openai():
    with FakeOpenAI() as server:
        yield server


# ------------------------------------------------------------------------------- same prompt
def _passages() -> list[tuple[str, str]]:
    return [
        ("PMC1:0-40", "Pain score was significantly lower with aspirin (p < 0.001)."),
        ("PMC1:41-90", "Patients   were randomized to aspirin or placebo."),
    ]


def _llama_retriever() -> Any:
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, TextNode

    class Fixed(BaseRetriever):
        def _retrieve(self, query_bundle: Any) -> list[NodeWithScore]:
            return [
                NodeWithScore(node=TextNode(id_=i, text=t, metadata={"article_id": "PMC1", "cera_id": i}), score=1.0)
                for i, t in _passages()
            ]

    return Fixed()


def _langchain_retriever() -> Any:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    class Fixed(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
            return [
                Document(page_content=t, id=i, metadata={"article_id": "PMC1", "cera_id": i}) for i, t in _passages()
            ]

    return Fixed()


def test_llamaindex_and_langchain_send_the_same_prompt_and_budget(fake_openai: FakeOpenAI) -> None:
    pytest.importorskip("llama_index.llms.openai_like")
    pytest.importorskip("langchain_openai")
    from cera_rag.experiments.rag import pipelines
    from cera_rag.experiments.rag.llm import langchain_llm, llamaindex_llm

    ep = fake_openai.endpoint()
    question = "Did aspirin lower pain compared with placebo?"
    engine = pipelines.build_llamaindex_engine(_llama_retriever(), llamaindex_llm(ep))
    li = pipelines.answer_llamaindex(engine, question)
    chain = pipelines.build_langchain_chain(_langchain_retriever(), langchain_llm(ep))
    lc = pipelines.answer_langchain(chain, question)

    assert len(fake_openai.requests) == 2
    li_body, lc_body = (r["body"] for r in fake_openai.requests)
    assert li_body["messages"] == lc_body["messages"]
    expected = pipelines.RAG_PROMPT.format(
        context_str=pipelines.format_context([t for _, t in _passages()]), query_str=question
    )
    assert li_body["messages"] == [{"role": "user", "content": expected}]
    assert "article_id" not in expected  # metadata hidden from the LLM
    # Both ask for the same model, temperature and completion budget, as ``max_tokens`` (which
    # llama-cpp's server reads; ChatOpenAI alone would send only ``max_completion_tokens``).
    for body in (li_body, lc_body):
        assert body["model"] == "fake-model" and body["max_tokens"] == 77 and body["temperature"] == 0.0
    assert li.answer == lc.answer == fake_openai.answer
    assert li.context_ids == lc.context_ids == [i for i, _ in _passages()]
    assert li.contexts == lc.contexts


# ----------------------------------------------------------------------------- clear errors
def test_dead_endpoint_gives_a_clear_error() -> None:
    ep = LLMEndpoint(base_url=f"http://127.0.0.1:{closed_port()}/v1", model="m", timeout=5, max_retries=0)
    with pytest.raises(EndpointError, match="not reachable") as info:
        check_endpoint(ep)
    assert "Start the server" in str(info.value) and ep.base_url in str(info.value)


def test_garbage_endpoint_gives_a_clear_error() -> None:
    with FakeOpenAI(mode="garbage") as server, pytest.raises(EndpointError, match="not an OpenAI-compatible"):
        check_endpoint(server.endpoint())


def test_failing_endpoint_mid_run_gives_a_clear_error() -> None:
    pytest.importorskip("langchain_openai")
    from cera_rag.experiments.rag.llm import langchain_llm

    with FakeOpenAI(mode="error") as server:
        ep = server.endpoint()
        with pytest.raises(EndpointError, match="HTTP 500"), endpoint_errors(ep, "judge"):
            langchain_llm(ep).invoke("hello")


def test_empty_answer_is_an_endpoint_error(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(EndpointError, match="no text"):
        check_answer(None, fake_openai.endpoint())


@pytest.mark.slow  # a real CLI process that builds the synthetic split (about a minute on 2 busy cores)
def test_cli_with_dead_endpoint_prints_a_clear_error_and_no_traceback(synthetic_data_dir: Path, tmp_path: Path) -> None:
    """The real CLI: the generator is down, so it exits 2 with one clear line and leaves a resumable folder."""
    import os

    out = tmp_path / "out"
    url = f"http://127.0.0.1:{closed_port()}/v1"
    cmd = [
        sys.executable, str(ROOT / "evals" / "run_ragas.py"), "--data-dir", str(synthetic_data_dir),
        "--limit", "1", "--systems", "contriever-config", "--llm-base-url", url, "--llm-model", "m",
        "--out", str(out), "--store-dir", str(tmp_path / "chroma"),
    ]  # fmt: skip
    env = {**os.environ, "CERA_CACHE_DIR": os.environ["CERA_CACHE_DIR"], "OPENAI_API_KEY": "sk-test"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error: The generator LLM endpoint" in proc.stderr and "not reachable" in proc.stderr
    assert url in proc.stderr
    assert (out / "ragas_summary.md").exists()  # partial (empty) result written, resumable


@pytest.mark.parametrize("framework", ["llamaindex", "langchain"])
def test_garbage_answer_mid_run_gives_a_clear_error(framework: str) -> None:
    pytest.importorskip("llama_index.llms.openai_like")
    pytest.importorskip("langchain_openai")
    from cera_rag.experiments.rag import pipelines
    from cera_rag.experiments.rag.llm import langchain_llm, llamaindex_llm

    with FakeOpenAI(mode="garbage") as server:
        ep = server.endpoint()
        if framework == "llamaindex":
            engine = pipelines.build_llamaindex_engine(_llama_retriever(), llamaindex_llm(ep))
            run = lambda: pipelines.answer_llamaindex(engine, "q")  # noqa: E731
        else:
            chain = pipelines.build_langchain_chain(_langchain_retriever(), langchain_llm(ep))
            run = lambda: pipelines.answer_langchain(chain, "q")  # noqa: E731
        with pytest.raises(EndpointError, match="not an OpenAI-compatible answer"), endpoint_errors(ep):
            run()
