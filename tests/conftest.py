"""Shared fixtures: tiny random BERT encoders (built from a BertConfig, no download) and synthetic articles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from cera_rag.testing import write_tiny_bert  # noqa: E402 - after the offline switches


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a tiny random BERT (safetensors) and its WordPiece tokenizer."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture()
def tiny_bert_copy(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    """A per-test copy of the tiny BERT directory (safe to modify or corrupt)."""
    import shutil

    dst = tmp_path / "tiny-bert"
    shutil.copytree(tiny_bert_dir, dst)
    return dst


SYNTHETIC_ARTICLE = (
    "TITLE: \nAspirin versus placebo for headache: a randomized trial\n\n"
    "BODY.INTRODUCTION:\nHeadaches are common. We believe aspirin may be an important treatment, "
    "and further research is needed. It is interesting that few studies compared aspirin with placebo.\n"
    "BODY.METHODS:\nPatients were randomized to aspirin 300 mg daily or placebo for 6 weeks. "
    "The outcome was pain score at 6 weeks.\n"
    "BODY.RESULTS:\nPain score was significantly lower with aspirin than placebo (mean 2.1 vs 4.3, p < 0.001). "
    "Headache duration was reduced in the aspirin group (3.2 h vs 5.0 h; p = 0.02). "
    "No difference in blood pressure was seen (p = 0.41).\n"
    "BODY.DISCUSSION:\nOur results suggest aspirin could reduce pain. Further research may be needed "
    "to think about other outcomes.\n"
)


@pytest.fixture()
def synthetic_article() -> str:
    return SYNTHETIC_ARTICLE


def write_synthetic_dataset(root: Path, n_articles: int = 4) -> Path:
    """Write a tiny dataset in the upstream Evidence Inference layout; returns its root.

    Each article is SYNTHETIC_ARTICLE with a distinct drug name; two prompts per article, with
    evidence in the results section. Articles 0..n-2 are train, the last one validation.
    """
    import csv

    ann = root / "annotations"
    (ann / "txt_files").mkdir(parents=True, exist_ok=True)
    (ann / "splits").mkdir(parents=True, exist_ok=True)
    drugs = ["aspirin", "metformin", "insulin", "vitamin"]
    prompts, annotations, ids = [], [], []
    for i in range(n_articles):
        pmcid = str(1000 + i)
        drug = drugs[i % len(drugs)]
        text = SYNTHETIC_ARTICLE.replace("aspirin", drug).replace("Aspirin", drug.capitalize())
        (ann / "txt_files" / f"PMC{pmcid}.txt").write_text(text, encoding="utf-8")
        ids.append(pmcid)
        for j, (outcome, sentence, label) in enumerate(
            [
                (
                    "pain score",
                    f"Pain score was significantly lower with {drug} than placebo",
                    "significantly decreased",
                ),
                (
                    "blood pressure",
                    "No difference in blood pressure was seen (p = 0.41).",
                    "no significant difference",
                ),
            ]
        ):
            pid = str(20000 + 10 * i + j)
            prompts.append([pid, pmcid, outcome, drug, "placebo"])
            start = text.index(sentence)
            annotations.append(
                [
                    "0",
                    pid,
                    pmcid,
                    "True",
                    "True",
                    label,
                    sentence,
                    "0",
                    "UNK",
                    str(start),
                    str(start + len(sentence)),
                ]
            )
    with (ann / "prompts_merged.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["PromptID", "PMCID", "Outcome", "Intervention", "Comparator"])
        w.writerows(prompts)
    with (ann / "v2_annotations.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "UserID",
                "PromptID",
                "PMCID",
                "Valid Label",
                "Valid Reasoning",
                "Label",
                "Annotations",
                "Label Code",
                "In Abstract",
                "Evidence Start",
                "Evidence End",
            ]
        )
        w.writerows(annotations)
    (ann / "splits" / "ev2_train_article_ids.txt").write_text("\n".join(ids[:-1]) + "\n")
    (ann / "splits" / "ev2_validation_article_ids.txt").write_text(ids[-1] + "\n")
    return root


@pytest.fixture()
def synthetic_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A synthetic upstream-layout data folder; the processed-data cache goes to a temp dir."""
    monkeypatch.setenv("CERA_CACHE_DIR", str(tmp_path / "cache"))
    return write_synthetic_dataset(tmp_path / "ei")


REAL_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "evidence-inference-2.0"
