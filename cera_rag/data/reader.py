"""Reader for the upstream Evidence Inference 2.0 layout.

The folder holds ``annotations/prompts_merged.csv``, ``annotations/annotations_merged.csv`` (a
full upstream checkout) or ``annotations/v2_annotations.csv`` (the v2 release), the article
texts in ``annotations/txt_files/PMC<PMCID>.txt`` and the official article splits in
``annotations/splits/ev2_<split>_article_ids.txt``. Evidence offsets index the ``.txt`` files
(end exclusive in practice, whatever the upstream README says).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cera_rag.errors import DataError
from cera_rag.paths import default_data_dir

#: Prompt ids the upstream annotations README lists as "Incorrect: obviously wrong and should not be
#: included" (jayded/evidence-inference, annotations/README.md, "Caveat").
INCORRECT_PROMPT_IDS: frozenset[str] = frozenset(
    str(i)
    for i in (
        911, 912, 1262, 1261, 3044, 3248, 3111, 3620, 4308, 4490, 4491, 4324, 4325, 4492, 4824,
        5000, 5001, 5002, 5046, 5047, 4948, 5639, 5710, 5752, 5775, 5782, 5841, 5843, 5861, 5862,
        5863, 5964, 5965, 5966, 5975, 4807, 5776, 5777, 5778, 5779, 5780, 5781, 6034, 6065, 6066,
        6666, 6667, 6668, 6669, 7040, 7042, 7944, 8590, 8605, 8606, 8639, 8640, 8745, 8747, 8749,
        8877, 8878, 8593, 8631, 8635, 8884, 8886, 8773, 10032, 10035, 8876, 8875, 8885, 8917, 8921,
        8118, 10885, 10886, 10887, 10888, 10889, 10890,
    )
)  # fmt: skip

SPLITS = ("train", "validation", "test")
PROMPT_COLUMNS = ("PromptID", "PMCID", "Outcome", "Intervention", "Comparator")
ANNOTATION_COLUMNS = ("UserID", "PromptID", "PMCID", "Label", "Annotations", "Evidence Start", "Evidence End")


@dataclass(frozen=True)
class Prompt:
    """An (intervention, comparator, outcome) question about one article."""

    prompt_id: str
    article_id: str
    intervention: str
    comparator: str
    outcome: str


@dataclass(frozen=True)
class Evidence:
    """One annotator's evidence span for a prompt: ``article[start:end] == text``."""

    prompt_id: str
    article_id: str
    user_id: str
    label: str
    start: int
    end: int
    text: str


