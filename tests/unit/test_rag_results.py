"""Labels parsed from answers, the JSONL log, the settings manifest and the summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cera_rag.errors import ConfigError
from cera_rag.experiments.rag.labels import (
    DECREASED,
    INCREASED,
    NO_DIFFERENCE,
    label_correct,
    normalise_label,
    parse_label,
)
from cera_rag.experiments.rag.results import JsonlLog, check_manifest, markdown_table, summarise, write_summary


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("Aspirin significantly increased the response rate.", INCREASED),
        ("Pain was significantly lower with aspirin than placebo (p < 0.001).", DECREASED),
        ("Mortality was reduced in the treatment group.", DECREASED),
        ("There was no significant difference in blood pressure.", NO_DIFFERENCE),
        ("No significant increase in pain was seen.", NO_DIFFERENCE),
        ("Scores did not differ between groups.", NO_DIFFERENCE),
        ("Scores were higher at week 2 but lower at week 6.", None),
        ("The context does not say.", None),
        ("Aspirin improved outcomes.", None),
        ("", None),
    ],
)
def test_parse_label(answer: str, label: str | None) -> None:
    assert parse_label(answer) == label


def test_label_correct_needs_a_stated_direction() -> None:
    assert normalise_label("significantly increase") == INCREASED
    assert label_correct("Pain was significantly lower.", "significantly decreased") == 1.0
    assert label_correct("Pain was significantly higher.", "significantly decreased") == 0.0
    assert label_correct("Unclear.", "significantly decreased") is None


def test_jsonl_log_appends_durably_and_drops_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    log = JsonlLog(path)
    log.append({"system": "s", "question_id": "1", "x": math.nan})
    log.append({"system": "s", "question_id": "2", "x": 0.5})
    assert json.loads(path.read_text().splitlines()[0])["x"] is None  # NaN stored as null (valid JSON)
    with path.open("a") as fh:
        fh.write('{"system": "s", "question_id": "3", "x"')  # torn write
    again = JsonlLog(path)
    assert again.dropped_tail == 1 and len(again) == 2 and ("s", "2") in again
    assert path.read_text().endswith("\n")
    again.append({"system": "s", "question_id": "3", "x": 1.0})
    assert [json.loads(line)["question_id"] for line in path.read_text().splitlines()] == ["1", "2", "3"]


def test_manifest_refuses_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    check_manifest(path, {"top_k": 5, "split": "validation"}, "hint")
    check_manifest(path, {"top_k": 5, "split": "validation"}, "hint")
    with pytest.raises(ConfigError, match="differs: top_k.*hint"):
        check_manifest(path, {"top_k": 3, "split": "validation"}, "hint")


def _rows() -> list[dict]:
    rows = []
    for i in range(10):
        rows.append(
            {
                "system": "a",
                "question_id": str(i),
                "scores": {"faithfulness": None if i < 3 else 0.5, "context_recall": 1.0},
                "errors": {"faithfulness": "parse_failure"} if i < 3 else {},
            }
        )
        rows.append({"system": "b", "question_id": str(i), "scores": {"faithfulness": None, "context_recall": i % 2}})
    return rows


def test_summary_means_cis_and_failure_rates(tmp_path: Path) -> None:
    metrics = ["faithfulness", "context_recall"]
    summary = summarise(_rows(), ["a", "b"], metrics, n_resamples=500)
    fa = summary["a"]["metrics"]["faithfulness"]
    assert fa["mean"] == pytest.approx(0.5) and fa["n_valid"] == 7
    assert fa["nan_rate"] == pytest.approx(0.3) and fa["failures"] == {"parse_failure": 3}
    cr = summary["b"]["metrics"]["context_recall"]
    assert cr["mean"] == pytest.approx(0.5) and cr["ci95"][0] < 0.5 < cr["ci95"][1]
    assert math.isnan(summary["b"]["metrics"]["faithfulness"]["mean"])
    table = markdown_table(summary, metrics)
    assert "| a | 10 | 0.500 [0.500, 0.500]" in table and "30% (parse_failure 3)" in table
    assert "n/a [n/a, n/a]" in table
    paths = write_summary(tmp_path, summary, metrics, {"split": "validation", "n_questions": 10})
    assert [p.name for p in paths] == ["ragas_summary.md", "ragas_summary.json", "ragas_summary.png"]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(paths[1].read_text())  # strict JSON: NaN written as null
    assert data["systems"]["b"]["metrics"]["faithfulness"]["mean"] is None
