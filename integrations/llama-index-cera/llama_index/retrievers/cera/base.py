"""``CERARetriever``: a LlamaIndex retriever over a Chroma collection that returns CERA rationale spans.

Every retrieved ``NodeWithScore`` holds a ``TextNode`` whose id is the passage id stored in
Chroma, whose text is the passage, and whose metadata carries the stored metadata plus
``cera_rationale_spans``: a JSON list of ``{start, end, text, weight}`` with offsets into the
node text (read it with ``parse_spans``). The spans key is excluded from what embedders and LLMs
see, so prompts are not cluttered with offsets.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import IndexNode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

from cera_rag import store
from cera_rag.encoders import is_contriever_style
from cera_rag.spans import SPANS_KEY

#: Metadata keys the retriever adds that embedders and LLMs should not see.
HIDDEN_METADATA_KEYS = (SPANS_KEY, "cera_id")

_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.CONTAINS: "$contains",
}
_NEGATED = {
    "$eq": "$ne",
    "$ne": "$eq",
    "$gt": "$lte",
    "$lte": "$gt",
    "$lt": "$gte",
    "$gte": "$lt",
    "$in": "$nin",
    "$nin": "$in",
    "$contains": "$not_contains",
    "$not_contains": "$contains",
}


def _combine(clauses: list[dict[str, Any]], operator: str) -> dict[str, Any] | None:
    if not clauses:
        return None
    if len(clauses) == 1:
        return clauses[0]
    return {operator: clauses}


def _negate(where: dict[str, Any]) -> dict[str, Any]:
    """The Chroma ``where`` matching what ``where`` does not (De Morgan; Chroma has no ``$not``)."""
    ((key, value),) = where.items()
    if key in ("$and", "$or"):
        return {"$or" if key == "$and" else "$and": [_negate(c) for c in value]}
    if not isinstance(value, Mapping):
        return {key: {"$ne": value}}
    ((op, operand),) = value.items()
    return {key: {_NEGATED[op]: operand}}


def _filter_to_where(f: MetadataFilter) -> dict[str, Any]:
    op = FilterOperator(f.operator)
    if op in (FilterOperator.IN, FilterOperator.NIN):
        values = f.value if isinstance(f.value, list) else [f.value]
        return {f.key: {_OPERATORS[op]: values}}
    if op in _OPERATORS:
        if isinstance(f.value, list):
            raise ValueError(f"Filter on {f.key!r}: operator {op.value!r} takes one value, got a list {f.value!r}.")
        return {f.key: {_OPERATORS[op]: f.value}}
    if op in (FilterOperator.ANY, FilterOperator.ALL):
        values = f.value if isinstance(f.value, list) else [f.value]
        clauses = [{f.key: {"$contains": v}} for v in values]
        combined = _combine(clauses, "$or" if op == FilterOperator.ANY else "$and")
        if combined is None:
            raise ValueError(f"Filter on {f.key!r}: operator {op.value!r} needs at least one value.")
        return combined
    raise ValueError(
        f"Filter operator {op.value!r} (on {f.key!r}) has no Chroma metadata equivalent; supported: "
        + ", ".join(o.value for o in [*_OPERATORS, FilterOperator.ANY, FilterOperator.ALL])
        + "."
    )


def metadata_filters_to_where(filters: MetadataFilters | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Convert LlamaIndex ``MetadataFilters`` into a Chroma ``where`` filter.

    Args:
        filters: ``MetadataFilters`` (nested ones and the ``and``/``or``/``not`` conditions are
            supported), a ready Chroma ``where`` mapping (returned as a dict), or ``None``.

    Returns:
        The Chroma ``where`` dict, or ``None`` when there is nothing to filter on.

    Raises:
        ValueError: For operators Chroma metadata filters cannot express (``text_match``,
            ``text_match_insensitive``, ``is_empty``).

    Example:
        >>> from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
        >>> metadata_filters_to_where(MetadataFilters(filters=[MetadataFilter(key="year", value=2020)]))
        {'year': {'$eq': 2020}}
    """
    if filters is None:
        return None
    if isinstance(filters, Mapping):
        return dict(filters) or None
    clauses: list[dict[str, Any]] = []
    for f in filters.filters:
        clause = metadata_filters_to_where(f) if isinstance(f, MetadataFilters) else _filter_to_where(f)
        if clause is not None:
            clauses.append(clause)
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition == FilterCondition.NOT:
        combined = _combine(clauses, "$and")
        return _negate(combined) if combined is not None else None
    return _combine(clauses, "$or" if condition == FilterCondition.OR else "$and")


