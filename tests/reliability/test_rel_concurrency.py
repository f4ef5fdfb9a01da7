"""Concurrency: one encoder and one collection shared by threads and asyncio tasks give the serial results;
a real ``chroma run`` server loses nothing under 1,000 concurrent upserts and queries."""

from __future__ import annotations

import asyncio
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rel_support import chroma_executable, free_port

from cera_rag import store
from cera_rag.model import CERAEncoder
from cera_rag.spans import parse_spans

SUBJECTS = ["aspirin", "metformin", "insulin", "vitamin d", "placebo", "the control group"]
OUTCOMES = ["pain score", "headache duration", "blood pressure", "mortality risk", "insulin dose"]
VERBS = ["was significantly lower with", "was reduced with", "was higher with", "did not differ with"]
CORPUS = [
    (f"c{i}", f"The {o} {v} {s} than placebo at {w} weeks.", {"article_id": f"a{i % 7}", "n": i})
    for i, (o, v, s, w) in enumerate(
        (o, v, s, w) for o in OUTCOMES for v in VERBS for s in SUBJECTS[:3] for w in (6, 12)
    )
]
QUERIES = [f"Does {s} lower {o} compared with placebo?" for s in SUBJECTS for o in OUTCOMES[:3]][:16]


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> CERAEncoder:
    return store.load_encoder(tiny_bert_dir)


@pytest.fixture(scope="module")
def coll(encoder: CERAEncoder, tmp_path_factory: pytest.TempPathFactory) -> Any:
    c = store.open_for_encoder(encoder, path=tmp_path_factory.mktemp("chroma"), name="rel-concurrency")
    store.index_passages(encoder, c, CORPUS)
    assert c.count() == len(CORPUS)
    return c


def _key(ids: list[str], scores: list[float], spans: list[list[dict]]) -> tuple:
    return (
        tuple(ids),
        tuple(round(float(s), 5) for s in scores),
        tuple(tuple((d["start"], d["end"]) for d in x) for x in spans),
    )


def _store_result(encoder: CERAEncoder, coll: Any, q: str) -> tuple:
    hits = store.query(encoder, coll, q, k=5)
    return _key([h.id for h in hits], [h.score for h in hits], [h.spans for h in hits])


def _nodes_result(nodes: list[Any]) -> tuple:
    return _key(
        [n.node.node_id for n in nodes], [n.score for n in nodes], [parse_spans(n.node.metadata) for n in nodes]
    )


def _docs_result(docs: list[Any]) -> tuple:
    return _key([d.id for d in docs], [d.metadata["cera_score"] for d in docs], [parse_spans(d.metadata) for d in docs])


def _assert_same(got: tuple, want: tuple) -> None:
    assert got[0] == want[0] and got[2] == want[2]
    np.testing.assert_allclose(got[1], want[1], atol=2e-5)


def test_eight_threads_query_like_serial(encoder: CERAEncoder, coll: Any) -> None:
    serial = {q: _store_result(encoder, coll, q) for q in QUERIES}
    start = threading.Barrier(8)

    def worker(offset: int) -> list[tuple[str, tuple]]:
        start.wait(timeout=60)  # all eight threads query at once
        out = []
        for j in range(len(QUERIES)):
            q = QUERIES[(offset + j) % len(QUERIES)]
            out.append((q, _store_result(encoder, coll, q)))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(worker, range(8)) for r in rs]
    assert len(results) == 8 * len(QUERIES)
    for q, got in results:
        _assert_same(got, serial[q])


def test_threads_mixing_store_llamaindex_and_langchain(encoder: CERAEncoder, coll: Any) -> None:
    from langchain_cera import CERARetriever as LCRetriever
    from llama_index.retrievers.cera import CERARetriever as LIRetriever

    li = LIRetriever(encoder, coll, similarity_top_k=5)
    lc = LCRetriever(encoder=encoder, collection=coll, k=5)
    serial = {q: _store_result(encoder, coll, q) for q in QUERIES}
    calls = [(kind, q) for q in QUERIES for kind in ("store", "llamaindex", "langchain")]
    random.Random(0).shuffle(calls)

    def run(call: tuple[str, str]) -> tuple[str, tuple]:
        kind, q = call
        if kind == "store":
            return q, _store_result(encoder, coll, q)
        if kind == "llamaindex":
            return q, _nodes_result(li.retrieve(q))
        return q, _docs_result(lc.invoke(q))

    with ThreadPoolExecutor(8) as pool:
        for q, got in pool.map(run, calls):
            _assert_same(got, serial[q])


def test_eight_asyncio_tasks_llamaindex_aretrieve(encoder: CERAEncoder, coll: Any) -> None:
    from llama_index.retrievers.cera import CERARetriever as LIRetriever

    retriever = LIRetriever(encoder, coll, similarity_top_k=5)
    serial = {q: _nodes_result(retriever.retrieve(q)) for q in QUERIES}

    async def main() -> list[tuple]:
        out = []
        for batch in (QUERIES[:8], QUERIES[8:16]):  # 8 tasks in flight at a time
            out += await asyncio.gather(*(retriever.aretrieve(q) for q in batch))
        return [_nodes_result(nodes) for nodes in out]

    for q, got in zip(QUERIES, asyncio.run(main()), strict=True):
        _assert_same(got, serial[q])


def test_eight_asyncio_tasks_langchain_ainvoke(encoder: CERAEncoder, coll: Any) -> None:
    from langchain_cera import CERARetriever as LCRetriever

    retriever = LCRetriever(encoder=encoder, collection=coll, k=5)
    serial = {q: _docs_result(retriever.invoke(q)) for q in QUERIES}

    async def main() -> list[tuple]:
        out = []
        for batch in (QUERIES[:8], QUERIES[8:16]):
            out += await asyncio.gather(*(retriever.ainvoke(q) for q in batch))
        return [_docs_result(docs) for docs in out]

    for q, got in zip(QUERIES, asyncio.run(main()), strict=True):
        _assert_same(got, serial[q])


