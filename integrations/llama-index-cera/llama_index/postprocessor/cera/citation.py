r"""``CERACitationQueryEngine``: LlamaIndex's ``CitationQueryEngine`` with CERA spans that still point at the text.

``CitationQueryEngine`` re-splits every retrieved node into chunks and prefixes each with
``"Source N:\n"``, copying the node's metadata: spans stored on the node would then index the
wrong text. This subclass moves each span onto the chunk that holds it (a span across a chunk
boundary is clipped to each chunk; spans outside a chunk are dropped), so
``node.text[start:end] == span["text"]`` holds on every source node it returns.
"""

from __future__ import annotations

from llama_index.core.query_engine import CitationQueryEngine
from llama_index.core.schema import NodeWithScore

from cera_rag.spans import EVIDENCE_KEY, SPANS_KEY, parse_spans, remap_spans, spans_to_json

#: Metadata keys whose spans are re-based onto the citation chunks.
SPAN_KEYS = (SPANS_KEY, EVIDENCE_KEY)


class CERACitationQueryEngine(CitationQueryEngine):
    """``CitationQueryEngine`` (same constructor and ``from_args``) that keeps CERA span offsets valid."""

    def _create_citation_nodes(self, nodes: list[NodeWithScore]) -> list[NodeWithScore]:
        cited = super()._create_citation_nodes(nodes)
        if self._multimodal:
            return cited
        k = 0
        for source in nodes:
            content = source.node.get_content(metadata_mode=self._metadata_mode)
            cursor = 0
            for chunk in self.text_splitter.split_text(content):
                node = cited[k].node
                k += 1
                # The chunks are pieces of the source in order (overlapping when the splitter overlaps).
                start = content.find(chunk, cursor)
                cursor = start + 1 if start >= 0 else cursor
                prefix = len(f"Source {k}:\n")
                window = [(start, start + len(chunk))] if start >= 0 else []  # not found: no span is kept
                for key in SPAN_KEYS:
                    if key not in node.metadata:
                        continue
                    moved = remap_spans(parse_spans(node.metadata[key]), window)
                    node.metadata[key] = spans_to_json(
                        {**s, "start": s["start"] + prefix, "end": s["end"] + prefix} for s in moved
                    )
        return cited
