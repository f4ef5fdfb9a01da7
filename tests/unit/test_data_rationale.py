"""Rationale targets: POS weight tables and their alignment to WordPiece tokens through character offsets."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cera_rag.data.rationale import (
    POS_TABLES,
    RESULT_WORDS,
    PosTagger,
    WordTag,
    word_weight,
    wordpiece_targets,
)

TEXT = "Glucose was significantly lower with metformin (2.1 vs 4.3%, p = 0.02)."
# Hand-written tags (what spaCy gives, with "Glucose" as a NOUN), so the alignment tests need no tagger.
WORDS: list[WordTag] = [
    (0, 7, "NOUN", "NN"),  # Glucose (7 wordpieces in the tiny vocabulary)
    (8, 11, "AUX", "VBD"),  # was
    (12, 25, "ADV", "RB"),  # significantly
    (26, 31, "ADJ", "JJR"),  # lower
    (32, 36, "ADP", "IN"),  # with
    (37, 46, "NOUN", "NN"),  # metformin
    (47, 48, "PUNCT", "-LRB-"),  # (
    (48, 51, "NUM", "CD"),  # 2.1 (three wordpieces: 2 . 1)
    (52, 54, "ADP", "IN"),  # vs
    (55, 58, "NUM", "CD"),  # 4.3
    (58, 59, "NOUN", "NN"),  # %
    (59, 60, "PUNCT", ","),  # ,
    (61, 62, "NOUN", "NN"),  # p
    (63, 64, "SYM", "SYM"),  # =
    (65, 69, "NUM", "CD"),  # 0.02 (four wordpieces)
    (69, 70, "PUNCT", "-RRB-"),  # )
    (70, 71, "PUNCT", "."),  # .
]


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The tiny BERT's WordPiece tokenizer, loaded from its vocab.txt (works on transformers 4 and 5)."""
    from transformers import BertTokenizerFast

    d = tmp_path_factory.mktemp("wordpiece")
    shutil.copy(tiny_bert_dir / "vocab.txt", d / "vocab.txt")
    tok = BertTokenizerFast.from_pretrained(d, do_lower_case=True)
    assert tok.tokenize("glucose was") == ["g", "##l", "##u", "##c", "##o", "##s", "##e", "was"]
    return tok


