"""Collections: create in the ``ip`` space, record the encoder, adopt an empty one, refuse a mismatch.

The encoder is recorded by name (a local folder as its absolute path) and, for a local folder, by the
digest of its weights, so the same weights found at another path (a new virtual environment, another
checkout) still match the collection, and a retrained checkpoint is refused wherever it lives.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from cera_rag.encoders import Encoder, canonical_encoder_name, weights_digest
from cera_rag.store.client import _chromadb, get_client
from cera_rag.store.errors import CollectionMismatchError, StoreError

logger = logging.getLogger(__name__)


#: Collection used when none is named.
DEFAULT_COLLECTION = "cera-passages"
#: Collection of the Contriever-style baseline when none is named.
CONTRIEVER_COLLECTION = "contriever-passages"

#: Collection-metadata keys that record the encoder a collection was built with.
META_ENCODER = "cera_encoder"
META_DIM = "cera_dim"
META_POOLING = "cera_pooling"
META_NORMALIZE = "cera_normalize"
#: ``weights_digest`` of a local encoder folder (absent for a hub id and in collections made before it).
META_WEIGHTS = "cera_weights"
#: Distance spaces a CERA collection may use: ``ip`` (what cera-rag creates), and ``cosine`` / ``l2``
#: (Chroma's default) for an adopted collection when the encoder normalises (see ``distance_to_score``).
SPACES = (None, "ip", "cosine", "l2")
#: Record-metadata key holding the ``top_fraction`` the stored ``cera_rationale_spans`` were made with.
SPANS_FRACTION_KEY = "cera_rationale_top_fraction"


# ------------------------------------------------------------------------------------ collection
def _space(collection: Any) -> str | None:
    # The raw JSON: the parsed ``configuration`` warns about the "legacy" (absent) embedding function.
    config = getattr(collection, "configuration_json", None)
    if not isinstance(config, Mapping):
        config = getattr(collection, "configuration", None) or {}
    hnsw = config.get("hnsw") if isinstance(config, Mapping) else None
    space = hnsw.get("space") if isinstance(hnsw, Mapping) else None
    if space is None:  # collections made with the legacy metadata key
        space = (collection.metadata or {}).get("hnsw:space")
    return space


def collection_encoder(collection: Any) -> dict[str, Any]:
    """The encoder a collection records: ``{"encoder", "weights", "dim", "pooling", "normalize", "space"}``."""
    meta = collection.metadata or {}
    return {
        "encoder": meta.get(META_ENCODER),
        "weights": meta.get(META_WEIGHTS),
        "dim": meta.get(META_DIM),
        "pooling": meta.get(META_POOLING),
        "normalize": meta.get(META_NORMALIZE),
        "space": _space(collection),
    }


def check_collection(
    collection: Any,
    encoder_name: str,
    dim: int,
    pooling: str | None = None,
    normalize: bool | None = None,
) -> None:
    """Raise ``CollectionMismatchError`` unless ``collection`` was built for this encoder.

    Pooling and normalisation are compared only when both the caller and the collection give them.
    """
    info = collection_encoder(collection)
    name = getattr(collection, "name", "?")
    if info["encoder"] is None or info["dim"] is None:
        raise CollectionMismatchError(
            f"Collection {name!r} does not record a CERA encoder (no {META_ENCODER}/{META_DIM} metadata); "
            "create it with cera_rag.store.open_collection, or index into a new collection name."
        )
    _check_space(name, info["space"], normalize if normalize is not None else info["normalize"])
    problems = []
    if not _same_encoder(info, encoder_name):
        problems.append(f"encoder {info['encoder']!r} (you gave {encoder_name!r})")
    if int(info["dim"]) != int(dim):
        problems.append(f"dimension {info['dim']} (you gave {dim})")
    if pooling is not None and info["pooling"] is not None and info["pooling"] != pooling:
        problems.append(f"pooling {info['pooling']!r} (you gave {pooling!r})")
    if normalize is not None and info["normalize"] is not None and bool(info["normalize"]) != bool(normalize):
        problems.append(f"normalize={info['normalize']} (you gave normalize={normalize})")
    if problems:
        raise CollectionMismatchError(
            f"Collection {name!r} was indexed with " + ", ".join(problems) + ". Vectors from different "
            "encoders are not comparable: query it with the encoder it was built with, or re-index into "
            "another collection name (or delete this one)."
        )


def _same_encoder(info: Mapping[str, Any], encoder_name: str) -> bool:
    """The recorded name, or (the folder moved) the recorded digest of the same weights."""
    if canonical_encoder_name(info["encoder"]) == canonical_encoder_name(encoder_name):
        return True
    return info.get("weights") is not None and info["weights"] == weights_digest(encoder_name)


def _encoder_identity(encoder_name: str, dim: int, pooling: str | None, normalize: bool | None) -> dict[str, Any]:
    """The collection metadata that records an encoder (what ``check_collection`` compares)."""
    identity: dict[str, Any] = {META_ENCODER: canonical_encoder_name(encoder_name), META_DIM: int(dim)}
    digest = weights_digest(encoder_name)
    if digest is not None:
        identity[META_WEIGHTS] = digest
    if pooling is not None:
        identity[META_POOLING] = str(pooling)
    if normalize is not None:
        identity[META_NORMALIZE] = bool(normalize)
    return identity


def _check_space(name: str, space: str | None, normalized: bool | None) -> None:
    """Refuse a distance that does not rank like CERA's dot product for this encoder."""
    if space not in SPACES:
        raise CollectionMismatchError(
            f"Collection {name!r} uses the {space!r} distance; CERA collections use 'ip'. "
            "Re-index into a new collection created with cera_rag.store.open_collection."
        )
    if space in ("cosine", "l2") and normalized is not True:
        raise CollectionMismatchError(
            f"Collection {name!r} uses the {space!r} distance, which ranks like CERA's dot product only "
            "for normalised vectors, and this encoder does not normalise (Contriever-style). Index into a "
            "collection created with configuration={'hnsw': {'space': 'ip'}} (cera_rag.store.open_collection)."
        )


