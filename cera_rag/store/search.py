"""Search: embed a query, find its nearest passages, attach their rationale spans (stored or computed)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cera_rag.encoders import Encoder
from cera_rag.spans import SPANS_KEY, SpanDict, SpanFormatError, parse_spans, span_to_dict, spans_to_json
from cera_rag.store.collection import SPANS_FRACTION_KEY, _space

logger = logging.getLogger(__name__)


@dataclass
class Hit:
    """One retrieved passage: id, text, score (dot product), stored metadata and rationale spans."""

    id: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    #: spans with offsets into ``text`` (empty when rationales were not requested)
    spans: list[SpanDict] = field(default_factory=list)

    def metadata_with_spans(self) -> dict[str, Any]:
        """The stored metadata plus ``cera_rationale_spans`` (a JSON string) and ``cera_id``."""
        return {**self.metadata, "cera_id": self.id, SPANS_KEY: spans_to_json(self.spans)}


# ---------------------------------------------------------------------------------------- query
def _stored_spans(metadata: dict[str, Any], top_fraction: float) -> list[SpanDict] | None:
    """Pop the spans stored at indexing time from a hit's metadata; ``None`` if absent or made otherwise."""
    raw = metadata.pop(SPANS_KEY, None)
    fraction = metadata.pop(SPANS_FRACTION_KEY, None)
    if raw is None or not isinstance(fraction, (int, float)) or abs(float(fraction) - top_fraction) > 1e-9:
        return None
    try:
        return parse_spans(raw)
    except SpanFormatError:
        logger.warning("Stored %s could not be parsed; recomputing them.", SPANS_KEY)
        return None


#: Chroma 1.x fails a query that reaches a collection whose HNSW segment is not on disk yet (its first
#: writes still being compacted, e.g. while another client indexes) with an InternalError naming this;
#: it clears once the segment is written (chroma-core/chroma#4212), so such a query is retried.
SEGMENT_NOT_ON_DISK = "Nothing found on disk"
#: Seconds to wait before each retry (3.15 s in all), then the error is raised.
QUERY_RETRY_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


def query_collection(collection: Any, **kwargs: Any) -> Any:
    """``collection.query(**kwargs)``, retried while Chroma reports a segment not yet written to disk."""
    for wait in QUERY_RETRY_WAITS:
        try:
            return collection.query(**kwargs)
        except Exception as exc:  # noqa: BLE001 - chromadb's error classes differ between its clients
            if SEGMENT_NOT_ON_DISK not in str(exc):
                raise
            logger.debug("Chroma segment not on disk yet; retrying the query in %.2f s", wait)
            time.sleep(wait)
    return collection.query(**kwargs)  # the last try: its error, if any, reaches the caller


def distance_to_score(distance: float, space: str | None = "ip") -> float:
    """A Chroma distance back to the dot product.

    ``ip``: ``1 - q·p``. ``cosine`` (``1 - cos``) and ``l2`` (squared: ``|q - p|^2 = 2 - 2 q·p``) equal
    the dot product only for unit vectors, which is why ``check_collection`` lets only a normalising
    encoder use a collection in those spaces (an adopted plain-Chroma collection).
    """
    d = float(distance)
    if space == "l2":
        return 1.0 - d / 2.0
    return 1.0 - d


def query(
    encoder: Encoder,
    collection: Any,
    text: str,
    k: int = 5,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    rationales: bool = True,
    top_fraction: float = 0.2,
    stored_spans: bool = True,
) -> list[Hit]:
    """The top-``k`` passages for ``text``, best first, each with its CERA rationale spans.

    Args:
        encoder: The encoder the collection was built with.
        collection: A collection from ``open_collection``.
        text: The query.
        k: How many hits; fewer come back when the collection (or the filter) holds fewer.
        where: A Chroma metadata filter, e.g. ``{"article_id": "PMC123"}``.
        where_document: A Chroma document filter, e.g. ``{"$contains": "placebo"}``.
        rationales: Attach every hit's rationale spans (offsets into the hit's text): the ones
            stored at indexing time, else ``encoder.rationale_spans_batch`` over the hits.
        top_fraction: Fraction of tokens kept as rationale (see ``CERAEncoder.rationale_spans``).
        stored_spans: Use the spans stored at indexing time when they were made with this
            ``top_fraction``; ``False`` always recomputes them (same result, one more forward pass).
    """
    if k < 1:
        return []
    # No ``collection.count()`` guard: Chroma answers an empty collection with empty lists, and
    # the count is a separate scan that cost 12 ms of a 23 ms query at 154k passages.
    vector = np.asarray(encoder.encode_queries([text]), dtype=np.float32)[:1]
    result = query_collection(
        collection,
        query_embeddings=vector,
        n_results=int(k),
        where=dict(where) if where else None,
        where_document=dict(where_document) if where_document else None,
        include=["documents", "metadatas", "distances"],
    )
    ids = result["ids"][0]
    docs = (result.get("documents") or [[]])[0] or [""] * len(ids)
    metas = (result.get("metadatas") or [[]])[0] or [None] * len(ids)
    dists = (result.get("distances") or [[]])[0]
    space = _space(collection)
    hits = [
        Hit(id=i, text=d or "", score=distance_to_score(s, space), metadata=dict(m or {}))
        for i, d, m, s in zip(ids, docs, metas, dists, strict=True)
    ]
    return attach_spans(
        encoder, text, hits, rationales=rationales, top_fraction=top_fraction, stored_spans=stored_spans
    )


def attach_spans(
    encoder: Encoder,
    text: str,
    hits: list[Hit],
    *,
    rationales: bool = True,
    top_fraction: float = 0.2,
    stored_spans: bool = True,
) -> list[Hit]:
    """Move the stored spans out of each hit's metadata into ``hit.spans``; compute the missing ones.

    The step after the vector search, shared by ``query`` and adapters that search through a
    framework's own vector store (LangChain's ``Chroma``): the stored-span keys always leave the
    metadata; with ``rationales`` every hit gets spans (stored ones made with this ``top_fraction``
    unless ``stored_spans`` is false, else one ``rationale_spans_batch`` pass over the rest).
    """
    stored = [_stored_spans(h.metadata, top_fraction) for h in hits]
    if not stored_spans:
        stored = [None] * len(hits)
    if rationales and hits:
        for hit, ss in zip(hits, stored, strict=True):
            hit.spans = ss or []
        missing = [h for h, ss in zip(hits, stored, strict=True) if ss is None]
        if missing:
            spans = encoder.rationale_spans_batch(text, [h.text for h in missing], top_fraction=top_fraction)
            for hit, ss in zip(missing, spans, strict=True):
                hit.spans = [span_to_dict(s) for s in ss]
    return hits
