"""The pipeline on the real shared Evidence Inference 2.0 data (skipped when the folder is absent)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import REAL_DATA_DIR

from cera_rag.data.dataset import DataConfig, load_processed
from cera_rag.data.negatives import NEGATIVE_STRATEGIES
from cera_rag.data.passages import split_passages
from cera_rag.data.positives import find_positives, overlaps_any
from cera_rag.data.reader import load_split


def _require_real_data() -> Path:
    if not (REAL_DATA_DIR / "annotations" / "v2_annotations.csv").is_file():
        pytest.skip(f"real Evidence Inference data not found at {REAL_DATA_DIR} (shared/ is not beside the checkout)")
    return REAL_DATA_DIR


def test_real_data_reads_and_every_span_maps_back() -> None:
    root = _require_real_data()
    train, val = load_split(root, "train"), load_split(root, "validation")
    # What shared/data/README.md promises: 732 + 90 articles, 2,187 prompts, 4,366 annotations.
    assert (len(train.articles), len(val.articles)) == (732, 90)
    assert not set(train.articles) & set(val.articles)
    assert train.n_annotations + val.n_annotations == 4366
    assert len(train.prompts) + len(val.prompts) == 2187
    # Offsets are end-exclusive: the CSV's own evidence text is article[start:end], row for row.
    texts = {**train.articles, **val.articles}
    with (root / "annotations" / "v2_annotations.csv").open(encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            start, end = int(row["Evidence Start"]), int(row["Evidence End"])
            if start >= 0:
                assert texts[row["PMCID"]][start:end] == row["Annotations"], f"row {line}"
    for split in (train, val):
        for spans in split.evidence.values():
            for ev in spans:
                assert split.articles[ev.article_id][ev.start : ev.end] == ev.text
    # Passages of the validation articles map back and cover the text, in both modes; nearly
    # every prompt finds a positive passage.
    n_pos = 0
    for aid, text in val.articles.items():
        sentences = split_passages(text, aid)
        windows = split_passages(text, aid, mode="windows")
        for p in sentences + windows:
            assert text[p.start : p.end] == p.text
        covered = sum(p.end - p.start - sum(c.isspace() for c in p.text) for p in sentences)
        assert covered == sum(not c.isspace() for c in text)
    for prompt in val.prompts:
        spans = [(e.start, e.end) for e in val.evidence[prompt.prompt_id]]
        idx, _ = find_positives(split_passages(val.articles[prompt.article_id], prompt.article_id), spans)
        n_pos += bool(idx)
    assert n_pos >= 0.99 * len(val.prompts)


@pytest.mark.slow
def test_real_validation_split_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _require_real_data()
    monkeypatch.setenv("CERA_CACHE_DIR", str(tmp_path / "cache"))
    ps = load_processed("validation", DataConfig(), root)
    data = load_split(root, "validation")
    assert len(ps.passages) == 90
    assert len(ps.examples) >= 0.99 * ps.n_prompts
    for ex in ps.examples:
        passages = ps.passages[ex.prompt.article_id]
        spans = [(e.start, e.end) for e in data.evidence[ex.prompt.prompt_id]]  # every annotator's span
        for i in ex.positives:
            assert ps.passage(ex.prompt.article_id, i).passage_id in ps.pos_tags
        for strategy in NEGATIVE_STRATEGIES:
            negs = ex.negatives[strategy]
            assert 1 <= len(negs) <= 5
            assert not any(overlaps_any(passages[i], spans) for i in negs), (ex.prompt.prompt_id, strategy)
    # Hybrid negatives are more subjective than BM25's on average (they are re-ranked for it).
    subj = {
        s: sum(ps.subjectivity[ex.prompt.article_id][i] for ex in ps.examples for i in ex.negatives[s])
        / sum(len(ex.negatives[s]) for ex in ps.examples)
        for s in ("bm25", "hybrid")
    }
    assert subj["hybrid"] > subj["bm25"]
    # A second load comes from the cache and equals the first.
    again = load_processed("validation", DataConfig(), root)
    assert again.examples == ps.examples
    assert again.passages == ps.passages
