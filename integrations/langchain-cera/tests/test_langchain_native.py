"""The LangChain-native path: ``langchain_chroma.Chroma`` with ``CERAEmbeddings``, compressed by CERA.

What a LangChain user writes, over a real embedded Chroma: add documents through the vector store,
retrieve with ``as_retriever()``, wrap it in a ``ContextualCompressionRetriever`` with
``CERARationaleCompressor``, and check that span offsets index the text that comes back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_cera import EVIDENCE_KEY, SPANS_KEY, CERAEmbeddings, CERARationaleCompressor, CERARetriever, parse_spans
from langchain_core.documents import Document

from cera_rag import store

langchain_chroma = pytest.importorskip("langchain_chroma", reason="needs langchain-chroma")
compression = pytest.importorskip("langchain_classic.retrievers", reason="needs langchain-classic")

QUERY = "Does aspirin lower pain compared with placebo?"


def _documents(corpus: list) -> list[Document]:
    return [Document(page_content=t, metadata=dict(m), id=i) for i, t, m in corpus]


def _offsets_hold(docs: list[Document], key: str = SPANS_KEY) -> int:
    n = 0
    for doc in docs:
        for s in parse_spans(doc.metadata[key]):
            assert doc.page_content[s["start"] : s["end"]] == s["text"], "span offsets index the returned text"
            n += 1
    return n


@pytest.fixture()
def vectorstore(encoder: Any, tmp_path: Path, corpus: list) -> Any:
    """A collection cera-rag created (identity, ip space, embedding function), filled through LangChain."""
    client = store.get_client(tmp_path / "chroma")
    store.open_for_encoder(encoder, client=client, name="lc-native")
    vs = langchain_chroma.Chroma(
        client=client, collection_name="lc-native", embedding_function=CERAEmbeddings(encoder=encoder)
    )
    vs.add_documents(_documents(corpus), ids=[i for i, _, _ in corpus])
    return vs


def test_chroma_vectorstore_with_cera_embeddings_and_the_compressor(
    vectorstore: Any, encoder: Any, tmp_path: Path
) -> None:
    base = vectorstore.as_retriever(search_kwargs={"k": 3})
    retriever = compression.ContextualCompressionRetriever(
        base_compressor=CERARationaleCompressor(encoder=encoder), base_retriever=base
    )
    docs = retriever.invoke(QUERY)
    assert [d.id for d in docs] == [d.id for d in base.invoke(QUERY)], "annotate mode keeps the retriever's order"
    assert _offsets_hold(docs) > 0
    # The same collection through cera-rag's own retriever (a convenience over this vector store):
    # the same passages in the same order, from the collection or from the vector store itself.
    ours = CERARetriever(encoder=encoder, collection=vectorstore._collection, k=3).invoke(QUERY)
    assert [d.id for d in ours] == [d.id for d in docs]
    over_vs = CERARetriever(vectorstore=vectorstore, k=3).invoke(QUERY)
    assert [d.id for d in over_vs] == [d.id for d in docs] and _offsets_hold(over_vs) > 0
    relevance = dict((d.id, s) for d, s in vectorstore.similarity_search_with_relevance_scores(QUERY, k=3))
    for doc in over_vs:
        assert doc.metadata["cera_score"] == pytest.approx(relevance[doc.id], abs=1e-6)
    # Relevance scores: langchain-chroma's ip relevance is 1 - distance, the dot product here.
    q = encoder.encode_queries([QUERY])[0]
    for doc, score in vectorstore.similarity_search_with_relevance_scores(QUERY, k=3):
        assert score == pytest.approx(float(encoder.encode_passages([doc.page_content])[0] @ q), abs=1e-4)


def test_evidence_mode_keeps_only_evidence_sentences(vectorstore: Any, encoder: Any) -> None:
    retriever = compression.ContextualCompressionRetriever(
        base_compressor=CERARationaleCompressor(encoder=encoder, mode="evidence"),
        base_retriever=vectorstore.as_retriever(search_kwargs={"k": 4}),
    )
    docs = retriever.invoke(QUERY)
    assert docs and _offsets_hold(docs) > 0


def test_reader_compressor_on_the_native_stack(vectorstore: Any, reader: Any) -> None:
    retriever = compression.ContextualCompressionRetriever(
        base_compressor=CERARationaleCompressor(reader=reader, top_n=2),
        base_retriever=vectorstore.as_retriever(search_kwargs={"k": 4}),
    )
    docs = retriever.invoke(QUERY)
    assert len(docs) == 2 and all(EVIDENCE_KEY in d.metadata for d in docs)
    _offsets_hold(docs, EVIDENCE_KEY)


def test_a_vectorstore_without_cera_embeddings_needs_the_encoder(tmp_path: Path) -> None:
    plain = langchain_chroma.Chroma(client=store.get_client(tmp_path / "chroma"), collection_name="plain-vs")
    with pytest.raises(ValueError, match="CERAEmbeddings"):
        CERARetriever(vectorstore=plain)
