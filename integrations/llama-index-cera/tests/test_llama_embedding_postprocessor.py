"""CERAEmbedding and CERARationalePostprocessor (LlamaIndex)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from llama_index.embeddings.cera import CERAEmbedding
from llama_index.postprocessor.cera import ORIGINAL_SCORE_KEY, SPANS_KEY, CERARationalePostprocessor, parse_spans
from llama_index.retrievers.cera import CERARetriever

from cera_rag import store

QUERY = "Does aspirin lower pain compared with placebo?"


def test_mro() -> None:
    assert "BaseEmbedding" in [b.__name__ for b in CERAEmbedding.__mro__]
    assert BaseEmbedding in CERAEmbedding.__mro__
    assert "BaseNodePostprocessor" in [b.__name__ for b in CERARationalePostprocessor.__mro__]
    assert BaseNodePostprocessor in CERARationalePostprocessor.__mro__


# ------------------------------------------------------------------------------------ embedding
def test_embedding_matches_encoder(tiny_bert_dir: Path, encoder: Any, corpus: list) -> None:
    embed = CERAEmbedding(model_name=str(tiny_bert_dir), embed_batch_size=2)
    assert embed.model_name == str(tiny_bert_dir)
    assert embed.dim == encoder.dim == 32
    texts = [t for _, t, _ in corpus]
    vectors = embed.get_text_embedding_batch(texts)
    assert len(vectors) == len(texts)
    assert all(isinstance(v, list) and isinstance(v[0], float) and len(v) == 32 for v in vectors)
    np.testing.assert_allclose(np.array(vectors), encoder.encode_passages(texts), atol=1e-5)
    q = embed.get_query_embedding(QUERY)
    assert isinstance(q, list) and isinstance(q[0], float)
    np.testing.assert_allclose(q, encoder.encode_queries([QUERY])[0], atol=1e-5)
    np.testing.assert_allclose(embed.get_text_embedding(texts[0]), vectors[0], atol=1e-5)


@pytest.mark.asyncio
async def test_embedding_async(encoder: Any, corpus: list) -> None:
    embed = CERAEmbedding(encoder=encoder)
    assert embed.model_name == encoder.name
    texts = [t for _, t, _ in corpus[:3]]
    vectors = await embed.aget_text_embedding_batch(texts)
    np.testing.assert_allclose(np.array(vectors), encoder.encode_passages(texts), atol=1e-5)
    q = await embed.aget_query_embedding(QUERY)
    np.testing.assert_allclose(q, encoder.encode_queries([QUERY])[0], atol=1e-5)
    assert await embed.aget_text_embedding(texts[0]) == pytest.approx(vectors[0], abs=1e-5)


def test_embedding_contriever_style(other_bert_dir: Path) -> None:
    embed = CERAEmbedding.from_pretrained(other_bert_dir, contriever=True)
    assert embed.contriever
    assert embed.encoder.config.pooling == "mean" and embed.encoder.config.normalize is False
    assert abs(float(np.linalg.norm(embed.get_query_embedding(QUERY))) - 1.0) > 1e-3


def test_embedding_in_vector_store_index(encoder: Any, corpus: list) -> None:
    embed = CERAEmbedding(encoder=encoder)
    nodes = [TextNode(id_=i, text=t, metadata=m) for i, t, m in corpus]
    index = VectorStoreIndex(nodes, embed_model=embed)
    got = index.as_retriever(similarity_top_k=2).retrieve(QUERY)
    assert len(got) == 2
    # LlamaIndex embeds the text with its metadata; normalised vectors make the in-memory
    # store's cosine ranking equal to the dot-product ranking
    q = encoder.encode_queries([QUERY])[0]
    vectors = encoder.encode_passages([n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes])
    best = [nodes[i].node_id for i in np.argsort(-(vectors @ q))[:2]]
    assert [n.node.node_id for n in got] == best


# ------------------------------------------------------------------------------------ postprocessor
@pytest.fixture()
def contriever_retriever(contriever_encoder: Any, tmp_path: Path, corpus: list) -> CERARetriever:
    """A Contriever-style retriever (other weights, mean pooling, unnormalised) over the corpus."""
    coll = store.open_for_encoder(contriever_encoder, path=tmp_path / "contriever", name="contriever-passages")
    store.index_passages(contriever_encoder, coll, corpus)
    return CERARetriever(contriever_encoder, coll, similarity_top_k=4)


def test_postprocessor_adds_cera_spans_to_contriever_nodes(
    encoder: Any, contriever_encoder: Any, contriever_retriever: CERARetriever
) -> None:
    nodes = contriever_retriever.retrieve(QUERY)
    before = [n.node.metadata[SPANS_KEY] for n in nodes]
    post = CERARationalePostprocessor(encoder=encoder)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in out] == [n.node.node_id for n in nodes]
    assert [n.score for n in out] == [n.score for n in nodes]  # no re-ranking by default
    for n in out:
        expected = encoder.rationale_spans(QUERY, n.node.text)
        got = parse_spans(n.node.metadata)
        assert [(s["start"], s["end"], s["text"]) for s in got] == [(s.start, s.end, s.text) for s in expected]
        assert [s["weight"] for s in got] == pytest.approx([s.weight for s in expected], abs=1e-5)
        assert SPANS_KEY in n.node.excluded_llm_metadata_keys
        assert ORIGINAL_SCORE_KEY not in n.node.metadata
    # the input nodes are not modified (they held the Contriever encoder's own spans)
    assert [n.node.metadata[SPANS_KEY] for n in nodes] == before
    assert [n.node.metadata[SPANS_KEY] for n in out] != before


def test_postprocessor_rerank(encoder: Any, contriever_retriever: CERARetriever) -> None:
    nodes = contriever_retriever.retrieve(QUERY)
    post = CERARationalePostprocessor(encoder=encoder, rerank=True, top_n=3)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert len(out) == 3
    q = encoder.encode_queries([QUERY])[0]
    original = {n.node.node_id: n.score for n in nodes}
    for n in out:
        assert n.score == pytest.approx(float(encoder.encode_passages([n.node.text])[0] @ q), abs=1e-4)
        assert n.node.metadata[ORIGINAL_SCORE_KEY] == original[n.node.node_id]
        assert ORIGINAL_SCORE_KEY in n.node.excluded_llm_metadata_keys
    assert [n.score for n in out] == sorted((n.score for n in out), reverse=True)
    all_scores = sorted((float(encoder.encode_passages([n.node.text])[0] @ q) for n in nodes), reverse=True)
    assert [n.score for n in out] == pytest.approx(all_scores[:3], abs=1e-4)
    with pytest.raises(ValueError, match="query"):
        post.postprocess_nodes(nodes)


@pytest.mark.asyncio
async def test_postprocessor_async_and_edge_cases(encoder: Any) -> None:
    post = CERARationalePostprocessor(encoder=encoder)
    assert await post.apostprocess_nodes([], query_str=QUERY) == []
    nodes = [
        NodeWithScore(node=TextNode(id_="e", text=""), score=0.5),
        NodeWithScore(node=TextNode(id_="p", text="Pain fell.")),
    ]
    out = await post.apostprocess_nodes(nodes, query_str=QUERY)
    assert SPANS_KEY not in out[0].node.metadata
    assert parse_spans(out[1].node.metadata)
    with pytest.raises(ValueError, match="model_name"):
        CERARationalePostprocessor()


def test_postprocessor_in_query_engine(tiny_bert_dir: Path, contriever_retriever: CERARetriever) -> None:
    post = CERARationalePostprocessor(model_name=tiny_bert_dir, rerank=True)
    engine = RetrieverQueryEngine.from_args(contriever_retriever, llm=MockLLM(), node_postprocessors=[post])
    response = engine.query(QUERY)
    assert len(response.source_nodes) == 4
    assert all(ORIGINAL_SCORE_KEY in n.node.metadata for n in response.source_nodes)
    assert SPANS_KEY not in str(response)
