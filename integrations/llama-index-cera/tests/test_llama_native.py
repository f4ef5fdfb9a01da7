"""The LlamaIndex-native path: ``VectorStoreIndex`` over ``ChromaVectorStore`` with ``CERAEmbedding``.

What a LlamaIndex user writes, end to end over a real embedded Chroma: ingest documents with the
framework's own objects, retrieve, post-process any retriever's nodes, and check that the span
offsets point into the text the user gets back (also through ``CitationQueryEngine``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import MetadataMode, TextNode
from llama_index.embeddings.cera import CERAEmbedding
from llama_index.postprocessor.cera import SPANS_KEY, CERARationalePostprocessor, parse_spans

from cera_rag import store

chroma_store = pytest.importorskip("llama_index.vector_stores.chroma", reason="needs llama-index-vector-stores-chroma")
ChromaVectorStore = chroma_store.ChromaVectorStore

QUERY = "Does aspirin lower pain compared with placebo?"


def _documents(corpus: list) -> list[Document]:
    return [Document(text=t, id_=i, metadata={"article_id": m.get("article_id", i)}) for i, t, m in corpus]


def _check_offsets(nodes: list[Any], key: str = SPANS_KEY) -> int:
    n = 0
    for nws in nodes:
        spans = parse_spans(nws.node.metadata[key])
        text = nws.node.get_content(metadata_mode=MetadataMode.NONE)
        for s in spans:
            assert text[s["start"] : s["end"]] == s["text"], "span offsets index the returned node text"
            n += 1
    return n


@pytest.fixture()
def native_index(encoder: Any, tmp_path: Path, corpus: list) -> tuple[VectorStoreIndex, Any]:
    """A cera-rag collection (its identity and embedding function recorded) behind ChromaVectorStore."""
    coll = store.open_for_encoder(encoder, path=tmp_path / "chroma", name="li-native")
    vector_store = ChromaVectorStore(chroma_collection=coll)
    embed = CERAEmbedding(encoder=encoder, embed_batch_size=2)
    index = VectorStoreIndex.from_documents(
        _documents(corpus),
        storage_context=StorageContext.from_defaults(vector_store=vector_store),
        embed_model=embed,
        transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=0), embed],  # embed: vectors + spans
    )
    return index, coll


def test_vector_store_index_over_chroma_stores_spans_at_ingestion(native_index: Any, encoder: Any) -> None:
    index, coll = native_index
    nodes = index.as_retriever(similarity_top_k=3).retrieve(QUERY)
    assert len(nodes) == 3
    assert _check_offsets(nodes) > 0, "the spans stored at ingestion came back with the nodes"
    first = nodes[0].node
    assert SPANS_KEY not in first.get_content(metadata_mode=MetadataMode.LLM)
    assert SPANS_KEY not in first.get_content(metadata_mode=MetadataMode.EMBED)
    # The ingested vectors are the encoder's; ChromaVectorStore reports exp(-distance) = exp(q.p - 1).
    q = encoder.encode_queries([QUERY])[0]
    for nws in nodes:
        p = encoder.encode_passages([nws.node.get_content(metadata_mode=MetadataMode.EMBED)])[0]
        assert nws.score == pytest.approx(math.exp(float(q @ p) - 1.0), abs=1e-4)
    assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)
    # The spans are the ones the encoder gives that text (same forward pass, moved onto node.text).
    text = first.get_content(metadata_mode=MetadataMode.NONE)
    stored = [(s["start"], s["end"]) for s in parse_spans(first.metadata[SPANS_KEY])]
    content = first.get_content(metadata_mode=MetadataMode.EMBED)
    _, (fresh,) = encoder.encode_passages([content], return_rationales=True)
    offset = content.rfind(text)
    want = [(s.start - offset, s.end - offset) for s in fresh if s.start >= offset]
    assert stored == want


def test_plain_chroma_and_the_index_agree(native_index: Any) -> None:
    """The collection LlamaIndex filled answers ``query_texts`` in plain Chroma (its embedding function)."""
    index, coll = native_index
    li_ids = [n.node.node_id for n in index.as_retriever(similarity_top_k=2).retrieve(QUERY)]
    raw = coll.query(query_texts=[QUERY], n_results=2)
    assert raw["ids"][0] == li_ids


def test_ingestion_pipeline_and_postprocessor_with_reranking_events(encoder: Any, tmp_path: Path, corpus: list) -> None:
    coll = store.open_for_encoder(encoder, path=tmp_path / "chroma", name="li-pipeline")
    vector_store = ChromaVectorStore(chroma_collection=coll)
    embed = CERAEmbedding(encoder=encoder, embed_batch_size=4)
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0), embed], vector_store=vector_store
    )
    ingested = pipeline.run(documents=_documents(corpus))
    assert ingested and all(SPANS_KEY in n.metadata and n.embedding for n in ingested)
    index = VectorStoreIndex.from_vector_store(vector_store, embed_model=embed)
    debug = LlamaDebugHandler()
    post = CERARationalePostprocessor(encoder=encoder, rerank=True, callback_manager=CallbackManager([debug]))
    retrieved = index.as_retriever(similarity_top_k=4).retrieve(QUERY)
    out = post.postprocess_nodes(retrieved, query_str=QUERY)
    assert len(out) == len(retrieved) and _check_offsets(out) > 0
    assert debug.get_event_pairs(CBEventType.RERANKING), "a RERANKING event was emitted"


def test_spans_survive_citation_query_engine(native_index: Any) -> None:
    """CitationQueryEngine re-splits nodes and prefixes "Source N:"; the spans are re-based onto what it returns."""
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import CitationQueryEngine
    from llama_index.postprocessor.cera import CERACitationQueryEngine

    index, _ = native_index
    post = CERARationalePostprocessor(encoder=index._embed_model.encoder)
    plain = CitationQueryEngine.from_args(
        index, llm=MockLLM(max_tokens=8), similarity_top_k=3, citation_chunk_size=24, citation_chunk_overlap=0,
        node_postprocessors=[post],
    )  # fmt: skip
    with pytest.raises(AssertionError, match="span offsets"):  # why the subclass exists
        _check_offsets(plain.query(QUERY).source_nodes)
    engine = CERACitationQueryEngine.from_args(
        index, llm=MockLLM(max_tokens=8), similarity_top_k=3, citation_chunk_size=24, citation_chunk_overlap=0,
        node_postprocessors=[post],
    )  # fmt: skip
    response = engine.query(QUERY)
    assert response.source_nodes
    assert all(n.node.get_content(metadata_mode=MetadataMode.NONE).startswith("Source ") for n in response.source_nodes)
    assert _check_offsets(response.source_nodes) > 0


def test_ingestion_spans_with_metadata_header_land_on_node_text(encoder: Any) -> None:
    embed = CERAEmbedding(encoder=encoder)
    node = TextNode(text="Pain score was significantly lower with aspirin (p < 0.001).", metadata={"title": "Trial"})
    (done,) = embed([node])
    spans = parse_spans(done.metadata[SPANS_KEY])
    assert spans and all(node.text[s["start"] : s["end"]] == s["text"] for s in spans)
    assert len(done.embedding) == encoder.dim
    want = encoder.encode_passages([node.get_content(metadata_mode=MetadataMode.EMBED)])[0]
    np.testing.assert_allclose(done.embedding, want, rtol=1e-5, atol=1e-6)
    plain = CERAEmbedding(encoder=encoder, store_spans=False)([TextNode(text="No spans here.")])
    assert SPANS_KEY not in plain[0].metadata
