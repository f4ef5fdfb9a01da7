"""Retrieval and plausibility metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cera_rag.evaluation.attribution import ranking, rationale_mask
from cera_rag.evaluation.plausibility import (
    aggregate,
    average_precision,
    instance_scores,
    iou,
    iou_counts,
    mask_to_spans,
    token_counts,
    top_k_mask,
)
from cera_rag.evaluation.retrieval import evaluate_run

# One query, positives d1 and d3; the run ranks d2, d1, d3, d4.
QRELS = {"q1": {"d1": 1, "d3": 1}}
RUN = {"q1": {"d2": 0.9, "d1": 0.8, "d3": 0.7, "d4": 0.6}}


def test_ranx_metrics_hand_computed() -> None:
    m = evaluate_run(
        QRELS,
        RUN,
        [
            "mrr@10",
            "recall@1",
            "recall@3",
            "precision@1",
            "precision@5",
            "hit_rate@1",
            "hit_rate@5",
            "ndcg@10",
            "map@10",
        ],
    )
    assert m["mrr@10"] == pytest.approx(1 / 2)
    assert m["recall@1"] == pytest.approx(0.0)
    assert m["recall@3"] == pytest.approx(1.0)
    assert m["precision@1"] == pytest.approx(0.0)
    assert m["precision@5"] == pytest.approx(2 / 5)
    assert m["hit_rate@1"] == pytest.approx(0.0)
    assert m["hit_rate@5"] == pytest.approx(1.0)
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx(dcg / idcg)
    assert m["map@10"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_ranx_per_query_and_missing_results() -> None:
    qrels = {**QRELS, "q2": {"d9": 1}}
    run = {**RUN, "q2": {}}
    m = evaluate_run(qrels, run, ["mrr@10", "recall@1"], per_query=True)
    assert m["per_query"]["mrr@10"] == pytest.approx({"q1": 0.5, "q2": 0.0})
    assert m["mrr@10"] == pytest.approx(0.25)


def test_average_precision_hand_computed() -> None:
    # ranks: + - + -  -> (1/1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0.1, 0.2, 0.3], [0, 0, 1]) == pytest.approx(1.0)
    assert average_precision([0.3, 0.2, 0.1], [0, 0, 1]) == pytest.approx(1 / 3)
    assert math.isnan(average_precision([0.3, 0.2], [0, 0]))


def test_average_precision_groups_ties_like_sklearn() -> None:
    # all tied: one threshold, precision = 1/4, recall 1 -> AP = 0.25 (whatever the order)
    assert average_precision([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 0]) == pytest.approx(0.25)
    # a tie between a positive and a negative at the top: P = 1/2 at R = 1/2, then P = 2/3 at R = 1
    assert average_precision([0.9, 0.9, 0.5, 0.1], [1, 0, 1, 0]) == pytest.approx(0.5 * 0.5 + 0.5 * (2 / 3))


def test_token_f1_hand_computed() -> None:
    pred = np.array([1, 1, 0, 0, 1], dtype=bool)
    true = np.array([0, 1, 1, 0, 1], dtype=bool)
    c = token_counts(pred, true)
    assert (c.tp, c.n_pred, c.n_true) == (2, 3, 3)
    assert c.precision == pytest.approx(2 / 3)
    assert c.f1 == pytest.approx(2 / 3)


def test_iou_f1_hand_computed() -> None:
    assert iou((0, 4), (1, 4)) == pytest.approx(3 / 4)
    assert iou((0, 2), (2, 4)) == 0.0
    # (1,4) matches (0,4) (IOU 0.75); (6,8) matches nothing -> P = 1/2, R = 1/1
    c = iou_counts([(1, 4), (6, 8)], [(0, 4)], 0.5)
    assert (c.tp, c.n_pred, c.n_true) == (1, 2, 1)
    assert c.f1 == pytest.approx(2 * 0.5 * 1 / 1.5)
    # IOU exactly 0.5 counts (>=), just below does not
    assert iou_counts([(0, 2)], [(0, 4)], 0.5).tp == 1
    assert iou_counts([(0, 2)], [(0, 5)], 0.5).tp == 0


def test_spans_masks_and_topk() -> None:
    assert mask_to_spans([0, 1, 1, 0, 1]) == [(1, 3), (4, 5)]
    assert mask_to_spans([1, 1]) == [(0, 2)]
    assert mask_to_spans([]) == []
    assert top_k_mask([0.1, 0.9, 0.5, 0.9], 2).tolist() == [False, True, False, True]
    assert ranking(np.array([0.1, 0.9, 0.5, 0.9])).tolist() == [1, 3, 2, 0]
    words = [(0, 4), (5, 10), (11, 15)]
    assert rationale_mask(words, [(6, 8)]).tolist() == [False, True, False]
    assert rationale_mask(words, [(4, 5)]).tolist() == [False, False, False]  # only the space


def test_instance_scores_and_micro_aggregate() -> None:
    true = np.array([0, 1, 1, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    perfect = instance_scores(true.astype(float), true)
    assert perfect["auprc"] == 1.0
    assert perfect["token_f1_macro@rationale"] == 1.0 and perfect["iou_f1_macro@rationale"] == 1.0
    # 20% of 10 words = 2 words = the rationale here
    assert perfect["token_f1_macro@20%"] == 1.0
    wrong = instance_scores(np.arange(10, dtype=float), true)  # top words are 9, 8
    assert wrong["token_f1_macro@rationale"] == 0.0
    agg = aggregate([perfect, wrong])
    # micro token F1 at k = rationale: tp = 2 of 4 predicted and 4 true words
    assert agg["token_f1@rationale"] == pytest.approx(0.5)
    assert agg["token_f1_macro@rationale"] == pytest.approx(0.5)
    assert agg["iou_precision@rationale"] == pytest.approx(0.5)
    assert agg["n"] == 2
