"""Hard-negative strategies and the evidence guard, on a synthetic article written for them."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cera_rag.data.dataset import DataConfig
from cera_rag.data.negatives import NEGATIVE_STRATEGIES, ArticleBM25, NegativeMiner, prompt_terms
from cera_rag.data.passages import Passage, split_passages
from cera_rag.data.reader import Prompt
from cera_rag.data.subjectivity import subjectivity, subjectivity_scores

# One sentence per passage (max_words=14). Passage 0 holds the evidence; 1, 5 and 8 are on topic;
# 2, 4, 5 and 9 are opinion; 3, 6 and 7 are plain reporting off the prompt's topic.
ARTICLE = (
    "BODY.RESULTS:\n"
    "Fasting glucose fell more with metformin than with placebo (p < 0.001).\n"  # 0: evidence
    "Fasting glucose was measured every week in the metformin and placebo arms.\n"  # 1: on topic
    "We strongly believe metformin is a wonderful and exciting choice for glucose control.\n"  # 2
    "The protocol was approved by the ethics committee of the hospital.\n"  # 3
    "It is truly amazing how happy and grateful the patients seemed overall.\n"  # 4
    "Glucose control with metformin versus placebo remains a fascinating, beautiful puzzle.\n"  # 5
    "Body weight did not differ between the two groups at twelve weeks.\n"  # 6
    "Adverse events were recorded by nurses at every clinic visit.\n"  # 7
    "Placebo tablets looked identical to the metformin tablets in every way.\n"  # 8
    "Sadly, the terrible weather made some visits very difficult for everyone.\n"  # 9
)
PASSAGES = split_passages(ARTICLE, "A", max_words=14)
# Fixed scores close to TextBlob's, so the ranking tests do not depend on the lexicon version.
SUBJ = [0.5, 0.0, 0.85, 0.0, 0.65, 0.9, 0.0, 0.05, 0.1, 1.0]
PROMPT = Prompt("p1", "A", "metformin", "placebo", "fasting glucose")

EV_START = ARTICLE.index("Fasting glucose fell")
EV_END = ARTICLE.index(" (p < 0.001)")
# A second annotator's span runs three characters into passage 1: too little for a positive,
# enough for the guard.
P1_START = ARTICLE.index("Fasting glucose was")
EVIDENCE = [(EV_START, EV_END), (EV_START + 10, P1_START + 3)]

CONFIG = DataConfig(negatives_per_query=2, hybrid_pool=3)


def _miner(k: int = 2, pool: int = 3, seed: int = 13, subj: list[float] | None = None) -> NegativeMiner:
    cfg = DataConfig(negatives_per_query=k, hybrid_pool=pool)
    return NegativeMiner({"A": PASSAGES}, {"A": subj or SUBJ}, cfg, seed=seed)


def _touches_evidence(i: int, evidence: list[tuple[int, int]]) -> bool:
    """Independent of Passage.overlap: does passage i share any character with any span?"""
    chars = set(range(PASSAGES[i].start, PASSAGES[i].end))
    return any(chars & set(range(s, e)) for s, e in evidence)


def test_the_article_splits_as_written() -> None:
    assert len(PASSAGES) == 10
    assert PASSAGES[0].text.startswith("BODY.RESULTS:\nFasting glucose fell")
    assert PASSAGES[1].start == P1_START
    assert [i for i in range(10) if _touches_evidence(i, EVIDENCE)] == [0, 1]


def test_bm25_ranks_on_topic_passages_first() -> None:
    order, scores = ArticleBM25([p.text for p in PASSAGES]).rank(prompt_terms(PROMPT))
    assert sorted(order.tolist()) == list(range(10))
    assert set(order[:5].tolist()) == {0, 1, 2, 5, 8}  # every passage naming the drug or the outcome
    assert list(scores) == sorted(scores, reverse=True)
    assert scores[5] == 0.0  # the rest share no term with the prompt


def test_every_strategy_on_the_written_article() -> None:
    negatives, removed = _miner().mine(PROMPT, EVIDENCE)
    assert set(negatives) == set(NEGATIVE_STRATEGIES)
    # bm25 ranks 1, 0, 5, 8, 2: the guard skips 1 and 0 (both touch evidence), then takes 5 and 8
    assert negatives["bm25"] == [5, 8]
    assert removed["bm25"] == 2
    # subjective: the two most subjective clean passages, however far from the topic
    assert negatives["subjective"] == [9, 5]
    # hybrid: BM25's top-3 clean (5, 8, 2) re-ranked by subjectivity
    assert negatives["hybrid"] == [5, 2]
    assert removed["hybrid"] == 2
    assert len(negatives["random"]) == 2 and set(negatives["random"]) <= set(range(2, 10))
    assert removed["random"] == removed["subjective"] == 2
    for strategy, idx in negatives.items():
        assert not any(_touches_evidence(i, EVIDENCE) for i in idx), strategy


def test_guard_removes_a_passage_touched_by_a_single_character() -> None:
    one_char = [(P1_START + 20, P1_START + 21)]  # one character of passage 1, nothing of passage 0
    negatives, removed = _miner(k=9).mine(PROMPT, one_char)
    for strategy in NEGATIVE_STRATEGIES:
        assert 1 not in negatives[strategy], strategy
    assert sorted(negatives["random"]) == [0, 2, 3, 4, 5, 6, 7, 8, 9]
    assert removed["random"] == removed["subjective"] == 1
    # an end-exclusive span that stops where passage 1 starts does not touch it
    negatives, removed = _miner(k=9).mine(PROMPT, [(EV_START, P1_START)])
    assert 1 in negatives["random"] and 0 not in negatives["random"]


def test_subjective_follows_the_scores_with_ties_by_index() -> None:
    subj = [0.0, 0.0, 0.3, 0.7, 0.3, 0.0, 0.9, 0.7, 0.0, 0.1]
    negatives, _ = _miner(k=4, subj=subj).mine(PROMPT, EVIDENCE, strategies=["subjective"])
    assert negatives == {"subjective": [6, 3, 7, 2]}


def test_hybrid_is_within_the_bm25_top_m() -> None:
    miner = _miner(k=2, pool=4)
    order, _ = miner.bm25("A").rank(prompt_terms(PROMPT))
    clean_ranked = [i for i in order.tolist() if not _touches_evidence(i, EVIDENCE)]
    negatives, _ = miner.mine(PROMPT, EVIDENCE, strategies=["bm25", "hybrid"])
    assert negatives["bm25"] == clean_ranked[:2]
    assert set(negatives["hybrid"]) <= set(clean_ranked[:4])
    assert negatives["hybrid"] == sorted(clean_ranked[:4], key=lambda i: -SUBJ[i])[:2]
    # With a pool as small as k, hybrid keeps BM25's picks (re-ordered by subjectivity).
    negatives, _ = _miner(k=2, pool=2).mine(PROMPT, EVIDENCE, strategies=["bm25", "hybrid"])
    assert sorted(negatives["hybrid"]) == sorted(negatives["bm25"])


def test_random_is_seeded_and_deterministic() -> None:
    prompts = [Prompt(f"q{i}", "A", "metformin", "placebo", "glucose") for i in range(20)]
    first = [_miner(k=3).mine(p, EVIDENCE, ["random"])[0]["random"] for p in prompts]
    again = [_miner(k=3).mine(p, EVIDENCE, ["random"])[0]["random"] for p in prompts]
    other_seed = [_miner(k=3, seed=99).mine(p, EVIDENCE, ["random"])[0]["random"] for p in prompts]
    assert first == again  # a fresh miner with the same seed draws the same negatives
    assert first != other_seed
    assert len({tuple(x) for x in first}) > 1  # and different prompts draw differently
    for draw in first:
        assert len(set(draw)) == 3 and not set(draw) & {0, 1}


def test_fewer_clean_passages_than_k() -> None:
    evidence = [(PASSAGES[0].start, PASSAGES[7].end)]  # passages 0..7 all touch evidence
    negatives, removed = _miner(k=5, pool=10).mine(PROMPT, evidence)
    for strategy in NEGATIVE_STRATEGIES:
        assert sorted(negatives[strategy]) == [8, 9], strategy
        assert removed[strategy] == 8, strategy


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="Unknown negative strategy 'hardest'"):
        _miner().mine(PROMPT, EVIDENCE, strategies=["hardest"])


def test_bm25_index_is_built_once_per_article() -> None:
    miner = _miner()
    assert miner.bm25("A") is miner.bm25("A")


# ---------------------------------------------------------------------------------- subjectivity
def test_textblob_scores_opinion_above_reporting() -> None:
    scores = subjectivity_scores({"A": PASSAGES})["A"]
    assert len(scores) == 10 and all(0.0 <= s <= 1.0 for s in scores)
    opinion, reporting = [2, 4, 5, 9], [1, 3, 6, 7, 8]
    assert min(scores[i] for i in opinion) > max(scores[i] for i in reporting)
    assert subjectivity("HR 0.85, 95% CI 0.70 to 1.02, p = 0.2.") == 0.0
    assert subjectivity("We believe this is a wonderful, exciting result.") > 0.5


def test_subjective_strategy_with_textblob_scores() -> None:
    scores = subjectivity_scores({"A": PASSAGES})["A"]
    negatives, _ = _miner(k=3, subj=scores).mine(PROMPT, EVIDENCE, strategies=["subjective"])
    clean = [i for i in range(10) if not _touches_evidence(i, EVIDENCE)]
    assert negatives["subjective"] == sorted(clean, key=lambda i: (-scores[i], i))[:3]
    assert set(negatives["subjective"]) <= {2, 4, 5, 9}


# ---------------------------------------------------------------------------------- property
_SPAN = st.tuples(st.integers(0, len(ARTICLE) - 1), st.integers(1, 200)).map(
    lambda t: (t[0], min(len(ARTICLE), t[0] + t[1]))
)
_MINERS: dict[tuple[int, int], NegativeMiner] = {}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    evidence=st.lists(_SPAN, min_size=1, max_size=4),
    k=st.integers(1, 10),
    pool=st.integers(1, 10),
    pid=st.text("abc123", min_size=1, max_size=4),
)
def test_property_no_strategy_ever_returns_evidence(
    evidence: list[tuple[int, int]], k: int, pool: int, pid: str
) -> None:
    miner = _MINERS.setdefault((k, pool), _miner(k=k, pool=pool))
    prompt = Prompt(pid, "A", "metformin", "placebo", "fasting glucose")
    negatives, removed = miner.mine(prompt, evidence)
    touched = [i for i in range(10) if _touches_evidence(i, evidence)]
    clean = [i for i in range(10) if i not in touched]
    order, _ = miner.bm25("A").rank(prompt_terms(prompt))
    clean_ranked = [i for i in order.tolist() if i in clean]
    for strategy, idx in negatives.items():
        assert not set(idx) & set(touched), strategy  # the guard
        assert len(idx) == len(set(idx)), strategy
        assert set(idx) <= set(clean)
    assert len(negatives["random"]) == len(negatives["subjective"]) == min(k, len(clean))
    assert removed["random"] == removed["subjective"] == len(touched)
    assert negatives["bm25"] == clean_ranked[:k]
    assert 0 <= removed["bm25"] <= len(touched)
    if len(clean) < k:
        assert removed["bm25"] == len(touched)  # it had to walk the whole ranking
    assert set(negatives["hybrid"]) <= set(clean_ranked[:pool])
    assert len(negatives["hybrid"]) == min(k, pool, len(clean))
    hybrid_subj = [SUBJ[i] for i in negatives["hybrid"]]
    assert hybrid_subj == sorted(hybrid_subj, reverse=True)


def test_passages_built_by_hand_work_too() -> None:
    # The miner only needs Passage objects; a two-passage article with all evidence in one.
    text = "Insulin lowered HbA1c. Weather was nice."
    ps = [Passage("B", 0, 0, 22, text[0:22]), Passage("B", 1, 23, 40, text[23:40])]
    miner = NegativeMiner({"B": ps}, {"B": [0.0, 1.0]}, CONFIG)
    state = random.getstate()
    negatives, removed = miner.mine(Prompt("x", "B", "insulin", "placebo", "HbA1c"), [(0, 22)])
    assert random.getstate() == state  # the global RNG is left alone
    assert negatives == {"random": [1], "bm25": [1], "subjective": [1], "hybrid": [1]}
    assert removed == {"random": 1, "bm25": 1, "subjective": 1, "hybrid": 1}
