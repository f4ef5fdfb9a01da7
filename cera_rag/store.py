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

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

# Re-exported: ``store.load_encoder`` and friends are where callers have always found them.
from cera_rag.encoders import CONTRIEVER_MODEL, canonical_encoder_name, default_contriever_model, load_encoder
from cera_rag.errors import ConfigError
from cera_rag.spans import SPANS_KEY, SpanDict, SpanFormatError, parse_spans, span_to_dict, spans_to_json

if TYPE_CHECKING:
    from cera_rag.data.passages import Passage, PassageMode

logger = logging.getLogger(__name__)

__all__ = [
    "CONTRIEVER_MODEL",
    "CollectionMismatchError",
    "Hit",
    "IndexReport",
    "StoreError",
    "canonical_encoder_name",
    "check_collection",
    "check_encoder",
    "collection_encoder",
    "default_contriever_model",
    "get_client",
    "index_passages",
    "index_texts",
    "load_encoder",
    "open_collection",
    "open_for_encoder",
    "passages_from_directory",
    "passages_from_split",
    "query",
    "text_id",
]

#: Collection used when none is named.
DEFAULT_COLLECTION = "cera-passages"
#: Collection of the Contriever-style baseline when none is named.
CONTRIEVER_COLLECTION = "contriever-passages"

#: Collection-metadata keys that record the encoder a collection was built with.
META_ENCODER = "cera_encoder"
META_DIM = "cera_dim"
META_POOLING = "cera_pooling"
META_NORMALIZE = "cera_normalize"
#: Distance spaces a CERA collection may use: ``ip`` (what cera-rag creates), and ``cosine`` / ``l2``
#: (Chroma's default) for an adopted collection when the encoder normalises (see ``distance_to_score``).
SPACES = (None, "ip", "cosine", "l2")
#: Record-metadata key holding the ``top_fraction`` the stored ``cera_rationale_spans`` were made with.
SPANS_FRACTION_KEY = "cera_rationale_top_fraction"


class CollectionMismatchError(ConfigError):
    """A collection was built with another encoder (name, dimension, pooling or normalisation)."""


class StoreError(ConfigError):
    """Chroma is missing, unreachable, or a collection is unusable."""


