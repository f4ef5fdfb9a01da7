"""Faithfulness: does removing the words a ranking calls important change the retrieval score?

ERASER (DeYoung et al. 2020) defines comprehensiveness and sufficiency with the model's class
probability; a retriever has no class, so the score is ``s(q, d) = cos(q, d)`` between the query
vector and the passage vector. Words (wordpieces merged, see ``attribution``) are **removed by
deleting their characters from the passage text**, and the edited text is re-encoded (no
masking tokens, no attention surgery). Words beyond the encoder's truncation are not ranked and
stay in the text for comprehensiveness; sufficiency keeps only the chosen words, joined by one
space in text order.

Definitions (each number in the output is labelled with its definition):

* ``eraser_comprehensiveness@<k>%`` = s(q, d) - s(q, d without its top-k% words)  (higher = more faithful)
* ``eraser_sufficiency@<k>%`` = s(q, d) - s(q, only its top-k% words)  (lower = more faithful)
* ``eraser_comprehensiveness_aopc`` / ``eraser_sufficiency_aopc``: the mean over k in
  {1, 5, 10, 20, 50}% (area over the perturbation curve); top-k% means ``max(1, ceil(k% x words))``.
* ``paper_comprehensiveness`` = cos(q, d) - cos(q, d without its top max(5, 20%) words)
* ``paper_sufficiency`` = cos(q, its top max(5, 20%) words alone)  (a similarity, higher = more sufficient)

Word rankings compared: ``attention`` (the encoder's CLS attention, CERA's rationale),
``gradient_x_input`` (``|d cos / d input embeddings x embeddings|``, summed over dimensions and
wordpieces before the absolute value) and ``random`` (a seeded permutation, the chance baseline).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

#: ERASER's AOPC bins (fractions of the passage's words).
AOPC_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.5)
METHODS: tuple[str, ...] = ("attention", "gradient_x_input", "random")

DEFINITIONS: dict[str, str] = {
    "eraser_comprehensiveness@k%": "cos(q,d) - cos(q, d with its top-k% words deleted); ERASER, cos for probability",
    "eraser_sufficiency@k%": "cos(q,d) - cos(q, only its top-k% words); ERASER, cos for probability",
    "eraser_comprehensiveness_aopc": "mean of eraser_comprehensiveness over k in {1,5,10,20,50}% (higher = faithful)",
    "eraser_sufficiency_aopc": "mean of eraser_sufficiency over k in {1,5,10,20,50}% (lower = faithful)",
    "paper_comprehensiveness": "cos(q,d) - cos(q, d without its top max(5, 20%) words) (CERA paper)",
    "paper_sufficiency": "cos(q, its top max(5, 20%) words alone) (CERA paper; higher = sufficient)",
    "removal": "words are deleted from the passage's characters and the text is re-encoded",
}


class Scorer(Protocol):
    """What faithfulness needs from a model: query and passage vectors."""

    def encode_queries(self, texts: Sequence[str], batch_size: int = ...) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str], batch_size: int = ...) -> Any: ...


def top_count(fraction: float, n_words: int) -> int:
    """Words in the top ``fraction``: ``max(1, ceil(fraction x n))``, at most ``n``."""
    return min(n_words, max(1, math.ceil(fraction * n_words - 1e-9)))


def paper_count(n_words: int) -> int:
    """The CERA paper's rationale size: ``max(5, ceil(20% x n))`` words, at most ``n``."""
    return min(n_words, max(5, math.ceil(0.2 * n_words - 1e-9)))


def remove_words(text: str, words: Sequence[tuple[int, int]], chosen: Sequence[int]) -> str:
    """``text`` with the characters of the chosen words deleted (the whitespace around them is kept).

    Args:
        text: the passage.
        words: ``[(start, end)]`` word character spans.
        chosen: indices into ``words``.

    Returns:
        The edited text.
    """
    cut = sorted(words[i] for i in set(int(c) for c in chosen))
    parts, pos = [], 0
    for s, e in cut:
        parts.append(text[pos:s])
        pos = e
    parts.append(text[pos:])
    return "".join(parts)


def keep_words(text: str, words: Sequence[tuple[int, int]], chosen: Sequence[int]) -> str:
    """Only the chosen words of ``text``, in text order, joined by one space."""
    return " ".join(text[words[i][0] : words[i][1]] for i in sorted(set(int(c) for c in chosen)))


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)


def erasure_texts(
    text: str,
    words: Sequence[tuple[int, int]],
    order: Sequence[int] | np.ndarray,
    fractions: Sequence[float] = AOPC_FRACTIONS,
) -> dict[str, str]:
    """The perturbed passages one ranking needs, keyed by the number they feed.

    Args:
        text: the passage.
        words: its word spans.
        order: word indices, most important first.
        fractions: AOPC bins.

    Returns:
        ``{"comp@<f>": text, "suff@<f>": text, ..., "paper_comp": text, "paper_suff": text}``.
    """
    order = [int(i) for i in order]
    out: dict[str, str] = {}
    n = len(words)
    for f in fractions:
        k = top_count(f, n)
        out[f"comp@{f:g}"] = remove_words(text, words, order[:k])
        out[f"suff@{f:g}"] = keep_words(text, words, order[:k])
    k = paper_count(n)
    out["paper_comp"] = remove_words(text, words, order[:k])
    out["paper_suff"] = keep_words(text, words, order[:k])
    return out


