"""The same retriever against a real ``chroma run`` server (HttpClient)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.retrievers.cera import SPANS_KEY, CERARetriever, parse_spans

from cera_rag import store, testing
from cera_rag.store import CollectionMismatchError
from cera_rag.testing import chroma_executable

QUERY = "Does aspirin lower pain compared with placebo?"


@pytest.fixture()
def chroma_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    if chroma_executable() is None:
        pytest.skip("the `chroma` command is not installed")
    with testing.chroma_server(tmp_path / "server-data") as address:
        yield address


@pytest.mark.slow
def test_chroma_server_end_to_end(
    chroma_server: tuple[str, int], tiny_bert_dir: Path, encoder: Any, contriever_encoder: Any, corpus: list
) -> None:
    host, port = chroma_server
    coll = store.open_for_encoder(encoder, host=host, port=port, name="li-server")
    report = store.index_passages(encoder, coll, corpus)
    assert report.added == len(corpus)
    assert store.index_passages(encoder, coll, corpus).added == 0  # idempotent over HTTP too

    retriever = CERARetriever.from_pretrained(
        tiny_bert_dir, chroma_collection="li-server", similarity_top_k=3, host=host, port=port
    )
    nodes = retriever.retrieve(QUERY)
    assert len(nodes) == 3
    for n in nodes:
        expected = encoder.rationale_spans(QUERY, n.node.text)
        assert [(s["start"], s["end"]) for s in parse_spans(n.node.metadata[SPANS_KEY])] == [
            (s.start, s.end) for s in expected
        ]
    # the same results as an embedded store holding the same passages
    q = encoder.encode_queries([QUERY])[0]
    brute = sorted(corpus, key=lambda r: -float(encoder.encode_passages([r[1]])[0] @ q))
    assert [n.node.node_id for n in nodes] == [r[0] for r in brute[:3]]
    with pytest.raises(CollectionMismatchError):
        CERARetriever(contriever_encoder, retriever.collection)


def test_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(store.StoreError, match="Cannot reach"):
        store.get_client(host="127.0.0.1", port=testing.free_port())


@pytest.mark.slow
def test_native_llamaindex_stack_on_a_server_database(
    chroma_server: tuple[str, int], encoder: Any, corpus: list
) -> None:
    """VectorStoreIndex over ChromaVectorStore on a `chroma run` server, in a database of its own."""
    chroma_store = pytest.importorskip("llama_index.vector_stores.chroma")
    import chromadb
    from chromadb.config import Settings
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.cera import CERAEmbedding

    host, port = chroma_server
    admin = chromadb.AdminClient(Settings(chroma_api_impl="chromadb.api.fastapi.FastAPI", chroma_server_host=host,
                                          chroma_server_http_port=port, anonymized_telemetry=False))  # fmt: skip
    admin.create_database("cera_db")
    client = store.get_client(host=host, port=port, database="cera_db", headers={"X-Client": "cera-rag-tests"})
    coll = store.open_for_encoder(encoder, client=client, name="li-native-server")
    embed = CERAEmbedding(encoder=encoder)
    index = VectorStoreIndex.from_documents(
        [Document(text=t, id_=i) for i, t, _ in corpus],
        storage_context=StorageContext.from_defaults(
            vector_store=chroma_store.ChromaVectorStore(chroma_collection=coll)
        ),
        embed_model=embed,
        transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=0), embed],
    )
    nodes = index.as_retriever(similarity_top_k=3).retrieve(QUERY)
    assert len(nodes) == 3
    for n in nodes:
        for s in parse_spans(n.node.metadata[SPANS_KEY]):
            assert n.node.text[s["start"] : s["end"]] == s["text"]
    # Plain Chroma on the same server and database: query_texts through the recorded embedding function.
    raw = client.get_collection("li-native-server").query(query_texts=[QUERY], n_results=3)
    assert raw["ids"][0] == [n.node.node_id for n in nodes]
    default_db = store.get_client(host=host, port=port)
    assert "li-native-server" not in [c.name for c in default_db.list_collections()], "the database scoped it"
