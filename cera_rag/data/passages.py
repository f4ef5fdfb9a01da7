"""Split an article into passages whose offsets always map back: ``article[p.start:p.end] == p.text``.

Two modes:

* ``"sentences"`` (default): sentence-aware packing. Sentences are packed greedily up to
  ``max_words``; a section header (``BODY.RESULTS:``) starts a new passage; a sentence longer
  than the budget is cut into word windows. Passages are disjoint and cover every
  non-whitespace character.
* ``"windows"``: the CERA paper's fixed windows of ``window_words`` words with ``overlap_words``
  words of overlap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

PassageMode = Literal["sentences", "windows"]

_WORD = re.compile(r"\S+")
_LINE = re.compile(r"[^\n]+")
# A sentence ends at . ! or ? (optionally closed by a quote or bracket) followed by space and an
# upper-case letter, digit or opening bracket.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]?\s+(?=[A-Z0-9(\[])")
_ABBREVIATIONS = frozenset(
    "al fig figs vs e.g i.e etc no nos dr mr mrs ms approx ref refs eq eqs tab suppl vol ca st cf resp".split()
)
_HEADER = re.compile(r"^\s*(TITLE|ABSTRACT|BODY)[A-Z0-9 .,&/_()-]*:\s*$|^\s*[A-Z][A-Z0-9 .,&/_()-]{2,60}:\s*$")


@dataclass(frozen=True)
class Passage:
    """A contiguous piece of one article."""

    article_id: str
    index: int
    start: int
    end: int
    text: str

    @property
    def passage_id(self) -> str:
        """Stable id: the article and the character range (the same passage gets the same id)."""
        return f"{self.article_id}:{self.start}-{self.end}"

    def overlap(self, start: int, end: int) -> int:
        """Number of characters of ``[start, end)`` that fall inside this passage."""
        return max(0, min(self.end, end) - max(self.start, start))


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` with no leading or trailing whitespace, in order."""
    spans: list[tuple[int, int]] = []
    for line in _LINE.finditer(text):
        cursor = line.start()
        for m in _SENTENCE_END.finditer(line.group()):
            cut = line.start() + m.start() + 1
            last = text[cursor:cut].rsplit(None, 1)[-1] if text[cursor:cut].strip() else ""
            prev = last.lstrip("([{\"'“‘").rstrip(".").lower()  # "(Fig. 2)": the bracket is no part of it
            if prev in _ABBREVIATIONS or (len(prev) == 1 and prev.isalpha()):
                continue  # "et al. Smith", "J. Smith": not a sentence end
            s, e = _strip(text, cursor, line.start() + m.end())
            if s < e:
                spans.append((s, e))
            cursor = line.start() + m.end()
        s, e = _strip(text, cursor, line.end())
        if s < e:
            spans.append((s, e))
    return spans


def _word_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]


def _windows(words: list[tuple[int, int]], size: int, stride: int) -> Iterator[tuple[int, int]]:
    if not words:
        return
    i = 0
    while True:
        chunk = words[i : i + size]
        yield chunk[0][0], chunk[-1][1]
        if i + size >= len(words):
            return
        i += stride


def _is_header(text: str, start: int, end: int) -> bool:
    return bool(_HEADER.match(text[start:end])) and (end - start) <= 80


def split_passages(
    text: str,
    article_id: str = "",
    mode: PassageMode = "sentences",
    max_words: int = 64,
    window_words: int = 50,
    overlap_words: int = 10,
) -> list[Passage]:
    """Split ``text`` into passages; see the module docstring for the two modes."""
    if mode == "windows":
        if not 0 <= overlap_words < window_words:
            raise ValueError(f"overlap_words ({overlap_words}) must be in [0, window_words={window_words}).")
        spans = list(_windows(_word_spans(text, 0, len(text)), window_words, window_words - overlap_words))
    elif mode == "sentences":
        if max_words < 1:
            raise ValueError(f"max_words must be >= 1, got {max_words}.")
        spans = _pack_sentences(text, max_words)
    else:
        raise ValueError(f"Unknown passage mode {mode!r}; choose 'sentences' or 'windows'.")
    return [Passage(article_id, i, s, e, text[s:e]) for i, (s, e) in enumerate(spans)]


def _pack_sentences(text: str, max_words: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cur_start: int | None = None
    cur_end = 0
    cur_words = 0

    def flush() -> None:
        nonlocal cur_start, cur_words
        if cur_start is not None:
            spans.append((cur_start, cur_end))
        cur_start, cur_words = None, 0

    for s, e in split_sentences(text):
        if _is_header(text, s, e):
            flush()
            cur_start, cur_end, cur_words = s, e, len(_WORD.findall(text, s, e))
            continue
        words = _word_spans(text, s, e)
        if len(words) > max_words:  # a run-on sentence or a table: cut into windows
            flush()
            for ws, we in _windows(words, max_words, max_words):
                spans.append((ws, we))
            continue
        if cur_start is not None and cur_words + len(words) > max_words:
            flush()
        if cur_start is None:
            cur_start = s
        cur_end, cur_words = e, cur_words + len(words)
    flush()
    return spans
