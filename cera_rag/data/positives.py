"""Positive passages: those that hold annotated evidence, with the evidence spans inside each."""

from __future__ import annotations

from collections.abc import Sequence

from cera_rag.data.passages import Passage


def find_positives(
    passages: Sequence[Passage], evidence: Sequence[tuple[int, int]], min_overlap: int = 8
) -> tuple[list[int], dict[int, list[tuple[int, int]]]]:
    """Passages overlapping an evidence span, and each one's rationale spans relative to its text.

    A passage counts when it holds at least ``min_overlap`` characters of some evidence span, or
    the whole span when the span is shorter than that (an evidence span cut across two passages
    makes both positive). Rationale spans are clipped to the passage and merged when they overlap.

    Returns:
        ``(indices, rationales)``: sorted passage indices and ``{index: [(start, end), ...]}``.
    """
    rationales: dict[int, list[tuple[int, int]]] = {}
    for p in passages:
        inside = []
        for s, e in evidence:
            ov = p.overlap(s, e)
            if ov >= min(min_overlap, e - s) and ov > 0:
                inside.append((max(s, p.start) - p.start, min(e, p.end) - p.start))
        if inside:
            rationales[p.index] = _merge(inside)
    return sorted(rationales), rationales


def overlaps_any(passage: Passage, evidence: Sequence[tuple[int, int]]) -> bool:
    """True when any character of any evidence span falls in ``passage`` (the negatives' guard)."""
    return any(passage.overlap(s, e) > 0 for s, e in evidence)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out
