"""CERARetriever, CERAEmbeddings and CERARationaleCompressor (LangChain): spans, k, filters, indexing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_cera import (
    PIECES_KEY,
    SCORE_KEY,
    SPANS_KEY,
    CERAEmbeddings,
    CERARationaleCompressor,
    CERARetriever,
    parse_spans,
    text_id,
)
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda

from cera_rag import store
from cera_rag.store import CollectionMismatchError
from cera_rag.testing import assert_metadata_close

QUERY = "Does aspirin lower pain compared with placebo?"


def _key(spans: list[Any]) -> list[tuple[int, int, str]]:
    return [(s["start"], s["end"], s["text"]) if isinstance(s, dict) else (s.start, s.end, s.text) for s in spans]


def test_mro() -> None:
    assert BaseRetriever in CERARetriever.__mro__
    assert Embeddings in CERAEmbeddings.__mro__
    assert BaseDocumentCompressor in CERARationaleCompressor.__mro__


def test_retriever_documents_and_spans(encoder: Any, collection: Any, corpus: list) -> None:
    retriever = CERARetriever(encoder=encoder, collection=collection, k=3)
    docs = retriever.invoke(QUERY)
    assert len(docs) == 3
    texts = {i: t for i, t, _ in corpus}
    q = encoder.encode_queries([QUERY])[0]
    for doc in docs:
        assert isinstance(doc, Document)
        assert doc.page_content == texts[doc.id]
        assert doc.metadata["cera_id"] == doc.id
        dot = float(encoder.encode_passages([doc.page_content])[0] @ q)
        assert doc.metadata[SCORE_KEY] == pytest.approx(dot, abs=1e-4)
        assert isinstance(doc.metadata[SPANS_KEY], str)
        expected = encoder.rationale_spans(QUERY, doc.page_content)
        got = parse_spans(doc.metadata)
        assert _key(got) == _key(expected)
        assert [s["weight"] for s in got] == pytest.approx([s.weight for s in expected], abs=1e-5)
    scores = [d.metadata[SCORE_KEY] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_k_override_per_invoke_and_filters(encoder: Any, collection: Any) -> None:
    retriever = CERARetriever(encoder=encoder, collection=collection, k=2)
    assert len(retriever.invoke(QUERY)) == 2
    assert len(retriever.invoke(QUERY, k=5)) == 5
    assert len(retriever.invoke(QUERY, k=100)) == 6  # more than the corpus: everything
    assert retriever.k == 2  # the override does not stick
    a1 = retriever.invoke(QUERY, k=10, where={"article_id": "a1"})
    assert {d.id for d in a1} == {"a1:0-40", "a1:41-90"}
    contains = retriever.invoke(QUERY, k=10, where_document={"$contains": "group"})
    assert {d.id for d in contains} == {"a1:41-90", "a2:36-80"}
    filtered = CERARetriever(encoder=encoder, collection=collection, k=10, where={"year": {"$gte": 2021}})
    assert {d.metadata["article_id"] for d in filtered.invoke(QUERY)} == {"a2", "a3"}
    with pytest.raises(TypeError, match="unexpected"):
        retriever.invoke(QUERY, top_k=3)
    with pytest.raises(ValueError, match="k must be"):
        retriever.invoke(QUERY, k=0)


@pytest.mark.asyncio
async def test_ainvoke_and_batch(encoder: Any, collection: Any) -> None:
    retriever = CERARetriever(encoder=encoder, collection=collection, k=4)
    sync_docs = retriever.invoke(QUERY)
    async_docs = await retriever.ainvoke(QUERY, k=4)
    assert [d.id for d in async_docs] == [d.id for d in sync_docs]
    assert [d.metadata for d in async_docs] == [d.metadata for d in sync_docs]
    assert len(await retriever.ainvoke(QUERY, k=1)) == 1
    batched = retriever.batch([QUERY, "blood pressure with metformin"])
    assert len(batched) == 2 and all(len(b) == 4 for b in batched)


def test_retriever_in_a_chain(encoder: Any, collection: Any) -> None:
    retriever = CERARetriever(encoder=encoder, collection=collection, k=2)
    chain = retriever | RunnableLambda(lambda docs: [parse_spans(d.metadata) for d in docs])
    spans = chain.invoke(QUERY)
    assert len(spans) == 2 and all(spans)


def test_from_model_name_persistence_and_idempotent_add(
    tiny_bert_dir: Path, tmp_path: Path, corpus: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERA_CACHE_DIR", str(tmp_path / "cache"))
    persist = str(tmp_path / "persist")
    retriever = CERARetriever(model_name=str(tiny_bert_dir), persist_directory=persist, collection_name="lc-p", k=3)
    docs = [Document(page_content=t, metadata=m, id=i) for i, t, m in corpus]

    def add(documents: list[Document]) -> list[str]:  # what the retriever's add_documents did
        texts, metas = [d.page_content for d in documents], [d.metadata for d in documents]
        return store.index_texts(retriever.encoder, retriever.collection, texts, metas, [d.id for d in documents])

    assert add(docs) == [i for i, _, _ in corpus]
    assert retriever.collection.count() == len(corpus)
    add(docs)  # again: nothing added
    assert retriever.collection.count() == len(corpus)
    # texts without ids get deterministic ids
    ids = store.index_texts(retriever.encoder, retriever.collection, ["Aspirin was given daily."])
    assert ids == [text_id("Aspirin was given daily.")]
    assert store.index_texts(retriever.encoder, retriever.collection, ["Aspirin was given daily."]) == ids
    assert retriever.collection.count() == len(corpus) + 1
    first = retriever.invoke(QUERY)
    reopened = CERARetriever(
        model_name=str(tiny_bert_dir), persist_directory=persist, collection_name="lc-p", k=3, create=False
    )
    assert [d.id for d in reopened.invoke(QUERY)] == [d.id for d in first]
    pytest.importorskip("onnxruntime")
    fast = CERARetriever(
        model_name=str(tiny_bert_dir), persist_directory=persist, collection_name="lc-p", k=3, backend="onnx"
    )
    assert fast.encoder.backend == "onnx"
    quick = fast.invoke(QUERY)
    assert [d.id for d in quick] == [d.id for d in first]  # ids exactly; scores and weights to a tolerance
    for got, want in zip(quick, first, strict=True):
        assert_metadata_close(got.metadata, want.metadata)
    with pytest.raises(ValueError, match="same length"):
        store.index_texts(retriever.encoder, retriever.collection, ["a", "b"], ids=["x"])
    assert not hasattr(retriever, "add_texts"), "indexing goes through the store (or the vector store)"


def test_mismatched_encoder_and_missing_model(
    collection: Any, contriever_encoder: Any, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(CollectionMismatchError):
        CERARetriever(encoder=contriever_encoder, collection=collection)
    with pytest.raises(CollectionMismatchError, match="normalize"):
        CERARetriever(
            model_name=f"{tiny_bert_dir}@contriever",
            persist_directory=str(tmp_path / "chroma"),
            collection_name="lc-test",
        )
    with pytest.raises(ValueError, match="model_name"):
        CERARetriever(persist_directory=str(tmp_path / "x"))


def test_contriever_style_retriever(other_bert_dir: Path, tmp_path: Path, corpus: list) -> None:
    retriever = CERARetriever(model_name=f"{other_bert_dir}@contriever", persist_directory=str(tmp_path / "c"), k=3)
    assert retriever.collection_name == "contriever-passages"
    store.index_texts(
        retriever.encoder, retriever.collection, [t for _, t, _ in corpus], [m for _, _, m in corpus],
        [i for i, _, _ in corpus],
    )  # fmt: skip
    docs = retriever.invoke(QUERY)
    q = retriever.encoder.encode_queries([QUERY])[0]
    assert abs(float(np.linalg.norm(q)) - 1.0) > 1e-3
    for d in docs:
        p = retriever.encoder.encode_passages([d.page_content])[0]
        assert d.metadata[SCORE_KEY] == pytest.approx(float(p @ q), rel=1e-4, abs=1e-3)


# ------------------------------------------------------------------------------------ embeddings
def test_embeddings_match_encoder(encoder: Any, corpus: list) -> None:
    emb = CERAEmbeddings(encoder=encoder, batch_size=2)
    assert emb.model_name == encoder.name and emb.dim == 32
    texts = [t for _, t, _ in corpus]
    np.testing.assert_allclose(np.array(emb.embed_documents(texts)), encoder.encode_passages(texts), atol=1e-5)
    np.testing.assert_allclose(emb.embed_query(QUERY), encoder.encode_queries([QUERY])[0], atol=1e-5)
    assert emb.embed_documents([]) == []
    with pytest.raises(ValueError, match="model_name"):
        CERAEmbeddings()
    with pytest.raises(ValueError):
        CERAEmbeddings(encoder=encoder, unknown_option=1)


def test_embeddings_contriever(other_bert_dir: Path) -> None:
    emb = CERAEmbeddings(model_name=f"{other_bert_dir}@contriever")
    assert emb.encoder.config.normalize is False and emb.encoder.config.pooling == "mean"


# ------------------------------------------------------------------------------------ compressor
def _contriever_docs(contriever_encoder: Any, tmp_path: Path, corpus: list) -> list[Document]:
    coll = store.open_for_encoder(contriever_encoder, path=tmp_path / "cc", name="contriever-passages")
    store.index_passages(contriever_encoder, coll, corpus)
    return CERARetriever(encoder=contriever_encoder, collection=coll, k=4).invoke(QUERY)


def test_compressor_annotate(encoder: Any, contriever_encoder: Any, tmp_path: Path, corpus: list) -> None:
    docs = _contriever_docs(contriever_encoder, tmp_path, corpus)
    before = [d.metadata[SPANS_KEY] for d in docs]
    out = CERARationaleCompressor(encoder=encoder).compress_documents(docs, QUERY)
    assert [d.id for d in out] == [d.id for d in docs]
    assert [d.page_content for d in out] == [d.page_content for d in docs]
    for d in out:
        assert _key(parse_spans(d.metadata)) == _key(encoder.rationale_spans(QUERY, d.page_content))
    assert [d.metadata[SPANS_KEY] for d in docs] == before  # inputs untouched


def test_compressor_evidence(encoder: Any) -> None:
    text = "Vitamin treatment improved the outcome. Pain was not reduced. Blood pressure was higher."
    doc = Document(page_content=text, metadata={"source": "x"}, id="d1")
    comp = CERARationaleCompressor(encoder=encoder, mode="evidence", top_fraction=0.1)
    (out,) = comp.compress_documents([doc], QUERY)
    spans = encoder.rationale_spans(QUERY, text, top_fraction=0.1)
    pieces = json.loads(out.metadata[PIECES_KEY])
    assert pieces and all(text[s:e].strip() == text[s:e] for s, e in pieces)
    # every kept sentence holds a span, every span lies in a kept sentence
    assert all(any(sp.start < e and s < sp.end for sp in spans) for s, e in pieces)
    assert all(any(s <= sp.start and sp.end <= e for s, e in pieces) for sp in spans)
    assert out.page_content == " ".join(text[s:e] for s, e in pieces)
    assert len(out.page_content) <= len(text)
    for s in parse_spans(out.metadata):
        assert out.page_content[s["start"] : s["end"]] == s["text"]
    assert sorted(s["text"] for s in parse_spans(out.metadata)) == sorted(sp.text for sp in spans)
    assert out.id == "d1" and out.metadata["source"] == "x"


@pytest.mark.asyncio
async def test_compressor_async_and_empty(encoder: Any) -> None:
    docs = [Document(page_content="", id="e"), Document(page_content="Pain fell with aspirin.", id="p")]
    annotated = await CERARationaleCompressor(encoder=encoder).acompress_documents(docs, QUERY)
    assert [d.id for d in annotated] == ["e", "p"]
    assert SPANS_KEY not in annotated[0].metadata and parse_spans(annotated[1].metadata)
    evidence = CERARationaleCompressor(encoder=encoder, mode="evidence").compress_documents(docs, QUERY)
    assert [d.id for d in evidence] == ["p"]
    assert CERARationaleCompressor(encoder=encoder).compress_documents([], QUERY) == []
    with pytest.raises(ValueError):
        CERARationaleCompressor(encoder=encoder, mode="summary")


# ------------------------------------------------------------------------------------ reader
def test_compressor_reader_reranks_and_marks_evidence(encoder: Any, reader: Any, corpus: list) -> None:
    from langchain_cera import EVIDENCE_KEY, READER_SCORE_KEY
    from langchain_core.documents import Document

    docs = [Document(page_content=t, metadata={**m, "cera_score": 0.9 - 0.1 * k}, id=i)
            for k, (i, t, m) in enumerate(corpus)]  # fmt: skip
    comp = CERARationaleCompressor(encoder=encoder, reader=reader, top_n=3, fusion_weight=0.0)
    out = list(comp.compress_documents(docs, QUERY))
    texts = [t for _, t, _ in corpus]
    scores = reader.score(QUERY, texts)
    want = np.argsort(-scores, kind="stable")[:3]
    assert [d.id for d in out] == [corpus[j][0] for j in want]
    evidence = reader.evidence_spans(QUERY, texts)
    for d, j in zip(out, want, strict=True):
        assert d.metadata[READER_SCORE_KEY] == pytest.approx(float(scores[j]), abs=1e-5)
        assert d.metadata["retrieval_rank"] == j and d.metadata["retrieval_score"] == pytest.approx(0.9 - 0.1 * j)
        spans = parse_spans(d.metadata[EVIDENCE_KEY])
        assert [(s["start"], s["end"]) for s in spans] == [(s.start, s.end) for s in evidence[j]]
        assert all(d.page_content[s["start"] : s["end"]] == s["text"] for s in spans)
        assert parse_spans(d.metadata[SPANS_KEY])
    assert all(EVIDENCE_KEY not in d.metadata for d in docs)  # inputs untouched

    other = list(CERARationaleCompressor(reader=reader).compress_documents(docs, "blood pressure"))
    by_id = {d.id: d.metadata[EVIDENCE_KEY] for d in other}
    assert any(by_id[d.id] != d.metadata[EVIDENCE_KEY] for d in out)  # spans depend on the question


def test_compressor_reader_evidence_mode_keeps_evidence_sentences(reader: Any) -> None:
    from langchain_cera import EVIDENCE_KEY
    from langchain_core.documents import Document

    text = "Pain score was lower with aspirin. Blood pressure did not change. The trial was randomized."
    comp = CERARationaleCompressor(reader=reader, mode="evidence", top_fraction=0.1)
    (out,) = comp.compress_documents([Document(page_content=text, id="x")], QUERY)
    pieces = json.loads(out.metadata[PIECES_KEY])
    assert out.page_content == " ".join(text[s:e] for s, e in pieces) and len(out.page_content) < len(text)
    spans = parse_spans(out.metadata[EVIDENCE_KEY])
    assert spans and all(out.page_content[s["start"] : s["end"]] == s["text"] for s in spans)
    with pytest.raises(ValueError, match="Give a CERA model"):
        CERARationaleCompressor()
