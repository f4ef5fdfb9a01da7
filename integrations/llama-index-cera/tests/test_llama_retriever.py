"""CERARetriever (LlamaIndex): retrieval, spans, filters, persistence, events, query engine."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation import root_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent, RetrievalStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters
from llama_index.retrievers.cera import (
    SPANS_KEY,
    CERARetriever,
    metadata_filters_to_where,
    parse_spans,
)

from cera_rag import store
from cera_rag.store import CollectionMismatchError
from cera_rag.testing import assert_metadata_close

QUERY = "Does aspirin lower pain compared with placebo?"


def _ids(nodes: list[NodeWithScore]) -> list[str]:
    return [n.node.node_id for n in nodes]


# ------------------------------------------------------------------------------------ packaging
def test_mro_and_namespace_packages() -> None:
    assert BaseRetriever in CERARetriever.__mro__
    assert "BaseRetriever" in [b.__name__ for b in CERARetriever.__mro__]
    root = Path(__file__).resolve().parents[1]
    assert not (root / "llama_index" / "__init__.py").exists()
    assert not (root / "llama_index" / "retrievers" / "__init__.py").exists()
    # the namespace package merges with llama-index-core's
    assert importlib.util.find_spec("llama_index.core") is not None
    assert importlib.util.find_spec("llama_index.retrievers.cera") is not None


def test_core_package_does_not_import_frameworks() -> None:
    import subprocess
    import sys

    code = (
        "import sys, cera_rag, cera_rag.store, cera_rag.spans, cera_rag.cli.index\n"
        "bad = [m for m in sys.modules if m.startswith(('llama_index', 'langchain'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------ retrieval
def test_retrieve_returns_text_nodes_with_spans(encoder: Any, collection: Any, corpus: list) -> None:
    retriever = CERARetriever(encoder, collection, similarity_top_k=3)
    nodes = retriever.retrieve(QUERY)
    assert len(nodes) == 3
    texts = {i: t for i, t, _ in corpus}
    q = encoder.encode_queries([QUERY])[0]
    scores = [n.score for n in nodes]
    assert scores == sorted(scores, reverse=True)
    for n in nodes:
        assert isinstance(n.node, TextNode)
        assert n.node.text == texts[n.node.node_id]
        assert n.node.metadata["cera_id"] == n.node.node_id
        assert isinstance(n.node.metadata[SPANS_KEY], str)
        # score is the dot product of the query and passage vectors
        p = encoder.encode_passages([n.node.text])[0]
        assert n.score == pytest.approx(float(p @ q), abs=1e-4)
        # spans point into the node text; hidden from embedders and LLMs
        spans = parse_spans(n.node.metadata)
        assert spans
        for s in spans:
            assert n.node.text[s["start"] : s["end"]] == s["text"]
        assert SPANS_KEY in n.node.excluded_embed_metadata_keys
        assert SPANS_KEY in n.node.excluded_llm_metadata_keys
        assert SPANS_KEY not in n.node.get_content(metadata_mode=MetadataMode.LLM)
        assert SPANS_KEY not in n.node.get_content(metadata_mode=MetadataMode.EMBED)
    # the full ranking agrees with brute force
    brute = sorted(corpus, key=lambda r: -float(encoder.encode_passages([r[1]])[0] @ q))
    assert _ids(nodes) == [r[0] for r in brute[:3]]


def test_spans_equal_rationale_spans(encoder: Any, collection: Any) -> None:
    nodes = CERARetriever(encoder, collection, similarity_top_k=6).retrieve(QUERY)
    for n in nodes:
        expected = encoder.rationale_spans(QUERY, n.node.text)
        got = parse_spans(n.node.metadata[SPANS_KEY])
        assert [(s["start"], s["end"], s["text"]) for s in got] == [(s.start, s.end, s.text) for s in expected]
        assert [s["weight"] for s in got] == pytest.approx([s.weight for s in expected], abs=1e-5)


def test_top_k_above_corpus_size(encoder: Any, collection: Any, corpus: list) -> None:
    nodes = CERARetriever(encoder, collection, similarity_top_k=50).retrieve(QUERY)
    assert sorted(_ids(nodes)) == sorted(i for i, _, _ in corpus)


def test_empty_collection_and_bad_arguments(encoder: Any, tmp_path: Path) -> None:
    coll = store.open_for_encoder(encoder, path=tmp_path / "empty", name="li-empty")
    assert CERARetriever(encoder, coll).retrieve(QUERY) == []
    with pytest.raises(ValueError, match="similarity_top_k"):
        CERARetriever(encoder, coll, similarity_top_k=0)
    with pytest.raises(ValueError, match="top_fraction"):
        CERARetriever(encoder, coll, top_fraction=0.0)


def test_rationales_off(encoder: Any, collection: Any) -> None:
    nodes = CERARetriever(encoder, collection, similarity_top_k=2, rationales=False).retrieve(QUERY)
    assert all(parse_spans(n.node.metadata) == [] for n in nodes)


@pytest.mark.asyncio
async def test_aretrieve_matches_retrieve(encoder: Any, collection: Any) -> None:
    retriever = CERARetriever(encoder, collection, similarity_top_k=4)
    sync_nodes = retriever.retrieve(QUERY)
    async_nodes = await retriever.aretrieve(QueryBundle(QUERY))
    assert _ids(async_nodes) == _ids(sync_nodes)
    assert [n.score for n in async_nodes] == pytest.approx([n.score for n in sync_nodes])
    assert [n.node.metadata[SPANS_KEY] for n in async_nodes] == [n.node.metadata[SPANS_KEY] for n in sync_nodes]


# ------------------------------------------------------------------------------------ filters
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (MetadataFilters(filters=[MetadataFilter(key="article_id", value="a1")]), {"a1:0-40", "a1:41-90"}),
        (
            MetadataFilters(filters=[MetadataFilter(key="year", value=2021, operator=FilterOperator.GTE)]),
            {"a2:0-35", "a2:36-80", "a3:0-50", "a3:51-99"},
        ),
        (
            MetadataFilters(
                filters=[
                    MetadataFilter(key="article_id", value="a1"),
                    MetadataFilter(key="article_id", value="a3"),
                ],
                condition=FilterCondition.OR,
            ),
            {"a1:0-40", "a1:41-90", "a3:0-50", "a3:51-99"},
        ),
        (
            MetadataFilters(
                filters=[MetadataFilter(key="article_id", value=["a2", "a3"], operator=FilterOperator.NIN)]
            ),
            {"a1:0-40", "a1:41-90"},
        ),
        (
            MetadataFilters(
                filters=[
                    MetadataFilter(key="year", value=2019, operator=FilterOperator.GT),
                    MetadataFilters(
                        filters=[MetadataFilter(key="article_id", value="a3")], condition=FilterCondition.NOT
                    ),
                ]
            ),
            {"a2:0-35", "a2:36-80"},
        ),
        ({"article_id": {"$in": ["a2"]}}, {"a2:0-35", "a2:36-80"}),
    ],
)
def test_metadata_filters(encoder: Any, collection: Any, filters: Any, expected: set[str]) -> None:
    retriever = CERARetriever(encoder, collection, similarity_top_k=10, filters=filters)
    assert set(_ids(retriever.retrieve(QUERY))) == expected


def test_filters_setter_and_no_match(encoder: Any, collection: Any) -> None:
    retriever = CERARetriever(encoder, collection, similarity_top_k=10)
    retriever.filters = MetadataFilters(filters=[MetadataFilter(key="article_id", value="nope")])
    assert retriever.retrieve(QUERY) == []
    retriever.filters = None
    assert len(retriever.retrieve(QUERY)) == 6


def test_metadata_filters_to_where() -> None:
    f = MetadataFilter
    assert metadata_filters_to_where(None) is None
    assert metadata_filters_to_where(MetadataFilters(filters=[])) is None
    assert metadata_filters_to_where(MetadataFilters(filters=[f(key="a", value=1)])) == {"a": {"$eq": 1}}
    both = MetadataFilters(filters=[f(key="a", value=1), f(key="b", value="x", operator=FilterOperator.NE)])
    assert metadata_filters_to_where(both) == {"$and": [{"a": {"$eq": 1}}, {"b": {"$ne": "x"}}]}
    negated = MetadataFilters(filters=both.filters, condition=FilterCondition.NOT)
    assert metadata_filters_to_where(negated) == {"$or": [{"a": {"$ne": 1}}, {"b": {"$eq": "x"}}]}
    assert metadata_filters_to_where(MetadataFilters(filters=[f(key="t", value=["x", "y"], operator="any")])) == {
        "$or": [{"t": {"$contains": "x"}}, {"t": {"$contains": "y"}}]
    }
    assert metadata_filters_to_where(MetadataFilters(filters=[f(key="t", value="x", operator="in")])) == {
        "t": {"$in": ["x"]}
    }
    with pytest.raises(ValueError, match="text_match"):
        metadata_filters_to_where(MetadataFilters(filters=[f(key="t", value="x", operator="text_match")]))


def test_contains_filter_on_list_metadata(encoder: Any, tmp_path: Path) -> None:
    coll = store.open_for_encoder(encoder, path=tmp_path / "tags", name="li-tags")
    retriever = CERARetriever(encoder, coll, similarity_top_k=5)
    store.index_texts(
        encoder,
        coll,
        ["Pain was lower with aspirin.", "Blood pressure did not change."],
        ids=["t1", "t2"],
        metadatas=[{"tags": ["pain", "aspirin"]}, {"tags": ["blood pressure"]}],
    )
    retriever.filters = MetadataFilters(filters=[MetadataFilter(key="tags", value="aspirin", operator="contains")])
    nodes = retriever.retrieve(QUERY)
    assert _ids(nodes) == ["t1"]
    assert nodes[0].node.metadata["tags"] == ["pain", "aspirin"]


# ------------------------------------------------------------------------------------ persistence
def test_persistence_reload_and_idempotent_reindex(
    tiny_bert_dir: Path, tmp_path: Path, corpus: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    persist = tmp_path / "persist"
    retriever = CERARetriever.from_pretrained(
        tiny_bert_dir, chroma_collection="li-persist", similarity_top_k=3, persist_dir=persist
    )
    report = store.index_passages(retriever.encoder, retriever.collection, corpus)
    assert report.added == len(corpus)
    first = retriever.retrieve(QUERY)
    del retriever

    reopened = CERARetriever.from_pretrained(
        str(tiny_bert_dir), chroma_collection="li-persist", similarity_top_k=3, persist_dir=persist, create=False
    )
    again = reopened.retrieve(QUERY)
    assert _ids(again) == _ids(first)
    assert [n.score for n in again] == pytest.approx([n.score for n in first], abs=1e-5)
    assert [n.node.metadata for n in again] == [n.node.metadata for n in first]

    # the same collection through ONNX Runtime: same hits, scores and (stored) spans
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("CERA_CACHE_DIR", str(tmp_path / "cache"))
    fast = CERARetriever.from_pretrained(
        tiny_bert_dir, chroma_collection="li-persist", similarity_top_k=3, persist_dir=persist, backend="onnx"
    )
    assert fast.encoder.backend == "onnx"
    quick = fast.retrieve(QUERY)
    assert _ids(quick) == _ids(first)
    assert [n.score for n in quick] == pytest.approx([n.score for n in first], abs=1e-5)
    for got, want in zip(quick, first, strict=True):
        assert_metadata_close(got.node.metadata, want.node.metadata)

    # re-indexing the same passages adds nothing
    report = store.index_passages(reopened.encoder, reopened.collection, corpus)
    assert (report.added, report.skipped) == (0, len(corpus))
    assert reopened.collection.count() == len(corpus)


def test_missing_collection_without_create(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(store.StoreError, match="No collection"):
        CERARetriever.from_pretrained(tiny_bert_dir, chroma_collection="li-none", persist_dir=tmp_path, create=False)


def test_mismatched_encoder_raises(
    collection: Any, contriever_encoder: Any, tiny_bert_dir: Path, other_bert_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(CollectionMismatchError, match="encoder"):
        CERARetriever(contriever_encoder, collection)
    persist = tmp_path / "chroma"  # where the `collection` fixture lives
    # same weights, Contriever-style (unnormalised): also refused
    with pytest.raises(CollectionMismatchError, match="normalize"):
        CERARetriever.from_pretrained(f"{tiny_bert_dir}@contriever", "li-test", persist_dir=persist)
    with pytest.raises(CollectionMismatchError):
        CERARetriever.from_pretrained(other_bert_dir, "li-test", persist_dir=persist)


# ------------------------------------------------------------------------------------ events
def test_callback_and_instrumentation_events(encoder: Any, collection: Any) -> None:
    debug = LlamaDebugHandler()
    retriever = CERARetriever(encoder, collection, similarity_top_k=2, callback_manager=CallbackManager([debug]))

    class Collect(BaseEventHandler):
        events: list[Any] = []

        def handle(self, event: Any, **kwargs: Any) -> None:
            self.events.append(event)

    handler = Collect(events=[])
    root_dispatcher.add_event_handler(handler)
    try:
        nodes = retriever.retrieve(QUERY)
    finally:
        root_dispatcher.event_handlers.remove(handler)
    pairs = debug.get_event_pairs(CBEventType.RETRIEVE)
    assert len(pairs) == 1
    assert pairs[0][0].payload["query_str"] == QUERY
    assert _ids(pairs[0][1].payload["nodes"]) == _ids(nodes)
    kinds = [type(e) for e in handler.events]
    assert RetrievalStartEvent in kinds and RetrievalEndEvent in kinds
    end = next(e for e in handler.events if isinstance(e, RetrievalEndEvent))
    assert _ids(end.nodes) == _ids(nodes)


# ------------------------------------------------------------------------------------ query engine
def test_retriever_query_engine_with_mock_llm(encoder: Any, collection: Any) -> None:
    retriever = CERARetriever(encoder, collection, similarity_top_k=2)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query(QUERY)
    assert len(response.source_nodes) == 2
    for n in response.source_nodes:
        assert parse_spans(n.node.metadata)
        assert n.node.text in str(response)  # MockLLM echoes the prompt, which holds the passages
    assert SPANS_KEY not in str(response)  # spans stay out of the LLM prompt


@pytest.mark.asyncio
async def test_retriever_query_engine_async(encoder: Any, collection: Any) -> None:
    engine = RetrieverQueryEngine.from_args(CERARetriever(encoder, collection, similarity_top_k=2), llm=MockLLM())
    response = await engine.aquery(QUERY)
    assert len(response.source_nodes) == 2


def test_scores_are_dot_products_for_contriever_style(contriever_encoder: Any, tmp_path: Path, corpus: list) -> None:
    coll = store.open_for_encoder(contriever_encoder, path=tmp_path / "c", name="contriever-passages")
    store.index_passages(contriever_encoder, coll, corpus)
    nodes = CERARetriever(contriever_encoder, coll, similarity_top_k=6).retrieve(QUERY)
    q = contriever_encoder.encode_queries([QUERY])[0]
    assert abs(float(np.linalg.norm(q)) - 1.0) > 1e-3  # unnormalised
    for n in nodes:
        p = contriever_encoder.encode_passages([n.node.text])[0]
        assert n.score == pytest.approx(float(p @ q), rel=1e-4, abs=1e-3)