def _encode(tokenizer, text: str) -> tuple[list[str], list[tuple[int, int]]]:  # type: ignore[no-untyped-def]
    enc = tokenizer(text, return_offsets_mapping=True)
    return tokenizer.convert_ids_to_tokens(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def _word_index(offsets: list[tuple[int, int]], words: list[WordTag]) -> list[int]:
    """For each wordpiece, the index of the word it falls in (-1 for specials)."""
    out = []
    for s, e in offsets:
        out.append(next((j for j, w in enumerate(words) if e > s and w[0] <= s < w[1]), -1))
    return out


# ---------------------------------------------------------------------------------- word weights
def test_paper_table() -> None:
    assert POS_TABLES["paper"] == {"NOUN": 1.0, "PROPN": 0.3, "VERB": 0.1, "ADJ": 0.1}
    assert word_weight("glucose", "NOUN", "paper") == 1.0
    assert word_weight("Smith", "PROPN", "paper") == 0.3
    assert word_weight("reduced", "VERB", "paper") == 0.1  # no result-word boost in the paper's table
    assert word_weight("lower", "ADJ", "paper") == 0.1
    assert word_weight("12", "NUM", "paper") == 0.0
    assert word_weight("the", "DET", "paper") == 0.0


def test_evidence_table() -> None:
    assert word_weight("0.02", "NUM", "evidence") == 1.0
    assert word_weight("Significantly,", "ADV", "evidence") == 1.0  # result word, case and punctuation aside
    assert word_weight("(CI", "NOUN", "evidence") == 1.0
    assert word_weight("glucose", "NOUN", "evidence") == 0.8
    assert word_weight("severe", "ADJ", "evidence") == 0.6
    assert word_weight("%", "NOUN", "evidence") == 0.6  # symbols whatever the tag
    assert word_weight("≤", "X", "evidence") == 0.6
    assert word_weight("Smith", "PROPN", "evidence") == 0.5
    assert word_weight("measured", "VERB", "evidence") == 0.3
    assert word_weight("quickly", "ADV", "evidence") == 0.2
    assert word_weight("the", "DET", "evidence") == 0.0
    assert word_weight("with", "ADP", "evidence") == 0.0
    assert {"significantly", "reduced", "p", "ci"} <= RESULT_WORDS


def test_uniform_table_and_unknown_table() -> None:
    assert word_weight("the", "DET", "uniform") == 1.0
    assert word_weight(",", "PUNCT", "uniform") == 1.0
    with pytest.raises(ValueError, match="Unknown POS table 'nouns'"):
        word_weight("x", "NOUN", "nouns")


# ---------------------------------------------------------------------------------- alignment
def test_tokenisation_of_the_example(tokenizer) -> None:  # type: ignore[no-untyped-def]
    tokens, offsets = _encode(tokenizer, TEXT)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert offsets[0] == (0, 0) and offsets[-1] == (0, 0)
    assert [TEXT[s:e] for s, e in offsets[1:8]] == list("Glucose")
    assert [TEXT[s:e] for s, e in offsets if 48 <= s < 51] == ["2", ".", "1"]


def test_paper_weights_only_inside_the_rationale(tokenizer) -> None:  # type: ignore[no-untyped-def]
    tokens, offsets = _encode(tokenizer, TEXT)
    rationale = [(0, 46)]  # "Glucose was significantly lower with metformin"
    w = wordpiece_targets(offsets, WORDS, rationale, TEXT, "paper")
    assert w.shape == (len(tokens),) and w.dtype == np.float32
    expected = {
        "glucose": 1.0 / 7,
        "was": 0.0,
        "significantly": 0.0,
        "lower": 0.1,
        "with": 0.0,
        "metformin": 1.0,
    }
    wi = _word_index(offsets, WORDS)
    for k, (s, e) in enumerate(offsets):
        if e <= s or s >= 46:
            assert w[k] == 0.0, (k, tokens[k])  # specials and everything after the rationale
        else:
            word = TEXT[WORDS[wi[k]][0] : WORDS[wi[k]][1]].lower()
            assert w[k] == pytest.approx(expected[word]), word
    # a word's weight is split over its pieces: the seven pieces of "Glucose" add up to 1
    assert float(w[1:8].sum()) == pytest.approx(1.0)
    assert float(w.sum()) == pytest.approx(1.0 + 0.1 + 1.0)


def test_evidence_weights_on_numbers_and_symbols(tokenizer) -> None:  # type: ignore[no-untyped-def]
    tokens, offsets = _encode(tokenizer, TEXT)
    rationale = [(48, 69)]  # "2.1 vs 4.3%, p = 0.02"
    w = wordpiece_targets(offsets, WORDS, rationale, TEXT, "evidence")
    by_piece = [(TEXT[s:e], round(float(x), 4)) for (s, e), x in zip(offsets, w, strict=True) if x > 0]
    assert by_piece == [
        ("2", 0.3333), (".", 0.3333), ("1", 0.3333),  # 2.1: NUM 1.0 over three pieces
        ("vs", 1.0),  # result word
        ("4", 0.3333), (".", 0.3333), ("3", 0.3333),
        ("%", 0.6),  # symbol
        ("p", 1.0),  # result word
        ("=", 0.6),
        ("0", 0.25), (".", 0.25), ("0", 0.25), ("2", 0.25),  # 0.02 over four pieces
    ]  # fmt: skip
    wi = _word_index(offsets, WORDS)
    for k, (s, e) in enumerate(offsets):
        if w[k] > 0:
            assert 48 <= s and e <= 69
        if wi[k] >= 0 and WORDS[wi[k]][2] == "PUNCT":
            assert w[k] == 0.0  # "(", ",", ")" carry nothing


@pytest.mark.parametrize("table", ["paper", "evidence", "uniform"])
def test_pieces_of_each_word_add_up_to_the_word_weight(tokenizer, table: str) -> None:  # type: ignore[no-untyped-def]
    _, offsets = _encode(tokenizer, TEXT)
    w = wordpiece_targets(offsets, WORDS, [(0, len(TEXT))], TEXT, table)
    wi = np.array(_word_index(offsets, WORDS))
    assert (w[wi < 0] == 0).all()  # [CLS], [SEP]
    for j, (s, e, pos, _) in enumerate(WORDS):
        assert float(w[wi == j].sum()) == pytest.approx(word_weight(TEXT[s:e], pos, table)), TEXT[s:e]
    if table == "uniform":
        assert float(w.sum()) == pytest.approx(len(WORDS))


def test_two_rationale_spans_and_nothing_between(tokenizer) -> None:  # type: ignore[no-untyped-def]
    _, offsets = _encode(tokenizer, TEXT)
    w = wordpiece_targets(offsets, WORDS, [(0, 7), (37, 46)], TEXT, "uniform")
    got = {TEXT[s:e] for (s, e), x in zip(offsets, w, strict=True) if x > 0}
    assert got == set("Glucose") | {"metformin"}
    assert float(w.sum()) == pytest.approx(2.0)


def test_empty_inputs_give_zeros(tokenizer) -> None:  # type: ignore[no-untyped-def]
    _, offsets = _encode(tokenizer, TEXT)
    assert not wordpiece_targets(offsets, WORDS, [], TEXT).any()
    assert not wordpiece_targets(offsets, [], [(0, 10)], TEXT).any()
    assert wordpiece_targets([], WORDS, [(0, 10)], TEXT).shape == (0,)
    # a truncated encoding: the targets follow the offsets given
    assert wordpiece_targets(offsets[:4], WORDS, [(0, 46)], TEXT).shape == (4,)


def test_padding_offsets_are_zero(tokenizer) -> None:  # type: ignore[no-untyped-def]
    enc = tokenizer([TEXT, "was"], padding=True, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"][1]]
    words: list[WordTag] = [(0, 3, "AUX", "VBD")]
    w = wordpiece_targets(offsets, words, [(0, 3)], "was", "uniform")
    assert w.tolist()[:3] == [0.0, 1.0, 0.0]
    assert not w[3:].any()  # [PAD] has offsets (0, 0)


# ---------------------------------------------------------------------------------- spaCy
@pytest.fixture(scope="module")
def tagger() -> PosTagger:
    t = PosTagger()
    try:
        t.nlp  # noqa: B018  # load once
    except OSError as exc:  # pragma: no cover - the model is a declared dependency
        pytest.skip(f"spaCy model not installed: {exc}")
    return t


def test_pos_tagger_offsets_map_back(tagger: PosTagger) -> None:
    text = "Mortality was 12% lower  with\ninsulin (HR 0.8; p = 0.03)."
    tags = tagger.tag(text)
    assert [text[s:e] for s, e, _, _ in tags][:6] == ["Mortality", "was", "12", "%", "lower", "with"]
    assert all(text[s:e].strip() == text[s:e] and e > s for s, e, _, _ in tags)
    assert [s for s, *_ in tags] == sorted(s for s, *_ in tags)
    pos = {text[s:e]: p for s, e, p, _ in tags}
    assert pos["Mortality"] == "NOUN"
    assert pos["12"] == "NUM"
    many = tagger.tag_many({"a": "Pain fell.", "b": "Rates rose."})
    assert [(s, e) for s, e, *_ in many["a"]] == [(0, 4), (5, 9), (9, 10)]
    assert set(many) == {"a", "b"}


def test_spacy_tags_drive_the_targets(tagger: PosTagger, tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = "Headache duration was reduced in the aspirin group."
    words = tagger.tag(text)
    _, offsets = _encode(tokenizer, text)
    w = wordpiece_targets(offsets, words, [(0, len(text))], text, "paper")
    weights = {text[s:e]: float(x) for (s, e), x in zip(offsets, w, strict=True)}
    assert weights["duration"] == pytest.approx(1.0)  # NOUN
    assert weights["group"] == pytest.approx(1.0)
    assert weights["the"] == 0.0 and weights["in"] == 0.0
    assert weights["reduced"] == pytest.approx(0.1)  # VERB


def test_missing_spacy_model_says_how_to_install() -> None:
    with pytest.raises(OSError, match="pip install"):
        PosTagger("xx_no_such_model_cera").nlp  # noqa: B018
