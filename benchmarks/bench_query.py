"""Query latency at 100k passages and indexing throughput into Chroma.

Builds an embedded Chroma collection (``ip`` space, made by ``cera_rag.store.open_for_encoder``)
of ``--size`` passages: ``--encode`` shared validation passages are indexed for real through
``cera_rag.store.index_passages`` (embedding + rationale spans in one forward pass, stored in the
record metadata), then repeated with distinct ids until the size is reached (repeats get a tiny
random perturbation so the HNSW graph is not full of exact duplicates, and carry the same stored
spans). Indexing throughput is reported twice: the real indexing of the first passages, and the
upsert alone for the whole collection.

Then, for each of ``--backends`` (the collection is built once, by the first), over ``--queries``
natural questions (held-out phrasings), the latency of:

* ``retrieve``: ``llama_index.retrievers.cera.CERARetriever.retrieve`` (query encode + Chroma
  search + rationale spans of the top-k, read from the index, as ``NodeWithScore`` objects): the
  number the target is about;
* ``spans_at_query_time``: ``cera_rag.store.query(..., stored_spans=False)``: the spans of the
  top-k recomputed by a second forward pass (what a collection indexed without spans costs);
* ``no_spans``: ``cera_rag.store.query(..., rationales=False)``.

    python benchmarks/bench_query.py [--size 100000] [--encode 2000] [--queries 100] [--k 5] \
        [--backends torch,onnx]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from common import default_model, peak_rss_mb, validation_passages, write_result


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--encode", type=int, default=2000, help="Passages indexed for real (the rest repeat).")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--model", default=None)
    ap.add_argument(
        "--backends",
        default="torch",
        help="Comma-separated encoder backends timed on the same collection: torch, onnx, onnx-int8, torch-int8.",
    )
    args = ap.parse_args()
    backends = args.backends.split(",")
    unknown = set(backends) - {"torch", "onnx", "onnx-int8", "torch-int8"}
    if unknown:
        ap.error(f"unknown backends {sorted(unknown)}")

    from llama_index.retrievers.cera import CERARetriever

    from cera_rag import store
    from cera_rag.data.dataset import DataConfig, load_processed
    from cera_rag.data.queries import HELDOUT_TEMPLATES, render
    from cera_rag.model import CERAEncoder

    path = args.model or default_model()

    def load(backend: str) -> CERAEncoder:
        if backend == "torch-int8":
            return CERAEncoder.from_pretrained(path, device="cpu").quantized()
        return CERAEncoder.from_pretrained(path, device="cpu", backend=backend)  # type: ignore[arg-type]

    enc = load(backends[0])
    texts = validation_passages(args.encode)

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        col = store.open_for_encoder(enc, path=tmp, name="bench")
        t0 = time.perf_counter()
        report = store.index_passages(enc, col, [(f"p{i}", t, {"copy": 0}) for i, t in enumerate(texts)])
        index_seconds = time.perf_counter() - t0
        assert report.added == len(texts)
        real = col.get(ids=[f"p{i}" for i in range(len(texts))], include=["embeddings", "metadatas"])
        vectors = np.asarray(real["embeddings"], dtype=np.float32)
        metas = real["metadatas"]

        t0 = time.perf_counter()
        batch = 5000
        n = len(texts)
        while n < args.size:
            m = min(batch, args.size - n)
            idx = np.arange(n, n + m) % len(texts)
            vec = vectors[idx] + rng.normal(0, 0.01, (m, vectors.shape[1])).astype(np.float32)
            vec /= np.linalg.norm(vec, axis=1, keepdims=True)
            col.upsert(
                ids=[f"p{i}" for i in range(n, n + m)],
                embeddings=vec,
                documents=[texts[i] for i in idx],
                metadatas=[
                    {**metas[i], "copy": j // len(texts)} for i, j in zip(idx.tolist(), range(n, n + m), strict=True)
                ],
            )
            n += m
        upsert_seconds = time.perf_counter() - t0
        upserted = max(args.size - len(texts), 1)

        val = load_processed("validation", DataConfig())
        questions = [render(HELDOUT_TEMPLATES[i % 3], ex.prompt) for i, ex in enumerate(val.examples)]
        questions = questions[: args.queries]
        latency: dict[str, dict[str, list[float]]] = {}
        for backend in backends:
            enc = enc if backend == backends[0] else load(backend)
            retriever = CERARetriever(enc, col, similarity_top_k=args.k)
            first = retriever.retrieve(questions[0])
            assert len(first) == args.k and all(n.node.metadata[store.SPANS_KEY] for n in first)
            latency[backend] = {
                "retrieve": time_queries(retriever.retrieve, questions),
                "spans_at_query_time": time_queries(
                    lambda q, enc=enc: store.query(enc, col, q, k=args.k, stored_spans=False), questions
                ),
                "no_spans": time_queries(
                    lambda q, enc=enc: store.query(enc, col, q, k=args.k, rationales=False), questions
                ),
            }
    for backend, lat in latency.items():
        payload = {
            "model": path,
            "backend": backend,
            "indexed_with": backends[0],
            "collection_size": args.size,
            "unique_passages_encoded": len(texts),
            "k": args.k,
            "queries": len(questions),
            "retrieve_ms": percentiles(lat["retrieve"]),
            "spans_at_query_time_ms": percentiles(lat["spans_at_query_time"]),
            "no_spans_ms": percentiles(lat["no_spans"]),
            "index_throughput": {
                "index_passages_per_s": len(texts) / index_seconds,
                "upsert_passages_per_s": upserted / upsert_seconds,
            },
            "peak_rss_mb_all_backends": peak_rss_mb(),
        }
        print(write_result(f"query_{backend}", payload))
        print(backend, {k: payload[k] for k in ("retrieve_ms", "spans_at_query_time_ms", "no_spans_ms")})
    print("index", payload["index_throughput"])


if __name__ == "__main__":
    main()