@dataclass
class SplitData:
    """The articles, prompts and evidence of one split, and what the reader dropped and why."""

    name: str
    articles: dict[str, str]
    prompts: list[Prompt]
    evidence: dict[str, list[Evidence]]
    dropped: Counter[str] = field(default_factory=Counter)
    #: annotation rows of this split's articles, before anything was dropped
    n_annotations: int = 0

    @property
    def n_evidence(self) -> int:
        return sum(len(v) for v in self.evidence.values())


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data folder to read, with a clear error when there is none."""
    path = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if path is None:
        raise DataError(
            "No Evidence Inference data folder found: pass a directory, set $CERA_DATA_DIR, or run "
            "`cera-rag data download DIR` to fetch the upstream release."
        )
    if not path.is_dir():
        raise DataError(
            f"Data folder {path} does not exist: pass the folder that holds 'annotations/' "
            "(an Evidence Inference 2.0 checkout) or run `cera-rag data download DIR`."
        )
    return path


def _annotations_root(root: Path) -> Path:
    # Accept both the repository root and its annotations/ folder.
    return root / "annotations" if (root / "annotations").is_dir() else root


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"Missing file {path}: the Evidence Inference layout needs it (see `cera-rag data download`).")
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(
                    f"{path} lacks column(s) {missing}; found {header}. Use the upstream "
                    "Evidence Inference CSV files unchanged."
                )
            return list(reader)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 ({exc}); re-save it as UTF-8 or re-download the release.") from exc


def read_split_ids(data_dir: str | Path | None, split: str) -> list[str]:
    """Article ids (PMCIDs as strings) of an official split."""
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}; choose one of {SPLITS}.")
    root = _annotations_root(resolve_data_dir(data_dir))
    path = root / "splits" / f"ev2_{split}_article_ids.txt"
    if not path.is_file():
        raise DataError(
            f"Missing split file {path}. This copy of the data may not include the {split!r} split "
            "(the shared folder holds train and validation only)."
        )
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise DataError(f"Split file {path} is empty: the {split!r} split has no articles.")
    return ids


def read_article(root: Path, article_id: str) -> str:
    if any(c in article_id for c in ("/", "\\", "\x00")) or not article_id.strip():
        raise DataError(
            f"{article_id!r} is not a valid article id (a PMCID such as 1234567): ids name files in "
            "txt_files/ and may not hold path separators. Check the split and annotation files."
        )
    path = _annotations_root(root) / "txt_files" / f"PMC{article_id}.txt"
    if not path.is_file():
        raise DataError(f"Missing article text {path} (PMCID {article_id}); re-download the release.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"Article {path} is not valid UTF-8 ({exc}); re-download the release.") from exc


def _int(value: str, path: Path, line: int, column: str) -> int:
    try:
        return int(float(value))
    except (ValueError, OverflowError) as exc:
        raise DataError(f"{path}, row {line}: column {column!r} is {value!r}, not an integer offset.") from exc


def load_split(data_dir: str | Path | None = None, split: str = "train") -> SplitData:
    """Read one official split: articles, valid prompts, and evidence spans that map back to the text.

    Drops, and counts in ``SplitData.dropped``: prompts the upstream README flags as incorrect,
    annotations with ``-1`` offsets, annotations labelled ``invalid prompt``, and empty spans.
    Prompts that keep no evidence are dropped too. Offsets beyond the article text mean the
    annotations and texts do not belong together: a ``DataError`` names the file and row.
    """
    root = resolve_data_dir(data_dir)
    ann_root = _annotations_root(root)
    article_ids = read_split_ids(root, split)
    wanted = set(article_ids)

    prompts_path = ann_root / "prompts_merged.csv"
    merged = ann_root / "annotations_merged.csv"
    annotations_path = merged if merged.is_file() else ann_root / "v2_annotations.csv"
    prompt_rows = _read_csv(prompts_path, PROMPT_COLUMNS)
    annotation_rows = _read_csv(annotations_path, ANNOTATION_COLUMNS)

    dropped: Counter[str] = Counter()
    prompts: dict[str, Prompt] = {}
    for row in prompt_rows:
        article_id = row["PMCID"].strip()
        if article_id not in wanted:
            continue
        pid = row["PromptID"].strip()
        if pid in INCORRECT_PROMPT_IDS:
            dropped["prompt flagged incorrect upstream"] += 1
            continue
        fields = [row[c].strip() for c in ("Intervention", "Comparator", "Outcome")]
        if not all(fields):
            dropped["prompt with an empty intervention, comparator or outcome"] += 1
            continue
        prompts[pid] = Prompt(pid, article_id, *fields)

    articles: dict[str, str] = {}
    evidence: dict[str, list[Evidence]] = {}
    seen: set[tuple[str, int, int]] = set()
    n_annotations = 0
    for line, row in enumerate(annotation_rows, start=2):
        pid = row["PromptID"].strip()
        if row["PMCID"].strip() not in wanted:
            continue
        n_annotations += 1
        if pid not in prompts:
            if pid in INCORRECT_PROMPT_IDS:
                dropped["annotation of a prompt flagged incorrect"] += 1
            continue
        start = _int(row["Evidence Start"], annotations_path, line, "Evidence Start")
        end = _int(row["Evidence End"], annotations_path, line, "Evidence End")
        if start < 0 or end < 0:
            dropped["annotation with -1 offsets"] += 1
            continue
        if row["Label"].strip().lower() == "invalid prompt":
            dropped["annotation labelled 'invalid prompt'"] += 1
            continue
        prompt = prompts[pid]
        if prompt.article_id not in articles:
            articles[prompt.article_id] = read_article(root, prompt.article_id)
        text = articles[prompt.article_id]
        if end > len(text):
            raise DataError(
                f"{annotations_path}, row {line}: evidence offsets {start}-{end} (prompt {pid}) run beyond "
                f"the end of {_annotations_root(root) / 'txt_files' / f'PMC{prompt.article_id}.txt'} "
                f"({len(text)} characters): the annotations and article texts do not belong together; "
                "re-download the release."
            )
        if start >= end:
            dropped["annotation with an empty evidence span"] += 1
            continue
        key = (pid, start, end)
        if key in seen:  # several annotators marking the same span add nothing
            dropped["duplicate evidence span"] += 1
            continue
        seen.add(key)
        label = row["Label"].strip().replace("significantly increase", "significantly increased")
        label = label.replace("increaseded", "increased")
        evidence.setdefault(pid, []).append(
            Evidence(pid, prompt.article_id, row["UserID"].strip(), label, start, end, text[start:end])
        )

    kept = []
    for pid, prompt in prompts.items():
        if pid in evidence:
            kept.append(prompt)
        else:
            dropped["prompt without usable evidence"] += 1
    if not kept:
        raise DataError(
            f"The {split!r} split in {root} has no prompt with usable evidence: check that "
            f"{annotations_path.name} and the split file belong to the same release."
        )
    # Articles with no prompt are still part of the split (they matter for corpus-wide pools).
    for article_id in article_ids:
        if article_id not in articles and (ann_root / "txt_files" / f"PMC{article_id}.txt").is_file():
            articles[article_id] = read_article(root, article_id)
    return SplitData(split, articles, kept, evidence, dropped, n_annotations)
