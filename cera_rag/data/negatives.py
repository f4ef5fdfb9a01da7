"""Hard negatives for a prompt, from the same article, never overlapping any of its evidence.

Strategies (``NEGATIVE_STRATEGIES``):

* ``random``: uniform over the article's non-evidence passages (the paper's baseline).
* ``bm25``: the top BM25 (``bm25s``) non-evidence passages for the prompt's terms (standard
  hard negatives).
* ``subjective``: the k most subjective non-evidence passages (TextBlob PatternAnalyzer), as in
  the CERA paper. These often sit in the introduction or discussion and are topically far,
  hence easy.
* ``hybrid`` (ours): subjective *and* on topic: the BM25 top-m non-evidence passages re-ranked
  by subjectivity, so the model learns to tell a reported result from talk about the same topic.

The evidence guard drops every candidate that shares a character with any evidence span of the
prompt (any annotator); ``mine`` returns how many candidates it removed per strategy.

``cross_article_negatives`` adds what the in-article strategies cannot give: the BM25 top passages
of *other* articles for the prompt's terms. A RAG user searches one collection over every article,
where the competitors of the evidence are other trials of the same drugs and outcomes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cera_rag.data.passages import Passage
from cera_rag.data.positives import overlaps_any
from cera_rag.data.reader import Prompt

if TYPE_CHECKING:
    from cera_rag.data.config import DataConfig

NEGATIVE_STRATEGIES = ("random", "bm25", "subjective", "hybrid")


def prompt_terms(prompt: Prompt) -> str:
    """The words BM25 matches on: intervention, comparator and outcome."""
    return f"{prompt.intervention} {prompt.comparator} {prompt.outcome}"


def _bm25s() -> Any:
    """``bm25s``, with its logger quietened: it sets itself to DEBUG on import and logs a line per index built."""
    import logging

    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


class ArticleBM25:
    """BM25 over one article's passages (built once, reused for all its prompts)."""

    def __init__(self, texts: Sequence[str]) -> None:
        bm25s = _bm25s()
        self.n = len(texts)
        self._bm25 = bm25s.BM25()
        self._bm25.index(bm25s.tokenize(list(texts), stopwords="en", show_progress=False), show_progress=False)

    def rank(self, query: str, top: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Passage indices, best first, and their scores (all of them, or the ``top`` best)."""
        bm25s = _bm25s()
        tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)
        docs, scores = self._bm25.retrieve(tokens, k=min(top or self.n, self.n), show_progress=False)
        return docs[0], scores[0]


def cross_article_negatives(
    passages: Mapping[str, Sequence[Passage]], prompts: Sequence[Prompt], k: int, depth: int = 100
) -> dict[str, list[tuple[str, int]]]:
    """Per prompt id, the ``k`` best BM25 passages (prompt terms) from articles other than its own.

    One BM25 index over every passage of ``passages``; the ``depth`` best are read per prompt, so a
    prompt whose article holds all of them gets fewer than ``k``. No evidence guard is needed: a
    prompt's evidence lies in its own article. Returns ``(article_id, passage index)`` pairs.
    """
    if k <= 0:
        return {p.prompt_id: [] for p in prompts}
    where = [(a, i) for a in sorted(passages) for i in range(len(passages[a]))]
    index = ArticleBM25([passages[a][i].text for a, i in where])
    out: dict[str, list[tuple[str, int]]] = {}
    for prompt in prompts:
        order, _ = index.rank(prompt_terms(prompt), top=depth)
        others = [where[j] for j in order.tolist() if where[j][0] != prompt.article_id]
        out[prompt.prompt_id] = others[:k]
    return out


class NegativeMiner:
    """Mines every strategy's negatives for prompts of one processed split."""

    def __init__(
        self,
        passages: Mapping[str, Sequence[Passage]],
        subjectivity: Mapping[str, Sequence[float]],
        config: DataConfig,
        seed: int = 13,
    ) -> None:
        self.passages = passages
        self.subjectivity = subjectivity
        self.k = config.negatives_per_query
        self.pool = config.hybrid_pool
        self.seed = seed
        self._bm25: dict[str, ArticleBM25] = {}

    def bm25(self, article_id: str) -> ArticleBM25:
        if article_id not in self._bm25:
            self._bm25[article_id] = ArticleBM25([p.text for p in self.passages[article_id]])
        return self._bm25[article_id]

    def mine(
        self,
        prompt: Prompt,
        evidence: Sequence[tuple[int, int]],
        strategies: Sequence[str] = NEGATIVE_STRATEGIES,
    ) -> tuple[dict[str, list[int]], dict[str, int]]:
        """``({strategy: ranked passage indices}, {strategy: candidates removed by the guard})``."""
        passages = self.passages[prompt.article_id]
        is_evidence = [overlaps_any(p, evidence) for p in passages]
        clean = [i for i, ev in enumerate(is_evidence) if not ev]
        negatives: dict[str, list[int]] = {}
        removed: dict[str, int] = {}
        subj = self.subjectivity[prompt.article_id]
        for strategy in strategies:
            if strategy == "random":
                rng = random.Random(f"{self.seed}:{prompt.prompt_id}")
                negatives[strategy] = rng.sample(clean, min(self.k, len(clean)))
                removed[strategy] = len(passages) - len(clean)
            elif strategy == "subjective":
                negatives[strategy] = sorted(clean, key=lambda i: (-subj[i], i))[: self.k]
                removed[strategy] = len(passages) - len(clean)
            elif strategy in ("bm25", "hybrid"):
                order, _ = self.bm25(prompt.article_id).rank(prompt_terms(prompt))
                want = self.k if strategy == "bm25" else self.pool
                picked: list[int] = []
                skipped = 0
                for i in order.tolist():
                    if len(picked) == want:
                        break
                    if is_evidence[i]:
                        skipped += 1
                    else:
                        picked.append(i)
                if strategy == "hybrid":
                    picked = sorted(picked, key=lambda i: (-subj[i], i))[: self.k]
                negatives[strategy] = picked
                removed[strategy] = skipped
            else:
                raise ValueError(f"Unknown negative strategy {strategy!r}; choose from {NEGATIVE_STRATEGIES}.")
        return negatives, removed
