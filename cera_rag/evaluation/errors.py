"""Why a retriever's top passage is not a positive: a taxonomy of within-article misses.

Evidence Inference marks the evidence of a prompt where one annotator found it, so a trial's result
reported twice (abstract and results section) is a positive in one place and a "negative" in the
other. ``miss_kind`` sorts each miss of the top passage into the first kind that holds:

* ``restates_result``: the top passage shares at least ``min_shared`` of the evidence's result numbers
  (decimals, percentages, numbers of two or more digits): most likely the same result, unannotated;
* ``another_prompts_evidence``: it is a positive of another prompt of the same article that asks
  another question (another outcome or comparison of the trial: the bi-encoder's evidence negatives);
* ``next_to_evidence``: it is the passage just before or after a positive;
* ``other``.

``lenient`` metrics count the ``restates_result`` passages of the article as relevant too: an upper
bound on what the annotations' single location costs a retriever, not a corrected score.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cera_rag.data.dataset import ProcessedSplit, PromptExample, evidence_negative_pools
from cera_rag.evaluation.retrieval import query_id

MISS_KINDS = ("restates_result", "another_prompts_evidence", "next_to_evidence", "other")
_NUMBER = re.compile(r"\d+(?:\.\d+)?%?")


def result_numbers(text: str) -> set[str]:
    """Decimals, percentages and numbers of two or more digits (small integers such as group counts are too common)."""
    return {n for n in _NUMBER.findall(text) if "." in n or "%" in n or len(n) >= 2}


def restating_passages(split: ProcessedSplit, ex: PromptExample, min_shared: int = 2) -> set[int]:
    """Passages of the prompt's article, not its positives, sharing ``min_shared`` result numbers with its evidence."""
    evidence = result_numbers(" ".join(ex.evidence_texts))
    if len(evidence) < min_shared:
        return set()
    own = set(ex.positives)
    return {
        i
        for i, p in enumerate(split.passages[ex.prompt.article_id])
        if i not in own and len(evidence & result_numbers(p.text)) >= min_shared
    }


def miss_kind(ex: PromptExample, top: int, restating: set[int], others_evidence: set[int]) -> str | None:
    """The kind of miss when passage ``top`` of the article ranks first, or ``None`` when it is a positive.

    ``restating``: ``restating_passages`` of the prompt; ``others_evidence``: the positives of the
    article's prompts that ask another question (``evidence_negative_pools``).
    """
    if top in ex.positives:
        return None
    if top in restating:
        return "restates_result"
    if top in others_evidence:
        return "another_prompts_evidence"
    if any(abs(top - i) == 1 for i in ex.positives):
        return "next_to_evidence"
    return "other"


def _first_relevant_rank(ranked: Sequence[int], relevant: set[int], k: int = 10) -> int | None:
    return next((r for r, i in enumerate(ranked[:k], start=1) if i in relevant), None)


def error_summary(
    split: ProcessedSplit,
    exs: Sequence[PromptExample],
    run: Mapping[str, Mapping[str, float]],
    min_shared: int = 2,
) -> dict[str, Any]:
    """Counts of each miss kind of the top passage, and strict / lenient hit@1 and MRR@10, over ``exs``.

    Args:
        split: the processed split the run ranks.
        exs: the evaluated prompts.
        run: ``{query_id: {passage_id: score}}`` over the article pool (``dense_run_from_vectors``).
        min_shared: result numbers a passage must share with the evidence to count as a restatement.
    """
    index = {p.passage_id: i for a in split.passages for i, p in enumerate(split.passages[a])}
    others = evidence_negative_pools(split)
    kinds: Counter[str] = Counter()
    strict_rr, lenient_rr, second = [], [], 0
    with_restatement = 0
    for ex in exs:
        scores = run[query_id(ex)]
        ranked = [index[pid] for pid in sorted(scores, key=lambda pid: -scores[pid])]
        restating = restating_passages(split, ex, min_shared)
        with_restatement += bool(restating)
        strict = _first_relevant_rank(ranked, set(ex.positives))
        lenient = _first_relevant_rank(ranked, set(ex.positives) | restating)
        strict_rr.append(1.0 / strict if strict else 0.0)
        lenient_rr.append(1.0 / lenient if lenient else 0.0)
        kind = miss_kind(ex, ranked[0], restating, set(others.get(ex.prompt.prompt_id, ())))
        if kind is not None:
            kinds[kind] += 1
            second += strict == 2
    n = len(exs)
    misses = sum(kinds.values())
    return {
        "queries": n,
        "queries_with_a_restating_passage": with_restatement,
        "misses_at_1": misses,
        "miss_kinds": {k: kinds[k] for k in MISS_KINDS},
        "miss_kind_share": {k: round(kinds[k] / misses, 4) if misses else 0.0 for k in MISS_KINDS},
        "misses_with_a_positive_second": second,
        "hit@1": round(1 - misses / n, 4) if n else 0.0,
        "lenient_hit@1": round(float(np.mean([rr == 1.0 for rr in lenient_rr])), 4) if n else 0.0,
        "mrr@10": round(float(np.mean(strict_rr)), 4) if n else 0.0,
        "lenient_mrr@10": round(float(np.mean(lenient_rr)), 4) if n else 0.0,
    }
