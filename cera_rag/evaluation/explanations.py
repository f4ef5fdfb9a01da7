r"""Base-rate-aware explanation metrics: do the marked words land on *this* question's evidence?

Token AUPRC alone says little when the human evidence covers most of a passage (~64% of the
words of a positive passage here): marking words at random already scores high. Every number
below is therefore reported beside what random marking gets.

Words are the whitespace-delimited words of the passage (``\\S+``), the same for every system; a
system's per-word score is the sum of its own word or wordpiece scores that fall inside the word.
Per (prompt, positive passage) pair, with k = ceil(20% of the words) marked:

* ``precision``: share of the marked words that lie in the prompt's evidence;
* ``share``: share of the passage's words in the evidence (what random marking gets on average);
* ``lift = precision / share`` (1.0 = no better than random);
* ``auprc_minus_share``: average precision of the scores against the evidence words, minus the share.

Each is averaged over all pairs and over the pairs whose evidence covers < 50% of the words
(where marking has room to be right or wrong). ``lift`` in the summary is the pooled ratio
``mean(precision) / mean(share)``; ``lift_mean`` is the mean of per-pair lifts.

Per prompt, ranking the passages of its article (``hit@1`` needs the system's ranking):

* ``evidence_hit@1``: the top passage's highest-weight span (marked words merged into runs)
  overlaps the prompt's evidence;
* ``sentence_top1``: the sentence holding that span overlaps the evidence.

Free baselines: ``random`` (random word scores) and ``query_overlap`` (words the question shares
with the passage, stopwords excluded; ties broken at random).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cera_rag.evaluation.plausibility import average_precision

_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"[A-Za-z0-9]+")
#: Function words ignored by the query-overlap baseline (a question's "the" and "of" are no evidence).
STOPWORDS = frozenset(
    """a an the of in on at to and or with was were is are be been being for by from as than versus vs
    compared comparison between those receiving respect what which who whom how did does do done doing had
    has have it its this that these those there their they them patients patient group groups effect
    effects compare characterize reported difference differences change changes rather relative improve
    worsen better works work given happened over under into about after before during while not no""".split()
)
FRACTION = 0.2


def text_words(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each whitespace-delimited word."""
    return [(m.start(), m.end()) for m in _WORD.finditer(text)]


def evidence_mask(words: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Words that overlap an evidence span (character offsets in the same text)."""
    return np.array([any(s < b and a < e for a, b in spans) for s, e in words], dtype=bool)


def project(
    src_words: Sequence[tuple[int, int]], src_scores: Sequence[float] | np.ndarray, words: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Scores of ``src_words`` summed onto ``words`` (by overlap); words no source covers get -1."""
    out = np.full(len(words), -1.0, dtype=np.float64)
    if not len(words):
        return out
    starts = np.array([s for s, _ in words])
    for (s, e), v in zip(src_words, np.asarray(src_scores, dtype=np.float64), strict=True):
        j = int(np.searchsorted(starts, s, side="right")) - 1
        for k in (j, j + 1):
            if 0 <= k < len(words) and s < words[k][1] and words[k][0] < e:
                out[k] = v if out[k] < 0 else out[k] + v
    return out


def top_k(scores: np.ndarray, fraction: float = FRACTION) -> np.ndarray:
    """Indices of the ceil(fraction x n) highest scores (ties broken by position)."""
    k = max(1, int(math.ceil(fraction * len(scores))))
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]


def marked_precision(
    words: Sequence[tuple[int, int]], scores: Sequence[float] | np.ndarray, spans: Sequence[tuple[int, int]],
    fraction: float = FRACTION,
) -> tuple[float, float]:  # fmt: skip
    """``(precision of the top-fraction words on the evidence, evidence share of the words)``."""
    true = evidence_mask(words, spans)
    if not len(words):
        return float("nan"), float("nan")
    marked = top_k(np.asarray(scores), fraction)
    return float(true[marked].mean()), float(true.mean())


