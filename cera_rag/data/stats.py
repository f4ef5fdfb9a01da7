"""Summary statistics of processed splits (what ``cera-rag data stats`` prints)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cera_rag.data.dataset import ProcessedSplit
from cera_rag.data.negatives import NEGATIVE_STRATEGIES


def split_stats(ps: ProcessedSplit) -> dict[str, Any]:
    """Counts per split: articles, prompts, evidence, passages, positives, negatives and guard removals."""
    n_pos = [len(ex.positives) for ex in ps.examples]
    words = [len(p.text.split()) for p in ps.all_passages()]
    out: dict[str, Any] = {
        "articles": len(ps.passages),
        "prompts": ps.n_prompts,
        "evidence_annotations": ps.n_annotations,
        "evidence_spans": ps.n_evidence,
        "passages": ps.n_passages,
        "passage_words_mean": round(float(np.mean(words)), 1) if words else 0.0,
        "prompts_with_positive": len(ps.examples),
        "positives_per_prompt": round(float(np.mean(n_pos)), 2) if n_pos else 0.0,
        "negatives": {},
        "dropped": {k: v for k, v in ps.dropped.items() if not k.startswith("_")},
    }
    for strategy in NEGATIVE_STRATEGIES:
        counts = [len(ex.negatives.get(strategy, [])) for ex in ps.examples]
        removed = [ex.guard_removed.get(strategy, 0) for ex in ps.examples]
        subj = [ps.subjectivity[ex.prompt.article_id][i] for ex in ps.examples for i in ex.negatives.get(strategy, [])]
        out["negatives"][strategy] = {
            "mean_per_query": round(float(np.mean(counts)), 2) if counts else 0.0,
            "guard_removed_total": int(sum(removed)),
            "guard_removed_mean": round(float(np.mean(removed)), 2) if removed else 0.0,
            "mean_subjectivity": round(float(np.mean(subj)), 3) if subj else 0.0,
        }
    return out
