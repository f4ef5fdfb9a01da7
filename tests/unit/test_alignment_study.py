"""The alignment study runner (evals/run_alignment_study.py): trains, evaluates, resumes, concludes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cera_rag.evaluation import explanations as ex_metrics
from cera_rag.evaluation.attribution import passage_words, per_head_attention
from cera_rag.model import CERAEncoder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("run_alignment_study", ROOT / "evals" / "run_alignment_study.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TEXTS = ["Mortality was 12% with aspirin versus 20% with placebo (p = 0.03).", "Pain scores fell."]


def test_per_head_attention_averages_to_the_encoders_attention(tiny_bert_dir) -> None:
    enc = CERAEncoder.from_pretrained(str(tiny_bert_dir), max_passage_length=64)
    heads = per_head_attention(enc, TEXTS)
    for (words, scores), pw in zip(heads, passage_words(enc, TEXTS), strict=True):
        assert words == pw.words
        mean = scores[-1].mean(0)  # the default rationale layer (last), all heads
        np.testing.assert_allclose(mean / mean.sum(), pw.attention, atol=1e-5)


def test_projection_matches_project(study) -> None:
    rng = np.random.default_rng(0)
    text = "a b-c d, e f"
    words = ex_metrics.text_words(text)
    src = [(0, 1), (2, 3), (3, 4), (4, 5), (6, 8), (9, 10)]
    scores = rng.random((2, 3, len(src)))
    m = study._projection(src, words)
    got = np.where(m.any(1), scores @ m.T, -1.0)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(got[i, j], ex_metrics.project(src, scores[i, j], words))


def _synthetic_heads(rng: np.random.Generator, n_pairs: int, informative: tuple[int, int]) -> list:
    """Pairs of (projected (2 layers, 3 heads, words), evidence mask): one head favours the evidence."""
    items = []
    for _ in range(n_pairs):
        n = int(rng.integers(20, 40))
        true = np.zeros(n, bool)
        true[rng.choice(n, size=n // 5, replace=False)] = True
        scores = rng.random((2, 3, n))
        scores[informative] += 1.5 * true
        items.append((scores / scores.sum(-1, keepdims=True), true))
    return items


def test_learned_mixing_finds_the_head_that_marks_the_evidence(study) -> None:
    rng = np.random.default_rng(0)
    train, val = _synthetic_heads(rng, 60, (1, 2)), _synthetic_heads(rng, 40, (1, 2))
    weights = study.fit_head_mixing(train)
    assert weights.shape == (2, 3) and weights.sum() == pytest.approx(1.0)
    assert np.unravel_index(weights.argmax(), weights.shape) == (1, 2) and weights[1, 2] > 0.5
    lifts = study.head_lifts(val)
    # a one-hot mixing is that head; the fitted one is as good as the informative head and beats the average
    one_hot = np.zeros((2, 3))
    one_hot[0, 1] = 1.0
    assert study.mixture_lift(val, one_hot) == pytest.approx(lifts[0, 1])
    assert study.mixture_lift(val, weights) >= lifts[1, 2] - 0.05
    assert study.mixture_lift(val, weights) > study.mixture_lift(val, np.full((2, 3), 1 / 6)) + 0.3


def _entry(config: str, mrr: float, lift: float, seed: int = 42) -> dict:
    pairs = {"evidence_lt50": {"lift": lift, "auprc_minus_share": 0.0, "n": 10}, "all": {"lift": lift}}
    return {
        "config": config,
        "seed": seed,
        "train_seconds": 60.0,
        "eval": {
            "retrieval": {
                pool: {"metrics": {"mrr@10": mrr, "ndcg@10": mrr}, "per_query_mrr@10": {"q1": mrr, "q2": mrr}}
                for pool in ("article", "corpus")
            },
            "explanations": {"attention": {"pairs": pairs, "top1": {"evidence_hit@1": 0.1}}},
        },
    }


def test_verdict_takes_the_most_plausible_row_within_one_point(study) -> None:
    entries = {
        "01_sent_l0-s42": _entry("01_sent_l0", 0.700, 1.00),
        "01_sent_l0-s43": _entry("01_sent_l0", 0.710, 1.02, seed=43),
        "04_l1-s42": _entry("04_l1", 0.698, 1.20),  # within a point of 0.705: chosen
        "11_l5-s42": _entry("11_l5", 0.650, 1.60),  # more plausible but costs 5.5 points
    }
    summary, table = study.summarise({"entries": entries}, {})
    assert summary["verdict"]["chosen"] == "04_l1"
    assert summary["verdict"]["target_reached"] is False
    assert "NOT reached" in table
    # seed spread is the sample standard deviation (ddof=1)
    assert summary["rows"]["01_sent_l0"]["article_mrr@10"]["std"] == pytest.approx(np.std([0.70, 0.71], ddof=1))
    assert set(summary["paired_tests_vs_lambda0"]) == {"04_l1 - 01_sent_l0", "11_l5 - 01_sent_l0"}


def _eval_file(path: Path, system: str, mrr: float, lift: float, faithfulness: bool) -> None:
    """The fields of an ``evals/run_retrieval.py`` result file that the full-budget table reads."""
    pairs = {"evidence_lt50": {"lift": lift, "auprc_minus_share": lift / 10}, "all": {"lift": 1.0}}
    metrics = {"metrics": {"mrr@10": mrr}}
    data = {
        "systems": [{"label": "minilm"}, {"label": system}] if system != "only" else [{"label": system}],
        "retrieval": {p: {"systems": {system: metrics}} for p in ("article/paper", "corpus/paper")},
        "explanations": {f"{system} attention": {"pairs": pairs, "top1": {"evidence_hit@1": 0.5}}},
        "faithfulness": (
            {system: {"summary": {"attention": {"eraser_comprehensiveness_aopc": 0.1, "eraser_sufficiency_aopc": 0.2}}}}
            if faithfulness
            else {}
        ),
    }
    path.write_text(json.dumps(data))


def test_full_budget_rows_and_verdict(study, tmp_path) -> None:
    _eval_file(tmp_path / "ref.json", "ck/ref", 0.750, 1.07, faithfulness=True)
    for seed, (mrr, lift) in zip((42, 43), ((0.752, 1.50), (0.748, 1.56)), strict=True):
        _eval_file(tmp_path / f"hi-s{seed}.json", "only", mrr, lift, faithfulness=seed == 42)
    _eval_file(tmp_path / "costly.json", "only", 0.700, 1.90, faithfulness=False)
    spec = {
        "ref": ("reference", ["ref.json::ck/ref"]),
        "hi": ("high lambda", ["hi-s42.json", "hi-s43.json", "hi-s44.json"]),  # seed 44 not run yet: left out
        "costly": ("too costly", ["costly.json"]),
        "absent": ("never run", ["nothing.json"]),
    }
    rows = study.full_budget_rows(spec, root=tmp_path)
    assert list(rows) == ["ref", "hi", "costly"]
    assert rows["hi"]["files"] == ["hi-s42.json", "hi-s43.json"]
    assert rows["hi"]["lift_lt50"]["mean"] == pytest.approx(1.53)
    assert rows["hi"]["lift_lt50"]["std"] == pytest.approx(np.std([1.50, 1.56], ddof=1))
    assert rows["hi"]["comprehensiveness_aopc"]["n"] == 1 and rows["costly"]["sufficiency_aopc"] is None
    assert rows["ref"]["article_mrr@10"]["mean"] == pytest.approx(0.750)
    entries = {"01_sent_l0-s42": _entry("01_sent_l0", 0.700, 1.00)}
    summary, table = study.summarise({"entries": entries}, {}, rows)
    verdict = summary["full_budget"]["verdict"]
    # the most plausible row within a point of the reference; the costlier, more plausible one is not chosen
    assert verdict["chosen"] == "hi" and verdict["seeds"] == 2 and verdict["target_reached"] is True
    assert "Verdict (full budget)" in table and "| hi | high lambda | 2 |" in table


def test_study_trains_evaluates_and_resumes(study, tmp_path, tiny_bert_dir, synthetic_data_dir, monkeypatch) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    base = {"base_model": str(tiny_bert_dir), "batch_size": 4, "max_passage_length": 48}
    for stem, extra in (("01_sent_l0", {"alignment_weight": 0.0}), ("04_sent_l1", {"alignment_weight": 1.0})):
        (configs / f"{stem}.yaml").write_text(json.dumps({"name": stem, "train": {**base, **extra}}))
    out = tmp_path / "study.json"
    argv = ["x", "--configs", str(configs), "--checkpoints", str(tmp_path / "ck"), "--out", str(out)]
    argv += ["--data-dir", str(synthetic_data_dir), "--heads", "01_sent_l0-s42"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(study, "FULL_BUDGET", {})  # the repository's own results files are not this test's
    study.main()
    first = json.loads(out.read_text())
    assert set(first["entries"]) == {"01_sent_l0-s42", "04_sent_l1-s42"}
    assert first["budget"] == study.STUDY_BUDGET
    for entry in first["entries"].values():
        assert set(entry["eval"]["retrieval"]) == {"article", "corpus"}
        assert 0.0 <= entry["eval"]["retrieval"]["corpus"]["metrics"]["mrr@10"] <= 1.0
    assert "random" in first["entries"]["01_sent_l0-s42"]["eval"]["explanations"]
    assert first["summary"]["verdict"]["chosen"] in {"01_sent_l0", "04_sent_l1"}
    heads = first["head_selection"]["01_sent_l0-s42"]
    assert np.asarray(heads["learned_mixing"]["weights"]).sum() == pytest.approx(1.0)
    assert heads["learned_mixing"]["validation_lift"] >= 0.0
    assert "learned mixing: lift on validation" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".md").is_file() and out.with_suffix(".png").stat().st_size > 0
    stamp = (tmp_path / "ck" / "01_sent_l0-s42" / "config.json").stat().st_mtime_ns
    study.main()  # resumes: nothing retrained, the entries kept
    again = json.loads(out.read_text())
    assert again["entries"] == first["entries"]
    assert (tmp_path / "ck" / "01_sent_l0-s42" / "config.json").stat().st_mtime_ns == stamp
