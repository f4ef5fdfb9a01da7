"""``CERARationaleCompressor``: CERA spans for any retriever's documents, a reader re-rank, or only the evidence.

* ``mode="annotate"``: each document keeps its text and gets ``cera_rationale_spans`` (the
  encoder's attention spans) and, with a reader, ``cera_evidence_spans`` (the evidence for this
  question).
* ``mode="evidence"``: each document is cut down to the sentences that hold its evidence
  (the reader's evidence spans when a reader is given, else the attention spans), spans
  re-based onto the shorter text; ``cera_evidence_pieces`` lists the kept sentences'
  ``[start, end]`` in the original text. Documents with no evidence are dropped.

With a reader (``reader_model=`` or ``reader=``) the documents are re-ranked by the reader's
relevance score (``cera_reader_score``), the retriever's own order is kept as
``retrieval_rank`` (and its score, when it put one in ``cera_score``, as ``retrieval_score``),
and ``top_n`` keeps the best.

Use it in a ``ContextualCompressionRetriever`` behind any retriever.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field

from cera_rag import store
from cera_rag.spans import (
    EVIDENCE_KEY,
    RETRIEVAL_SCORE_KEY,
    SPANS_KEY,
    evidence_sentences,
    remap_spans,
    spans_to_json,
)

#: Metadata key of the reader's relevance score.
READER_SCORE_KEY = "cera_reader_score"
#: Metadata key of a document's position (0-based) in the retriever's own ranking.
RETRIEVAL_RANK_KEY = "retrieval_rank"
#: Metadata key listing the ``[start, end]`` ranges of the original text kept in ``evidence`` mode.
PIECES_KEY = "cera_evidence_pieces"


class CERARationaleCompressor(BaseDocumentCompressor):
    """Annotate documents with CERA spans, re-rank them with the CERA reader, or keep only their evidence.

    Documents are copied, never changed in place; their ``id`` is kept.

    Example:
        >>> comp = CERARationaleCompressor(model_name="checkpoints/cera-best", mode="evidence")  # doctest: +SKIP
        >>> docs = comp.compress_documents(bm25.invoke(q), q)  # doctest: +SKIP
        >>> reader = CERARationaleCompressor(reader_model="checkpoints/cera-reader", top_n=4)  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    model_name: str | None = Field(default=None, description="CERA encoder checkpoint folder or hub id.")
    mode: Literal["annotate", "evidence"] = Field(default="annotate", description="annotate or evidence.")
    top_fraction: float = Field(default=0.2, gt=0.0, le=1.0, description="Share of words kept as rationale.")
    device: str | None = Field(default=None, description="Torch device of the encoder and reader.")
    encoder: Any = Field(default=None, exclude=True, repr=False, description="A loaded CERAEncoder.")
    reader_model: str | None = Field(default=None, description="CERAReader checkpoint: re-rank + evidence spans.")
    reader: Any = Field(default=None, exclude=True, repr=False, description="A loaded CERAReader.")
    reader_backend: Literal["torch", "onnx", "onnx-int8"] = Field(default="torch", description="Reader backend.")
    top_n: int | None = Field(default=None, ge=1, description="Documents kept after the reader's re-rank.")
    evidence_threshold: float | None = Field(
        default=None, ge=0.0, lt=1.0, description="Mark evidence words above this probability instead of top_fraction."
    )
    fusion_weight: float = Field(
        default=1.0, ge=0.0, description="0: rank by the reader; w > 0: z(reader) + w * z(retriever score or -rank)."
    )

    def __init__(self, **data: Any) -> None:
        # Loading happens here, not in a pydantic validator, so that cera-rag errors
        # (CollectionMismatchError, CheckpointError...) reach the caller unwrapped.
        super().__init__(**data)
        self._load()

    def _load(self) -> None:
        if self.reader is None and self.reader_model is not None:
            from cera_rag.reader import CERAReader

            self.reader = CERAReader.from_pretrained(self.reader_model, device=self.device, backend=self.reader_backend)
        if self.encoder is None and self.model_name is not None:
            self.encoder = store.load_encoder(self.model_name, device=self.device)
        if self.encoder is None and self.reader is None:
            raise ValueError(
                "Give a CERA model: model_name / encoder (attention spans) and/or reader_model / reader (re-rank "
                "and evidence spans)."
            )
        if self.model_name is None and self.encoder is not None:
            self.model_name = str(self.encoder.name)
        if self.reader_model is None and self.reader is not None:
            self.reader_model = str(self.reader.name)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Annotate ``documents`` with spans (re-ranked by the reader if any), or reduce them to their evidence.

        Args:
            documents: Retrieved documents.
            query: The question (the reader reads it; a bi-encoder's spans depend on the passage only).
            callbacks: Unused.

        Returns:
            The documents, in the retriever's order or, with a reader, best first (``evidence`` mode
            drops those without evidence).
        """
        docs = list(documents)
        todo = [i for i, d in enumerate(docs) if d.page_content.strip()]
        attention: dict[int, list[Any]] = {}
        if todo and self.encoder is not None:
            found = self.encoder.rationale_spans_batch(
                query, [docs[i].page_content for i in todo], top_fraction=self.top_fraction
            )
            attention = dict(zip(todo, found, strict=True))
        order = list(range(len(docs)))
        evidence: dict[int, list[Any]] = {}
        scores: dict[int, float] = {}
        if self.reader is not None:
            # the retriever's score where it left one (CERARetriever's cera_score), else its order
            first = [float(d.metadata.get("cera_score", -i)) for i, d in enumerate(docs)]
            ranked = self.reader.rerank(
                query,
                [d.page_content for d in docs],
                top_fraction=self.top_fraction,
                threshold=self.evidence_threshold,
                first_stage_scores=first,
                fusion_weight=self.fusion_weight,
            )
            order = [r.index for r in ranked]
            read = set(todo)  # empty documents are not read: no score, no spans
            evidence = {r.index: r.spans for r in ranked if r.index in read}
            scores = {r.index: r.score for r in ranked if r.index in read}
        out: list[Document] = []
        for i in order:
            doc = docs[i]
            metadata = dict(doc.metadata)
            if i in scores:
                metadata[READER_SCORE_KEY] = scores[i]
                metadata[RETRIEVAL_RANK_KEY] = i
                if "cera_score" in metadata:
                    metadata[RETRIEVAL_SCORE_KEY] = metadata["cera_score"]
            if self.mode == "annotate" or i not in todo:
                if self.mode == "evidence":
                    continue
                if i in attention:
                    metadata[SPANS_KEY] = spans_to_json(attention[i])
                if i in evidence:
                    metadata[EVIDENCE_KEY] = spans_to_json(evidence[i])
                out.append(Document(page_content=doc.page_content, metadata=metadata, id=doc.id))
                continue
            basis = evidence[i] if self.reader is not None else attention[i]
            kept = evidence_sentences(doc.page_content, basis)
            if not kept.text:
                continue
            metadata[EVIDENCE_KEY if self.reader is not None else SPANS_KEY] = spans_to_json(kept.spans)
            if self.reader is not None and i in attention:
                # the attention spans moved onto the same shorter text, so both keep valid offsets
                metadata[SPANS_KEY] = spans_to_json(remap_spans(attention[i], kept.pieces))
            metadata[PIECES_KEY] = json.dumps([list(p) for p in kept.pieces])
            out.append(Document(page_content=kept.text, metadata=metadata, id=doc.id))
        if self.reader is not None and self.top_n is not None:
            out = out[: self.top_n]
        return out
