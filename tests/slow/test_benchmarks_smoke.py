from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL_DATA_DIR

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not REAL_DATA_DIR.is_dir(), reason=f"shared data not found at {REAL_DATA_DIR}")
def test_benchmarks_run_on_a_tiny_input(tmp_path: Path) -> None:
    out = tmp_path / "results"
    # Its own cache: a test must neither read nor leave the user's cached corpus and Chroma collection.
    env = {**os.environ, "CERA_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--smoke", "--out", str(out)]
    subprocess.run(cmd, check=True, env=env)
    enc = json.loads((out / "bench_encode.json").read_text())
    assert enc["passages"] == 16
    assert set(enc["ratio_to_sentence_transformers"]) >= {
        "cera",
        "cera_with_spans",
        "cera_int8",
        "cera_onnx_with_spans",
        "cera_onnx_int8",
    }
    assert all(v["median"] > 0 for v in enc["passages_per_second"].values())
    # the int8 speed-up depends on the CPU's int8 instructions: every figure records the CPU it ran on
    assert enc["machine"]["cpu_model"] and isinstance(enc["machine"]["int8_instructions"], list)
    query = json.loads((out / "bench_query_torch.json").read_text())
    assert query["unique_passages"] == query["collection_size"] == 300 and query["retrieve_ms"]["p50"] > 0
    assert 0.0 <= query["hnsw_recall@10"] <= 1.0
    # the two-stage target is timed even in a checkout without a trained reader (same architecture)
    assert query["reader_rerank_top20_ms"]["p50"] > 0 and query["reader"]["backend"] == "onnx-int8"
    assert json.loads((out / "bench_query_onnx.json").read_text())["indexed_with"] == "onnx-int8"
    train = json.loads((out / "bench_train_quick.json").read_text())
    assert train["steps_timed"] == 1 and train["peak_rss_mb"] > 0
    summary = (out / "bench_summary.md").read_text()
    assert "retrieve top-5 with stored spans" in summary and "HNSW recall@10" in summary
    assert "retrieve top 20 + reader re-rank" in summary
    assert "`bench_encode.json` | `python benchmarks/bench_encode.py" in summary, "every figure names its command"
    assert enc["machine"]["cpu_model"] in summary, "and the CPU it ran on"
    ray = json.loads((out / "bench_ray_index.json").read_text())
    assert ray["passages"] == 64 and set(ray["runs"]) == {"single_process", "ray_1_worker", "ray_2_workers"}
    assert "Ray indexing" in summary
    reader = json.loads((out / "bench_reader.json").read_text())
    assert reader["questions"] == 3 and set(reader["backends"]) == {"torch", "onnx"}
    assert all(r["rerank_top20_ms"]["p50"] > 0 and r["spans_top5_ms"]["p50"] > 0 for r in reader["backends"].values())
    assert "re-rank top 20" in (out / "bench_summary.md").read_text()
