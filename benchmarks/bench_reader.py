"""Reader latency: re-ranking a question's top 20 passages with evidence spans, and spans for the top 5.

    python benchmarks/bench_reader.py --questions 40 --backends torch,onnx,onnx-int8

For each validation question (held-out phrasing), the candidates are the 20 passages of its
article that BM25 ranks highest (real passages of the length a first stage returns). Timed per
question, after two warm-up questions:

* ``rerank_top20``: ``CERAReader.rerank(question, 20 passages)``: scores, order and evidence spans
  of all 20 in one call (what the LlamaIndex postprocessor / LangChain compressor run);
* ``spans_top5``: ``CERAReader.evidence_spans(question, 5 passages)``: evidence for the top 5
  without re-ranking.

Targets (issue 14): rerank_top20 p50 <= 250 ms through ONNX Runtime, spans_top5 p50 <= 80 ms.
Writes ``results/bench_reader.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from common import load_reader, peak_rss_mb, reader_on, write_result


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def candidates(n_questions: int, top: int = 20) -> list[tuple[str, list[str]]]:
    from cera_rag.data.dataset import load_processed
    from cera_rag.evaluation.retrieval import bm25_run, eval_examples, query_id, query_text

    split = load_processed("validation")
    exs = eval_examples(split, n_questions)
    run = bm25_run(split, "article", "heldout", top_k=top, exs=exs)
    texts = {p.passage_id: p.text for p in split.all_passages()}
    out = []
    for ex in exs:
        ranked = sorted(run[query_id(ex)], key=lambda pid: -run[query_id(ex)][pid])[:top]
        out.append((query_text(ex, "heldout"), [texts[pid] for pid in ranked]))
    return out


def bench(reader: Any, cases: list[tuple[str, list[str]]]) -> dict[str, Any]:
    import warnings

    from cera_rag.model import TruncationWarning

    warnings.filterwarnings("ignore", category=TruncationWarning)
    for q, ps in cases[:2]:  # warm-up (ONNX Runtime allocations, torch kernels)
        reader.rerank(q, ps)
    rerank, spans = [], []
    for q, ps in cases:
        t0 = time.perf_counter()
        reader.rerank(q, ps)
        rerank.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        reader.evidence_spans(q, ps[:5])
        spans.append(1000 * (time.perf_counter() - t0))
    return {
        "rerank_top20_ms": {
            "p50": statistics.median(rerank),
            "p95": _percentile(rerank, 0.95),
            "mean": statistics.fmean(rerank),
        },
        "spans_top5_ms": {
            "p50": statistics.median(spans),
            "p95": _percentile(spans, 0.95),
            "mean": statistics.fmean(spans),
        },
        "passages_per_second_rerank": 20 * len(cases) / (sum(rerank) / 1000),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", default=None, help="CERAReader checkpoint (default: checkpoints/cera-reader, else an untrained one)."
    )
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--backends", default="torch,onnx,onnx-int8")
    ap.add_argument("--name", default="reader")
    args = ap.parse_args()

    cases = candidates(args.questions)
    results: dict[str, Any] = {}
    base, model = load_reader(args.model)
    for backend in args.backends.split(","):
        reader = reader_on(base, backend)
        results[backend] = bench(reader, cases)
        r = results[backend]
        print(
            f"{backend:10s} rerank top 20 p50 {r['rerank_top20_ms']['p50']:.0f} ms "
            f"(p95 {r['rerank_top20_ms']['p95']:.0f}), spans top 5 p50 {r['spans_top5_ms']['p50']:.0f} ms"
        )
    path = write_result(
        args.name,
        {
            "model": model,
            "layers": int(base.model.config.num_hidden_layers),
            "max_length": base.config.max_length,
            "questions": len(cases),
            "candidates_per_question": 20,
            "backends": results,
            "targets": {"rerank_top20_p50_ms_onnx": 250, "spans_top5_p50_ms": 80},
            "peak_rss_mb": peak_rss_mb(),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
