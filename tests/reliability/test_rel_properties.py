"""Property-based tests (hypothesis) with the tiny model: spans, scores and determinism over random text."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cera_rag import store
from cera_rag.data.passages import split_passages
from cera_rag.model import CERAEncoder

#: Words the tiny tokenizer knows, so random passages are not all [UNK].
WORDS = (
    "pain score was significantly lower with aspirin than placebo headache duration reduced no difference "
    "blood pressure mortality risk higher control group insulin dose increased daily weeks p ci mean sd"
).split()
#: Pieces from other scripts and odd code points: CJK, Arabic, emoji (with ZWJ / skin tones), combining
#: marks, zero-width and no-break spaces, digits and punctuation runs.
EXOTIC = [
    "疼痛", "评分", "显著", "الألم", "مقارنة", "😀", "👍🏽", "👨‍👩‍👧", "e\u0301", "İ", "ß", "ﬁ", "\u200b", "\u00a0",
    "\u3000", "(p < 0.001)", "2.1 vs 4.3", "95% CI", "—", "…", "\t", "\n", "\r\n", "[CLS]", "[SEP]", "##ing",
]  # fmt: skip

SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

token = st.one_of(st.sampled_from(WORDS), st.sampled_from(EXOTIC), st.text(min_size=1, max_size=8))
separator = st.sampled_from([" ", " ", " ", "", "\n", ". ", ", "])
passage_text = st.lists(st.tuples(token, separator), min_size=0, max_size=60).map(
    lambda parts: "".join(t + s for t, s in parts)
)
query_text = st.lists(st.sampled_from(WORDS + EXOTIC[:6]), min_size=1, max_size=12).map(" ".join)


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> CERAEncoder:
    return store.load_encoder(tiny_bert_dir)


@SETTINGS
@given(passages=st.lists(passage_text, min_size=1, max_size=4), top_fraction=st.floats(0.01, 1.0))
def test_spans_are_always_valid_offsets(encoder: CERAEncoder, passages: list[str], top_fraction: float) -> None:
    batched = encoder.rationale_spans_batch("pain", passages, top_fraction=top_fraction)
    assert len(batched) == len(passages)
    for passage, spans in zip(passages, batched, strict=True):
        end = -1
        for s in spans:
            assert 0 <= s.start < s.end <= len(passage)
            assert passage[s.start : s.end] == s.text and s.text.strip()
            assert s.start >= end, "spans are in text order and do not overlap"
            end = s.end
            assert math.isfinite(s.weight) and 0.0 <= s.weight <= 1.0 + 1e-6
        assert sum(s.weight for s in spans) <= 1.0 + 1e-5
        if not passage.strip():
            assert spans == []
    # batching (padding) does not change the spans of a passage; weights agree within float tolerance
    single = encoder.rationale_spans("pain", passages[0], top_fraction=top_fraction)
    assert [(s.start, s.end, s.text) for s in single] == [(s.start, s.end, s.text) for s in batched[0]]
    np.testing.assert_allclose([s.weight for s in single], [s.weight for s in batched[0]], atol=1e-5)


@SETTINGS
@given(query=query_text, passages=st.lists(passage_text, min_size=1, max_size=5))
def test_scores_are_finite_and_encoding_is_deterministic(encoder: CERAEncoder, query: str, passages: list[str]) -> None:
    q1, q2 = encoder.encode_queries([query]), encoder.encode_queries([query])
    np.testing.assert_array_equal(q1, q2)
    p1, p2 = encoder.encode_passages(passages), encoder.encode_passages(passages)
    np.testing.assert_array_equal(p1, p2)
    assert q1.dtype == np.float32 and p1.shape == (len(passages), encoder.dim)
    assert np.isfinite(q1).all() and np.isfinite(p1).all()
    np.testing.assert_allclose(np.linalg.norm(p1, axis=1), 1.0, atol=1e-4)
    scores = encoder.score(query, passages)
    assert np.isfinite(scores).all() and np.all(np.abs(scores) <= 1.0 + 1e-4)
    # one at a time (no padding) gives the same vectors as the batch, within float tolerance
    singles = np.vstack([encoder.encode_passages([p]) for p in passages])
    np.testing.assert_allclose(singles, p1, atol=2e-5)


@SETTINGS
@given(text=passage_text, mode=st.sampled_from(["sentences", "windows"]))
def test_passages_always_map_back_to_the_article(text: str, mode: str) -> None:
    passages = split_passages(text, "a", mode)  # type: ignore[arg-type]
    for p in passages:
        assert text[p.start : p.end] == p.text and p.text.strip()
    if mode == "sentences":  # disjoint, in order, covering every non-whitespace character
        covered = set()
        for a, b in zip(passages, passages[1:], strict=False):
            assert a.end <= b.start
        for p in passages:
            covered.update(range(p.start, p.end))
        assert all(i in covered for i, c in enumerate(text) if not c.isspace())
