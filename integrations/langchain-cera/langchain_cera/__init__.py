"""LangChain integration of CERA: embeddings, a Chroma-backed retriever with rationale spans, a compressor."""

from cera_rag.spans import EVIDENCE_KEY, SPANS_KEY, parse_spans
from langchain_cera.compressors import PIECES_KEY, READER_SCORE_KEY, CERARationaleCompressor
from langchain_cera.embeddings import CERAEmbeddings
from langchain_cera.retrievers import SCORE_KEY, CERARetriever, document_from_hit, text_id

__all__ = [
    "EVIDENCE_KEY",
    "PIECES_KEY",
    "READER_SCORE_KEY",
    "SCORE_KEY",
    "SPANS_KEY",
    "CERAEmbeddings",
    "CERARationaleCompressor",
    "CERARetriever",
    "document_from_hit",
    "parse_spans",
    "text_id",
]
