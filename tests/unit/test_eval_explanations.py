"""Base-rate-aware explanation metrics (lift, AUPRC - share, evidence hit@1) and the two-stage evaluation rows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cera_rag.evaluation import explanations as ex

TEXT = "Pain fell with aspirin. The trial ran for six weeks in two towns."


def test_a_marker_that_marks_exactly_the_evidence_gets_lift_one_over_share() -> None:
    words = ex.text_words(TEXT)
    evidence = [(0, TEXT.index(".") + 1)]  # "Pain fell with aspirin." = 4 of 13 words
    true = ex.evidence_mask(words, evidence)
    assert true.sum() == 4 and len(words) == 13
    m = ex.pair_metrics(true.astype(float), true)
    share = 4 / 13
    assert m["precision"] == 1.0 and m["share"] == pytest.approx(share)
    assert m["lift"] == pytest.approx(1 / share)
    assert m["auprc"] == pytest.approx(1.0) and m["auprc_minus_share"] == pytest.approx(1 - share)
    # marking the complement: nothing right
    assert ex.pair_metrics((~true).astype(float), true)["precision"] == 0.0


def test_random_marking_gets_the_evidence_share() -> None:
    rng = np.random.default_rng(0)
    true = np.zeros(50, dtype=bool)
    true[:15] = True
    lifts = [ex.pair_metrics(ex.random_scores(50, rng), true)["lift"] for _ in range(3000)]
    assert np.mean(lifts) == pytest.approx(1.0, abs=0.03)


def test_summary_pools_and_splits_by_evidence_share() -> None:
    pairs = [
        {"precision": 1.0, "share": 0.25, "lift": 4.0, "auprc": 1.0, "auprc_minus_share": 0.75},
        {"precision": 0.5, "share": 0.75, "lift": 2 / 3, "auprc": 0.8, "auprc_minus_share": 0.05},
    ]
    s = ex.summarise(pairs)
    assert s["all"]["n"] == 2 and s["all"]["lift"] == pytest.approx(0.75 / 0.5)
    assert s["all"]["lift_mean"] == pytest.approx((4 + 2 / 3) / 2)
    assert s["evidence_lt50"]["n"] == 1 and s["evidence_lt50"]["lift"] == pytest.approx(4.0)
    assert ex.summarise([])["all"] == {"n": 0}


def test_top_span_and_sentence_hits() -> None:
    words = ex.text_words(TEXT)
    scores = np.zeros(len(words))
    scores[[0, 1]] = [0.4, 0.4]  # "Pain fell"
    scores[[10]] = 0.7  # "in": one word, but more weight than the run "Pain fell"? 0.7 < 0.8
    span = ex.top_span(words, scores, fraction=0.2)
    assert span is not None and TEXT[span.start : span.end] == "Pain fell"
    evidence = [(0, TEXT.index(".") + 1)]
    assert ex.span_hits(TEXT, span, evidence) == (True, True)
    late = ex.TopSpan(TEXT.index("six"), TEXT.index("six") + 3, 1.0)
    assert ex.span_hits(TEXT, late, evidence) == (False, False)
    # a span outside the evidence but in the evidence's sentence counts for sentence top-1 only
    assert ex.span_hits(TEXT, ex.TopSpan(10, 14, 1.0), [(0, 9)]) == (False, True)
    assert ex.span_hits(TEXT, None, evidence) == (False, False)


def test_project_and_query_overlap() -> None:
    words = ex.text_words("Pain, fell (p<0.01).")
    assert ex.project([(0, 4), (4, 5), (6, 10)], [0.5, 0.1, 0.2], words).tolist() == pytest.approx([0.6, 0.2, -1.0])
    rng = np.random.default_rng(0)
    overlap = ex.query_overlap_scores("Did aspirin change pain?", TEXT, ex.text_words(TEXT), rng)
    marked = [TEXT[s:e] for (s, e), v in zip(ex.text_words(TEXT), overlap, strict=True) if v >= 1]
    assert marked == ["Pain", "aspirin."]  # "did", "change" are stopwords; punctuation is ignored
    assert math.isclose(ex.marked_precision(ex.text_words(TEXT), overlap, [(0, 23)])[1], 4 / 13)


def test_evaluation_with_a_reader_adds_two_stage_and_explanation_rows(
    tiny_bert_dir: Path, synthetic_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cera_rag.experiments.report import write_report
    from cera_rag.experiments.runner import EvalConfig, run_evaluation
    from cera_rag.reader import CERAReader

    monkeypatch.setenv("CERA_CACHE_DIR", str(tmp_path / "cache"))
    CERAReader.from_base(str(tiny_bert_dir)).save_pretrained(tmp_path / "reader")
    system = str(tiny_bert_dir)
    cfg = EvalConfig(
        split="train", systems=["bm25", system], pools=["article", "corpus"], query_styles=["paper", "heldout"],
        limit=4, faithfulness=False, n_bootstrap=100, n_permutations=100, reader=str(tmp_path / "reader"),
        rerank_top_n=3, baseline=system, backend="torch", reader_backend="torch", reader_fusion=1.0,
    )  # fmt: skip
    results, per_query = run_evaluation(cfg, synthetic_data_dir, show_progress=False)
    label = f"{system}+reader"
    for key in ("article/paper", "article/heldout", "corpus/paper", "corpus/heldout"):
        entry = results["retrieval"][key]
        assert label in entry["systems"] and label in entry["comparisons"] and f"{label}+fusion" in entry["systems"]
        assert 0.0 <= entry["systems"][label]["metrics"]["mrr@10"] <= 1.0
    rows = results["explanations"]
    assert list(rows)[:2] == ["random", "query_overlap"]
    assert {f"{system} attention", "reader evidence spans"} <= set(rows)
    for row in rows.values():
        assert (
            row["pairs"]["all"]["n"] > 0 and 0.0 <= row["top1"]["evidence_hit@1"] <= row["top1"]["sentence_top1"] <= 1
        )
    assert rows["reader evidence spans"]["ranker"] == label and rows["random"]["ranker"] == system
    assert len(per_query["explanations"]["random"]["lift"]) == rows["random"]["pairs"]["all"]["n"]
    two_stage = next(s for s in results["systems"] if s["label"] == label)
    assert two_stage["kind"] == "two-stage" and two_stage["members"][0]["pairs_read"] > 0
    paths = write_report(results, per_query, tmp_path / "out", "run")
    md = (tmp_path / "out" / "run.md").read_text()
    assert "## Explanations" in md and "reader evidence spans" in md
    assert any(p.name == "run-explanations.png" for p in paths)


def test_rerank_orders_the_top_n_by_the_reader_and_fuses_on_request() -> None:
    from cera_rag.evaluation.two_stage import ReaderCache, rerank
    from cera_rag.reader import ReadResult

    class FakeReader:
        def read(self, query: str, texts: list[str], batch_size: int = 16) -> ReadResult:
            scores = np.array([{"a": 0.0, "b": 5.0, "c": 1.0, "d": 9.0}[t] for t in texts], dtype=np.float32)
            return ReadResult(scores, [[] for _ in texts], [np.zeros(0) for _ in texts])

    first = {"q": {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.1}}
    texts = {k: k for k in "abcd"}
    cache = ReaderCache(FakeReader())
    run = rerank(cache, first, {"q": "question"}, texts, top_n=3)
    assert sorted(run["q"], key=lambda k: -run["q"][k]) == ["b", "c", "a", "d"]  # d is outside the top 3
    assert cache.pairs_read == 3
    fused = rerank(cache, first, {"q": "question"}, texts, top_n=3, fusion=10.0)
    assert sorted(fused["q"], key=lambda k: -fused["q"][k])[:3] == ["a", "b", "c"]  # the first stage dominates
    assert cache.pairs_read == 3  # cached: nothing read twice
