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
    embed = CERAEmbedding.from_pretrained(f"{other_bert_dir}@contriever")
    assert embed.model_name.endswith("@contriever"), "the configuration is named by the model spec, not a flag"
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


# ------------------------------------------------------------------------------------ reader
@pytest.fixture()
def reader(tiny_bert_dir: Path) -> Any:
    import torch

    from cera_rag.reader import CERAReader

    torch.manual_seed(1)
    return CERAReader.from_base(str(tiny_bert_dir))


def test_postprocessor_reader_reranks_and_marks_evidence(encoder: Any, reader: Any, corpus: list) -> None:
    from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
    from llama_index.postprocessor.cera import EVIDENCE_KEY, RETRIEVAL_SCORE_KEY

    nodes = [NodeWithScore(node=TextNode(id_=i, text=t, metadata=dict(m)), score=1.0 - 0.1 * k)
             for k, (i, t, m) in enumerate(corpus)]  # fmt: skip
    debug = LlamaDebugHandler()
    post = CERARationalePostprocessor(
        encoder=encoder, reader=reader, top_n=4, callback_manager=CallbackManager([debug]), fusion_weight=0.0
    )
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    texts = [t for _, t, _ in corpus]
    want = np.argsort(-reader.score(QUERY, texts), kind="stable")[:4]
    assert [n.node.node_id for n in out] == [corpus[j][0] for j in want]
    assert [n.score for n in out] == pytest.approx(sorted(reader.score(QUERY, texts), reverse=True)[:4], abs=1e-5)
    evidence = reader.evidence_spans(QUERY, texts)
    for n, j in zip(out, want, strict=True):
        meta = n.node.metadata
        assert meta[RETRIEVAL_SCORE_KEY] == pytest.approx(1.0 - 0.1 * j)  # the retriever's score is kept
        spans = parse_spans(meta[EVIDENCE_KEY])
        assert [(s["start"], s["end"]) for s in spans] == [(s.start, s.end) for s in evidence[j]]
        text = n.node.get_content(metadata_mode=MetadataMode.NONE)
        assert spans and all(text[s["start"] : s["end"]] == s["text"] for s in spans)
        assert parse_spans(meta[SPANS_KEY])  # the attention spans ride along
        for hidden in (EVIDENCE_KEY, RETRIEVAL_SCORE_KEY, SPANS_KEY):
            assert hidden in n.node.excluded_llm_metadata_keys and hidden in n.node.excluded_embed_metadata_keys
        assert EVIDENCE_KEY not in n.node.get_content(metadata_mode=MetadataMode.LLM)
    assert len(debug.get_event_pairs(CBEventType.RERANKING)) == 1
    assert [n.node.metadata for n in nodes] == [m for _, _, m in corpus]  # inputs untouched
    with pytest.raises(ValueError, match="needs the query"):
        post.postprocess_nodes(nodes)


def test_postprocessor_reader_alone_and_evidence_spans_differ_per_question(reader: Any, corpus: list) -> None:
    from llama_index.postprocessor.cera import EVIDENCE_KEY

    post = CERARationalePostprocessor(reader=reader)
    assert post.fusion_weight == 1.0  # the default blends in the retrieval score
    assert post.encoder is None and post.reader is reader and post.reader_model == reader.name
    nodes = [NodeWithScore(node=TextNode(id_=i, text=t), score=None) for i, t, _ in corpus]
    a = {n.node.node_id: n.node.metadata[EVIDENCE_KEY] for n in post.postprocess_nodes(nodes, query_str=QUERY)}
    b = {
        n.node.node_id: n.node.metadata[EVIDENCE_KEY] for n in post.postprocess_nodes(nodes, query_str="blood pressure")
    }
    assert a.keys() == b.keys() and SPANS_KEY not in nodes[0].node.metadata
    assert a != b  # the reader reads the question: its spans are not the same for every question
    with pytest.raises(ValueError, match="Give a CERA model"):
        CERARationalePostprocessor()


def test_postprocessor_reader_from_a_checkpoint(reader: Any, tmp_path: Path, corpus: list) -> None:
    from llama_index.postprocessor.cera import EVIDENCE_KEY

    reader.save_pretrained(tmp_path / "reader")
    post = CERARationalePostprocessor(reader_model=str(tmp_path / "reader"), top_n=2)
    nodes = [NodeWithScore(node=TextNode(id_=i, text=t), score=0.5) for i, t, _ in corpus]
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert len(out) == 2 and all(EVIDENCE_KEY in n.node.metadata for n in out)


def test_postprocessor_fusion_weight_blends_in_the_retrieval_score(reader: Any, corpus: list) -> None:
    nodes = [NodeWithScore(node=TextNode(id_=i, text=t), score=1.0 - 0.1 * k) for k, (i, t, _) in enumerate(corpus)]
    by_retriever = CERARationalePostprocessor(reader=reader, fusion_weight=1000.0).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert [n.node.node_id for n in by_retriever] == [i for i, _, _ in corpus]  # the retrieval order dominates
    with pytest.raises(ValueError, match="first_stage_scores"):
        reader.rerank(QUERY, [t for _, t, _ in corpus], fusion_weight=1.0)
