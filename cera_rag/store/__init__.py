"""Chroma collections for CERA passages: one code path for an embedded store and a ``chroma run`` server.

* ``get_client(path=...)`` opens an embedded ``PersistentClient`` (default: ``cache_dir()/chroma``);
  ``get_client(host=..., port=...)`` talks to a server through ``HttpClient``. Everything else
  takes the resulting collection, so both behave the same.
* ``open_collection`` creates collections in the ``ip`` (inner product) space and records the
  encoder's name and dimension (and pooling / normalisation) in the collection metadata; opening
  it again with another encoder fails with ``CollectionMismatchError``.
* ``index_passages`` upserts with deterministic ids (``Passage.passage_id``) and skips ids already
  stored, so re-indexing is idempotent and an interrupted run resumes without duplicates.
* ``query`` embeds a query, searches, and attaches the CERA rationale spans of every hit.

A bi-encoder encodes a passage without its query, so a passage's rationale spans (its CLS
attention) do not depend on the query: ``index_passages`` computes them in the same forward pass
as the embedding and stores them in the record's metadata, and ``query`` reads them back instead
of running the encoder over the hits again (the spans of records indexed without them, or with
another ``top_fraction``, are computed at query time as before).

Chroma's ``ip`` distance is ``1 - q·p``, for normalised and unnormalised (Contriever-style)
vectors alike, so ``score = 1 - distance`` is the dot product in both cases.

``chromadb`` is imported lazily: ``import cera_rag.store`` works without it.
"""

# One module per job; everything is re-exported here, where callers have always found it.
from cera_rag.encoders import (
    CONTRIEVER_MODEL,
    Encoder,
    canonical_encoder_name,
    default_contriever_model,
    load_encoder,
    weights_digest,
)

# The record-metadata key the store writes the spans under, and its parser.
from cera_rag.spans import SPANS_KEY, parse_spans
from cera_rag.store.client import client_of, default_store_path, get_client
from cera_rag.store.collection import (
    CONTRIEVER_COLLECTION,
    DEFAULT_COLLECTION,
    META_DIM,
    META_ENCODER,
    META_NORMALIZE,
    META_POOLING,
    META_WEIGHTS,
    SPACES,
    SPANS_FRACTION_KEY,
    check_collection,
    check_encoder,
    collection_encoder,
    open_collection,
    open_for_encoder,
)
from cera_rag.store.corpora import passages_from_directory, passages_from_split
from cera_rag.store.distributed import RayIndexReport, index_with_ray
from cera_rag.store.errors import CollectionMismatchError, StoreError
from cera_rag.store.indexing import (
    IndexReport,
    Record,
    as_record,
    index_passages,
    index_texts,
    text_id,
)
from cera_rag.store.search import Hit, attach_spans, distance_to_score, query

__all__ = [
    "CONTRIEVER_COLLECTION",
    "CONTRIEVER_MODEL",
    "DEFAULT_COLLECTION",
    "META_DIM",
    "META_ENCODER",
    "META_NORMALIZE",
    "META_POOLING",
    "META_WEIGHTS",
    "SPACES",
    "SPANS_KEY",
    "SPANS_FRACTION_KEY",
    "CollectionMismatchError",
    "Encoder",
    "Hit",
    "IndexReport",
    "RayIndexReport",
    "Record",
    "StoreError",
    "as_record",
    "attach_spans",
    "canonical_encoder_name",
    "weights_digest",
    "check_collection",
    "check_encoder",
    "client_of",
    "collection_encoder",
    "default_contriever_model",
    "default_store_path",
    "distance_to_score",
    "get_client",
    "index_passages",
    "index_texts",
    "index_with_ray",
    "load_encoder",
    "open_collection",
    "open_for_encoder",
    "parse_spans",
    "passages_from_directory",
    "passages_from_split",
    "query",
    "text_id",
]
