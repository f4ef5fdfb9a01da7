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

    def rank(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """All passage indices, best first, and their scores."""
        bm25s = _bm25s()
        tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)
        docs, scores = self._bm25.retrieve(tokens, k=self.n, show_progress=False)
        return docs[0], scores[0]


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
