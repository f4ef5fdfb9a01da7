"""Query latency over the real corpus: >= 100k unique passages with stored spans, HNSW recall, reader re-rank.

The collection holds every shared article split in both passage modes, de-duplicated
(``benchmarks/corpus.py``: 154,297 unique passages on the shared data; ``--limit`` takes the first
N of them), encoded once (embeddings and attention spans in one pass, ``--index-backend``, default
``onnx-int8``: the fastest encoder path with spans) and cached with its embedded Chroma collection,
so a re-run takes minutes. Then, over ``--queries`` validation questions (held-out phrasings), per
query-encoder backend of ``--backends``:

* ``retrieve``: ``llama_index.retrievers.cera.CERARetriever.retrieve`` top-``k``: query encode +
  HNSW search + the spans stored with each hit, as ``NodeWithScore`` objects (target p50 <= 30 ms);
* ``no_spans`` / ``spans_at_query_time``: ``store.query`` without spans, and with the spans of the
  top-k recomputed (a collection indexed without spans);
* ``reader_rerank_top20``: retrieve the top 20 (stored spans) and ``CERAReader.rerank`` them with
  evidence spans, end to end (``--reader-backend``, default ``onnx-int8``; target p50 <= 300 ms).

HNSW recall@10: Chroma's top 10 against exact search (all vectors, numpy dot product) for the
same query vectors (target >= 0.95).

    python benchmarks/bench_query.py [--limit N] [--queries 100] [--k 5] [--backends torch,onnx]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import default_model, load_reader, peak_rss_mb, reader_on, write_result
from corpus import chroma_collection, encoded, load_encoder, unique_passages


def percentiles(values: list[float]) -> dict[str, float]:
    lat = np.array(values)
    return {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)), "max": float(lat.max())}


def time_queries(fn: Callable[[str], Any], questions: list[str]) -> list[float]:
    fn(questions[0])  # warm-up
    out = []
    for q in questions:
        t0 = time.perf_counter()
        fn(q)
        out.append(1000 * (time.perf_counter() - t0))
    return out


def hnsw_recall(col: Any, vectors: np.ndarray, ids: list[str], queries: np.ndarray, k: int = 10) -> float:
    """Mean share of the exact top-k (dot product over every vector) that Chroma's HNSW search returns."""
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :k]
    found = col.query(query_embeddings=queries, n_results=k, include=[])["ids"]
    return float(np.mean([len({ids[j] for j in row} & set(got)) / k for row, got in zip(exact, found, strict=True)]))


def questions_of_validation(n: int) -> list[str]:
    from cera_rag.data.dataset import DataConfig, load_processed
    from cera_rag.data.queries import HELDOUT_TEMPLATES, render

    val = load_processed("validation", DataConfig())
    return [render(HELDOUT_TEMPLATES[i % 3], ex.prompt) for i, ex in enumerate(val.examples)][:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="First N unique passages (default: all).")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--model", default=None)
    ap.add_argument("--index-backend", default="onnx-int8")
    ap.add_argument("--backends", default="torch,onnx", help="Query-encoder backends timed on the collection.")
    ap.add_argument(
        "--reader",
        default=None,
        help="CERAReader checkpoint (default checkpoints/cera-reader, else an untrained reader: same latency).",
    )
    ap.add_argument("--reader-backend", default="onnx-int8")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*are truncated.*")

    from llama_index.retrievers.cera import CERARetriever

    from cera_rag import store

    model = args.model or default_model()
    passages = unique_passages(limit=args.limit)
    index_encoder = load_encoder(model, args.index_backend)
    t0 = time.perf_counter()
    vectors, spans_json, info = encoded(index_encoder, args.index_backend, model, passages)
    col = chroma_collection(index_encoder, Path(info["cache"]), passages, vectors, spans_json)
    build_seconds = time.perf_counter() - t0
    assert col.count() == len(passages)
    ids = [pid for pid, _ in passages]

    questions = questions_of_validation(args.queries)
    recall = hnsw_recall(col, vectors, ids, np.asarray(index_encoder.encode_queries(questions), dtype=np.float32))

    base_reader, reader_model = load_reader(args.reader)
    reader = reader_on(base_reader, args.reader_backend)

    for backend in args.backends.split(","):
        enc = index_encoder if backend == args.index_backend else load_encoder(model, backend)
        retriever = CERARetriever(enc, col, similarity_top_k=args.k)
        first = retriever.retrieve(questions[0])
        assert len(first) == args.k and all(n.node.metadata[store.SPANS_KEY] for n in first), "stored spans"

        def rerank(q: str, enc: Any = enc) -> Any:
            hits = store.query(enc, col, q, k=20)
            return reader.rerank(
                q, [h.text for h in hits], first_stage_scores=[h.score for h in hits], fusion_weight=1.0
            )

        payload = {
            "model": model,
            "backend": backend,
            "indexed_with": args.index_backend,
            "unique_passages": len(passages),
            "collection_size": col.count(),
            "corpus": "every shared article (train + validation) split as sentences and as 50-word windows, "
            "distinct texts once",
            "k": args.k,
            "queries": len(questions),
            "retrieve_ms": percentiles(time_queries(retriever.retrieve, questions)),
            "no_spans_ms": percentiles(
                time_queries(lambda q, enc=enc: store.query(enc, col, q, k=args.k, rationales=False), questions)
            ),
            "spans_at_query_time_ms": percentiles(
                time_queries(lambda q, enc=enc: store.query(enc, col, q, k=args.k, stored_spans=False), questions)
            ),
            "reader_rerank_top20_ms": percentiles(time_queries(rerank, questions)),
            "reader": {"model": reader_model, "backend": args.reader_backend},
            "hnsw_recall@10": recall,
            "corpus_build": {**info, "seconds_this_run": build_seconds},
            "targets": {"retrieve_p50_ms": 30, "reader_rerank_top20_p50_ms": 300, "hnsw_recall@10": 0.95},
            "peak_rss_mb": peak_rss_mb(),
        }
        print(write_result(f"query_{backend}", payload))
        print(backend, {k: payload[k] for k in ("retrieve_ms", "reader_rerank_top20_ms", "hnsw_recall@10")})


if __name__ == "__main__":
    main()
