"""Retrieval evaluation: qrels and runs over a processed split, scored with ``ranx``.

Two pools:

* ``"article"``: each query ranks the passages of its own article only (the CERA paper's
  setting: find the evidence inside the trial report);
* ``"corpus"``: each query ranks every passage of the split.

A *system* is anything that embeds queries and passages (``encode_queries`` /
``encode_passages``) or, for BM25, a lexical scorer; every model goes through the same code.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import numpy as np

from cera_rag.data.dataset import ProcessedSplit, PromptExample
from cera_rag.data.queries import HELDOUT_TEMPLATES, PAPER_TEMPLATE, render

Pool = Literal["article", "corpus"]

#: Metrics reported everywhere (ranx names). ``recall@k`` counts all positives of a prompt;
#: ``hit_rate@k`` is 1 when any positive is in the top k.
DEFAULT_METRICS = (
    "hit_rate@1",
    "recall@1",
    "recall@3",
    "recall@5",
    "recall@10",
    "hit_rate@5",
    "precision@1",
    "precision@5",
    "mrr@10",
    "ndcg@10",
    "map@10",
)
TRAIN_METRICS = ("hit_rate@1", "recall@1", "recall@5", "mrr@10", "ndcg@10")


class Embedder(Protocol):
    def encode_queries(self, texts: Sequence[str], batch_size: int = ...) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str], batch_size: int = ...) -> Any: ...


def _stable_hash(text: str) -> int:
    return int(hashlib.md5(text.encode("utf-8")).hexdigest()[:8], 16)


def query_id(ex: PromptExample) -> str:
    return f"{ex.prompt.prompt_id}"


def query_text(ex: PromptExample, style: str = "paper") -> str:
    """The evaluation query of a prompt: the paper's template, or a held-out natural phrasing."""
    if style == "paper":
        return render(PAPER_TEMPLATE, ex.prompt)
    if style == "heldout":
        # A fixed held-out phrasing per prompt (never used in training), rotating over the set.
        template = HELDOUT_TEMPLATES[_stable_hash(ex.prompt.prompt_id) % len(HELDOUT_TEMPLATES)]
        return render(template, ex.prompt)
    raise ValueError(f"Unknown query style {style!r}; use 'paper' or 'heldout'.")


def build_qrels(split: ProcessedSplit) -> dict[str, dict[str, int]]:
    """Positive passages of every prompt with at least one."""
    qrels: dict[str, dict[str, int]] = {}
    for ex in split.examples:
        if not ex.positives:
            continue
        passages = split.passages[ex.prompt.article_id]
        qrels[query_id(ex)] = {passages[i].passage_id: 1 for i in ex.positives}
    return qrels


def _examples(split: ProcessedSplit, limit: int | None) -> list[PromptExample]:
    exs = [ex for ex in split.examples if ex.positives]
    return exs[:limit] if limit else exs


def eval_examples(split: ProcessedSplit, limit: int | None = None) -> list[PromptExample]:
    """The prompts evaluated: those with at least one positive passage, the first ``limit`` of them."""
    return _examples(split, limit)


def pool_articles(split: ProcessedSplit, exs: Sequence[PromptExample], pool: Pool) -> list[str]:
    """Articles whose passages form the candidate pool, sorted (the order ``dense_run`` uses).

    Args:
        split: the processed split.
        exs: the evaluated prompts.
        pool: ``"article"`` (only the prompts' own articles) or ``"corpus"`` (every article of the split).

    Returns:
        Sorted article ids.
    """
    if pool == "article":
        return sorted({ex.prompt.article_id for ex in exs})
    if pool == "corpus":
        return sorted(split.passages)
    raise ValueError(f"Unknown pool {pool!r}; use 'article' or 'corpus'.")


def dense_run(
    encoder: Embedder,
    split: ProcessedSplit,
    pool: Pool = "article",
    query_style: str = "paper",
    limit: int | None = None,
    passage_vectors: np.ndarray | None = None,
    batch_size: int = 64,
    top_k: int = 100,
) -> dict[str, dict[str, float]]:
    """Scores of every query against its pool, keeping the ``top_k`` best per query."""
    exs = _examples(split, limit)
    passages = [p for a in pool_articles(split, exs, pool) for p in split.passages[a]]
    if passage_vectors is None:
        passage_vectors = np.asarray(encoder.encode_passages([p.text for p in passages], batch_size=batch_size))
    qv = encoder.encode_queries([query_text(ex, query_style) for ex in exs], batch_size=batch_size)
    return _rank(exs, passages, passage_vectors, qv, pool, top_k)


