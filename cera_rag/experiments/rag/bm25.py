"""The lexical baseline of the RAG comparison: BM25 (``bm25s``) over the same passages, in both frameworks.

``PassageBM25`` indexes passages once (English stopwords, as in the retrieval tables) and returns
``cera_rag.store.Hit`` objects, so the framework retrievers below build their nodes and documents
with the integrations' own ``node_from_hit`` / ``document_from_hit``: a BM25 context reaches the
LLM in exactly the form a dense one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cera_rag.store import Hit, as_record


class PassageBM25:
    """BM25 over a fixed list of passages (``Passage`` objects or ``(id, text[, metadata])`` tuples)."""

    def __init__(self, passages: Sequence[Any]) -> None:
        from cera_rag.data.negatives import ArticleBM25

        if not passages:
            raise ValueError("BM25 needs at least one passage to index.")
        self.records = [as_record(p) for p in passages]
        self._index = ArticleBM25([text for _, text, _ in self.records])

    def search(self, query: str, k: int) -> list[Hit]:
        """The ``k`` best passages for ``query``, best first (score: the BM25 score)."""
        order, scores = self._index.rank(query)
        hits = []
        for j, score in zip(order[:k], scores[:k], strict=False):
            pid, text, meta = self.records[int(j)]
            hits.append(Hit(id=pid, text=text, score=float(score), metadata=dict(meta)))
        return hits


def llamaindex_retriever(index: PassageBM25, k: int) -> Any:
    """A LlamaIndex ``BaseRetriever`` over ``index`` returning ``k`` nodes."""
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle
    from llama_index.retrievers.cera.base import node_from_hit

    class BM25Retriever(BaseRetriever):
        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            return [
                NodeWithScore(node=node_from_hit(h), score=h.score) for h in index.search(query_bundle.query_str, k)
            ]

    return BM25Retriever()


def langchain_retriever(index: PassageBM25, k: int) -> Any:
    """A LangChain ``BaseRetriever`` over ``index`` returning ``k`` documents."""
    from langchain_cera.retrievers import document_from_hit
    from langchain_core.retrievers import BaseRetriever

    class BM25Retriever(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Any]:
            return [document_from_hit(h) for h in index.search(query, k)]

    return BM25Retriever()
