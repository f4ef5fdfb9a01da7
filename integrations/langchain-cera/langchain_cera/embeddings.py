"""``CERAEmbeddings``: the CERA (or Contriever-style) encoder behind LangChain's ``Embeddings`` interface."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field

from cera_rag import store


class CERAEmbeddings(BaseModel, Embeddings):
    """Embed queries and documents with a ``CERAEncoder``.

    Queries and documents are encoded separately (their own truncation lengths), in batches.
    With ``model_name="MODEL@contriever"`` (or ``"contriever"``) vectors are mean-pooled and
    unnormalised: compare them with the dot product (e.g. a Chroma collection in the ``ip`` space).

    Example:
        >>> emb = CERAEmbeddings(model_name="checkpoints/cera-best")  # doctest: +SKIP
        >>> vectors = emb.embed_documents(["Pain fell with aspirin.", "No change in BP."])  # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    model_name: str | None = Field(
        default=None, description="CERA checkpoint folder or hub id (optional when `encoder` is given)."
    )
    device: str | None = Field(default=None, description="Torch device of the encoder.")
    batch_size: int = Field(default=32, ge=1, description="Texts per forward pass.")
    encoder: Any = Field(default=None, exclude=True, repr=False, description="An already loaded CERAEncoder.")

    def __init__(self, **data: Any) -> None:
        # Loading happens here, not in a pydantic validator, so that cera-rag errors
        # (CollectionMismatchError, CheckpointError...) reach the caller unwrapped.
        super().__init__(**data)
        self._load()

    def _load(self) -> None:
        if self.encoder is None:
            if self.model_name is None:
                raise ValueError("Give the CERA model: model_name (a checkpoint folder or hub id) or encoder.")
            self.encoder = store.load_encoder(self.model_name, device=self.device)
        if self.model_name is None:
            self.model_name = str(self.encoder.name)

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.encoder.dim)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (passages).

        Args:
            texts: The documents.

        Returns:
            One list of floats per document.
        """
        if not texts:
            return []
        return self.encoder.encode_passages(list(texts), batch_size=self.batch_size).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed a query.

        Args:
            text: The query.

        Returns:
            Its vector as a list of floats.
        """
        return self.encoder.encode_queries([text], batch_size=1)[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """``embed_documents`` in a worker thread."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """``embed_query`` in a worker thread."""
        return await asyncio.to_thread(self.embed_query, text)