def open_collection(
    encoder_name: str,
    dim: int,
    *,
    path: str | os.PathLike[str] | None = None,
    host: str | None = None,
    port: int | None = None,
    client: Any = None,
    name: str = DEFAULT_COLLECTION,
    pooling: str | None = None,
    normalize: bool | None = None,
    create: bool = True,
    embedding_function: Any = None,
) -> Any:
    """Open (or create) a CERA collection and check that it matches the encoder.

    An *empty* collection that records no encoder (made with plain ``chromadb``) is adopted: the
    encoder's identity is written into its metadata. A non-empty one is refused.

    Args:
        encoder_name: ``encoder.name``; recorded at creation (a local folder as its absolute path, see
            ``canonical_encoder_name``, and its ``weights_digest``), compared afterwards.
        dim: ``encoder.dim``; recorded and compared likewise.
        path: Embedded store folder (see ``get_client``).
        host: Chroma server host (see ``get_client``).
        port: Chroma server port.
        client: An existing Chroma client (overrides path/host/port).
        name: Collection name (3-512 characters of ``[a-zA-Z0-9._-]``).
        pooling: Encoder pooling, recorded and compared when given.
        normalize: Whether the encoder normalises, recorded and compared when given.
        create: Create the collection when it does not exist (else ``StoreError``).
        embedding_function: Recorded in a new collection's configuration (a ``CERAEmbeddingFunction``,
            see ``open_for_encoder``), so ``collection.query(query_texts=...)`` works in plain Chroma.

    Returns:
        The ``chromadb`` collection (cera-rag itself always passes the encoder's vectors).

    Raises:
        CollectionMismatchError: If the collection was built with another encoder or dimension.
        StoreError: If it does not exist and ``create`` is false.
    """
    chromadb = _chromadb()
    client = client if client is not None else get_client(path, host, port)
    try:
        collection = client.get_collection(name, embedding_function=None)
    except chromadb.errors.NotFoundError:
        if not create:
            raise StoreError(f"No collection {name!r} in this Chroma store; index some passages first.") from None
        collection = client.get_or_create_collection(
            name,
            configuration={"hnsw": {"space": "ip"}},
            metadata=_encoder_identity(encoder_name, dim, pooling, normalize),
            embedding_function=embedding_function,
        )
    if collection_encoder(collection)["encoder"] is None and collection.count() == 0:
        _adopt(collection, encoder_name, dim, pooling, normalize)
    check_collection(collection, encoder_name, dim, pooling, normalize)
    return collection


def _adopt(collection: Any, encoder_name: str, dim: int, pooling: str | None, normalize: bool | None) -> None:
    """Record the encoder in an empty collection made elsewhere (its other metadata kept)."""
    _check_space(str(getattr(collection, "name", "?")), _space(collection), normalize)  # before writing anything
    identity = _encoder_identity(encoder_name, dim, pooling, normalize)
    # Chroma refuses ``hnsw:*`` keys in an update; they stay as they are (they are the configuration).
    kept = {k: v for k, v in (collection.metadata or {}).items() if not str(k).startswith("hnsw:")}
    collection.modify(metadata={**kept, **identity})
    logger.info("Adopted the empty collection %r for encoder %s.", getattr(collection, "name", "?"), encoder_name)


def _encoder_config(encoder: Encoder) -> tuple[str | None, bool | None]:
    config = getattr(encoder, "config", None)
    return getattr(config, "pooling", None), getattr(config, "normalize", None)


def open_for_encoder(encoder: Encoder, **kwargs: Any) -> Any:
    """``open_collection`` with the name, dimension, pooling and normalisation of ``encoder``.

    A new collection records ``CERAEmbeddingFunction(encoder=encoder)`` in its configuration, so
    plain-Chroma code can query it with ``query_texts`` (see ``cera_rag.chroma_embedding``).
    """
    pooling, normalize = _encoder_config(encoder)
    if "embedding_function" not in kwargs and hasattr(encoder, "config"):
        from cera_rag.chroma_embedding import CERAEmbeddingFunction

        kwargs["embedding_function"] = CERAEmbeddingFunction.shared(encoder)
    return open_collection(encoder.name, encoder.dim, pooling=pooling, normalize=normalize, **kwargs)


def check_encoder(collection: Any, encoder: Encoder) -> None:
    """``check_collection`` for an encoder object."""
    pooling, normalize = _encoder_config(encoder)
    check_collection(collection, encoder.name, encoder.dim, pooling, normalize)
