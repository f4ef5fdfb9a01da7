"""LlamaIndex embedding model for CERA (and its Contriever-style counterpart)."""

from llama_index.embeddings.cera.base import CERAEmbedding

__all__ = ["CERAEmbedding"]
