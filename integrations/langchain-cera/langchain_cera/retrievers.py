"""``CERARetriever``: a LangChain retriever over a Chroma collection that returns CERA rationale spans.

It is a convenience over the native stack: the search runs through ``langchain_chroma.Chroma``
with ``CERAEmbeddings`` (the vector store a LangChain user builds), the collection is opened
through cera-rag's store (encoder identity checked, an empty plain collection adopted), and
the spans stored at indexing time are read back (or computed when absent).

Each ``Document`` has the passage as ``page_content``, the passage id as ``id``, and metadata
holding what was stored with the passage plus ``cera_id``, ``cera_score`` (the dot product) and
``cera_rationale_spans`` (a JSON list of ``{start, end, text, weight}`` with offsets into
``page_content``; read it with ``parse_spans``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_chroma import Chroma
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr

from cera_rag import store
from cera_rag.encoders import is_contriever_style
from langchain_cera.embeddings import CERAEmbeddings

#: Metadata key of the retrieval score (dot product of query and passage vectors).
SCORE_KEY = "cera_score"
_IGNORED_KWARGS = frozenset({"verbose"})


def document_from_hit(hit: store.Hit) -> Document:
    """A ``Document`` for a store hit: passage text, id, metadata with score and spans."""
    return Document(page_content=hit.text, metadata={**hit.metadata_with_spans(), SCORE_KEY: hit.score}, id=hit.id)


#: Deterministic ids for texts without one (``store.index_texts`` uses it): kept importable here.
text_id = store.text_id


class CERARetriever(BaseRetriever):
    """Dense retrieval with a CERA encoder over Chroma, with rationale spans on every document.

    Give a ``vectorstore`` (a ``langchain_chroma.Chroma`` whose embedding function is
    ``CERAEmbeddings``), or a loaded ``encoder`` and ``collection``, or ``model_name`` (and where
    the store is: ``persist_directory`` for an embedded store, ``host``/``port`` for a
    ``chroma run`` server, or ``client``) and ``collection_name``. The number of documents is
    ``k``, and ``invoke(query, k=3)`` overrides it for one call (so do ``where`` and
    ``where_document``). ``cera_score`` is the dot product (Chroma's ``ip`` distance turned back).

    Example:
        >>> retriever = CERARetriever(model_name="checkpoints/cera-best", k=3)  # doctest: +SKIP
        >>> docs = retriever.invoke("Does aspirin lower pain?", k=2)  # doctest: +SKIP
        >>> parse_spans(docs[0].metadata)  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    k: int = Field(default=4, ge=1, description="Documents returned per query.")
    where: dict[str, Any] | None = Field(default=None, description="Chroma metadata filter for every query.")
    where_document: dict[str, Any] | None = Field(default=None, description="Chroma document filter.")
    rationales: bool = Field(default=True, description="Attach rationale spans to the documents.")
    top_fraction: float = Field(default=0.2, gt=0.0, le=1.0, description="Share of words kept as rationale.")

    model_name: str | None = Field(default=None, description="CERA checkpoint folder or hub id.")
    device: str | None = Field(default=None, description="Torch device of the encoder.")
    backend: str = Field(default="torch", description="torch, or onnx / onnx-int8 (ONNX Runtime on the CPU).")
    persist_directory: str | None = Field(default=None, description="Embedded Chroma folder.")
    host: str | None = Field(default=None, description="Host of a `chroma run` server.")
    port: int | None = Field(default=None, description="Port of that server.")
    collection_name: str | None = Field(default=None, description="Collection (default cera-passages).")
    create: bool = Field(default=True, description="Create the collection when it does not exist.")

    encoder: Any = Field(default=None, exclude=True, repr=False, description="A loaded CERAEncoder.")
    collection: Any = Field(default=None, exclude=True, repr=False, description="A Chroma collection.")
    client: Any = Field(default=None, exclude=True, repr=False, description="A Chroma client.")
    vectorstore: Chroma | None = Field(
        default=None, exclude=True, repr=False, description="A langchain_chroma.Chroma with CERAEmbeddings."
    )

    _space: str | None = PrivateAttr(default="ip")

    def __init__(self, **data: Any) -> None:
        # Loading happens here, not in a pydantic validator, so that cera-rag errors
        # (CollectionMismatchError, CheckpointError...) reach the caller unwrapped.
        super().__init__(**data)
        self._open()

    def _open(self) -> None:
        if self.vectorstore is not None:
            embeddings = self.vectorstore.embeddings
            if self.encoder is None and isinstance(embeddings, CERAEmbeddings):
                self.encoder = embeddings.encoder
            if self.collection is None:
                self.collection = self.vectorstore._collection
        if self.encoder is None:
            if self.model_name is None:
                raise ValueError(
                    "Give the CERA model: model_name (a checkpoint folder or hub id), encoder, or a vectorstore "
                    "whose embedding function is CERAEmbeddings."
                )
            self.encoder = store.load_encoder(self.model_name, device=self.device, backend=self.backend)
        if self.model_name is None:
            self.model_name = str(self.encoder.name)
        if self.collection is None:
            name = self.collection_name or (
                store.CONTRIEVER_COLLECTION if is_contriever_style(self.encoder) else store.DEFAULT_COLLECTION
            )
            if self.client is None:
                self.client = store.get_client(self.persist_directory, self.host, self.port)
            self.collection = store.open_for_encoder(self.encoder, name=name, client=self.client, create=self.create)
        else:
            store.check_encoder(self.collection, self.encoder)
        self.collection_name = str(self.collection.name)
        if self.vectorstore is None:
            self.vectorstore = Chroma(
                client=self.client or store.client_of(self.collection),
                collection_name=self.collection_name,
                embedding_function=CERAEmbeddings(encoder=self.encoder),
                create_collection_if_not_exists=False,
            )
        self._space = store.collection_encoder(self.collection)["space"]

    # ------------------------------------------------------------------------------ retrieval
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        unknown = set(kwargs) - {"k", "where", "where_document"} - _IGNORED_KWARGS
        if unknown:
            raise TypeError(f"CERARetriever got unexpected arguments {sorted(unknown)}; use k, where, where_document.")
        k = self.k if kwargs.get("k") is None else int(kwargs["k"])
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        assert self.vectorstore is not None  # set by _open
        found = self.vectorstore.similarity_search_with_score(
            query,
            k=k,
            filter=kwargs.get("where", self.where),
            where_document=kwargs.get("where_document", self.where_document),
        )
        hits = [
            store.Hit(
                id=str(doc.id),
                text=doc.page_content,
                score=store.distance_to_score(d, self._space),
                metadata=doc.metadata,
            )
            for doc, d in found
        ]
        store.attach_spans(self.encoder, query, hits, rationales=self.rationales, top_fraction=self.top_fraction)
        return [document_from_hit(h) for h in hits]

    async def _aget_relevant_documents(self, query: str, *, run_manager: Any, **kwargs: Any) -> list[Document]:
        sync_manager = run_manager.get_sync()
        return await asyncio.to_thread(self._get_relevant_documents, query, run_manager=sync_manager, **kwargs)