def pair_metrics(scores: np.ndarray, true: np.ndarray, fraction: float = FRACTION) -> dict[str, float]:
    """Precision, share, lift and AUPRC - share of one pair's word scores against its evidence words."""
    share = float(true.mean())
    precision = float(true[top_k(scores, fraction)].mean())
    auprc = average_precision(scores, true)
    return {
        "precision": precision,
        "share": share,
        "lift": precision / share if share > 0 else float("nan"),
        "auprc": auprc,
        "auprc_minus_share": auprc - share,
    }


def summarise(pairs: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Means over all pairs and over the pairs with evidence < 50% of the words."""
    out: dict[str, Any] = {}
    for name, subset in (("all", list(pairs)), ("evidence_lt50", [p for p in pairs if p["share"] < 0.5])):
        if not subset:
            out[name] = {"n": 0}
            continue
        mean = {k: float(np.nanmean([p[k] for p in subset])) for k in subset[0]}
        out[name] = {
            "n": len(subset),
            "precision": mean["precision"],
            "share": mean["share"],
            "lift": mean["precision"] / mean["share"] if mean["share"] > 0 else float("nan"),
            "lift_mean": mean["lift"],
            "auprc": mean["auprc"],
            "auprc_minus_share": mean["auprc_minus_share"],
        }
    return out


def query_overlap_scores(
    query: str, text: str, words: Sequence[tuple[int, int]], rng: np.random.Generator
) -> np.ndarray:
    """1 for words sharing a non-stopword token with the query, else 0; plus a tiny random tie-break."""
    q = {t.lower() for t in _TOKEN.findall(query)} - STOPWORDS
    hits = np.array(
        [1.0 if {t.lower() for t in _TOKEN.findall(text[s:e])} & q else 0.0 for s, e in words], dtype=np.float64
    )
    return hits + 1e-6 * rng.random(len(words))


def random_scores(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random(n)


@dataclass
class TopSpan:
    start: int
    end: int
    weight: float


def top_span(words: Sequence[tuple[int, int]], scores: np.ndarray, fraction: float = FRACTION) -> TopSpan | None:
    """The highest-weight run of adjacent marked words (weight = the sum of its positive scores)."""
    if not len(words):
        return None
    keep = sorted(top_k(scores, fraction).tolist())
    positive = np.clip(np.asarray(scores, dtype=np.float64), 0.0, None)
    best: TopSpan | None = None
    run = [keep[0]]
    for j in [*keep[1:], None]:
        if j is not None and j == run[-1] + 1:
            run.append(j)
            continue
        span = TopSpan(words[run[0]][0], words[run[-1]][1], float(positive[run].sum()))
        if best is None or span.weight > best.weight:
            best = span
        if j is not None:
            run = [j]
    return best


def span_hits(text: str, span: TopSpan | None, evidence: Sequence[tuple[int, int]]) -> tuple[bool, bool]:
    """``(the span overlaps the evidence, the sentence holding the span overlaps the evidence)``."""
    from cera_rag.data.passages import split_sentences

    if span is None or not evidence:
        return False, False
    hit = any(span.start < b and a < span.end for a, b in evidence)
    sentences = [(s, e) for s, e in split_sentences(text) if s <= span.start < e] or [(span.start, span.end)]
    s, e = sentences[0]
    return hit, any(s < b and a < e for a, b in evidence)


def hits_summary(hits: Sequence[tuple[bool, bool]]) -> dict[str, float]:
    if not hits:
        return {"n": 0}
    arr = np.array(hits, dtype=np.float64)
    return {"n": len(hits), "evidence_hit@1": float(arr[:, 0].mean()), "sentence_top1": float(arr[:, 1].mean())}


__all__ = [
    "STOPWORDS",
    "TopSpan",
    "evidence_mask",
    "hits_summary",
    "marked_precision",
    "pair_metrics",
    "project",
    "query_overlap_scores",
    "random_scores",
    "span_hits",
    "summarise",
    "text_words",
    "top_k",
    "top_span",
]
