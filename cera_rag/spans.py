"""Rationale spans in metadata: the ``cera_rationale_spans`` JSON string and its parser.

Vector stores such as Chroma accept scalar metadata only, so the rationale spans of a retrieved
passage travel as one JSON string: a list of ``{"start", "end", "text", "weight"}`` objects whose
offsets index the passage (node or document) text, ``text[start:end] == span["text"]``.

Example:
    >>> s = spans_to_json([{"start": 0, "end": 4, "text": "Pain", "weight": 0.5}])
    >>> parse_spans(s)[0]["text"]
    'Pain'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypedDict

from cera_rag.errors import CERAError

#: Metadata key under which retrievers, embedders and post-processors store rationale spans.
SPANS_KEY = "cera_rationale_spans"
#: Metadata key of the reader's query-aware evidence spans (same JSON format as ``SPANS_KEY``).
EVIDENCE_KEY = "cera_evidence_spans"
#: Metadata key of the first stage's score after a reader re-rank (as LlamaIndex's rerankers keep it).
RETRIEVAL_SCORE_KEY = "retrieval_score"


class SpanDict(TypedDict):
    """One rationale span as stored in metadata."""

    start: int
    end: int
    text: str
    weight: float


class SpanFormatError(CERAError, ValueError):
    """A ``cera_rationale_spans`` value is not the JSON list of spans cera-rag writes."""


def span_to_dict(span: Any) -> SpanDict:
    """A span (``RationaleSpan``, mapping or ``(start, end, text, weight)`` tuple) as a plain dict."""
    if hasattr(span, "to_dict"):
        span = span.to_dict()
    if isinstance(span, Mapping):
        try:
            start, end, text, weight = span["start"], span["end"], span["text"], span["weight"]
        except KeyError as exc:
            raise SpanFormatError(f"A rationale span needs start, end, text and weight; {exc} is missing.") from None
    else:
        try:
            start, end, text, weight = span
        except (TypeError, ValueError):
            raise SpanFormatError(f"Cannot read {span!r} as a rationale span (start, end, text, weight).") from None
    return {"start": int(start), "end": int(end), "text": str(text), "weight": float(weight)}


def spans_to_json(spans: Iterable[Any]) -> str:
    """Serialise spans to the compact JSON string stored under ``SPANS_KEY``."""
    return json.dumps([span_to_dict(s) for s in spans], ensure_ascii=False, separators=(",", ":"))


def parse_spans(value: str | Sequence[Any] | Mapping[str, Any] | None) -> list[SpanDict]:
    """Parse the spans stored under ``SPANS_KEY``.

    Args:
        value: The JSON string, an already-parsed list, a whole metadata mapping (the key is looked
            up in it), or ``None`` (no spans).

    Returns:
        The spans as dicts ``{start, end, text, weight}``, in stored order.

    Raises:
        SpanFormatError: If the value is not a JSON list of spans.
    """
    if value is None:
        return []
    if isinstance(value, Mapping):
        return parse_spans(value.get(SPANS_KEY))
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SpanFormatError(f"{SPANS_KEY} is not valid JSON ({exc}); it should be a list of spans.") from None
    if not isinstance(value, list):
        raise SpanFormatError(f"{SPANS_KEY} should be a JSON list of spans, got {type(value).__name__}.")
    return [span_to_dict(s) for s in value]


def check_spans(text: str, spans: Iterable[Any]) -> None:
    """Raise ``SpanFormatError`` unless every span's offsets point at its text inside ``text``."""
    for s in spans:
        d = span_to_dict(s)
        if not 0 <= d["start"] <= d["end"] <= len(text) or text[d["start"] : d["end"]] != d["text"]:
            raise SpanFormatError(f"Span {d['start']}-{d['end']} ({d['text']!r}) does not match the text it annotates.")


def remap_spans(spans: Iterable[Any], pieces: Sequence[tuple[int, int]], sep_len: int = 1) -> list[SpanDict]:
    """Move spans from a text into the text made by joining ``pieces`` of it with a separator.

    ``pieces`` are ``(start, end)`` ranges of the original text, in order; the new text is
    ``sep.join(text[s:e] for s, e in pieces)`` with ``len(sep) == sep_len``. A span is clipped to
    each piece it overlaps, so one that crosses a dropped range becomes several spans (or none).
    """
    out: list[SpanDict] = []
    dicts = [span_to_dict(s) for s in spans]
    offset = 0
    for ps, pe in pieces:
        for d in dicts:
            s, e = max(d["start"], ps), min(d["end"], pe)
            if s < e:
                rel = s - d["start"]
                text = d["text"][rel : rel + (e - s)]
                out.append({"start": offset + s - ps, "end": offset + e - ps, "text": text, "weight": d["weight"]})
        offset += (pe - ps) + sep_len
    out.sort(key=lambda d: (d["start"], d["end"]))
    return out


class Evidence(NamedTuple):
    """The evidence sentences of a text: the new text, its spans and where its pieces came from."""

    #: the kept sentences joined by the separator
    text: str
    #: spans with offsets into ``text``
    spans: list[SpanDict]
    #: ``(start, end)`` of each kept sentence in the original text, in order
    pieces: list[tuple[int, int]]


def evidence_sentences(text: str, spans: Iterable[Any], sep: str = " ") -> Evidence:
    """Keep only the sentences of ``text`` that overlap a rationale span, and move the spans along.

    Sentences are those of ``cera_rag.data.passages.split_sentences`` (a text without sentence
    ends is one sentence). A span that crosses a sentence boundary keeps both sentences.

    Args:
        text: The passage the spans annotate (``text[start:end] == span["text"]``).
        spans: Its rationale spans (``RationaleSpan`` objects, dicts or tuples).
        sep: Joins the kept sentences.

    Returns:
        ``Evidence(text, spans, pieces)``; all empty when no span overlaps a sentence.

    Example:
        >>> span = {"start": 11, "end": 15, "text": "Pain", "weight": 1.0}
        >>> ev = evidence_sentences("No change. Pain fell. Done.", [span])
        >>> ev.text, ev.spans[0]["start"], ev.pieces
        ('Pain fell.', 0, [(11, 21)])
    """
    from cera_rag.data.passages import split_sentences

    dicts = [d for d in (span_to_dict(s) for s in spans) if d["start"] < d["end"]]
    pieces = [(s, e) for s, e in split_sentences(text) if any(d["start"] < e and s < d["end"] for d in dicts)]
    if not pieces:
        return Evidence("", [], [])
    new_text = sep.join(text[s:e] for s, e in pieces)
    return Evidence(new_text, remap_spans(dicts, pieces, sep_len=len(sep)), pieces)


def highlight(text: str, spans: list[Any]) -> Any:
    """``rich.text.Text`` of ``text`` with every rationale span in bold, stronger spans brighter."""
    from rich.text import Text

    out = Text(text)
    if not spans:
        return out
    top = max(float(s["weight"]) for s in spans) or 1.0
    for s in spans:
        style = "bold black on yellow" if float(s["weight"]) >= 0.5 * top else "bold yellow"
        out.stylize(style, int(s["start"]), int(s["end"]))
    return out
