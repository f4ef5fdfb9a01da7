"""``CERAEmbedding``: the CERA (or Contriever-style) encoder as a LlamaIndex embedding model.

Queries and passages are encoded separately (``encode_queries`` / ``encode_passages``, with
their own truncation lengths), in batches of ``embed_batch_size``. Use it to build any LlamaIndex
index over CERA vectors; ``model_name="MODEL@contriever"`` (or ``"contriever"``) gives mean-pooled,
unnormalised vectors (the Contriever-style configuration), so compare them with the dot product.

As a ``TransformComponent`` (``VectorStoreIndex`` ingestion, an ``IngestionPipeline``) it also
stores each node's CERA rationale spans (``cera_rationale_spans``, offsets into ``node.text``),
from the same forward pass as the embedding, hidden from the LLM and embedding text::

    index = VectorStoreIndex.from_vector_store(ChromaVectorStore(chroma_collection=coll), embed_model=embed)
    index.insert_nodes(nodes)            # embeddings and spans in one pass
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode

from cera_rag import store
from cera_rag.spans import SPANS_KEY, remap_spans, spans_to_json


class CERAEmbedding(BaseEmbedding):
    """A ``CERAEncoder`` behind LlamaIndex's ``BaseEmbedding`` interface.

    Args:
        model_name: CERA checkpoint folder or hub id, optionally ``@contriever`` (``cera_rag.encoders.
            ENCODER_CONFIGS``); optional when ``encoder`` is given.
        encoder: An already loaded ``CERAEncoder`` (shared with a retriever, say).
        device: Torch device (default: the encoder's choice).
        embed_batch_size: Texts per forward pass.
        store_spans: When embedding nodes (``__call__``), also store their rationale spans.
        top_fraction: Share of a passage's words kept as rationale in the stored spans.
        **kwargs: Other ``BaseEmbedding`` fields (``callback_manager``, ``num_workers``...).

    Example:
        >>> embed = CERAEmbedding(model_name="checkpoints/cera-best")  # doctest: +SKIP
        >>> len(embed.get_query_embedding("Does aspirin lower pain?")) == embed.dim  # doctest: +SKIP
        True
    """

    device: str | None = Field(default=None, description="Torch device of the encoder.")
    store_spans: bool = Field(default=True, description="Store rationale spans on nodes at ingestion.")
    top_fraction: float = Field(default=0.2, gt=0.0, le=1.0, description="Share of words kept as rationale.")

    _encoder: Any = PrivateAttr(default=None)
    #: per thread: the spans of the batches embedded so far by the ``__call__`` running in that thread
    _collecting: threading.local = PrivateAttr(default_factory=threading.local)

    def __init__(
        self,
        model_name: str | os.PathLike[str] | None = None,
        encoder: Any = None,
        device: str | None = None,
        embed_batch_size: int = 32,
        store_spans: bool = True,
        top_fraction: float = 0.2,
        **kwargs: Any,
    ) -> None:
        if encoder is None:
            if model_name is None:
                raise ValueError("Give the CERA model: model_name (a checkpoint folder or hub id) or encoder.")
            encoder = store.load_encoder(model_name, device=device)
        super().__init__(
            model_name=str(model_name) if model_name is not None else encoder.name,
            device=device,
            embed_batch_size=embed_batch_size,
            store_spans=store_spans,
            top_fraction=top_fraction,
            **kwargs,
        )
        self._encoder = encoder

    @classmethod
    def from_pretrained(cls, model_name_or_path: str | os.PathLike[str], **kwargs: Any) -> CERAEmbedding:
        """``CERAEmbedding(model_name=model_name_or_path, **kwargs)``."""
        return cls(model_name=model_name_or_path, **kwargs)

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
        collected = getattr(self._collecting, "spans", None)
        if collected is not None:  # inside __call__ (this thread): the same pass gives the spans
            vectors, spans = self._encoder.encode_passages(
                list(texts), batch_size=self.embed_batch_size, return_rationales=True, top_fraction=self.top_fraction
            )
            collected.extend(spans)
            return vectors.tolist()
        return self._encoder.encode_passages(list(texts), batch_size=self.embed_batch_size).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    # ------------------------------------------------------------------ ingestion
    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        if not self.store_spans or not nodes:
            return super().__call__(nodes, **kwargs)
        # LlamaIndex's own batching (events, callbacks, rate limits) runs as usual; each batch's
        # forward pass also returns its spans, collected here in order.
        spans: list[Any] = []
        self._collecting.spans = spans
        try:
            super().__call__(nodes, **kwargs)
        finally:
            self._collecting.spans = None
        contents = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        if len(spans) != len(nodes):  # an embeddings cache answered some batches: spans in a pass of their own
            _, spans = self._encoder.encode_passages(
                contents, batch_size=self.embed_batch_size, return_rationales=True, top_fraction=self.top_fraction
            )
        for node, content, node_spans in zip(nodes, contents, spans, strict=True):
            _store_spans(node, content, node_spans)
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        return await asyncio.to_thread(self.__call__, nodes, **kwargs)


def _store_spans(node: BaseNode, content: str, spans: Sequence[Any]) -> None:
    """Spans of the embedded content (metadata header + text) moved onto ``node.text``, hidden from LLM and embedder."""
    text = node.get_content(metadata_mode=MetadataMode.NONE)
    offset = content.rfind(text) if text else -1
    on_text = remap_spans(spans, [(offset, offset + len(text))]) if offset >= 0 else []
    node.metadata[SPANS_KEY] = spans_to_json(on_text)
    for keys in (node.excluded_embed_metadata_keys, node.excluded_llm_metadata_keys):
        if SPANS_KEY not in keys:
            keys.append(SPANS_KEY)