def test_asyncio_tasks_and_threads_together(encoder: CERAEncoder, coll: Any) -> None:
    """Async retrievers on the event loop while plain threads query the same encoder."""
    from langchain_cera import CERARetriever as LCRetriever
    from llama_index.retrievers.cera import CERARetriever as LIRetriever

    li = LIRetriever(encoder, coll, similarity_top_k=5)
    lc = LCRetriever(encoder=encoder, collection=coll, k=5)
    serial = {q: _store_result(encoder, coll, q) for q in QUERIES[:8]}

    async def main() -> tuple[list[Any], list[Any]]:
        nodes = asyncio.gather(*(li.aretrieve(q) for q in QUERIES[:8]))
        docs = asyncio.gather(*(lc.ainvoke(q) for q in QUERIES[:8]))
        return await nodes, await docs

    with ThreadPoolExecutor(4) as pool:
        background = [pool.submit(_store_result, encoder, coll, q) for q in QUERIES[:8] * 2]
        nodes, docs = asyncio.run(main())
        for q, fut in zip(QUERIES[:8] * 2, background, strict=True):
            _assert_same(fut.result(timeout=120), serial[q])
    for q, n, d in zip(QUERIES[:8], nodes, docs, strict=True):
        _assert_same(_nodes_result(n), serial[q])
        _assert_same(_docs_result(d), serial[q])


def test_concurrent_indexing_of_overlapping_batches_keeps_one_copy(encoder: CERAEncoder, tmp_path: Path) -> None:
    """Eight threads index overlapping slices of one corpus into one collection: every id exactly once."""
    c = store.open_for_encoder(encoder, path=tmp_path / "chroma", name="rel-concurrent-index")
    slices = [CORPUS[i * 10 : i * 10 + 40] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        reports = list(pool.map(lambda s: store.index_passages(encoder, c, s, batch_size=8), slices))
    ids = sorted({r[0] for s in slices for r in s})
    assert c.count() == len(ids)
    got = c.get(ids=ids, include=["documents"])
    assert sorted(got["ids"]) == ids
    texts = {r[0]: r[1] for r in CORPUS}
    assert all(texts[i] == d for i, d in zip(got["ids"], got["documents"], strict=True))
    assert sum(r.added for r in reports) >= len(ids)


# ------------------------------------------------------------------------------------ chroma server
@pytest.fixture()
def chroma_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    exe = chroma_executable()
    if exe is None:
        pytest.skip("the `chroma` command is not installed (pip install 'cera-rag[chroma]')")
    import chromadb
    from chromadb.config import Settings

    port = free_port()
    log_path = tmp_path / "chroma.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [exe, "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"chroma run exited with {proc.returncode}: {log_path.read_text()}")
                try:
                    settings = Settings(anonymized_telemetry=False)
                    chromadb.HttpClient(host="127.0.0.1", port=port, settings=settings).heartbeat()
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    if time.monotonic() > deadline:
                        pytest.fail("chroma run did not answer its heartbeat within 90 s")
                    time.sleep(0.3)
            yield "127.0.0.1", port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_chroma_server_loses_nothing_under_1000_concurrent_requests(
    chroma_server: tuple[str, int], encoder: CERAEncoder
) -> None:
    host, port = chroma_server
    n_upserts, n_queries = 600, 400
    records = [(f"s{i:04d}", f"{CORPUS[i % len(CORPUS)][1]} Record {i}.", {"i": i}) for i in range(n_upserts)]
    coll = store.open_for_encoder(encoder, host=host, port=port, name="rel-server-load")
    rng = random.Random(7)
    ops: list[tuple[str, Any]] = [("upsert", r) for r in records] + [
        ("query", rng.choice(QUERIES)) for _ in range(n_queries)
    ]
    rng.shuffle(ops)
    errors: list[BaseException] = []

    def run(op: tuple[str, Any]) -> None:
        kind, arg = op
        try:
            if kind == "upsert":
                report = store.index_passages(encoder, coll, [arg])
                assert report.added + report.skipped == 1
            else:
                hits = store.query(encoder, coll, arg, k=3, rationales=False)
                assert len(hits) <= 3 and all(np.isfinite(h.score) for h in hits)
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            errors.append(exc)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:  # at most 8 requests in flight
        list(pool.map(run, ops))
    elapsed = time.monotonic() - started
    assert not errors, f"{len(errors)} of {len(ops)} requests failed, first: {errors[0]!r}"
    assert coll.count() == n_upserts
    got = coll.get(ids=[r[0] for r in records], include=["documents", "metadatas", "embeddings"])
    assert sorted(got["ids"]) == sorted(r[0] for r in records)
    by_id = {r[0]: r for r in records}
    for i, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
        user_meta = {k: v for k, v in meta.items() if k not in (store.SPANS_KEY, store.SPANS_FRACTION_KEY)}
        assert doc == by_id[i][1] and user_meta == by_id[i][2] and store.SPANS_KEY in meta
    want = encoder.encode_passages([by_id[i][1] for i in got["ids"]])
    np.testing.assert_allclose(np.asarray(got["embeddings"]), want, atol=1e-5)
    # a fresh client (another connection) sees the same collection
    again = store.open_for_encoder(encoder, host=host, port=port, name="rel-server-load", create=False)
    assert again.count() == n_upserts
    print(f"{len(ops)} requests from 8 threads in {elapsed:.1f} s")
