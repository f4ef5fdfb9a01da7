"""Indexing: embed passages (and their attention spans, same pass) and upsert them under deterministic ids."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cera_rag.encoders import Encoder
from cera_rag.spans import SPANS_KEY, spans_to_json
from cera_rag.store.collection import SPANS_FRACTION_KEY, check_encoder


@dataclass
class IndexReport:
    """What ``index_passages`` did."""

    added: int = 0
    skipped: int = 0
    duplicates: int = 0
    ids: list[str] = field(default_factory=list)


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
    encoder: Encoder,
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
    encoder: Encoder,
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


def _returns_rationales(encoder: Encoder) -> bool:
    """Whether ``encoder.encode_passages`` can return rationale spans with the embeddings."""
    import inspect

    try:
        return "return_rationales" in inspect.signature(encoder.encode_passages).parameters
    except (TypeError, ValueError, AttributeError):
        return False
