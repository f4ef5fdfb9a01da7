"""`cera-rag evaluate` end to end on the synthetic dataset with the tiny BERT; seed groups; the evals script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cera_rag.cli import app
from cera_rag.testing import write_tiny_bert

ROOT = Path(__file__).resolve().parents[2]


def test_cli_end_to_end(synthetic_data_dir: Path, tiny_bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = [
        "evaluate",
        "--split", "train",
        "--systems", f"bm25,{tiny_bert_dir},{tiny_bert_dir}@cls",
        "--pool", "article,corpus",
        "--query-style", "paper,heldout",
        "--data-dir", str(synthetic_data_dir),
        "--out", str(out),
        "--name", "smoke",
        "--faithfulness-limit", "3",
        "--n-bootstrap", "200",
        "--n-permutations", "200",
        "--quiet",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "smoke.json").read_text())
    assert set(data["retrieval"]) == {"article/paper", "corpus/paper", "article/heldout", "corpus/heldout"}
    entry = data["retrieval"]["article/paper"]
    assert list(entry["systems"]) == ["bm25", str(tiny_bert_dir), f"{tiny_bert_dir}@cls"]
    assert entry["n_queries"] == 6
    for m in ("recall@1", "recall@3", "recall@5", "recall@10", "precision@1", "precision@5", "mrr@10", "ndcg@10"):
        lo, hi = entry["systems"]["bm25"]["ci95"][m]
        assert lo <= entry["systems"]["bm25"]["metrics"][m] <= hi
    comp = entry["comparisons"][str(tiny_bert_dir)]["mrr@10"]
    assert comp["ci_low"] <= comp["diff"] <= comp["ci_high"] and 0 < comp["p_value"] <= 1
    assert {"torch", "transformers", "cera-rag"} <= set(data["versions"])
    assert data["created"] and data["config"]["limit"] is None
    assert data["plausibility"][str(tiny_bert_dir)]["n_pairs"] == 6
    faith = data["faithfulness"][str(tiny_bert_dir)]
    assert faith["n_pairs"] == 3 and set(faith["summary"]) == {"attention", "gradient_x_input", "random"}
    assert "faithfulness/paper_sufficiency" in data["definitions"]
    md = (out / "smoke.md").read_text()
    assert "| bm25 |" in md and "Paired comparison" in md and "Faithfulness" in md and "Plausibility" in md
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(
        [f"smoke-retrieval-{p}-{s}.png" for p in ("article", "corpus") for s in ("paper", "heldout")]
        + ["smoke-aopc.png", "smoke-attention-mass.png", "smoke-explanations.png"]
    )
    assert {"random", "query_overlap", f"{tiny_bert_dir} attention", f"{tiny_bert_dir}@cls attention"} == set(
        data["explanations"]
    )
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    per_query = json.loads((out / "smoke.per_query.json").read_text())
    assert len(per_query["retrieval"]["article/paper"]["bm25"]["mrr@10"]) == 6

    # a second run reads every passage vector from the cache
    result = CliRunner().invoke(app, [*args[:-1], "--no-plausibility", "--no-faithfulness", "--quiet"])
    assert result.exit_code == 0, result.output
    again = json.loads((out / "smoke.json").read_text())
    assert all(m["cache"]["encoded_now"] == 0 for s in again["systems"] for m in s["members"] if "cache" in m)
    assert again["retrieval"]["article/paper"]["systems"] == data["retrieval"]["article/paper"]["systems"]


def test_seed_group_and_limit(synthetic_data_dir: Path, tmp_path: Path) -> None:
    from cera_rag.experiments.runner import EvalConfig, run_evaluation

    for seed in (1, 2):
        write_tiny_bert(tmp_path / f"models/tiny-s{seed}", seed=seed)
    cfg = EvalConfig(
        split="train",
        systems=["bm25", str(tmp_path / "models/tiny-s*")],
        pools=["article"],
        limit=4,
        faithfulness=False,
        n_bootstrap=100,
        n_permutations=100,
    )
    results, per_query = run_evaluation(cfg, synthetic_data_dir, show_progress=False)
    group = results["retrieval"]["article/paper"]["systems"][str(tmp_path / "models/tiny-s*")]
    assert group["n_seeds"] == 2 and set(group["std"]) == set(cfg.metrics)
    assert results["data"]["n_queries"] == 4
    assert results["plausibility"][str(tmp_path / "models/tiny-s*")]["n_seeds"] == 2
    assert len(per_query["retrieval"]["article/paper"]["bm25"]["mrr@10"]) == 4
    # The explanation row is measured on the first seed only, and its name says which one.
    first = str(tmp_path / "models/tiny-s1")
    assert results["explanations"][f"{first} attention"]["ranker"] == first
    assert f"{tmp_path / 'models/tiny-s*'} attention" not in results["explanations"]


def test_onnx_backend_gives_the_torch_results(
    synthetic_data_dir: Path, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    from cera_rag.experiments.runner import EvalConfig, run_evaluation

    monkeypatch.setenv("CERA_CACHE_DIR", str(tmp_path / "cache"))
    out = {}
    for backend in ("torch", "onnx"):
        cfg = EvalConfig(
            split="train",
            systems=[str(tiny_bert_dir)],
            pools=["article"],
            limit=4,
            faithfulness_limit=2,
            n_bootstrap=100,
            n_permutations=100,
            backend=backend,  # type: ignore[arg-type]
            use_cache=False,
        )
        out[backend], _ = run_evaluation(cfg, synthetic_data_dir, show_progress=False)
    key = str(tiny_bert_dir)
    torch_metrics = out["torch"]["retrieval"]["article/paper"]["systems"][key]["metrics"]
    assert out["onnx"]["retrieval"]["article/paper"]["systems"][key]["metrics"] == pytest.approx(torch_metrics)
    for field in ("attention", "attention_mass"):
        got, want = out["onnx"]["plausibility"][key][field], out["torch"]["plausibility"][key][field]
        assert got == pytest.approx(want, abs=1e-4)


def test_a_seed_glob_keeps_only_model_folders(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from cera_rag.experiments.runner import parse_systems

    for seed in (42, 43):
        shutil.copytree(tiny_bert_dir, tmp_path / f"cera-s{seed}")
        (tmp_path / f"cera-s{seed}.run" / "model").mkdir(parents=True)  # the trainer's resume folder beside it
        (tmp_path / f"cera-s{seed}.log.jsonl").write_text("{}\n", encoding="utf-8")
    (system,) = parse_systems([str(tmp_path / "cera-s*")])
    assert system.members == [str(tmp_path / "cera-s42"), str(tmp_path / "cera-s43")]


def test_bad_inputs_are_clear_errors(synthetic_data_dir: Path, tmp_path: Path) -> None:
    from cera_rag.errors import ConfigError
    from cera_rag.experiments.runner import EvalConfig, parse_systems, run_evaluation

    with pytest.raises(ConfigError, match="matches no model folder"):
        parse_systems([str(tmp_path / "nothing-*")])
    with pytest.raises(ConfigError, match="Baseline"):
        run_evaluation(EvalConfig(systems=["bm25"], baseline="minilm"), synthetic_data_dir)
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--systems",
            str(tmp_path / "missing"),
            "--data-dir",
            str(synthetic_data_dir),
            "--split",
            "train",
            "--out",
            str(tmp_path),
            "--quiet",
        ],
    )
    assert result.exit_code != 0


def test_evals_script_runs_from_the_repo_root() -> None:
    proc = subprocess.run(
        [sys.executable, "evals/run_retrieval.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "--systems" in proc.stdout and "--faithfulness-limit" in proc.stdout


def test_negative_overlap_script(synthetic_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "overlap.json"
    proc = subprocess.run(
        [sys.executable, "evals/negative_overlap.py", "--split", "train", "--data-dir", str(synthetic_data_dir)]
        + ["--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert set(report["strategies"]) == {"random", "bm25", "subjective", "hybrid"}
    for row in report["strategies"].values():
        assert 0 < row["negatives"] and 0 <= row["restating"] <= row["negatives"]


def test_error_analysis_script(synthetic_data_dir: Path, tiny_bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "errors"
    proc = subprocess.run(
        [sys.executable, "evals/error_analysis.py", "--systems", str(tiny_bert_dir), "--split", "train"]
        + ["--data-dir", str(synthetic_data_dir), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    row = report["systems"][tiny_bert_dir.name]
    assert row["queries"] > 0 and sum(row["miss_kinds"].values()) == row["misses_at_1"]
    assert row["hit@1"] == pytest.approx(1 - row["misses_at_1"] / row["queries"], abs=1e-3)
    assert row["lenient_mrr@10"] >= row["mrr@10"] and row["lenient_hit@1"] >= row["hit@1"]
    assert tiny_bert_dir.name in out.with_suffix(".md").read_text()


def test_query_length_script(synthetic_data_dir: Path, tiny_bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "query_length"
    proc = subprocess.run(
        [sys.executable, "evals/query_length.py", "--systems", str(tiny_bert_dir), "--split", "train"]
        + ["--lengths", "8,512", "--data-dir", str(synthetic_data_dir), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["queries_over"]["paper"]["8"] > 0 and report["queries_over"]["paper"]["512"] == 0
    cells = report["systems"][str(tiny_bert_dir)]["cells"]
    assert set(cells) == {"paper/article", "paper/corpus", "heldout/article", "heldout/corpus"}
    for cell in cells.values():
        change = cell["change"]["512"]
        assert change["diff"] == pytest.approx(cell["mrr@10"]["512"] - cell["mrr@10"]["8"], abs=1e-6)
        assert change["ci_low"] <= change["diff"] <= change["ci_high"]
    # cutting 8-token queries short changes what is retrieved for some prompt
    assert any(cell["mrr@10"]["512"] != cell["mrr@10"]["8"] for cell in cells.values())


def test_query_length_script_rejects_a_single_length(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "evals/query_length.py", "--systems", "x", "--lengths", "64"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "two or more lengths" in proc.stderr
