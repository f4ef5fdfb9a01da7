"""Query latency at 100k passages and indexing throughput into Chroma.

Builds an embedded Chroma collection (``ip`` space) of ``--size`` passages: the shared
validation (and, if needed, train) passages, encoded once for real and repeated with distinct ids
until the size is reached (repeats get a tiny random perturbation so the HNSW graph is not full of
exact duplicates). Indexing throughput is reported twice: real encoding + upsert of the first
``--encode`` passages, and upsert alone for the whole collection. Then ``retrieve`` latency
(query encode + Chroma search + rationale spans of the top-k) is timed over ``--queries`` natural
questions: p50/p95/max.

    python benchmarks/bench_query.py [--size 100000] [--queries 100] [--k 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from common import default_model, peak_rss_mb, validation_passages, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--encode", type=int, default=2000, help="Passages encoded for real (the rest repeat).")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--model", default=None)
    ap.add_argument("--int8", action="store_true", help="Encode queries and spans with the int8 path.")
    args = ap.parse_args()

    import chromadb

    from cera_rag.data.dataset import DataConfig, load_processed
    from cera_rag.data.queries import HELDOUT_TEMPLATES, render
    from cera_rag.model import CERAEncoder
    from cera_rag.spans import spans_to_json

    path = args.model or default_model()
    enc = CERAEncoder.from_pretrained(path, device="cpu")
    if args.int8:
        enc = enc.quantized()
    texts = validation_passages(args.encode)
    t0 = time.perf_counter()
    vectors = enc.encode_passages(texts)
    encode_seconds = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        client = chromadb.PersistentClient(path=tmp)
        col = client.create_collection("bench", metadata={"hnsw:space": "ip"}, embedding_function=None)
        t0 = time.perf_counter()
        batch = 5000
        n = 0
        while n < args.size:
            m = min(batch, args.size - n)
            idx = np.arange(n, n + m) % len(texts)
            vec = vectors[idx]
            if n >= len(texts):
                vec = vec + rng.normal(0, 0.01, vec.shape).astype(np.float32)
                vec /= np.linalg.norm(vec, axis=1, keepdims=True)
            col.upsert(
                ids=[f"p{i}" for i in range(n, n + m)],
                embeddings=vec,
                documents=[texts[i] for i in idx],
                metadatas=[{"copy": int(i // len(texts))} for i in range(n, n + m)],
            )
            n += m
        upsert_seconds = time.perf_counter() - t0

        val = load_processed("validation", DataConfig())
        questions = [render(HELDOUT_TEMPLATES[i % 3], ex.prompt) for i, ex in enumerate(val.examples)]
        questions = questions[: args.queries]
        latencies = []
        for i, q in enumerate([questions[0], *questions]):
            t0 = time.perf_counter()
            qv = enc.encode_queries([q])
            res = col.query(query_embeddings=qv, n_results=args.k, include=["documents", "distances"])
            spans = enc.rationale_spans_batch(q, res["documents"][0])
            _ = [spans_to_json(s) for s in spans]
            if i:  # the first query warms up
                latencies.append(1000 * (time.perf_counter() - t0))
    lat = np.array(latencies)
    payload = {
        "model": path,
        "int8": args.int8,
        "collection_size": args.size,
        "unique_passages_encoded": len(texts),
        "k": args.k,
        "queries": len(latencies),
        "retrieve_ms": {
            "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95)),
            "max": float(lat.max()),
        },
        "index_throughput": {
            "encode_passages_per_s": len(texts) / encode_seconds,
            "upsert_passages_per_s": args.size / upsert_seconds,
            "encode_and_upsert_passages_per_s": 1 / (encode_seconds / len(texts) + upsert_seconds / args.size),
        },
        "peak_rss_mb": peak_rss_mb(),
    }
    print(write_result("query" + ("_int8" if args.int8 else ""), payload))
    print(payload["retrieve_ms"], payload["index_throughput"])


if __name__ == "__main__":
    main()
