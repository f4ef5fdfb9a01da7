"""Subjectivity of passages, as the CERA paper scores it: TextBlob's PatternAnalyzer (0 objective .. 1 subjective).

Opinion, hedging, background and discussion score high; a reported result ("HR 0.85, p = 0.2")
scores near 0. The lexicon ships inside TextBlob, so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cera_rag.data.passages import Passage


def subjectivity(text: str) -> float:
    """Subjectivity of one text in [0, 1]."""
    from textblob.en.sentiments import PatternAnalyzer

    return float(PatternAnalyzer().analyze(text).subjectivity)


def subjectivity_scores(
    passages: Mapping[str, Sequence[Passage]], show_progress: bool = False
) -> dict[str, list[float]]:
    """Subjectivity of every passage, per article, in passage order."""
    from textblob.en.sentiments import PatternAnalyzer
    from tqdm.auto import tqdm

    analyzer = PatternAnalyzer()
    items = passages.items()
    if show_progress:
        items = tqdm(items, desc="subjectivity", unit="article")  # type: ignore[assignment]
    return {aid: [round(float(analyzer.analyze(p.text).subjectivity), 4) for p in ps] for aid, ps in items}
