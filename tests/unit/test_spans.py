"""cera_rag.spans: the cera_rationale_spans JSON format, its parser, re-basing and evidence sentences."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cera_rag.model import RationaleSpan
from cera_rag.spans import (
    SPANS_KEY,
    Evidence,
    SpanFormatError,
    check_spans,
    evidence_sentences,
    parse_spans,
    remap_spans,
    span_to_dict,
    spans_to_json,
)

TEXT = "Pain score was lower with aspirin. Blood pressure did not change. Headache duration fell."


def _span(text: str, word: str, weight: float = 0.5) -> dict:
    start = text.index(word)
    return {"start": start, "end": start + len(word), "text": word, "weight": weight}


def test_key_name() -> None:
    assert SPANS_KEY == "cera_rationale_spans"


def test_round_trip_from_every_input_kind() -> None:
    rs = RationaleSpan(0, 4, "Pain", 0.25)
    as_json = spans_to_json([rs, {"start": 5, "end": 10, "text": "score", "weight": 1}, (11, 14, "was", 0.1)])
    assert isinstance(as_json, str) and " " not in as_json.replace("Pain", "")  # compact
    parsed = parse_spans(as_json)
    assert parsed == [
        {"start": 0, "end": 4, "text": "Pain", "weight": 0.25},
        {"start": 5, "end": 10, "text": "score", "weight": 1.0},
        {"start": 11, "end": 14, "text": "was", "weight": 0.1},
    ]
    assert isinstance(parsed[1]["weight"], float)
    assert parse_spans(parsed) == parsed  # already parsed
    assert parse_spans({SPANS_KEY: as_json, "other": 1}) == parsed  # a whole metadata mapping
    assert parse_spans({"other": 1}) == []
    assert parse_spans(None) == []
    assert parse_spans("[]") == []
    assert parse_spans(as_json.encode()) == parsed


def test_unicode_is_kept_verbatim() -> None:
    s = spans_to_json([{"start": 0, "end": 3, "text": "β-é", "weight": 1.0}])
    assert "β-é" in s
    assert parse_spans(s)[0]["text"] == "β-é"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"start": 1}', "JSON list"),
        ("3", "JSON list"),
        ('[{"start": 0, "end": 1, "text": "a"}]', "weight"),
        ("[[1, 2]]", "Cannot read"),
    ],
)
def test_bad_values_raise_span_format_error(value: str, message: str) -> None:
    with pytest.raises(SpanFormatError, match=message):
        parse_spans(value)
    assert issubclass(SpanFormatError, ValueError)


def test_span_to_dict_coerces_types() -> None:
    assert span_to_dict(("1", 2.0, 3, "0.5")) == {"start": 1, "end": 2, "text": "3", "weight": 0.5}


def test_check_spans() -> None:
    check_spans(TEXT, [_span(TEXT, "aspirin"), _span(TEXT, "Blood pressure")])
    with pytest.raises(SpanFormatError, match="does not match"):
        check_spans(TEXT, [{"start": 0, "end": 4, "text": "Nope", "weight": 1.0}])
    with pytest.raises(SpanFormatError):
        check_spans("short", [{"start": 3, "end": 10, "text": "rt", "weight": 1.0}])


def test_remap_spans_clips_to_kept_pieces() -> None:
    text = "aaa bbb ccc ddd"
    spans = [
        {"start": 4, "end": 11, "text": "bbb ccc", "weight": 0.7},
        {"start": 12, "end": 15, "text": "ddd", "weight": 0.3},
    ]
    pieces = [(0, 7), (12, 15)]  # "aaa bbb" + " " + "ddd"
    new_text = " ".join(text[s:e] for s, e in pieces)
    out = remap_spans(spans, pieces)
    assert out == [
        {"start": 4, "end": 7, "text": "bbb", "weight": 0.7},
        {"start": 8, "end": 11, "text": "ddd", "weight": 0.3},
    ]
    check_spans(new_text, out)
    assert remap_spans(spans, [(0, 3)]) == []


def test_evidence_sentences_keeps_only_sentences_with_spans() -> None:
    spans = [_span(TEXT, "aspirin", 0.6), _span(TEXT, "duration", 0.4)]
    ev = evidence_sentences(TEXT, spans)
    assert isinstance(ev, Evidence)
    assert ev.text == "Pain score was lower with aspirin. Headache duration fell."
    assert [TEXT[s:e] for s, e in ev.pieces] == ["Pain score was lower with aspirin.", "Headache duration fell."]
    assert [s["text"] for s in ev.spans] == ["aspirin", "duration"]
    assert [s["weight"] for s in ev.spans] == [0.6, 0.4]
    check_spans(ev.text, ev.spans)


def test_evidence_sentences_span_across_sentences_and_edge_cases() -> None:
    start = TEXT.index("aspirin.")
    crossing = {"start": start, "end": start + len("aspirin. Blood"), "text": "aspirin. Blood", "weight": 1.0}
    ev = evidence_sentences(TEXT, [crossing], sep="\n")
    assert ev.text == "Pain score was lower with aspirin.\nBlood pressure did not change."
    assert [s["text"] for s in ev.spans] == ["aspirin.", "Blood"]
    check_spans(ev.text, ev.spans)
    assert evidence_sentences(TEXT, []) == Evidence("", [], [])
    assert evidence_sentences("", [{"start": 0, "end": 0, "text": "", "weight": 1.0}]) == Evidence("", [], [])
    no_period = "pain fell with aspirin"
    assert evidence_sentences(no_period, [_span(no_period, "fell")]).text == no_period


@settings(max_examples=60, deadline=None)
@given(
    sentences=st.lists(
        st.text(alphabet="abc xyz", min_size=1, max_size=12).map(lambda s: "A" + s.strip() + "."),
        min_size=1,
        max_size=6,
    ),
    picks=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 15)), max_size=5),
)
def test_evidence_spans_always_index_the_new_text(sentences: list[str], picks: list[tuple[int, int]]) -> None:
    text = " ".join(sentences)
    spans = []
    for start, length in picks:
        s = start % len(text)
        e = min(len(text), s + length)
        spans.append({"start": s, "end": e, "text": text[s:e], "weight": 1.0})
    ev = evidence_sentences(text, spans)
    check_spans(ev.text, ev.spans)
    assert json.loads(spans_to_json(ev.spans)) == ev.spans
    # map new-text positions back to the original text
    origin: list[int | None] = []
    for s, e in ev.pieces:
        if origin:
            origin.append(None)  # the separator
        origin.extend(range(s, e))
    assert len(origin) == len(ev.text)
    covered = {i for sp in spans for i in range(sp["start"], sp["end"]) if not text[i].isspace()}
    kept = {origin[i] for sp in ev.spans for i in range(sp["start"], sp["end"]) if origin[i] is not None}
    assert covered <= kept  # no evidence character is lost
    assert kept <= {i for sp in spans for i in range(sp["start"], sp["end"])}  # and none is invented
