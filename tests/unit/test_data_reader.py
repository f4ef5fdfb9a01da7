"""The Evidence Inference reader: what it keeps, what it drops and counts, and its errors on bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import SYNTHETIC_ARTICLE, write_synthetic_dataset

from cera_rag.data.reader import INCORRECT_PROMPT_IDS, load_split, read_split_ids, resolve_data_dir
from cera_rag.errors import DataError

ANN_HEADER = [
    "UserID", "PromptID", "PMCID", "Valid Label", "Valid Reasoning", "Label", "Annotations",
    "Label Code", "In Abstract", "Evidence Start", "Evidence End",
]  # fmt: skip


def _ann_row(pid: str, pmcid: str, start: int, end: int, label: str = "no significant difference", user: str = "7"):
    return [user, pid, pmcid, "True", "True", label, "", "0", "UNK", str(start), str(end)]


def _append(path: Path, rows: list[list[str]]) -> None:
    with path.open("a", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)


def _rewrite_without(path: Path, column: str) -> None:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    header = [c for c in rows[0] if c != column]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return write_synthetic_dataset(tmp_path / "ei")


def _ann(data: Path) -> Path:
    return data / "annotations" / "v2_annotations.csv"


def _prompts(data: Path) -> Path:
    return data / "annotations" / "prompts_merged.csv"


def _text(data: Path, pmcid: str) -> str:
    return (data / "annotations" / "txt_files" / f"PMC{pmcid}.txt").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------- happy path
def test_synthetic_train_split_loads(data: Path) -> None:
    split = load_split(data, "train")
    assert split.name == "train"
    assert sorted(split.articles) == ["1000", "1001", "1002"]
    assert split.articles["1001"] == SYNTHETIC_ARTICLE.replace("aspirin", "metformin").replace("Aspirin", "Metformin")
    assert [p.prompt_id for p in split.prompts] == ["20000", "20001", "20010", "20011", "20020", "20021"]
    p = split.prompts[2]
    assert (p.article_id, p.intervention, p.comparator, p.outcome) == (
        "1001",
        "metformin",
        "placebo",
        "pain score",
    )
    assert split.n_annotations == 6
    assert split.n_evidence == 6
    assert dict(split.dropped) == {}
    ev = split.evidence["20010"][0]
    assert ev.text == "Pain score was significantly lower with metformin than placebo"
    assert split.articles["1001"][ev.start : ev.end] == ev.text
    assert ev.label == "significantly decreased"
    assert split.evidence["20011"][0].label == "no significant difference"


def test_validation_split_and_annotations_folder_as_root(data: Path) -> None:
    split = load_split(data / "annotations", "validation")  # the annotations/ folder is accepted too
    assert list(split.articles) == ["1003"]
    assert [p.prompt_id for p in split.prompts] == ["20030", "20031"]


def test_every_kept_span_maps_back_to_its_article(data: Path) -> None:
    split = load_split(data, "train")
    for pid, spans in split.evidence.items():
        for ev in spans:
            assert ev.prompt_id == pid
            assert split.articles[ev.article_id][ev.start : ev.end] == ev.text


def test_bad_rows_are_dropped_and_counted(data: Path) -> None:
    text = _text(data, "1000")
    bad_pid = sorted(INCORRECT_PROMPT_IDS)[0]
    span = text.index("Headache duration was reduced")
    _append(
        _prompts(data),
        [
            [bad_pid, "1000", "headache", "aspirin", "placebo"],  # flagged incorrect upstream
            ["30000", "1000", "", "aspirin", "placebo"],  # empty outcome
            ["30001", "1000", "headache duration", "aspirin", "placebo"],  # only -1 / invalid evidence
            ["30002", "1000", "headache duration", "aspirin", "placebo"],  # good
            ["40000", "9999", "x", "y", "z"],  # another split's article: ignored, not counted
        ],
    )
    _append(
        _ann(data),
        [
            _ann_row(bad_pid, "1000", span, span + 30),
            _ann_row("30001", "1000", -1, -1),
            _ann_row("30001", "1000", span, span + 30, label="invalid prompt"),
            _ann_row("30002", "1000", span, span + 29, label="significantly increase"),
            _ann_row("30002", "1000", span, span + 29, user="8"),  # a second annotator, same span
            _ann_row("30002", "1000", span + 5, span + 5),  # empty span
        ],
    )
    split = load_split(data, "train")
    assert dict(split.dropped) == {
        "prompt flagged incorrect upstream": 1,
        "prompt with an empty intervention, comparator or outcome": 1,
        "annotation of a prompt flagged incorrect": 1,
        "annotation with -1 offsets": 1,
        "annotation labelled 'invalid prompt'": 1,
        "duplicate evidence span": 1,
        "annotation with an empty evidence span": 1,
        "prompt without usable evidence": 1,
    }
    ids = [p.prompt_id for p in split.prompts]
    assert bad_pid not in ids and "30000" not in ids and "30001" not in ids
    assert "30002" in ids
    assert split.n_annotations == 6 + 6
    (ev,) = split.evidence["30002"]
    assert ev.text == "Headache duration was reduced"
    assert ev.label == "significantly increased"  # upstream typo normalised


def test_annotations_merged_is_preferred_over_v2(data: Path) -> None:
    merged = data / "annotations" / "annotations_merged.csv"
    text = _text(data, "1000")
    start = text.index("The outcome was pain score")
    with merged.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(ANN_HEADER)
        w.writerow(_ann_row("20000", "1000", start, start + 26))
    split = load_split(data, "train")
    assert [p.prompt_id for p in split.prompts] == ["20000"]
    assert split.evidence["20000"][0].text == "The outcome was pain score"


# ---------------------------------------------------------------------------------- bad input
def test_missing_data_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as err:
        resolve_data_dir(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)


def test_missing_prompts_file(data: Path) -> None:
    _prompts(data).unlink()
    with pytest.raises(DataError, match="Missing file") as err:
        load_split(data, "train")
    assert str(_prompts(data)) in str(err.value)


def test_missing_annotations_file(data: Path) -> None:
    _ann(data).unlink()
    with pytest.raises(DataError, match="Missing file") as err:
        load_split(data, "train")
    assert "v2_annotations.csv" in str(err.value)


def test_missing_article_text(data: Path) -> None:
    (data / "annotations" / "txt_files" / "PMC1001.txt").unlink()
    with pytest.raises(DataError, match="Missing article text") as err:
        load_split(data, "train")
    assert "PMC1001.txt" in str(err.value)


def test_missing_split_file(data: Path) -> None:
    with pytest.raises(DataError, match="Missing split file") as err:
        load_split(data, "test")
    assert "ev2_test_article_ids.txt" in str(err.value)


def test_unknown_split_name(data: Path) -> None:
    with pytest.raises(DataError, match="Unknown split 'dev'"):
        read_split_ids(data, "dev")


@pytest.mark.parametrize("column", ["Evidence End", "Label", "PMCID"])
def test_missing_annotation_column(data: Path, column: str) -> None:
    _rewrite_without(_ann(data), column)
    with pytest.raises(DataError, match="lacks column") as err:
        load_split(data, "train")
    assert str(_ann(data)) in str(err.value)
    assert repr(column) in str(err.value)


def test_missing_prompt_column(data: Path) -> None:
    _rewrite_without(_prompts(data), "Comparator")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['Comparator'\]") as err:
        load_split(data, "train")
    assert "prompts_merged.csv" in str(err.value)


def test_csv_not_utf8(data: Path) -> None:
    raw = _prompts(data).read_text(encoding="utf-8").replace("headache", "céphalée")
    _prompts(data).write_bytes(raw.encode("latin-1") + "\n30003,1000,dolor,aspirin,placébo\n".encode("cp1252"))
    with pytest.raises(DataError, match="not UTF-8") as err:
        load_split(data, "train")
    assert "prompts_merged.csv" in str(err.value)


def test_article_not_utf8(data: Path) -> None:
    path = data / "annotations" / "txt_files" / "PMC1002.txt"
    path.write_bytes(path.read_text(encoding="utf-8").replace("Headaches", "Céphalées").encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8") as err:
        load_split(data, "train")
    assert "PMC1002.txt" in str(err.value)


def test_offsets_beyond_the_text_name_file_and_row(data: Path) -> None:
    n = len(_text(data, "1001"))
    _append(_ann(data), [_ann_row("20010", "1001", n - 5, n + 20)])  # 8 data rows before it: row 10
    with pytest.raises(DataError, match="beyond the end") as err:
        load_split(data, "train")
    msg = str(err.value)
    assert f"{_ann(data)}, row 10" in msg
    assert "PMC1001.txt" in msg
    assert f"{n - 5}-{n + 20}" in msg


def test_offset_that_is_not_a_number_names_file_row_and_column(data: Path) -> None:
    row = _ann_row("20000", "1000", 3, 9)
    row[9] = "abc"
    _append(_ann(data), [row])
    with pytest.raises(DataError, match=r"row 10: column 'Evidence Start' is 'abc'") as err:
        load_split(data, "train")
    assert str(_ann(data)) in str(err.value)


def test_empty_split_file(data: Path) -> None:
    split_file = data / "annotations" / "splits" / "ev2_validation_article_ids.txt"
    split_file.write_text("\n  \n")
    with pytest.raises(DataError, match="is empty") as err:
        load_split(data, "validation")
    assert str(split_file) in str(err.value)


def test_split_without_usable_evidence(data: Path) -> None:
    # Leave the validation article's annotations with -1 offsets only.
    with _ann(data).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    for row in rows[1:]:
        if row[2] == "1003":
            row[9] = row[10] = "-1"
    with _ann(data).open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(DataError, match="no prompt with usable evidence") as err:
        load_split(data, "validation")
    assert "v2_annotations.csv" in str(err.value)
    assert load_split(data, "train").n_evidence == 6  # the other split is untouched
