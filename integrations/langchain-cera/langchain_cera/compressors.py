"""``CERARationaleCompressor``: CERA rationale spans for any retriever's documents, or only their evidence.

* ``mode="annotate"``: each document keeps its text and gets ``cera_rationale_spans``.
* ``mode="evidence"``: each document is cut down to the sentences that contain a rationale span
  (spans re-based onto the shorter text; ``cera_evidence_pieces`` lists the kept sentences'
  ``[start, end]`` in the original text). Documents with no evidence are dropped.

Use it in a ``ContextualCompressionRetriever`` behind a retriever that does not explain itself
(a Contriever-style one, BM25...).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field

from cera_rag import store
from cera_rag.spans import SPANS_KEY, evidence_sentences, spans_to_json

#: Metadata key listing the ``[start, end]`` ranges of the original text kept in ``evidence`` mode.
PIECES_KEY = "cera_evidence_pieces"


class CERARationaleCompressor(BaseDocumentCompressor):
    """Annotate documents with CERA rationale spans (``annotate``) or keep only their evidence sentences.

    Documents are copied, never changed in place; their ``id`` is kept.

    Example:
        >>> comp = CERARationaleCompressor(model_name="checkpoints/cera-best", mode="evidence")  # doctest: +SKIP
        >>> docs = comp.compress_documents(bm25.invoke(q), q)  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    model_name: str | None = Field(default=None, description="CERA checkpoint folder or hub id.")
    mode: Literal["annotate", "evidence"] = Field(default="annotate", description="annotate or evidence.")
    top_fraction: float = Field(default=0.2, gt=0.0, le=1.0, description="Share of words kept as rationale.")
    device: str | None = Field(default=None, description="Torch device of the encoder.")
    encoder: Any = Field(default=None, exclude=True, repr=False, description="A loaded CERAEncoder.")

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

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Annotate ``documents`` with rationale spans, or reduce them to their evidence sentences.

        Args:
            documents: Retrieved documents.
            query: The query (kept for the interface; a bi-encoder's spans depend on the passage).
            callbacks: Unused.

        Returns:
            The documents, in the same order (``evidence`` mode drops those without evidence).
        """
        docs = list(documents)
        todo = [i for i, d in enumerate(docs) if d.page_content.strip()]
        spans: dict[int, list[Any]] = {}
        if todo:
            found = self.encoder.rationale_spans_batch(
                query, [docs[i].page_content for i in todo], top_fraction=self.top_fraction
            )
            spans = dict(zip(todo, found, strict=True))
        out: list[Document] = []
        for i, doc in enumerate(docs):
            if i not in spans:
                if self.mode == "annotate":
                    out.append(Document(page_content=doc.page_content, metadata=dict(doc.metadata), id=doc.id))
                continue
            if self.mode == "annotate":
                metadata = {**doc.metadata, SPANS_KEY: spans_to_json(spans[i])}
                out.append(Document(page_content=doc.page_content, metadata=metadata, id=doc.id))
                continue
            evidence = evidence_sentences(doc.page_content, spans[i])
            if not evidence.text:
                continue
            metadata = {
                **doc.metadata,
                SPANS_KEY: spans_to_json(evidence.spans),
                PIECES_KEY: json.dumps([list(p) for p in evidence.pieces]),
            }
            out.append(Document(page_content=evidence.text, metadata=metadata, id=doc.id))
        return out
