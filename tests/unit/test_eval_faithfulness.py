"""Faithfulness: word removal, ERASER comprehensiveness/sufficiency with a fake scorer, attributions on a tiny BERT."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from cera_rag.evaluation.faithfulness import (
    AOPC_FRACTIONS,
    erasure_texts,
    keep_words,
    pair_faithfulness,
    paper_count,
    remove_words,
    top_count,
)

TEXT = "Pain score was significantly lower with aspirin than placebo"
WORDS = [(m.start(), m.end()) for m in re.finditer(r"\S+", TEXT)]


class KeywordScorer:
    """Vectors that depend only on whether 'aspirin' and 'lower' are in the text."""

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return np.array([[1.0, 1.0, 0.1]] * len(texts))

    def encode_passages(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return np.array([[float("aspirin" in t), float("lower" in t), 1.0] for t in texts])


def test_remove_and_keep_words() -> None:
    assert remove_words(TEXT, WORDS, [1, 2]) == "Pain   significantly lower with aspirin than placebo"
    assert remove_words(TEXT, WORDS, []) == TEXT
    assert keep_words(TEXT, WORDS, [6, 0]) == "Pain aspirin"
    assert top_count(0.01, 9) == 1 and top_count(0.2, 10) == 2 and top_count(0.5, 9) == 5
    assert paper_count(9) == 5 and paper_count(40) == 8 and paper_count(3) == 3


def test_comprehensiveness_is_zero_when_the_model_ignores_the_removed_words() -> None:
    scorer = KeywordScorer()
    q = scorer.encode_queries(["q"])[0]
    keywords = {TEXT[s:e] for s, e in WORDS} & {"aspirin", "lower"}
    assert keywords == {"aspirin", "lower"}
    # a ranking that puts every other word first: the top <= 50% never includes the keywords
    ignored = [i for i, (s, e) in enumerate(WORDS) if TEXT[s:e] not in keywords]
    order = ignored + [i for i in range(len(WORDS)) if i not in ignored]
    res = pair_faithfulness(scorer, q, TEXT, WORDS, {"ignored_first": order})["ignored_first"]  # type: ignore[arg-type]
    for f in AOPC_FRACTIONS:
        assert res[f"eraser_comprehensiveness@{f * 100:g}%"] == pytest.approx(0.0, abs=1e-12)
    assert res["eraser_comprehensiveness_aopc"] == pytest.approx(0.0, abs=1e-12)
    assert res["paper_comprehensiveness"] == pytest.approx(0.0, abs=1e-12)
    # keeping only ignored words loses the match: sufficiency > 0 (not sufficient)
    assert res["eraser_sufficiency_aopc"] > 0


def test_a_ranking_of_the_keywords_is_comprehensive_and_sufficient() -> None:
    scorer = KeywordScorer()
    q = scorer.encode_queries(["q"])[0]
    key_first = [4, 6] + [i for i in range(len(WORDS)) if i not in (4, 6)]
    assert {TEXT[WORDS[i][0] : WORDS[i][1]] for i in key_first[:2]} == {"lower", "aspirin"}
    res = pair_faithfulness(scorer, q, TEXT, WORDS, {"keys": key_first})["keys"]  # type: ignore[arg-type]
    assert res["paper_comprehensiveness"] > 0.5
    full = res["score"]
    # the paper's top-5 words hold both keywords: their text alone scores like the passage
    assert res["paper_sufficiency"] == pytest.approx(full)
    assert res["eraser_sufficiency@50%"] == pytest.approx(0.0)


def test_erasure_texts_keys() -> None:
    texts = erasure_texts(TEXT, WORDS, list(range(len(WORDS))))
    assert texts["suff@0.5"] == "Pain score was significantly lower"
    assert texts["paper_suff"] == "Pain score was significantly lower"
    assert texts["comp@0.01"].strip() == TEXT[len("Pain") :].strip()


def test_attributions_on_tiny_bert(tiny_bert_dir: Path) -> None:
    from cera_rag.evaluation.attribution import gradient_x_input, passage_words
    from cera_rag.evaluation.faithfulness import evaluate_faithfulness
    from cera_rag.evaluation.plausibility import PositivePair, evaluate_plausibility
    from cera_rag.model import CERAEncoder

    enc = CERAEncoder.from_pretrained(tiny_bert_dir)
    texts = [TEXT.lower(), "no difference in blood pressure was seen (p = 0.41)."]
    pws = passage_words(enc, texts)
    assert [pw.n for pw in pws] == [9, 10]
    assert all(np.isclose(pw.attention.sum(), 1.0) for pw in pws)
    assert pws[1].words[-1] == (46, 52)  # "0.41)." : touching pieces form one word
    qv = enc.encode_queries(["aspirin pain", "blood pressure"])
    grads = gradient_x_input(enc, qv, texts)
    assert [g.shape for g in grads] == [(9,), (10,)] and all(np.isfinite(g).all() for g in grads)
    pairs = [
        PositivePair("q1", "a", 0, texts[0], [(0, 34)], "aspirin pain"),
        PositivePair("q2", "a", 1, texts[1], [(3, 13)], "blood pressure"),
    ]
    faith = evaluate_faithfulness(enc, pairs, limit=1, seed=0)
    assert faith["n_pairs"] == 1
    assert set(faith["summary"]) == {"attention", "gradient_x_input", "random"}
    assert "eraser_comprehensiveness_aopc" in faith["summary"]["attention"]
    plaus = evaluate_plausibility(enc, pairs)
    assert plaus["n_scored"] == 2 and 0 <= plaus["attention"]["auprc"] <= 1
    assert 0 <= plaus["attention"]["attention_mass"] <= 1