def pair_faithfulness(
    scorer: Scorer,
    query_vector: np.ndarray,
    text: str,
    words: Sequence[tuple[int, int]],
    orders: Mapping[str, Sequence[int] | np.ndarray],
    fractions: Sequence[float] = AOPC_FRACTIONS,
    batch_size: int = 32,
) -> dict[str, dict[str, float]]:
    """Comprehensiveness and sufficiency of several word rankings on one (query, passage) pair.

    Every distinct perturbed text is encoded once (one ``encode_passages`` call per pair).

    Args:
        scorer: the model (``encode_passages``); the score is the cosine of the vectors.
        query_vector: the query's vector.
        text: the passage.
        words: its word spans (the units removed).
        orders: method name -> word indices, most important first.
        fractions: AOPC bins.
        batch_size: encoder batch size.

    Returns:
        ``{method: {"eraser_comprehensiveness@1%": ..., "eraser_sufficiency_aopc": ..., "paper_sufficiency": ...,
        "score": cos(q, d)}}``.
    """
    per_method = {m: erasure_texts(text, words, o, fractions) for m, o in orders.items()}
    unique = list(dict.fromkeys([text, *[t for texts in per_method.values() for t in texts.values()]]))
    vecs = _unit(np.asarray(scorer.encode_passages(unique, batch_size=batch_size), dtype=np.float64))
    q = _unit(np.asarray(query_vector, dtype=np.float64))
    cos = dict(zip(unique, (vecs @ q).tolist(), strict=True))
    full = cos[text]
    out: dict[str, dict[str, float]] = {}
    for method, texts in per_method.items():
        row: dict[str, float] = {"score": full}
        comps, suffs = [], []
        for f in fractions:
            label = f"{f * 100:g}%"
            c = full - cos[texts[f"comp@{f:g}"]]
            s = full - cos[texts[f"suff@{f:g}"]]
            row[f"eraser_comprehensiveness@{label}"] = c
            row[f"eraser_sufficiency@{label}"] = s
            comps.append(c)
            suffs.append(s)
        row["eraser_comprehensiveness_aopc"] = float(np.mean(comps))
        row["eraser_sufficiency_aopc"] = float(np.mean(suffs))
        row["paper_comprehensiveness"] = full - cos[texts["paper_comp"]]
        row["paper_sufficiency"] = cos[texts["paper_suff"]]
        out[method] = row
    return out


def evaluate_faithfulness(
    encoder: Any,
    pairs: Sequence[Any],
    limit: int | None = 100,
    fractions: Sequence[float] = AOPC_FRACTIONS,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    batch_size: int = 32,
    show_progress: bool = False,
) -> dict[str, Any]:
    """ERASER and paper faithfulness of attention, gradient x input and random rankings for one encoder.

    Args:
        encoder: a ``CERAEncoder``.
        pairs: ``PositivePair`` objects (``plausibility.positive_pairs``); their ``query`` is the query text.
        limit: pairs evaluated: a seeded random subsample of this size (``None`` = all).
        fractions: AOPC bins.
        methods: rankings to compare (subset of ``METHODS``).
        seed: seed of the subsample and of the random ranking.
        batch_size: encoder batch size.
        show_progress: tqdm bar over pairs.

    Returns:
        ``{"summary": {method: {label: mean}}, "per_pair": {method: {label: {pair key: value}}},
        "definitions": DEFINITIONS, "n_pairs": int}``.
    """
    from tqdm.auto import tqdm

    from cera_rag.evaluation.attribution import gradient_x_input, passage_words, random_scores, ranking

    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown attribution methods {sorted(unknown)}; choose from {METHODS}.")
    chosen = list(pairs)
    if limit is not None and len(chosen) > limit:
        rng = np.random.default_rng(seed)
        idx = sorted(rng.choice(len(chosen), size=limit, replace=False).tolist())
        chosen = [chosen[i] for i in idx]
    if not chosen:
        return {"summary": {}, "per_pair": {}, "definitions": DEFINITIONS, "n_pairs": 0}
    texts = [p.text for p in chosen]
    pws = passage_words(encoder, texts, batch_size)
    qv = np.asarray(encoder.encode_queries([p.query for p in chosen], batch_size=batch_size))
    grads = (
        gradient_x_input(encoder, qv, texts, batch_size=max(1, batch_size // 2))
        if "gradient_x_input" in methods
        else None
    )
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    keys: list[str] = []
    for j, (pair, pw) in enumerate(
        tqdm(list(zip(chosen, pws, strict=True)), desc="faithfulness", disable=not show_progress, leave=False)
    ):
        if pw.n == 0:
            continue
        orders: dict[str, np.ndarray] = {}
        if "attention" in methods:
            orders["attention"] = ranking(pw.attention)
        if grads is not None:
            orders["gradient_x_input"] = ranking(grads[j])
        if "random" in methods:
            orders["random"] = ranking(random_scores(pw.n, [seed, j]))
        result = pair_faithfulness(encoder, qv[j], pair.text, pw.words, orders, fractions, batch_size)
        for m in methods:
            rows[m].append(result[m])
        keys.append(f"{pair.query_id}:{pair.index}")
    summary = {m: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for m, rs in rows.items() if rs}
    per_pair = {m: {k: dict(zip(keys, [r[k] for r in rs], strict=True)) for k in rs[0]} for m, rs in rows.items() if rs}
    return {
        "summary": summary,
        "per_pair": per_pair,
        "fractions": list(fractions),
        "definitions": DEFINITIONS,
        "n_pairs": len(keys),
    }
