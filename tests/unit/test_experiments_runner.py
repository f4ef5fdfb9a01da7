"""The README-table runner (evals/run_experiments.py): both pools per entry, old entries kept, resumes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from conftest import write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("run_experiments", ROOT / "evals" / "run_experiments.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def two_article_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Synthetic data whose validation split holds two articles, so the corpus pool is larger than the article's."""
    monkeypatch.setenv("CERA_CACHE_DIR", str(tmp_path / "cache"))
    root = write_synthetic_dataset(tmp_path / "ei", n_articles=5)
    (root / "annotations" / "splits" / "ev2_validation_article_ids.txt").write_text("1003\n1004\n")
    return root


def test_rows_report_article_and_corpus_pools_and_resume(
    runner, tmp_path, tiny_bert_dir, two_article_validation, monkeypatch
) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "01_tiny.yaml").write_text(
        json.dumps({"row": "1a", "name": "tiny off-the-shelf", "kind": "offtheshelf", "model": str(tiny_bert_dir)})
    )
    train = {"base_model": str(tiny_bert_dir), "batch_size": 4, "max_passage_length": 48, "epochs": 1}
    (configs / "07_tiny.yaml").write_text(
        json.dumps({"row": "7", "name": "tiny CERA", "kind": "cera", "seeds": [42], "train": train})
    )
    out = tmp_path / "rows.json"
    # an entry written before the corpus pool existed: kept, summarised, its corpus cells left empty
    old_eval = {
        style: {"metrics": dict.fromkeys(runner.DEFAULT_METRICS, 0.5), "per_query_mrr@10": {}}
        for style in runner.STYLES
    }
    old = {"config": "02_old", "seed": 42, "train_seconds": 1.0, "eval": old_eval}
    out.write_text(json.dumps({"entries": {"02_old-s42": old}}))
    argv = ["x", "--configs", str(configs), "--checkpoints", str(tmp_path / "ck"), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [*argv, "--data-dir", str(two_article_validation)])
    runner.main()

    results = json.loads(out.read_text())
    assert set(results["entries"]) == {"01_tiny", "07_tiny-s42", "02_old-s42"}
    for key in ("01_tiny", "07_tiny-s42"):
        ev = results["entries"][key]["eval"]
        assert {"paper", "heldout", "corpus/paper", "corpus/heldout"} <= set(ev)
        for style in runner.STYLES:
            article, corpus = ev[style]["per_query_mrr@10"], ev[f"corpus/{style}"]["per_query_mrr@10"]
            assert set(article) == set(corpus) and len(article) == 4  # two prompts in each validation article
            # the corpus pool holds the article's passages and more: the first positive can only move down
            assert all(corpus[q] <= article[q] + 1e-9 for q in article)
    summary = results["summary"]["rows"]
    assert "corpus/paper/mrr@10" in summary["07_tiny"]["metrics"]
    assert "corpus/paper/mrr@10" not in summary["02_old"]["metrics"]
    table = out.with_suffix(".md").read_text()
    assert "MRR@10 corpus pool" in table
    old_line = next(line for line in table.splitlines() if line.startswith("|  | 02_old"))
    assert old_line.count("—") == 2

    stamp = (tmp_path / "ck" / "07_tiny-s42" / "config.json").stat().st_mtime_ns
    runner.main()  # resumes: nothing retrained or re-evaluated
    assert json.loads(out.read_text())["entries"] == results["entries"]
    assert (tmp_path / "ck" / "07_tiny-s42" / "config.json").stat().st_mtime_ns == stamp


def test_corpus_cells_and_tests_use_the_seeds_that_measured_the_corpus(runner) -> None:
    def entry(config: str, seed: int, mrr: float, corpus: bool) -> dict:
        pools = [*runner.STYLES, *((runner.CORPUS,) if corpus else ())]
        per_query = {"q1": mrr, "q2": mrr - 0.1}
        ev = {s: {"metrics": dict.fromkeys(runner.DEFAULT_METRICS, mrr), "per_query_mrr@10": per_query} for s in pools}
        return {"config": config, "seed": seed, "train_seconds": 60.0, "eval": ev}

    entries = {
        "07c-s42": entry("07c", 42, 0.70, corpus=True),
        "07c-s43": entry("07c", 43, 0.72, corpus=False),  # predates the corpus pool
        "07e-s42": entry("07e", 42, 0.75, corpus=True),
    }
    specs = {"07c": {"row": "7c", "name": "c"}, "07e": {"row": "7e", "name": "e"}}
    summary, table = runner.summarise({"entries": entries}, specs)
    corpus = summary["rows"]["07c"]["metrics"]["corpus/paper/mrr@10"]
    assert corpus == {"mean": pytest.approx(0.70), "std": 0.0, "n": 1}
    assert summary["rows"]["07c"]["metrics"]["paper/mrr@10"]["n"] == 2
    assert "0.700 (1 of 2 seeds)" in table
    # the corpus-pool test pairs 07e with 07c's one corpus seed: +0.05 on both queries
    assert summary["paired_tests"]["row7e-row7c/corpus/paper/mrr@10"]["mean_diff"] == pytest.approx(0.05)
    assert "| row7e-row7c | corpus/paper |" in table


def test_record_entry_keeps_what_another_runner_wrote(runner, tmp_path) -> None:
    """Two runners started from the same file: each entry is merged into the file as it is when written."""
    out = tmp_path / "rows.json"
    out.write_text(json.dumps({"entries": {"old-s42": {"seed": 42}}, "summary": {}}))
    runner.record_entry(out, "7k-s43", {"seed": 43})  # runner A
    merged = runner.record_entry(out, "7l-s42", {"seed": 42})  # runner B, started before A wrote
    assert set(merged["entries"]) == {"old-s42", "7k-s43", "7l-s42"}
    assert json.loads(out.read_text()) == merged
