"""``CERARationalePostprocessor``: CERA spans (and optionally a CERA re-rank) for any retriever's nodes.

Use it after any retriever (``CERARetriever``, a ``VectorStoreIndex``, BM25...):

* with an encoder (``model_name=`` / ``encoder=``), each node gets ``cera_rationale_spans``: the
  bi-encoder's CLS-attention spans (the paper's explanation; the same for every question).
  ``rerank=True`` re-scores the nodes by the encoder's dot product, keeping the old score as
  ``original_score``;
* with a reader (``reader_model=`` / ``reader=``), the nodes are re-ranked by the
  ``CERAReader`` (a cross-encoder that reads question and passage together), the retriever's
  score is kept as ``retrieval_score`` (as LlamaIndex's rerankers do), and each node gets
  ``cera_evidence_spans``: the evidence for *this* question.

Each re-rank (encoder or reader) emits the RERANKING callback event and the ``ReRankStartEvent`` /
``ReRankEndEvent`` dispatcher events. Both may be given. Spans and scores are hidden from the LLM and embedding text.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from cera_rag import store
from cera_rag.spans import EVIDENCE_KEY, RETRIEVAL_SCORE_KEY, SPANS_KEY, spans_to_json

#: Metadata key holding the retriever's score after a CERA (encoder) re-rank.
ORIGINAL_SCORE_KEY = "original_score"

dispatcher = get_dispatcher(__name__)


def _hide(keys: list[str] | None, *extra: str) -> list[str]:
    out = list(keys or [])
    out.extend(k for k in extra if k not in out)
    return out


class CERARationalePostprocessor(BaseNodePostprocessor):
    """Add CERA spans to retrieved nodes; re-rank them by the CERA encoder or, better, the CERA reader.

    Nodes are copied, never changed in place. Nodes with no text pass through unchanged (and
    sink to the end when re-ranking).

    Args:
        model_name: CERA checkpoint folder or hub id; optional when ``encoder`` is given.
        encoder: An already loaded ``CERAEncoder``.
        top_fraction: Fraction of a passage's words kept as rationale.
        rerank: Re-score nodes with CERA, sort by that score, keep the old one as ``original_score``.
        top_n: Keep only the first ``top_n`` nodes after re-ranking (``None``: all).
        device: Torch device of the encoder and reader.
        reader_model: A ``CERAReader`` checkpoint folder or hub id: re-rank and add evidence spans.
        reader: An already loaded ``CERAReader``.
        reader_backend: ``torch``, ``onnx`` or ``onnx-int8`` for ``reader_model``.
        evidence_threshold: Mark evidence words above this probability (a node may get no span)
            instead of the top ``top_fraction`` of its words.
        fusion_weight: 0 orders the nodes by the reader alone; ``w > 0`` (default 1) by
            ``z(reader) + w * z(retrieval score)`` over the nodes (scores standardised per query):
            on validation the fused order beats both the bi-encoder and the reader alone.
        **kwargs: Other ``BaseNodePostprocessor`` fields (``callback_manager``).

    Example:
        >>> post = CERARationalePostprocessor(model_name="checkpoints/cera-best", rerank=True)  # doctest: +SKIP
        >>> nodes = post.postprocess_nodes(contriever_retriever.retrieve(q), query_str=q)  # doctest: +SKIP
        >>> reader = CERARationalePostprocessor(reader_model="checkpoints/cera-reader", top_n=5)  # doctest: +SKIP
        >>> nodes = reader.postprocess_nodes(retriever.retrieve(q), query_str=q)  # doctest: +SKIP
    """

    model_name: str | None = Field(default=None, description="CERA checkpoint folder or hub id.")
    top_fraction: float = Field(default=0.2, gt=0.0, le=1.0, description="Share of words kept as rationale.")
    rerank: bool = Field(default=False, description="Re-rank by CERA score, keeping the old score.")
    top_n: int | None = Field(default=None, ge=1, description="Nodes kept after re-ranking (None: all).")
    device: str | None = Field(default=None, description="Torch device of the encoder.")
    reader_model: str | None = Field(default=None, description="CERAReader checkpoint: re-rank + evidence spans.")
    evidence_threshold: float | None = Field(
        default=None, ge=0.0, lt=1.0, description="Mark evidence words above this probability instead of top_fraction."
    )

    fusion_weight: float = Field(
        default=1.0, ge=0.0, description="0: rank by the reader; w > 0: z(reader) + w * z(retrieval score)."
    )

    _encoder: Any = PrivateAttr(default=None)
    _reader: Any = PrivateAttr(default=None)

    def __init__(
        self,
        model_name: str | os.PathLike[str] | None = None,
        encoder: Any = None,
        top_fraction: float = 0.2,
        rerank: bool = False,
        top_n: int | None = None,
        device: str | None = None,
        reader_model: str | os.PathLike[str] | None = None,
        reader: Any = None,
        reader_backend: str = "torch",
        evidence_threshold: float | None = None,
        fusion_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if reader is None and reader_model is not None:
            from cera_rag.reader import CERAReader

            reader = CERAReader.from_pretrained(reader_model, device=device, backend=reader_backend)  # type: ignore[arg-type]
        if encoder is None and model_name is not None:
            encoder = store.load_encoder(model_name, device=device)
        if encoder is None and reader is None:
            raise ValueError(
                "Give a CERA model: model_name / encoder (attention spans) and/or reader_model / reader (re-rank "
                "and evidence spans)."
            )
        if rerank and encoder is None:
            raise ValueError("rerank=True re-scores with the CERA encoder; give model_name or encoder.")
        super().__init__(
            model_name=str(model_name) if model_name is not None else (encoder.name if encoder is not None else None),
            top_fraction=top_fraction,
            rerank=rerank,
            top_n=top_n,
            device=device,
            reader_model=str(reader_model)
            if reader_model is not None
            else (reader.name if reader is not None else None),
            evidence_threshold=evidence_threshold,
            fusion_weight=fusion_weight,
            **kwargs,
        )
        self._encoder = encoder
        self._reader = reader

    @classmethod
    def class_name(cls) -> str:
        return "CERARationalePostprocessor"

    @property
    def encoder(self) -> Any:
        """The ``CERAEncoder`` that explains (and re-scores) the nodes, or ``None``."""
        return self._encoder

    @property
    def reader(self) -> Any:
        """The ``CERAReader`` that re-ranks the nodes and marks their evidence, or ``None``."""
        return self._reader

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if (self.rerank or self._reader is not None) and query_bundle is None:
            raise ValueError(
                "CERARationalePostprocessor needs the query to re-rank or mark evidence: "
                "pass query_bundle or query_str."
            )
        if not nodes:
            return []
        if self._encoder is not None:
            if self.rerank:
                assert query_bundle is not None
                with self._reranking(nodes, query_bundle, str(self.model_name), self.top_n) as done:
                    nodes = done(self._attention(nodes, query_bundle))
            else:
                nodes = self._attention(nodes, query_bundle)
        if self._reader is not None:
            assert query_bundle is not None
            with self._reranking(nodes, query_bundle, str(self.reader_model), self.top_n) as done:
                nodes = done(self._read(nodes, query_bundle))
        return nodes

    @contextlib.contextmanager
    def _reranking(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle, model: str, top_n: int | None
    ) -> Iterator[Callable[[list[NodeWithScore]], list[NodeWithScore]]]:
        """The RERANKING callback event and the ReRankStart/End dispatcher events around one re-rank."""
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n or len(nodes), model_name=model))
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: model,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: top_n,
            },
        ) as event:
            result: list[list[NodeWithScore]] = []

            def done(out: list[NodeWithScore]) -> list[NodeWithScore]:
                event.on_end(payload={EventPayload.NODES: out})
                result.append(out)
                return out

            yield done
        dispatcher.event(ReRankEndEvent(nodes=result[0] if result else []))

    def _attention(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> list[NodeWithScore]:
        """The encoder's attention spans (and its re-rank when ``rerank``)."""
        texts = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        todo = [i for i, t in enumerate(texts) if t.strip()]
        scores: dict[int, float] = {}
        spans: dict[int, list[Any]] = {}
        if todo:
            emb, span_lists = self._encoder.encode_passages(
                [texts[i] for i in todo], return_rationales=True, top_fraction=self.top_fraction
            )
            spans = dict(zip(todo, span_lists, strict=True))
            if self.rerank:
                assert query_bundle is not None
                q = np.asarray(self._encoder.encode_queries([query_bundle.query_str]), dtype=np.float32)[0]
                scores = dict(zip(todo, (np.asarray(emb, dtype=np.float32) @ q).tolist(), strict=True))
        out: list[NodeWithScore] = []
        for i, n in enumerate(nodes):
            extra: dict[str, Any] = {}
            if i in spans:
                extra[SPANS_KEY] = spans_to_json(spans[i])
            score = n.score
            if self.rerank:
                extra[ORIGINAL_SCORE_KEY] = n.score
                score = scores.get(i)
            out.append(_with_metadata(n, extra, score, hidden=(SPANS_KEY, ORIGINAL_SCORE_KEY)))
        if self.rerank:
            out.sort(key=lambda n: -np.inf if n.score is None else n.score, reverse=True)
            if self.top_n is not None and self._reader is None:
                out = out[: self.top_n]
        return out

    def _read(self, nodes: list[NodeWithScore], query_bundle: QueryBundle) -> list[NodeWithScore]:
        """Re-rank by the reader, keep ``retrieval_score``, add ``cera_evidence_spans``."""
        texts = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        ranked = self._reader.rerank(
            query_bundle.query_str,
            texts,
            top_fraction=self.top_fraction,
            threshold=self.evidence_threshold,
            first_stage_scores=[n.score for n in nodes],
            fusion_weight=self.fusion_weight,
        )
        out: list[NodeWithScore] = []
        for r in ranked:
            n = nodes[r.index]
            if not np.isfinite(r.score):  # an empty node: not read, kept last as it was
                out.append(n)
                continue
            extra = {EVIDENCE_KEY: spans_to_json(r.spans), RETRIEVAL_SCORE_KEY: n.score}
            out.append(_with_metadata(n, extra, r.score, hidden=(EVIDENCE_KEY, RETRIEVAL_SCORE_KEY)))
        if self.top_n is not None:
            out = out[: self.top_n]
        return out


def _with_metadata(
    n: NodeWithScore, extra: dict[str, Any], score: float | None, hidden: tuple[str, ...]
) -> NodeWithScore:
    """A copy of ``n`` with ``extra`` metadata (hidden from LLM and embedding text) and ``score``."""
    node = n.node.model_copy()
    node.metadata = {**node.metadata, **extra}
    keys = [k for k in hidden if k in extra]
    node.excluded_embed_metadata_keys = _hide(node.excluded_embed_metadata_keys, *keys)
    node.excluded_llm_metadata_keys = _hide(node.excluded_llm_metadata_keys, *keys)
    return NodeWithScore(node=node, score=score)
