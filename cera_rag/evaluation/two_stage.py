"""Two-stage retrieval (bi-encoder top N, re-ranked by the reader) and explanation rows for the evaluation.

``rerank`` takes a first-stage run and re-scores each query's top ``top_n`` passages with a
``CERAReader``; the re-ranked passages stay above the rest, which keep their first-stage order.
Reader outputs are cached per (question, passage), so the article and corpus pools share work.

``explanation_rows`` measures every span marker the same way (``cera_rag.evaluation.explanations``):
per-pair lift on the positive passages, and evidence hit@1 / sentence top-1 on each system's own
top passage of the article.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cera_rag.evaluation import explanations as ex_metrics
from cera_rag.reader import ReadResult, standardise

#: Added to re-ranked scores so they stay above the first stage's (cosine, dot product, BM25) scores.
_OFFSET = 1e4


class ReaderCache:
    """Reader outputs per (question, passage id), computed in batches of one question."""

    def __init__(self, reader: Any, batch_size: int = 16) -> None:
        self.reader = reader
        self.batch_size = batch_size
        self.store: dict[tuple[str, str], tuple[float, list[tuple[int, int]], np.ndarray]] = {}
        self.pairs_read = 0

    def read(
        self, query: str, ids: Sequence[str], texts: Sequence[str]
    ) -> list[tuple[float, list[tuple[int, int]], np.ndarray]]:
        todo = [j for j, pid in enumerate(ids) if (query, pid) not in self.store]
        if todo:
            result: ReadResult = self.reader.read(query, [texts[j] for j in todo], batch_size=self.batch_size)
            self.pairs_read += len(todo)
            for row, j in enumerate(todo):
                self.store[(query, ids[j])] = (float(result.scores[row]), result.words[row], result.probabilities[row])
        return [self.store[(query, pid)] for pid in ids]


def rerank(
    cache: ReaderCache,
    run: dict[str, dict[str, float]],
    queries: dict[str, str],
    texts: dict[str, str],
    top_n: int = 20,
    show_progress: bool = False,
    desc: str = "re-rank",
    fusion: float = 0.0,
) -> dict[str, dict[str, float]]:
    """Re-score each query's top ``top_n`` passages of ``run`` with the reader.

    Args:
        cache: the reader and its outputs.
        run: ``{query_id: {passage_id: score}}`` of the first stage.
        queries: query id -> question text.
        texts: passage id -> passage text.
        top_n: passages re-ranked per query.
        show_progress: tqdm bar over queries.
        desc: the bar's label.
        fusion: 0 ranks the top ``top_n`` by the reader alone; ``w > 0`` by
            ``z(reader) + w * z(first stage)``, both standardised over the query's top ``top_n``.

    Returns:
        A run whose top ``top_n`` are ordered by the reader, the rest by the first stage.
    """
    from tqdm.auto import tqdm

    out: dict[str, dict[str, float]] = {}
    for qid, scores in tqdm(run.items(), desc=desc, disable=not show_progress, leave=False):
        ranked = sorted(scores, key=lambda pid: -scores[pid])
        head, tail = ranked[:top_n], ranked[top_n:]
        read = cache.read(queries[qid], head, [texts[pid] for pid in head])
        combined = np.array([r[0] for r in read], dtype=np.float64)
        if fusion > 0:
            combined = standardise(combined) + fusion * standardise(
                np.array([scores[pid] for pid in head], dtype=np.float64)
            )
        new = {pid: _OFFSET + float(c) for pid, c in zip(head, combined, strict=True)}
        new.update({pid: scores[pid] for pid in tail})
        out[qid] = new
    return out


#: A marker: (question, passage text, words) -> a score per word.
Marker = Callable[[str, str, list[tuple[int, int]]], np.ndarray]


def encoder_marker(encoder: Any, texts: Sequence[str], batch_size: int = 32) -> Marker:
    """A bi-encoder's CLS attention per word (the same for every question), computed once for ``texts``."""
    from cera_rag.evaluation.attribution import passage_words

    unique = sorted(set(texts))
    words = {pw.text: pw for pw in passage_words(encoder, unique, batch_size)}

    def mark(query: str, text: str, w: list[tuple[int, int]]) -> np.ndarray:
        pw = words[text]
        return ex_metrics.project(pw.words, pw.attention, w)

    return mark


def reader_marker(cache: ReaderCache, ids: dict[str, str]) -> Marker:
    """The reader's evidence probability per word for this question (``ids``: text -> passage id)."""

    def mark(query: str, text: str, w: list[tuple[int, int]]) -> np.ndarray:
        _, words, probs = cache.read(query, [ids[text]], [text])[0]
        return ex_metrics.project(words, probs, w)

    return mark


def baseline_marker(kind: str, seed: int) -> Marker:
    """``random`` or ``query_overlap`` word scores."""
    rng = np.random.default_rng(seed)

    def mark(query: str, text: str, w: list[tuple[int, int]]) -> np.ndarray:
        if kind == "random":
            return ex_metrics.random_scores(len(w), rng)
        return ex_metrics.query_overlap_scores(query, text, w, rng)

    return mark


def explanation_row(
    mark: Marker,
    split: Any,
    exs: Sequence[Any],
    pairs: Sequence[Any],
    top_passages: dict[str, str],
    query_for: Callable[[Any], str],
    ranker: str | None,
) -> dict[str, Any]:
    """Lift etc. on the positive pairs and evidence hit@1 / sentence top-1 on ``top_passages``.

    Args:
        mark: the span marker.
        split: the ``ProcessedSplit``.
        exs: the evaluated prompts.
        pairs: their positive pairs (``plausibility.positive_pairs``).
        top_passages: query id -> id of the system's top passage in the article pool.
        query_for: prompt example -> question text (the query style of the run).
        ranker: which system ranked ``top_passages`` (recorded).
    """
    from cera_rag.evaluation.retrieval import query_id

    by_qid = {query_id(e): e for e in exs}
    per_pair = []
    for pair in pairs:
        words = ex_metrics.text_words(pair.text)
        true = ex_metrics.evidence_mask(words, pair.spans)
        if not words or not true.any():
            continue
        scores = mark(query_for(by_qid[pair.query_id]), pair.text, words)
        per_pair.append(ex_metrics.pair_metrics(scores, true))
    hits = []
    for qid, pid in top_passages.items():
        e = by_qid[qid]
        passages = split.passages[e.prompt.article_id]
        index = next(i for i, p in enumerate(passages) if p.passage_id == pid)
        text = passages[index].text
        words = ex_metrics.text_words(text)
        span = ex_metrics.top_span(words, mark(query_for(e), text, words)) if words else None
        hits.append(ex_metrics.span_hits(text, span, e.rationales.get(index, [])))
    return {
        "pairs": ex_metrics.summarise(per_pair),
        "top1": ex_metrics.hits_summary(hits),
        "ranker": ranker,
        "per_pair_lift": [p["lift"] for p in per_pair],
        "per_pair_share": [p["share"] for p in per_pair],
    }


def top_of(run: dict[str, dict[str, float]]) -> dict[str, str]:
    """Query id -> its highest-scoring passage id."""
    return {qid: max(scores, key=lambda pid: scores[pid]) for qid, scores in run.items() if scores}


__all__ = [
    "ReaderCache",
    "baseline_marker",
    "encoder_marker",
    "explanation_row",
    "reader_marker",
    "rerank",
    "top_of",
]
