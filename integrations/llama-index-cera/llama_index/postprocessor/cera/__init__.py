"""LlamaIndex node post-processor that adds CERA rationale spans to any retriever's nodes."""

from llama_index.postprocessor.cera.base import ORIGINAL_SCORE_KEY, CERARationalePostprocessor

from cera_rag.spans import SPANS_KEY, parse_spans

__all__ = ["ORIGINAL_SCORE_KEY", "SPANS_KEY", "CERARationalePostprocessor", "parse_spans"]