def vectors_by_article(split: ProcessedSplit, articles: Sequence[str], vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Cut ``vectors`` (the passages of ``articles``, in order, as encoded) into one block per article.

    The ``article_vectors`` argument of ``dense_run_from_vectors``: encode a corpus once, rank both pools.
    """
    bounds = np.cumsum([0] + [len(split.passages[a]) for a in articles])
    if int(bounds[-1]) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors for {int(bounds[-1])} passages of {len(articles)} articles.")
    return {a: vectors[bounds[i] : bounds[i + 1]] for i, a in enumerate(articles)}


def dense_run_from_vectors(
    split: ProcessedSplit,
    exs: Sequence[PromptExample],
    query_vectors: np.ndarray,
    article_vectors: dict[str, np.ndarray],
    pool: Pool = "article",
    top_k: int = 100,
) -> dict[str, dict[str, float]]:
    """A dense run from precomputed vectors (e.g. the passage-vector cache).

    Args:
        split: the processed split.
        exs: the evaluated prompts, in the order of ``query_vectors``.
        query_vectors: ``(len(exs), d)`` query embeddings.
        article_vectors: article id -> ``(n_passages, d)`` vectors in ``split.passages[article_id]`` order;
            must hold every article of the pool.
        pool: ``"article"`` or ``"corpus"``.
        top_k: passages kept per query.

    Returns:
        ``{query_id: {passage_id: score}}``.
    """
    articles = pool_articles(split, exs, pool)
    passages = [p for a in articles for p in split.passages[a]]
    dim = query_vectors.shape[1]
    matrix = np.concatenate([article_vectors[a] for a in articles]) if articles else np.zeros((0, dim), np.float32)
    return _rank(list(exs), passages, matrix, query_vectors, pool, top_k)


def _rank(
    exs: list[PromptExample],
    passages: list[Any],
    passage_vectors: np.ndarray,
    query_vectors: np.ndarray,
    pool: Pool,
    top_k: int,
) -> dict[str, dict[str, float]]:
    by_article: dict[str, list[int]] = {}
    for i, p in enumerate(passages):
        by_article.setdefault(p.article_id, []).append(i)
    run: dict[str, dict[str, float]] = {}
    all_idx = np.arange(len(passages))
    for ex, q in zip(exs, query_vectors, strict=True):
        idx = np.asarray(by_article[ex.prompt.article_id]) if pool == "article" else all_idx
        scores = passage_vectors[idx] @ q
        best = np.argsort(-scores, kind="stable")[:top_k]
        run[query_id(ex)] = {passages[idx[j]].passage_id: float(scores[j]) for j in best}
    return run


def lexical_run(
    score_fn: Callable[[str, list[str]], np.ndarray],
    split: ProcessedSplit,
    query_style: str = "paper",
    limit: int | None = None,
    top_k: int = 100,
) -> dict[str, dict[str, float]]:
    """Per-article run of a scorer ``score_fn(query, passage_texts) -> scores`` (e.g. BM25)."""
    run: dict[str, dict[str, float]] = {}
    for ex in _examples(split, limit):
        passages = split.passages[ex.prompt.article_id]
        scores = np.asarray(score_fn(query_text(ex, query_style), [p.text for p in passages]), dtype=np.float64)
        best = np.argsort(-scores, kind="stable")[:top_k]
        run[query_id(ex)] = {passages[j].passage_id: float(scores[j]) for j in best}
    return run


def bm25_run(
    split: ProcessedSplit,
    pool: Pool = "article",
    query_style: str = "paper",
    limit: int | None = None,
    top_k: int = 100,
    exs: Sequence[PromptExample] | None = None,
) -> dict[str, dict[str, float]]:
    """BM25 (``bm25s``, English stopwords) over the article pool (one index per article) or the whole split.

    Args:
        split: the processed split.
        pool: ``"article"`` (rank the prompt's own article) or ``"corpus"`` (one index over all passages).
        query_style: ``"paper"`` or ``"heldout"`` (see ``query_text``).
        limit: evaluate the first ``limit`` prompts with positives (ignored when ``exs`` is given).
        top_k: passages kept per query.
        exs: the prompts to evaluate (default: ``eval_examples(split, limit)``).

    Returns:
        ``{query_id: {passage_id: score}}``.
    """
    from cera_rag.data.negatives import ArticleBM25

    exs = list(exs) if exs is not None else _examples(split, limit)
    run: dict[str, dict[str, float]] = {}
    if pool == "article":
        indexes: dict[str, ArticleBM25] = {}
        for ex in exs:
            aid = ex.prompt.article_id
            passages = split.passages[aid]
            if aid not in indexes:
                indexes[aid] = ArticleBM25([p.text for p in passages])
            order, scores = indexes[aid].rank(query_text(ex, query_style))
            run[query_id(ex)] = {
                passages[int(j)].passage_id: float(s) for j, s in zip(order[:top_k], scores[:top_k], strict=False)
            }
        return run
    passages = [p for a in pool_articles(split, exs, pool) for p in split.passages[a]]
    index = ArticleBM25([p.text for p in passages])
    index.n = min(top_k, len(passages))  # retrieve only the top k from the corpus index
    for ex in exs:
        order, scores = index.rank(query_text(ex, query_style))
        run[query_id(ex)] = {passages[int(j)].passage_id: float(s) for j, s in zip(order, scores, strict=False)}
    return run


def evaluate_run(
    qrels: dict[str, dict[str, int]],
    run: dict[str, dict[str, float]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    per_query: bool = False,
) -> dict[str, Any]:
    """Mean metrics (and per-query values when asked) via ``ranx``."""
    from ranx import Qrels, Run, evaluate

    q = {k: v for k, v in qrels.items() if k in run}
    if not q:
        raise ValueError("The run holds none of the qrels' queries; nothing to evaluate.")
    # ranx drops queries without results: give those an empty-but-present run entry.
    r = {k: (run[k] or {"__none__": 0.0}) for k in q}
    qrels_obj, run_obj = Qrels(q), Run(r)
    with warnings.catch_warnings():
        # numba's "unsafe cast from uint64 to int64" in ranx's precision kernel: harmless, noisy
        warnings.filterwarnings("ignore", message=".*unsafe cast.*")
        means = evaluate(qrels_obj, run_obj, list(metrics), make_comparable=True)
    out: dict[str, Any] = {m: float(means[m]) for m in metrics} if len(metrics) > 1 else {metrics[0]: float(means)}
    if per_query:
        out["per_query"] = {m: {k: float(v) for k, v in run_obj.scores[m].items()} for m in metrics}
    return out
