"""Passage splitting: offsets always map back, both modes, on written and generated texts."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cera_rag.data.passages import Passage, split_passages, split_sentences

# A synthetic article with the things that trip sentence splitters: abbreviations, initials,
# decimals, closing brackets and quotes, unicode, a table row and a header on its own line.
TRICKY_ARTICLE = (
    "TITLE: \nVitamin D and falls: a trial\n\n"
    "ABSTRACT.BACKGROUND:\nSmith et al. reported fewer falls. Dr. J. Smith led it (Fig. 2). "
    "Falls fell by 12.5% vs. placebo.\n"
    "BODY.RESULTS:\nThe rate was lower (HR 0.85; 95% CI 0.7–0.9). A “quoted” word [3]. Next one!\n"
    "Table 1 | age | 63 ± 4 | 61 ± 5 | p = 0.3\n"
    "Ünïcode résumé naïve café 中文 text.\u2028Line-separated\u00a0sentence.\n"
)

SECTIONED = "BODY.METHODS:\nWe did a thing. We did another.\nBODY.RESULTS:\nIt worked. It worked well."


def _check_offsets(text: str, passages: list[Passage], article_id: str) -> None:
    for i, p in enumerate(passages):
        assert p.index == i
        assert p.article_id == article_id
        assert 0 <= p.start < p.end <= len(text)
        assert text[p.start : p.end] == p.text
        assert p.text == p.text.strip()  # no passage starts or ends on whitespace
        assert p.passage_id == f"{article_id}:{p.start}-{p.end}"


def _uncovered_non_space(text: str, passages: list[Passage]) -> list[int]:
    covered = [False] * len(text)
    for p in passages:
        for k in range(p.start, p.end):
            covered[k] = True
    return [k for k, ch in enumerate(text) if not ch.isspace() and not covered[k]]


# ----------------------------------------------------------------------------- written examples
def test_sentences_mode_on_the_tricky_article() -> None:
    passages = split_passages(TRICKY_ARTICLE, "A1", max_words=8)
    _check_offsets(TRICKY_ARTICLE, passages, "A1")
    assert _uncovered_non_space(TRICKY_ARTICLE, passages) == []
    texts = [p.text for p in passages]
    # Abbreviations and initials do not end a sentence ("et al. Smith", "Dr. J. Smith").
    assert any(t.endswith("Smith et al. reported fewer falls.") for t in texts)
    assert "Dr. J. Smith led it (Fig. 2)." in texts
    # Decimals stay whole.
    assert any("12.5% vs. placebo." in t for t in texts)


def test_split_sentences_spans_are_stripped_ordered_and_disjoint() -> None:
    spans = split_sentences(TRICKY_ARTICLE)
    sentences = [TRICKY_ARTICLE[s:e] for s, e in spans]
    assert sentences[:4] == ["TITLE:", "Vitamin D and falls: a trial", "ABSTRACT.BACKGROUND:", sentences[3]]
    assert sentences[3] == "Smith et al. reported fewer falls."
    assert "The rate was lower (HR 0.85; 95% CI 0.7–0.9)." in sentences
    assert "A “quoted” word [3]." in sentences
    assert "Next one!" in sentences
    assert "Table 1 | age | 63 ± 4 | 61 ± 5 | p = 0.3" in sentences
    assert sentences[-2:] == ["Ünïcode résumé naïve café 中文 text.", "Line-separated\u00a0sentence."]
    for (_, e1), (s2, _) in pairwise(spans):
        assert e1 <= s2
    assert all(TRICKY_ARTICLE[s:e] == TRICKY_ARTICLE[s:e].strip() for s, e in spans)


def test_section_header_starts_a_new_passage() -> None:
    passages = split_passages(SECTIONED, "s", max_words=64)
    assert [p.text for p in passages] == [
        "BODY.METHODS:\nWe did a thing. We did another.",
        "BODY.RESULTS:\nIt worked. It worked well.",
    ]


def test_sentences_are_packed_up_to_the_word_budget() -> None:
    text = " ".join(f"Sentence number {i} has five words." for i in range(6))  # 6 words each
    passages = split_passages(text, "p", max_words=12)
    assert [len(p.text.split()) for p in passages] == [12, 12, 12]
    assert passages[0].text == "Sentence number 0 has five words. Sentence number 1 has five words."


def test_a_run_on_sentence_longer_than_the_budget_is_cut_into_windows() -> None:
    words = ["Then"] + [f"w{i}" for i in range(24)]
    text = "Short one. " + " ".join(words) + ". Tail here."
    passages = split_passages(text, "r", max_words=10)
    _check_offsets(text, passages, "r")
    assert _uncovered_non_space(text, passages) == []
    assert [len(p.text.split()) for p in passages] == [2, 10, 10, 5, 2]
    assert passages[1].text == " ".join(words[:10])


def test_windows_mode_sizes_and_overlap() -> None:
    words = [f"tok{i}" for i in range(23)]
    text = "  " + "\n".join(" ".join(words[i : i + 4]) for i in range(0, 23, 4)) + "  "
    passages = split_passages(text, "w", mode="windows", window_words=10, overlap_words=3)
    _check_offsets(text, passages, "w")
    assert [p.text.split() for p in passages] == [words[0:10], words[7:17], words[14:23]]


def test_windows_mode_short_text_is_one_window() -> None:
    passages = split_passages("just three words", "w", mode="windows", window_words=50, overlap_words=10)
    assert [(p.start, p.end, p.text) for p in passages] == [(0, 16, "just three words")]


@pytest.mark.parametrize("mode", ["sentences", "windows"])
@pytest.mark.parametrize("text", ["", "   \n\t \n", "\u2028\u00a0"])
def test_empty_or_blank_text_gives_no_passages(mode: str, text: str) -> None:
    assert split_passages(text, "e", mode=mode) == []  # type: ignore[arg-type]


def test_bad_parameters_raise() -> None:
    with pytest.raises(ValueError, match="overlap_words"):
        split_passages("a b c", mode="windows", window_words=5, overlap_words=5)
    with pytest.raises(ValueError, match="max_words"):
        split_passages("a b c", mode="sentences", max_words=0)
    with pytest.raises(ValueError, match="Unknown passage mode"):
        split_passages("a b c", mode="paragraphs")  # type: ignore[arg-type]


def test_passage_overlap_counts_characters_inside() -> None:
    p = Passage("a", 0, 10, 20, "x" * 10)
    assert p.overlap(0, 10) == 0
    assert p.overlap(5, 12) == 2
    assert p.overlap(12, 15) == 3
    assert p.overlap(18, 40) == 2
    assert p.overlap(0, 100) == 10
    assert p.overlap(20, 25) == 0


# ----------------------------------------------------------------------------- property tests
_PIECES = st.sampled_from(
    [
        "The",
        "patients",
        "improved",
        "et al.",
        "Dr.",
        "J.",
        "vs.",
        "2.1",
        "p < 0.05",
        "(HR 0.8)",
        "Fig. 3",
        "[12]",
        "“quoted.”",
        "naïve",
        "中文",
        "🙂",
        "BODY.RESULTS:",
        "TITLE:",
        "A",
        ".",
        "!",
        "?",
        ". ",
        ".\n",
        "\n",
        "\n\n",
        " ",
        "  ",
        "\t",
        "\r\n",
        "\u00a0",
        "\u2028",
        "\u3000",
        "\x0c",
    ]
)
_ARTICLE_LIKE = st.lists(_PIECES, max_size=80).map("".join)
_ANY_TEXT = st.text(max_size=300)
_TEXTS = st.one_of(_ARTICLE_LIKE, _ANY_TEXT)

_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(text=_TEXTS, max_words=st.integers(1, 12))
def test_property_sentences_mode_covers_text_and_maps_back(text: str, max_words: int) -> None:
    passages = split_passages(text, "h", mode="sentences", max_words=max_words)
    _check_offsets(text, passages, "h")
    # ordered and pairwise disjoint
    for a, b in pairwise(passages):
        assert a.end <= b.start
    # every non-whitespace character is inside exactly one passage
    assert _uncovered_non_space(text, passages) == []
    # and the passages hold every word of the text, in order
    assert [w for p in passages for w in p.text.split()] == text.split()


@_SETTINGS
@given(text=_TEXTS, window=st.integers(1, 12), data=st.data())
def test_property_windows_mode_covers_text_and_maps_back(text: str, window: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, window - 1))
    passages = split_passages(text, "h", mode="windows", window_words=window, overlap_words=overlap)
    _check_offsets(text, passages, "h")
    assert _uncovered_non_space(text, passages) == []
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    stride = window - overlap
    assert len(passages) == (0 if not words else 1 + max(0, -(-(len(words) - window) // stride)))
    for k, p in enumerate(passages):
        first = k * stride
        chunk = words[first : first + window]
        assert (p.start, p.end) == (chunk[0][0], chunk[-1][1])
        if k + 1 < len(passages):
            assert len(chunk) == window  # only the last window may be short
    assert passages == [] or passages[-1].end == words[-1][1]


@_SETTINGS
@given(text=_TEXTS)
def test_property_sentence_spans_map_back(text: str) -> None:
    spans = split_sentences(text)
    for s, e in spans:
        assert 0 <= s < e <= len(text)
        assert text[s:e] == text[s:e].strip()
        assert "\n" not in text[s:e]
    for (_, e1), (s2, _) in pairwise(spans):
        assert e1 <= s2
