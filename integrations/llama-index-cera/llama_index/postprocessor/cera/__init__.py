"""LlamaIndex node post-processor: CERA attention spans, and the CERA reader's re-rank and evidence spans."""

from llama_index.postprocessor.cera.base import ORIGINAL_SCORE_KEY, CERARationalePostprocessor
from llama_index.postprocessor.cera.citation import CERACitationQueryEngine

from cera_rag.spans import EVIDENCE_KEY, RETRIEVAL_SCORE_KEY, SPANS_KEY, parse_spans

__all__ = [
    "EVIDENCE_KEY",
    "ORIGINAL_SCORE_KEY",
    "RETRIEVAL_SCORE_KEY",
    "SPANS_KEY",
    "CERACitationQueryEngine",
    "CERARationalePostprocessor",
    "parse_spans",
]