class EncoderLike(Protocol):
    """What the store needs from an encoder (``cera_rag.model.CERAEncoder`` provides it)."""

    name: str
    dim: int

    def encode_queries(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray: ...

    def rationale_spans_batch(self, query: str, passages: Sequence[str], top_fraction: float = 0.2) -> Any: ...


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


@dataclass
class IndexReport:
    """What ``index_passages`` did."""

    added: int = 0
    skipped: int = 0
    duplicates: int = 0
    ids: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- client
def _chromadb() -> Any:
    try:
        import chromadb
    except ImportError:  # pragma: no cover - depends on the environment
        raise StoreError("chromadb is not installed; install it with `pip install 'cera-rag[chroma]'`.") from None
    return chromadb


def default_store_path() -> Path:
    """``$CERA_CHROMA_DIR`` if set, else ``cache_dir()/chroma``."""
    from cera_rag.paths import cache_dir

    env = os.environ.get("CERA_CHROMA_DIR")
    return Path(env).expanduser() if env else cache_dir() / "chroma"


def get_client(
    path: str | os.PathLike[str] | None = None,
    host: str | None = None,
    port: int | None = None,
    *,
    ssl: bool = False,
    headers: Mapping[str, str] | None = None,
    tenant: str | None = None,
    database: str | None = None,
) -> Any:
    """A Chroma client: embedded ``PersistentClient`` at ``path``, or ``HttpClient`` when host/port are given.

    Args:
        path: Folder of the embedded store (created if needed); default ``default_store_path()``.
        host: Host of a ``chroma run`` server (e.g. ``127.0.0.1``); selects the HTTP client.
        port: Port of that server (default 8000).
        ssl: Talk HTTPS to the server.
        headers: HTTP headers sent with every request (e.g. ``{"Authorization": "Bearer ..."}`` or
            ``{"X-Chroma-Token": ...}`` for a server with token auth).
        tenant: Chroma tenant (default ``default_tenant``).
        database: Chroma database (default ``default_database``).

    Raises:
        StoreError: If both a path and a host are given, or the server cannot be reached.
    """
    chromadb = _chromadb()
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    scope: dict[str, str] = {}
    if tenant is not None:
        scope["tenant"] = tenant
    if database is not None:
        scope["database"] = database
    if host is not None or port is not None:
        if path is not None:
            raise StoreError("Give either a store path (embedded Chroma) or host/port (a Chroma server), not both.")
        host, port = host or "127.0.0.1", int(port or 8000)
        try:
            return chromadb.HttpClient(
                host=host, port=port, ssl=ssl, headers=dict(headers) if headers else None, settings=settings, **scope
            )
        except Exception as exc:  # chromadb raises plain ValueError/ConnectionError subclasses
            scheme = "https" if ssl else "http"
            raise StoreError(
                f"Cannot reach a Chroma server at {scheme}://{host}:{port} ({exc}); start one with "
                f"`chroma run --host {host} --port {port} --path DIR`, or check its tenant, database and auth headers."
            ) from exc
    if ssl or headers:
        raise StoreError("ssl and headers apply to a Chroma server (host/port), not to an embedded store path.")
    folder = Path(path).expanduser() if path is not None else default_store_path()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return chromadb.PersistentClient(path=str(folder), settings=settings, **scope)
    except Exception as exc:  # an unknown tenant or database
        if not scope:
            raise
        raise StoreError(f"Cannot open {folder} with {scope} ({exc}); create the tenant/database first.") from exc


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
    """The encoder a collection records: ``{"encoder", "dim", "pooling", "normalize", "space"}``."""
    meta = collection.metadata or {}
    return {
        "encoder": meta.get(META_ENCODER),
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
    if info["space"] not in SPACES:
        raise CollectionMismatchError(
            f"Collection {name!r} uses the {info['space']!r} distance; CERA collections use 'ip'. "
            "Re-index into a new collection created with cera_rag.store.open_collection."
        )
    unit = normalize if normalize is not None else info["normalize"]
    if info["space"] in ("cosine", "l2") and unit is not True:
        raise CollectionMismatchError(
            f"Collection {name!r} uses the {info['space']!r} distance, which ranks like CERA's dot product only "
            "for normalised vectors, and this encoder does not normalise (Contriever-style). Index into a "
            "collection created with configuration={'hnsw': {'space': 'ip'}} (cera_rag.store.open_collection)."
        )
    problems = []
    if canonical_encoder_name(info["encoder"]) != canonical_encoder_name(encoder_name):
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
            ``canonical_encoder_name``), compared afterwards.
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
        metadata: dict[str, Any] = {META_ENCODER: canonical_encoder_name(encoder_name), META_DIM: int(dim)}
        if pooling is not None:
            metadata[META_POOLING] = str(pooling)
        if normalize is not None:
            metadata[META_NORMALIZE] = bool(normalize)
        collection = client.get_or_create_collection(
            name, configuration={"hnsw": {"space": "ip"}}, metadata=metadata, embedding_function=embedding_function
        )
    if collection_encoder(collection)["encoder"] is None and collection.count() == 0:
        _adopt(collection, encoder_name, dim, pooling, normalize)
    check_collection(collection, encoder_name, dim, pooling, normalize)
    return collection


def _adopt(collection: Any, encoder_name: str, dim: int, pooling: str | None, normalize: bool | None) -> None:
    """Record the encoder in an empty collection made elsewhere (its other metadata kept)."""
    identity: dict[str, Any] = {META_ENCODER: canonical_encoder_name(encoder_name), META_DIM: int(dim)}
    if pooling is not None:
        identity[META_POOLING] = str(pooling)
    if normalize is not None:
        identity[META_NORMALIZE] = bool(normalize)
    if _space(collection) in ("cosine", "l2") and normalize is not True:
        check_collection(_Described(collection, identity), encoder_name, dim, pooling, normalize)  # says why not
    # Chroma refuses ``hnsw:*`` keys in an update; they stay as they are (they are the configuration).
    kept = {k: v for k, v in (collection.metadata or {}).items() if not str(k).startswith("hnsw:")}
    collection.modify(metadata={**kept, **identity})
    logger.info("Adopted the empty collection %r for encoder %s.", getattr(collection, "name", "?"), encoder_name)


@dataclass
class _Described:
    """A collection seen with the identity it would get (to check it before writing anything)."""

    collection: Any
    identity: dict[str, Any]

    @property
    def name(self) -> str:
        return str(getattr(self.collection, "name", "?"))

    @property
    def metadata(self) -> dict[str, Any]:
        return {**(self.collection.metadata or {}), **self.identity}

    @property
    def configuration_json(self) -> Any:
        return getattr(self.collection, "configuration_json", None)


def _encoder_config(encoder: Any) -> tuple[str | None, bool | None]:
    config = getattr(encoder, "config", None)
    return getattr(config, "pooling", None), getattr(config, "normalize", None)


def open_for_encoder(encoder: Any, **kwargs: Any) -> Any:
    """``open_collection`` with the name, dimension, pooling and normalisation of ``encoder``.

    A new collection records ``CERAEmbeddingFunction(encoder=encoder)`` in its configuration, so
    plain-Chroma code can query it with ``query_texts`` (see ``cera_rag.chroma_embedding``).
    """
    pooling, normalize = _encoder_config(encoder)
    if "embedding_function" not in kwargs and hasattr(encoder, "config"):
        from cera_rag.chroma_embedding import CERAEmbeddingFunction

        kwargs["embedding_function"] = CERAEmbeddingFunction.shared(encoder)
    return open_collection(encoder.name, encoder.dim, pooling=pooling, normalize=normalize, **kwargs)


def check_encoder(collection: Any, encoder: Any) -> None:
    """``check_collection`` for an encoder object."""
    pooling, normalize = _encoder_config(encoder)
    check_collection(collection, encoder.name, encoder.dim, pooling, normalize)


# -------------------------------------------------------------------------------------- indexing
Record = tuple[str, str, dict[str, Any]]


def _scalar_list(value: Any) -> bool:
    """A non-empty list of one scalar type (str, int, float or bool): what Chroma stores as an array."""
    if not isinstance(value, (list, tuple)) or not value:
        return False
    kinds = {type(v) for v in value}
    return len(kinds) == 1 and kinds <= {str, int, float, bool}


def _scalar_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Chroma takes str/int/float/bool and non-empty lists of one of them; anything else is stored as JSON."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if value is None:
            continue
        if isinstance(value, (str, int, float, bool)):
            out[str(key)] = value
        elif hasattr(value, "item") and not hasattr(value, "__len__"):  # numpy scalar
            out[str(key)] = value.item()
        elif _scalar_list(value):
            out[str(key)] = list(value)
        else:
            out[str(key)] = json.dumps(value, default=str)
    return out


def as_record(item: Any) -> Record:
    """``(id, text, metadata)`` for a ``Passage`` or an ``(id, text[, metadata])`` tuple."""
    if hasattr(item, "passage_id") and hasattr(item, "text"):
        meta = {
            "article_id": item.article_id,
            "passage_index": item.index,
            "start": item.start,
            "end": item.end,
        }
        return item.passage_id, item.text, meta
    if isinstance(item, Sequence) and not isinstance(item, str) and len(item) in (2, 3):
        pid, text = item[0], item[1]
        meta = dict(item[2]) if len(item) == 3 and item[2] else {}
        return str(pid), str(text), meta
    raise TypeError(f"Cannot index {item!r}: give Passage objects or (id, text, metadata) tuples.")


def _chunks(seq: Sequence[Record], size: int) -> Iterator[Sequence[Record]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def index_passages(
    encoder: Any,
    collection: Any,
    passages: Iterable[Any],
    batch_size: int = 64,
    show_progress: bool = False,
    check: bool = True,
    rationales: bool = True,
    top_fraction: float = 0.2,
) -> IndexReport:
    """Embed and upsert passages, skipping ids the collection already holds.

    Args:
        encoder: A ``CERAEncoder`` (or anything with ``encode_passages``, ``name`` and ``dim``).
        collection: A collection from ``open_collection``.
        passages: ``Passage`` objects (id ``passage_id``) or ``(id, text, metadata)`` tuples.
        batch_size: Passages embedded and written per step; each step is committed before the
            next, so an interrupted run loses at most one batch and resumes from there.
        show_progress: Show a rich progress bar.
        check: Check first that the collection was built for this encoder.
        rationales: Store each passage's rationale spans (from the embedding's forward pass) so
            that ``query`` returns them without re-encoding the hits. Ignored for encoders whose
            ``encode_passages`` has no ``return_rationales``.
        top_fraction: Fraction of tokens kept as rationale in the stored spans.

    Returns:
        How many passages were added, skipped as already indexed, or dropped as repeated ids.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}.")
    if check:
        check_encoder(collection, encoder)
    rationales = rationales and _returns_rationales(encoder)
    records: list[Record] = []
    seen: set[str] = set()
    report = IndexReport()
    for item in passages:
        rec = as_record(item)
        if rec[0] in seen:
            report.duplicates += 1
            continue
        seen.add(rec[0])
        records.append(rec)
    report.ids = [r[0] for r in records]
    progress = None
    task = None
    if show_progress:
        from rich.progress import Progress

        progress = Progress(transient=False)
        progress.start()
        task = progress.add_task(f"Indexing into {getattr(collection, 'name', 'collection')}", total=len(records))
    try:
        for batch in _chunks(records, batch_size):
            ids = [r[0] for r in batch]
            existing = set(collection.get(ids=ids, include=[])["ids"])
            todo = [r for r in batch if r[0] not in existing]
            report.skipped += len(batch) - len(todo)
            if todo:
                texts = [r[1] for r in todo]
                metadatas: list[dict[str, Any] | None]
                if rationales:
                    vectors, spans = encoder.encode_passages(
                        texts, batch_size=batch_size, return_rationales=True, top_fraction=top_fraction
                    )
                    stamp = {SPANS_FRACTION_KEY: float(top_fraction)}
                    metadatas = [
                        {**_scalar_metadata(r[2]), SPANS_KEY: spans_to_json(ss), **stamp}
                        for r, ss in zip(todo, spans, strict=True)
                    ]
                else:
                    vectors = encoder.encode_passages(texts, batch_size=batch_size)
                    metadatas = [_scalar_metadata(r[2]) or None for r in todo]
                collection.upsert(
                    ids=[r[0] for r in todo],
                    embeddings=np.asarray(vectors, dtype=np.float32),
                    documents=[r[1] for r in todo],
                    metadatas=metadatas if any(m is not None for m in metadatas) else None,
                )
                report.added += len(todo)
            if progress is not None and task is not None:
                progress.advance(task, len(batch))
    finally:
        if progress is not None:
            progress.stop()
    return report


def text_id(text: str) -> str:
    """A deterministic id for a text without one (so re-adding the same text adds nothing)."""
    import hashlib

    return "sha1:" + hashlib.sha1(text.encode("utf-8")).hexdigest()


def index_texts(
    encoder: Any,
    collection: Any,
    texts: Sequence[str],
    metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    ids: Sequence[str | None] | None = None,
    **kwargs: Any,
) -> list[str]:
    """``index_passages`` for plain texts: ids default to ``text_id(text)``; returns the ids, in order.

    Args:
        encoder: The collection's encoder.
        collection: A collection from ``open_collection``.
        texts: The texts.
        metadatas: One mapping (or ``None``) per text.
        ids: One id (or ``None``: the text's hash) per text.
        **kwargs: ``index_passages`` options (``batch_size``, ``top_fraction``, ``show_progress``...).

    Raises:
        ValueError: If ``metadatas`` or ``ids`` do not have one entry per text.
    """
    if metadatas is not None and len(metadatas) != len(texts):
        raise ValueError("texts and metadatas must have the same length.")
    if ids is not None and len(ids) != len(texts):
        raise ValueError("texts and ids must have the same length.")
    id_list = [str(i) if i else text_id(t) for i, t in zip(ids or [None] * len(texts), texts, strict=True)]
    metas = metadatas or [None] * len(texts)
    records = [(i, t, dict(m or {})) for i, t, m in zip(id_list, texts, metas, strict=True)]
    index_passages(encoder, collection, records, **kwargs)
    return id_list


def _returns_rationales(encoder: Any) -> bool:
    """Whether ``encoder.encode_passages`` can return rationale spans with the embeddings."""
    import inspect

    try:
        return "return_rationales" in inspect.signature(encoder.encode_passages).parameters
    except (TypeError, ValueError, AttributeError):
        return False


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
    encoder: Any,
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
    if k < 1 or collection.count() == 0:
        return []
    vector = np.asarray(encoder.encode_queries([text]), dtype=np.float32)[:1]
    result = collection.query(
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


# --------------------------------------------------------------------------------------- corpora
def passages_from_directory(
    directory: str | os.PathLike[str],
    pattern: str = "*.txt",
    mode: PassageMode = "sentences",
    **split_kwargs: Any,
) -> list[Passage]:
    """Passages of every text file under ``directory`` (recursively); the article id is the relative path.

    Files are read as UTF-8, undecodable bytes becoming U+FFFD. Empty files give no passages;
    binary files (holding a NUL byte) are skipped with a logged warning. Only files inside
    ``directory`` are read: a symlink that points outside it is refused.

    Raises:
        StoreError: If the folder does not exist, holds no matching file, or holds a symlink to a
            file outside it.
    """
    from cera_rag.data.passages import split_passages

    root = Path(directory).expanduser()
    if not root.is_dir():
        raise StoreError(f"{root} is not a folder; give a folder of {pattern} files to index.")
    files = sorted(p for p in root.rglob(pattern) if p.is_file())
    if not files:
        raise StoreError(f"No {pattern} files under {root}.")
    real_root = root.resolve()
    out: list[Passage] = []
    for f in files:
        target = f.resolve()
        if not target.is_relative_to(real_root):
            raise StoreError(
                f"{f} points outside {root} (to {target}); only files inside the folder are indexed. "
                "Copy the file into the folder, or index the folder it lives in."
            )
        data = f.read_bytes()
        if b"\0" in data:
            logger.warning("Skipping %s: it looks binary (it holds NUL bytes), not text.", f)
            continue
        article_id = f.relative_to(root).with_suffix("").as_posix()
        text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")  # as read_text
        out.extend(split_passages(text, article_id, mode, **split_kwargs))
    return out


def passages_from_split(
    split: str, data_dir: str | os.PathLike[str] | None = None, config: Any = None
) -> list[Passage]:
    """Every passage of a processed Evidence Inference split (``cera_rag.data.dataset.load_processed``)."""
    from cera_rag.data.dataset import load_processed

    return load_processed(split, config, data_dir=Path(data_dir) if data_dir is not None else None).all_passages()
