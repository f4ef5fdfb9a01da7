"""``CERAEmbedding``: the CERA (or Contriever-style) encoder as a LlamaIndex embedding model.

Queries and passages are encoded separately (``encode_queries`` / ``encode_passages``, with
their own truncation lengths), in batches of ``embed_batch_size``. Use it to build any LlamaIndex
index over CERA vectors; with ``contriever=True`` vectors are mean-pooled and unnormalised, so
compare them with the dot product.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr

from cera_rag import store


class CERAEmbedding(BaseEmbedding):
    """A ``CERAEncoder`` behind LlamaIndex's ``BaseEmbedding`` interface.

    Args:
        model_name: CERA checkpoint folder or hub id; optional when ``encoder`` is given (or with
            ``contriever=True``, which then picks ``cera_rag.store.default_contriever_model()``).
        encoder: An already loaded ``CERAEncoder`` (shared with a retriever, say).
        contriever: Contriever-style vectors: mean pooling, no normalisation.
        device: Torch device (default: the encoder's choice).
        embed_batch_size: Texts per forward pass.
        **kwargs: Other ``BaseEmbedding`` fields (``callback_manager``, ``num_workers``...).

    Example:
        >>> embed = CERAEmbedding(model_name="checkpoints/cera-best")  # doctest: +SKIP
        >>> len(embed.get_query_embedding("Does aspirin lower pain?")) == embed.dim  # doctest: +SKIP
        True
    """

    contriever: bool = Field(default=False, description="Mean pooling and unnormalised vectors (Contriever-style).")
    device: str | None = Field(default=None, description="Torch device of the encoder.")

    _encoder: Any = PrivateAttr(default=None)

    def __init__(
        self,
        model_name: str | os.PathLike[str] | None = None,
        encoder: Any = None,
        contriever: bool = False,
        device: str | None = None,
        embed_batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        if encoder is None:
            encoder = store.load_encoder(model_name, contriever=contriever, device=device)
        super().__init__(
            model_name=str(model_name) if model_name is not None else encoder.name,
            contriever=contriever,
            device=device,
            embed_batch_size=embed_batch_size,
            **kwargs,
        )
        self._encoder = encoder

    @classmethod
    def from_pretrained(
        cls, model_name_or_path: str | os.PathLike[str] | None, contriever: bool = False, **kwargs: Any
    ) -> CERAEmbedding:
        """``CERAEmbedding(model_name=model_name_or_path, contriever=contriever, **kwargs)``."""
        return cls(model_name=model_name_or_path, contriever=contriever, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "CERAEmbedding"

    @property
    def encoder(self) -> Any:
        """The underlying ``CERAEncoder``."""
        return self._encoder

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self._encoder.dim)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._encoder.encode_queries([query], batch_size=1)[0].tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._encoder.encode_passages([text], batch_size=1)[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        if not texts:
            return []
        return self._encoder.encode_passages(list(texts), batch_size=self.embed_batch_size).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