def node_from_hit(hit: store.Hit) -> TextNode:
    """A ``TextNode`` for a store hit: id, text, metadata with spans, and the article range of a ``Passage``."""
    metadata = hit.metadata_with_spans()
    start, end = hit.metadata.get("start"), hit.metadata.get("end")
    from_passage = "article_id" in hit.metadata and "passage_index" in hit.metadata
    span_ok = from_passage and type(start) is int and type(end) is int
    return TextNode(
        id_=hit.id,
        text=hit.text,
        metadata=metadata,
        excluded_embed_metadata_keys=list(HIDDEN_METADATA_KEYS),
        excluded_llm_metadata_keys=list(HIDDEN_METADATA_KEYS),
        start_char_idx=start if span_ok else None,
        end_char_idx=end if span_ok else None,
    )


class CERARetriever(BaseRetriever):
    """Dense retrieval with a CERA encoder over a Chroma collection, with rationale spans on every node.

    Works the same on an embedded ``PersistentClient`` and on a ``chroma run`` server
    (``HttpClient``); the collection records the encoder that built it, and a mismatching
    encoder raises ``cera_rag.store.CollectionMismatchError``.

    Args:
        encoder: A ``cera_rag.model.CERAEncoder`` (the one the collection was built with).
        chroma_collection: A collection from ``cera_rag.store.open_collection`` / ``open_for_encoder``.
        similarity_top_k: Nodes returned per query (fewer when the collection holds fewer).
        filters: LlamaIndex ``MetadataFilters`` (or a raw Chroma ``where`` dict) applied to every query.
        where_document: A Chroma document filter, e.g. ``{"$contains": "placebo"}``.
        rationales: Attach rationale spans (``cera_rationale_spans``) to the nodes.
        top_fraction: Fraction of a passage's words kept as rationale.
        check: Check that the collection was built with ``encoder`` (recommended).
        callback_manager: LlamaIndex callback manager (retrieval events are emitted by ``BaseRetriever``).
        object_map: Passed to ``BaseRetriever`` (recursive retrieval).
        objects: Passed to ``BaseRetriever`` (recursive retrieval).
        verbose: Passed to ``BaseRetriever``.

    Example:
        >>> retriever = CERARetriever.from_pretrained(  # doctest: +SKIP
        ...     "checkpoints/cera-best", chroma_collection="cera-passages", similarity_top_k=3
        ... )
        >>> for n in retriever.retrieve("Does aspirin lower pain?"):  # doctest: +SKIP
        ...     print(n.score, parse_spans(n.node.metadata))
    """

    def __init__(
        self,
        encoder: Any,
        chroma_collection: Any,
        similarity_top_k: int = 5,
        filters: MetadataFilters | Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        rationales: bool = True,
        top_fraction: float = 0.2,
        check: bool = True,
        callback_manager: CallbackManager | None = None,
        object_map: dict[str, Any] | None = None,
        objects: list[IndexNode] | None = None,
        verbose: bool = False,
    ) -> None:
        if similarity_top_k < 1:
            raise ValueError(f"similarity_top_k must be >= 1, got {similarity_top_k}.")
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}.")
        if check:
            store.check_encoder(chroma_collection, encoder)
        self._encoder = encoder
        self._collection = chroma_collection
        self._similarity_top_k = int(similarity_top_k)
        self._filters = filters
        self._where = metadata_filters_to_where(filters)
        self._where_document = dict(where_document) if where_document else None
        self._rationales = rationales
        self._top_fraction = top_fraction
        super().__init__(callback_manager=callback_manager, object_map=object_map, objects=objects, verbose=verbose)

    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike[str] | None,
        chroma_collection: Any = None,
        similarity_top_k: int = 5,
        filters: MetadataFilters | Mapping[str, Any] | None = None,
        *,
        persist_dir: str | os.PathLike[str] | None = None,
        host: str | None = None,
        port: int | None = None,
        client: Any = None,
        device: str | None = None,
        create: bool = True,
        backend: str = "torch",
        **kwargs: Any,
    ) -> CERARetriever:
        """Load an encoder and open its collection.

        Args:
            model_name_or_path: CERA checkpoint folder or hub id; ``MODEL@contriever`` (or
                ``contriever``: ``cera_rag.store.default_contriever_model()``) is the Contriever-style
                configuration (mean pooling, unnormalised dot product).
            chroma_collection: A Chroma collection object, or the name of one to open or create
                (default ``cera-passages``, or ``contriever-passages`` for the Contriever-style configuration).
            similarity_top_k: Nodes returned per query.
            filters: ``MetadataFilters`` (or a Chroma ``where`` dict) for every query.
            persist_dir: Embedded Chroma folder (default: ``$CERA_CHROMA_DIR`` or the cache).
            host: Host of a ``chroma run`` server (instead of the embedded store).
            port: Port of that server.
            client: An existing Chroma client (instead of ``persist_dir``/``host``/``port``).
            device: Torch device of the encoder.
            create: Create the collection when a name is given and it does not exist.
            backend: ``torch``, or ``onnx`` / ``onnx-int8``: the encoder runs in ONNX Runtime on the
                CPU (``pip install "cera-rag[fast]"``); same vectors (fp32) and spans, faster.
            **kwargs: Passed to ``CERARetriever`` (``rationales``, ``top_fraction``, ``callback_manager``...).

        Raises:
            cera_rag.store.CollectionMismatchError: If the collection was built with another encoder.
        """
        encoder = store.load_encoder(model_name_or_path, device=device, backend=backend)
        collection = chroma_collection
        if collection is None or isinstance(collection, str):
            contriever_style = is_contriever_style(encoder)
            name = collection or (store.CONTRIEVER_COLLECTION if contriever_style else store.DEFAULT_COLLECTION)
            collection = store.open_for_encoder(
                encoder, name=name, path=persist_dir, host=host, port=port, client=client, create=create
            )
        return cls(encoder, collection, similarity_top_k=similarity_top_k, filters=filters, **kwargs)

    # ------------------------------------------------------------------------------ properties
    @property
    def encoder(self) -> Any:
        """The ``CERAEncoder`` that embeds queries (and explains passages)."""
        return self._encoder

    @property
    def collection(self) -> Any:
        """The Chroma collection searched."""
        return self._collection

    @property
    def similarity_top_k(self) -> int:
        return self._similarity_top_k

    @similarity_top_k.setter
    def similarity_top_k(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"similarity_top_k must be >= 1, got {value}.")
        self._similarity_top_k = int(value)

    @property
    def filters(self) -> MetadataFilters | Mapping[str, Any] | None:
        return self._filters

    @filters.setter
    def filters(self, value: MetadataFilters | Mapping[str, Any] | None) -> None:
        self._where = metadata_filters_to_where(value)
        self._filters = value

    # ------------------------------------------------------------------------------ retrieval
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = store.query(
            self._encoder,
            self._collection,
            query_bundle.query_str,
            k=self._similarity_top_k,
            where=self._where,
            where_document=self._where_document,
            rationales=self._rationales,
            top_fraction=self._top_fraction,
        )
        return [NodeWithScore(node=node_from_hit(h), score=h.score) for h in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)
