"""``CERARationalePostprocessor``: CERA rationale spans (and optionally CERA scores) for any retriever's nodes.

Use it after a retriever that does not explain itself (a Contriever-style or BM25 retriever,
a ``VectorStoreIndex``...): each node gets ``cera_rationale_spans`` computed by the CERA encoder
on the node text. With ``rerank=True`` the nodes are also re-scored by the CERA encoder
(dot product of query and passage vectors) and re-ordered; the retriever's score is kept in the
node metadata as ``original_score``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from cera_rag import store
from cera_rag.spans import SPANS_KEY, spans_to_json

#: Metadata key holding the retriever's score after a CERA re-rank.
ORIGINAL_SCORE_KEY = "original_score"


def _hide(keys: list[str] | None, *extra: str) -> list[str]:
    out = list(keys or [])
    out.extend(k for k in extra if k not in out)
    return out


class CERARationalePostprocessor(BaseNodePostprocessor):
    """Add CERA rationale spans to retrieved nodes; optionally re-rank them by CERA score.

    Nodes are copied, never changed in place. Nodes with no text pass through unchanged (and
    sink to the end when re-ranking).

    Args:
        model_name: CERA checkpoint folder or hub id; optional when ``encoder`` is given.
        encoder: An already loaded ``CERAEncoder``.
        top_fraction: Fraction of a passage's words kept as rationale.
        rerank: Re-score nodes with CERA, sort by that score, keep the old one as ``original_score``.
        top_n: Keep only the first ``top_n`` nodes after re-ranking (``None``: all).
        device: Torch device of the encoder.
        **kwargs: Other ``BaseNodePostprocessor`` fields (``callback_manager``).

    Example:
        >>> post = CERARationalePostprocessor(model_name="checkpoints/cera-best", rerank=True)  # doctest: +SKIP
        >>> nodes = post.postprocess_nodes(contriever_retriever.retrieve(q), query_str=q)  # doctest: +SKIP
    """

    model_name: str | None = Field(default=None, description="CERA checkpoint folder or hub id.")
    top_fraction: float = Field(default=0.2, gt=0.0, le=1.0, description="Share of words kept as rationale.")
    rerank: bool = Field(default=False, description="Re-rank by CERA score, keeping the old score.")
    top_n: int | None = Field(default=None, ge=1, description="Nodes kept after re-ranking (None: all).")
    device: str | None = Field(default=None, description="Torch device of the encoder.")

    _encoder: Any = PrivateAttr(default=None)

    def __init__(
        self,
        model_name: str | os.PathLike[str] | None = None,
        encoder: Any = None,
        top_fraction: float = 0.2,
        rerank: bool = False,
        top_n: int | None = None,
        device: str | None = None,
        **kwargs: Any,
    ) -> None:
        if encoder is None:
            if model_name is None:
                raise ValueError("Give the CERA encoder: model_name (a checkpoint folder or hub id) or encoder.")
            encoder = store.load_encoder(model_name, device=device)
        super().__init__(
            model_name=str(model_name) if model_name is not None else encoder.name,
            top_fraction=top_fraction,
            rerank=rerank,
            top_n=top_n,
            device=device,
            **kwargs,
        )
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "CERARationalePostprocessor"

    @property
    def encoder(self) -> Any:
        """The ``CERAEncoder`` that explains (and re-scores) the nodes."""
        return self._encoder

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if self.rerank and query_bundle is None:
            raise ValueError("CERARationalePostprocessor(rerank=True) needs the query: pass query_bundle or query_str.")
        if not nodes:
            return []
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
            node = n.node.model_copy()
            metadata = dict(node.metadata)
            hidden = [SPANS_KEY]
            if i in spans:
                metadata[SPANS_KEY] = spans_to_json(spans[i])
            score = n.score
            if self.rerank:
                metadata[ORIGINAL_SCORE_KEY] = n.score
                hidden.append(ORIGINAL_SCORE_KEY)
                score = scores.get(i)
            node.metadata = metadata
            node.excluded_embed_metadata_keys = _hide(node.excluded_embed_metadata_keys, *hidden)
            node.excluded_llm_metadata_keys = _hide(node.excluded_llm_metadata_keys, *hidden)
            out.append(NodeWithScore(node=node, score=score))
        if self.rerank:
            out.sort(key=lambda n: -np.inf if n.score is None else n.score, reverse=True)
            if self.top_n is not None:
                out = out[: self.top_n]
        return out
