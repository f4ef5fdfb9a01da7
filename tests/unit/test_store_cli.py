"""``cera-rag index`` and ``cera-rag query`` with a tiny model and an embedded Chroma store."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cera_rag import store
from cera_rag.cli import app, main
from cera_rag.cli.index import highlight
from cera_rag.store import CollectionMismatchError, StoreError

QUERY = "Does aspirin lower pain compared with placebo?"


@pytest.fixture()
def notes_dir(tmp_path: Path) -> Path:
    d = tmp_path / "notes"
    d.mkdir()
    (d / "trial.txt").write_text(
        "Pain score was significantly lower with aspirin than placebo. Headache duration was reduced.\n\n"
        "BODY.RESULTS:\nNo difference in blood pressure was seen.\n",
        encoding="utf-8",
    )
    (d / "other.txt").write_text("Insulin dose was increased daily for two weeks.\n", encoding="utf-8")
    return d


def _run(*args: str) -> object:
    result = CliRunner().invoke(app, list(args), catch_exceptions=True)
    return result


def test_index_folder_then_query(
    notes_dir: Path, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERA_CACHE_DIR", str(tmp_path / "cache"))  # where the ONNX export goes
    common = ["--model", str(tiny_bert_dir), "--store", str(tmp_path / "chroma"), "-c", "cli-notes"]
    first = _run("index", str(notes_dir), *common)
    assert first.exit_code == 0, first.output
    n = len(store.passages_from_directory(notes_dir))
    assert f"{n} passages added, 0 already indexed" in first.output
    second = _run("index", str(notes_dir), *common)
    assert second.exit_code == 0
    assert f"0 passages added, {n} already indexed" in second.output

    shown = _run("query", QUERY, "-k", "2", *common)
    assert shown.exit_code == 0, shown.output
    assert "#1  score" in shown.output and "#2  score" in shown.output

    lines = _run("query", QUERY, "-k", "3", "--json", *common).stdout.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 3
    enc = store.load_encoder(tiny_bert_dir)
    for row in rows:
        expected = enc.rationale_spans(QUERY, row["text"])
        assert [(s["start"], s["end"], s["text"]) for s in row["spans"]] == [(s.start, s.end, s.text) for s in expected]
        assert row["metadata"]["article_id"] in {"trial", "other"}
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)

    if importlib.util.find_spec("onnxruntime") is not None:  # the same collection through ONNX Runtime
        fast = _run("query", QUERY, "-k", "3", "--json", "--backend", "onnx", *common).stdout.strip().splitlines()
        assert [json.loads(x)["id"] for x in fast] == [r["id"] for r in rows]
    bad = _run("query", QUERY, "--backend", "tensorrt", *common)
    assert bad.exit_code != 0 and "Unknown backend" in str(bad.exception)

    filtered = _run("query", QUERY, "--json", "--where", '{"article_id": "other"}', *common)
    assert [json.loads(x)["metadata"]["article_id"] for x in filtered.stdout.strip().splitlines()] == ["other"]
    nothing = _run("query", QUERY, "--where", '{"article_id": "none"}', *common)
    assert "match the filter" in nothing.output


def test_index_split(synthetic_data_dir: Path, tiny_bert_dir: Path, tmp_path: Path) -> None:
    args = ["--model", str(tiny_bert_dir), "--store", str(tmp_path / "chroma")]
    result = _run("index", "--split", "validation", "--data-dir", str(synthetic_data_dir), *args)
    assert result.exit_code == 0, result.output
    n = len(store.passages_from_split("validation", data_dir=synthetic_data_dir))
    assert f"{n} passages added" in result.output and store.DEFAULT_COLLECTION in result.output
    rows = _run("query", QUERY, "--json", "-k", "1", *args).stdout.strip().splitlines()
    assert json.loads(rows[0])["metadata"]["article_id"] == "1003"


def test_contriever_collection_and_mismatch(notes_dir: Path, tiny_bert_dir: Path, tmp_path: Path) -> None:
    args = ["--model", str(tiny_bert_dir), "--store", str(tmp_path / "chroma")]
    result = _run("index", str(notes_dir), "--contriever", *args)
    assert result.exit_code == 0, result.output
    assert "contriever-passages" in result.output
    ok = _run("query", QUERY, "--contriever", "--json", *args)
    assert ok.exit_code == 0 and ok.output.strip()
    # the CERA-style encoder on the Contriever-style collection
    bad = _run("query", QUERY, "-c", "contriever-passages", *args)
    assert isinstance(bad.exception, CollectionMismatchError)


def test_errors_are_clean(
    notes_dir: Path, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    args = ["--model", str(tiny_bert_dir), "--store", str(tmp_path / "chroma")]
    missing = _run("query", QUERY, "-c", "never-indexed", *args)
    assert isinstance(missing.exception, StoreError)
    assert not (_run("index", *args).exit_code == 0)  # neither DIR nor --split
    assert "--where is not valid JSON" in str(_run("query", QUERY, "--where", "{x", *args).exception)
    assert "JSON object" in str(_run("query", QUERY, "--where", "[1]", *args).exception)
    assert "--top-fraction" in str(_run("query", QUERY, "--top-fraction", "0", *args).exception)
    # through the real entry point: a one-line error and exit status 2
    monkeypatch.setattr(sys, "argv", ["cera-rag", "query", QUERY, "-c", "never-indexed", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    assert "No collection 'never-indexed'" in capsys.readouterr().err


def test_highlight_styles_span_offsets() -> None:
    text = "Pain score was lower with aspirin."
    spans = [
        {"start": 0, "end": 4, "text": "Pain", "weight": 0.6},
        {"start": 26, "end": 33, "text": "aspirin", "weight": 0.1},
    ]
    out = highlight(text, spans)
    assert out.plain == text
    styled = {(s.start, s.end): str(s.style) for s in out.spans}
    assert styled == {(0, 4): "bold black on yellow", (26, 33): "bold yellow"}
    assert highlight(text, []).spans == []


def test_index_on_ray_needs_a_chroma_server(notes_dir: Path, tiny_bert_dir: Path, tmp_path: Path) -> None:
    from cera_rag.errors import ConfigError

    result = CliRunner().invoke(
        app, ["index", str(notes_dir), "--model", str(tiny_bert_dir), "--store", str(tmp_path / "s"), "--ray", "local"]
    )
    assert isinstance(result.exception, ConfigError)
    assert "needs a Chroma server" in str(result.exception) and "chroma run" in str(result.exception)
    assert not (tmp_path / "s").exists(), "nothing written"
