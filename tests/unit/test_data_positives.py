"""Positive passages and their rationale spans; query phrasings."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cera_rag.data.passages import Passage, split_passages
from cera_rag.data.positives import find_positives, overlaps_any
from cera_rag.data.queries import (
    ALL_TEMPLATES,
    HELDOUT_TEMPLATES,
    PAPER_TEMPLATE,
    TRAIN_TEMPLATES,
    phrasings,
    render,
    sample_query,
)
from cera_rag.data.reader import Prompt

TEXT = "Alpha beta gamma. Delta epsilon zeta. Eta theta iota."
PS = [
    Passage("a", 0, 0, 17, TEXT[0:17]),  # Alpha beta gamma.
    Passage("a", 1, 18, 37, TEXT[18:37]),  # Delta epsilon zeta.
    Passage("a", 2, 38, 53, TEXT[38:53]),  # Eta theta iota.
]


def test_span_inside_one_passage() -> None:
    s = TEXT.index("epsilon")
    idx, rat = find_positives(PS, [(s, s + 7)])
    assert idx == [1]
    assert rat == {1: [(s - 18, s - 18 + 7)]}
    assert PS[1].text[rat[1][0][0] : rat[1][0][1]] == "epsilon"


def test_span_cut_across_two_passages_makes_both_positive() -> None:
    s, e = TEXT.index("gamma"), TEXT.index("zeta") + 4  # "gamma. Delta epsilon zeta"
    idx, rat = find_positives(PS, [(s, e)], min_overlap=5)
    assert idx == [0, 1]
    assert [PS[0].text[a:b] for a, b in rat[0]] == ["gamma."]
    assert [PS[1].text[a:b] for a, b in rat[1]] == ["Delta epsilon zeta"]


def test_min_overlap_threshold() -> None:
    s = TEXT.index("ta.")  # "ta. Eta" : 3 characters in passage 1, 3 in passage 2
    idx, _ = find_positives(PS, [(s, s + 7)], min_overlap=3)
    assert idx == [1, 2]
    idx, _ = find_positives(PS, [(s, s + 7)], min_overlap=4)
    assert idx == []  # neither passage holds 4 characters nor the whole span
    # a span shorter than min_overlap counts when a passage holds all of it
    idx, _ = find_positives(PS, [(0, 5)], min_overlap=8)
    assert idx == [0]


def test_overlapping_spans_of_two_annotators_are_merged() -> None:
    idx, rat = find_positives(PS, [(18, 30), (25, 37), (0, 5)], min_overlap=1)
    assert idx == [0, 1]
    assert rat == {0: [(0, 5)], 1: [(0, 19)]}
    idx, rat = find_positives(PS, [(18, 23), (24, 31)], min_overlap=1)
    assert rat == {1: [(0, 5), (6, 13)]}  # disjoint spans stay apart


def test_overlaps_any_is_end_exclusive() -> None:
    assert overlaps_any(PS[1], [(17, 19)])
    assert not overlaps_any(PS[1], [(0, 18)])  # ends where passage 1 starts
    assert not overlaps_any(PS[1], [(37, 40)])  # starts where passage 1 ends
    assert not overlaps_any(PS[1], [])


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(st.sampled_from(["Aa.", "bb", "cc.", "Dd", "e", "\n", "BODY.RESULTS:\n"]), min_size=1, max_size=60),
    data=st.data(),
    mode=st.sampled_from(["sentences", "windows"]),
    min_overlap=st.integers(1, 12),
)
def test_property_rationales_map_back_to_the_evidence(
    words: list[str], data: st.DataObject, mode: str, min_overlap: int
) -> None:
    text = " ".join(words)
    passages = split_passages(text, "h", mode=mode, max_words=5, window_words=6, overlap_words=2)  # type: ignore[arg-type]
    n = len(text)
    spans = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 30)), min_size=1, max_size=3))
    evidence = [(s, min(n, s + ln)) for s, ln in spans]
    idx, rat = find_positives(passages, evidence, min_overlap)
    assert idx == sorted(rat)
    for i in idx:
        p = passages[i]
        assert overlaps_any(p, evidence)
        for a, b in rat[i]:
            assert 0 <= a < b <= len(p.text)
            # every rationale character is an evidence character
            assert all(any(s <= p.start + c < e for s, e in evidence) for c in range(a, b))
        for (_, b1), (a2, _) in pairwise(rat[i]):
            assert b1 < a2  # merged: sorted, disjoint and not touching
    for p in passages:
        held = any(p.overlap(s, e) > 0 and p.overlap(s, e) >= min(min_overlap, e - s) for s, e in evidence)
        assert (p.index in rat) == held


# ---------------------------------------------------------------------------------- queries
PROMPT = Prompt("1", "a", " aspirin ", "placebo", "pain   score")


def test_render_fills_and_collapses_whitespace() -> None:
    assert render(PAPER_TEMPLATE, PROMPT) == "compare the effect of aspirin versus placebo on pain score"
    assert render("{outcome}: {intervention} vs {comparator}", PROMPT) == "pain score: aspirin vs placebo"


def test_phrasings_cover_every_template_and_hold_the_fields() -> None:
    out = phrasings(PROMPT)
    assert len(out) == len(TRAIN_TEMPLATES) == len(set(out))
    for q in out + phrasings(PROMPT, HELDOUT_TEMPLATES):
        assert "aspirin" in q and "placebo" in q and "pain score" in q
        assert "{" not in q and "  " not in q


def test_heldout_templates_are_never_trained_on() -> None:
    assert not set(HELDOUT_TEMPLATES) & set(TRAIN_TEMPLATES)
    assert ALL_TEMPLATES == TRAIN_TEMPLATES + HELDOUT_TEMPLATES
    heldout = set(phrasings(PROMPT, HELDOUT_TEMPLATES))
    rng = random.Random(0)
    assert not {sample_query(PROMPT, rng) for _ in range(200)} & heldout


def test_sample_query_is_seeded() -> None:
    a = [sample_query(PROMPT, random.Random(5)) for _ in range(3)]
    assert len(set(a)) == 1
    rng = random.Random(5)
    drawn = {sample_query(PROMPT, rng) for _ in range(300)}
    assert drawn == set(phrasings(PROMPT))  # every training phrasing gets used


@pytest.mark.parametrize("template", HELDOUT_TEMPLATES)
def test_heldout_phrasings_render(template: str) -> None:
    assert render(template, PROMPT).count("aspirin") == 1
