"""The within-article miss taxonomy: each kind is recognised, and lenient scores only add restatements."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from cera_rag.data.dataset import evidence_negative_pools
from cera_rag.evaluation.errors import (
    error_summary,
    miss_kind,
    restating_passages,
    result_numbers,
)

TEXTS = [
    "Background: asthma is common.",  # 0 other
    "Methods: 120 patients were randomised.",  # 1 next to the evidence of prompt a
    "FEV1 rose by 12.5% vs 3.1% (p = 0.03) with drug X.",  # 2 evidence of prompt a
    "Dyspnoea fell in both arms.",  # 3 evidence of prompt b
    "In the abstract: FEV1 +12.5% against 3.1% for placebo.",  # 4 restates prompt a's result
    "We think the drug is promising.",  # 5 other
]


def _example(pid: str, positives: list[int], evidence: str, outcome: str) -> Any:
    prompt = SimpleNamespace(
        prompt_id=pid, article_id="A", intervention="drug X", comparator="placebo", outcome=outcome
    )
    return SimpleNamespace(prompt=prompt, positives=positives, evidence_texts=[evidence])


@pytest.fixture()
def split() -> Any:
    passages = {"A": [SimpleNamespace(passage_id=f"A-{i}", text=t) for i, t in enumerate(TEXTS)]}
    a = _example("a", [2], "FEV1 rose by 12.5% vs 3.1% (p = 0.03)", "FEV1")
    b = _example("b", [3], "Dyspnoea fell in both arms.", "dyspnoea")
    return SimpleNamespace(passages=passages, examples=[a, b])


def _run(order: list[int]) -> dict[str, float]:
    return {f"A-{i}": float(len(order) - r) for r, i in enumerate(order)}


def test_result_numbers_keep_only_result_like_numbers() -> None:
    assert result_numbers("3 groups; 12.5% vs 8.1 mm (p = 0.03), n = 40 of 2") == {"12.5%", "8.1", "0.03", "40"}


def test_each_miss_kind_is_recognised(split: Any) -> None:
    a = split.examples[0]
    restating = restating_passages(split, a)
    others = set(evidence_negative_pools(split)["a"])
    assert restating == {4} and others == {3}
    assert miss_kind(a, 2, restating, others) is None
    assert [miss_kind(a, top, restating, others) for top in (4, 3, 1, 5)] == [
        "restates_result",
        "another_prompts_evidence",
        "next_to_evidence",
        "other",
    ]
    # a prompt whose evidence holds fewer result numbers than asked has no restatement
    assert restating_passages(split, split.examples[1]) == set()


def test_a_prompt_asking_the_same_question_is_not_another_prompts_evidence(split: Any) -> None:
    """A second annotator's prompt that repeats a's question marks a's evidence elsewhere: not a competitor."""
    repeat = _example("a2", [5], "We think the drug is promising.", " fev1 ")
    split.examples.append(repeat)
    a = split.examples[0]
    others = set(evidence_negative_pools(split)["a"])
    assert others == {3}
    assert miss_kind(a, 5, restating_passages(split, a), others) == "other"
    run = {"a": _run([5, 2, 0, 1, 3, 4])}
    assert error_summary(split, [a], run)["miss_kinds"]["other"] == 1


def test_summary_counts_misses_and_lenient_scores_only_add_restatements(split: Any) -> None:
    a, b = split.examples
    run = {"a": _run([4, 2, 0, 1, 3, 5]), "b": _run([5, 0, 1, 2, 4, 3])}
    out = error_summary(split, [a, b], run)
    assert out["misses_at_1"] == 2 and out["miss_kinds"] == {
        "restates_result": 1,
        "another_prompts_evidence": 0,
        "next_to_evidence": 0,
        "other": 1,
    }
    assert out["misses_with_a_positive_second"] == 1
    assert out["hit@1"] == 0.0 and out["lenient_hit@1"] == 0.5
    assert out["mrr@10"] == pytest.approx((1 / 2 + 1 / 6) / 2, abs=1e-4)
    assert out["lenient_mrr@10"] == pytest.approx((1 + 1 / 6) / 2, abs=1e-4)
    perfect = error_summary(split, [a, b], {"a": _run([2, 4]), "b": _run([3, 0])})
    assert perfect["misses_at_1"] == 0 and perfect["mrr@10"] == perfect["lenient_mrr@10"] == 1.0
