"""LlamaIndex retriever for CERA: dense retrieval over Chroma with rationale spans on every node."""

from llama_index.retrievers.cera.base import (
    HIDDEN_METADATA_KEYS,
    CERARetriever,
    metadata_filters_to_where,
    node_from_hit,
)

from cera_rag.spans import SPANS_KEY, parse_spans

__all__ = [
    "HIDDEN_METADATA_KEYS",
    "SPANS_KEY",
    "CERARetriever",
    "metadata_filters_to_where",
    "node_from_hit",
    "parse_spans",
]
