"""Plausibility: does the encoder's attention agree with the human evidence? (ERASER, DeYoung et al. 2020).

For every (prompt, positive passage) pair, words (wordpieces merged, see ``attribution``) get a
soft score (CLS attention) and a human label (the word overlaps the prompt's evidence span in
that passage). Metrics, as ERASER defines them:

* ``auprc``: area under the precision-recall curve of the soft scores against the human words,
  per instance (average precision, ties grouped as scikit-learn does), averaged over instances.
* ``token_f1@<k>``: the top-k words form a hard rationale; token precision/recall/F1 against the
  human words, micro-averaged over all words of all instances (ERASER's token-level F1). The
  per-instance mean is reported as ``token_f1_macro@<k>``.
* ``iou_f1@<k>``: the hard rationale and the human words are cut into spans (maximal runs of
  consecutive words); a predicted span is a match when its IOU with some human span is at least
  0.5; precision = matches / predicted spans, recall = matches / human spans, micro-averaged
  over instances (ERASER's IOU F1). ``iou_f1_macro@<k>`` is the per-instance mean.

Two choices of k: ``rationale`` (k = the number of human words of the instance) and ``20%``
(k = ceil(0.2 x words), the share CERA's rationale spans use). ``attention_mass`` is the share
of the passage's word attention on human words, and ``evidence_fraction`` the share of words
that are human words (what uniform attention would give).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Hard-rationale sizes: name -> k(number of words, number of human words).
K_RULES: dict[str, Callable[[int, int], int]] = {
    "rationale": lambda n, n_true: max(1, min(n, n_true)),
    "20%": lambda n, n_true: max(1, min(n, math.ceil(0.2 * n))),
}


def average_precision(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """Average precision (area under the step precision-recall curve), ties grouped.

    ``AP = sum_i (R_i - R_{i-1}) P_i`` over the distinct score thresholds, from high to low:
    the same value as ``sklearn.metrics.average_precision_score``.

    Args:
        scores: a score per token (higher = more important).
        labels: whether each token is a human rationale token.

    Returns:
        AP in ``[0, 1]``; NaN when no token is positive.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos = int(y.sum())
    if n_pos == 0 or s.size == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    # the last index of each group of equal scores is a threshold
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - prev) * precision))


def top_k_mask(scores: Sequence[float] | np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest-scoring tokens as a boolean mask (ties broken by position)."""
    s = np.asarray(scores, dtype=np.float64)
    mask = np.zeros(s.size, dtype=bool)
    mask[np.argsort(-s, kind="stable")[: max(0, k)]] = True
    return mask


def mask_to_spans(mask: Sequence[bool] | np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of ``True`` as half-open ``(start, end)`` token spans."""
    m = np.asarray(mask, dtype=bool)
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for i, v in enumerate(m.tolist()):
        if v and start is None:
            start = i
        elif not v and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, m.size))
    return spans


def f1(precision: float, recall: float) -> float:
    """Harmonic mean (0 when both are 0)."""
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Counts:
    """True positives and the sizes of the predicted and true sets (for micro averaging)."""

    tp: float
    n_pred: int
    n_true: int

    @property
    def precision(self) -> float:
        return self.tp / self.n_pred if self.n_pred else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.n_true if self.n_true else 0.0

    @property
    def f1(self) -> float:
        return f1(self.precision, self.recall)


def token_counts(pred: Sequence[bool] | np.ndarray, true: Sequence[bool] | np.ndarray) -> Counts:
    """Token-level overlap of a hard rationale with the human tokens."""
    p, t = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    return Counts(float(np.sum(p & t)), int(p.sum()), int(t.sum()))


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Intersection over union of two half-open token spans."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def iou_counts(
    pred_spans: Sequence[tuple[int, int]], true_spans: Sequence[tuple[int, int]], threshold: float = 0.5
) -> Counts:
    """ERASER's IOU matching: a predicted span matches when its best IOU with a true span is ``>= threshold``."""
    tp = sum(1 for p in pred_spans if max((iou(p, t) for t in true_spans), default=0.0) >= threshold)
    return Counts(float(tp), len(pred_spans), len(true_spans))


def instance_scores(scores: np.ndarray, true: np.ndarray, iou_threshold: float = 0.5) -> dict[str, Any]:
    """Every plausibility number of one instance (plus the counts the micro averages need).

    Args:
        scores: ``(n_words,)`` soft scores.
        true: ``(n_words,)`` human rationale mask.
        iou_threshold: IOU needed for a span match (ERASER: 0.5).

    Returns:
        ``{"auprc", "token_f1_macro@<k>", "iou_f1_macro@<k>", "_counts": {...}}``.
    """
    out: dict[str, Any] = {"auprc": average_precision(scores, true)}
    counts: dict[str, Counts] = {}
    true_spans = mask_to_spans(true)
    for name, rule in K_RULES.items():
        pred = top_k_mask(scores, rule(len(scores), int(true.sum())))
        tok = token_counts(pred, true)
        spn = iou_counts(mask_to_spans(pred), true_spans, iou_threshold)
        out[f"token_f1_macro@{name}"] = tok.f1
        out[f"iou_f1_macro@{name}"] = spn.f1
        counts[f"token@{name}"] = tok
        counts[f"iou@{name}"] = spn
    out["_counts"] = counts
    return out


def aggregate(instances: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Means of per-instance numbers and micro-averaged token / IOU precision, recall and F1."""
    if not instances:
        return {"n": 0}
    out: dict[str, float] = {"n": len(instances)}
    keys = [k for k in instances[0] if not k.startswith("_")]
    for k in keys:
        vals = np.array([inst[k] for inst in instances], dtype=np.float64)
        out[k] = float(np.nanmean(vals)) if np.any(np.isfinite(vals)) else float("nan")
    for name in instances[0]["_counts"]:
        tp = sum(inst["_counts"][name].tp for inst in instances)
        n_pred = sum(inst["_counts"][name].n_pred for inst in instances)
        n_true = sum(inst["_counts"][name].n_true for inst in instances)
        c = Counts(tp, n_pred, n_true)
        kind, k = name.split("@")
        out[f"{kind}_precision@{k}"] = c.precision
        out[f"{kind}_recall@{k}"] = c.recall
        out[f"{kind}_f1@{k}"] = c.f1
    return out


@dataclass
class PositivePair:
    """One (prompt, positive passage) pair with the prompt's evidence inside that passage."""

    query_id: str
    article_id: str
    index: int
    text: str
    spans: list[tuple[int, int]]
    query: str


def positive_pairs(split: Any, exs: Sequence[Any], query_style: str = "paper") -> list[PositivePair]:
    """Every (prompt, positive passage) pair of ``exs`` that has rationale spans.

    Args:
        split: the ``ProcessedSplit``.
        exs: the evaluated ``PromptExample`` objects.
        query_style: query phrasing for the pair's ``query`` field (faithfulness uses it).

    Returns:
        Pairs in prompt order, then passage order.
    """
    from cera_rag.evaluation.retrieval import query_id, query_text

    pairs = []
    for ex in exs:
        for i in ex.positives:
            spans = [tuple(s) for s in ex.rationales.get(i, [])]
            if not spans:
                continue
            text = split.passages[ex.prompt.article_id][i].text
            pairs.append(
                PositivePair(query_id(ex), ex.prompt.article_id, i, text, spans, query_text(ex, query_style))  # type: ignore[arg-type]
            )
    return pairs


def evaluate_plausibility(
    encoder: Any,
    pairs: Sequence[PositivePair],
    batch_size: int = 32,
    seed: int = 0,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Attention plausibility of one encoder, with the random-word baseline beside it.

    Args:
        encoder: a ``CERAEncoder``.
        pairs: positive pairs (``positive_pairs``).
        batch_size: passages per forward pass.
        seed: seed of the random baseline.
        show_progress: tqdm bar over batches.

    Returns:
        ``{"attention": {...}, "random": {...}, "attention_mass": [per pair], "per_instance": {...}}``;
        the summaries hold ``auprc``, token/IOU precision, recall, F1 at both k rules,
        ``attention_mass`` and ``evidence_fraction`` (means over pairs).
    """
    from tqdm.auto import tqdm

    from cera_rag.evaluation.attribution import passage_words, random_scores, rationale_mask

    texts = sorted({p.text for p in pairs})
    words: dict[str, Any] = {}
    step = max(1, batch_size * 4)
    for s in tqdm(range(0, len(texts), step), desc="plausibility", disable=not show_progress, leave=False):
        chunk = texts[s : s + step]
        for text, pw in zip(chunk, passage_words(encoder, chunk, batch_size), strict=True):
            words[text] = pw
    att_inst, rnd_inst, masses, fractions, keys = [], [], [], [], []
    for j, pair in enumerate(pairs):
        pw = words[pair.text]
        true = rationale_mask(pw.words, pair.spans)
        if pw.n == 0 or not true.any():
            continue  # the evidence lies beyond the truncated input
        att_inst.append(instance_scores(pw.attention, true))
        rnd_inst.append(instance_scores(random_scores(pw.n, [seed, j]), true))
        masses.append(float(pw.attention[true].sum()))
        fractions.append(float(true.mean()))
        keys.append(f"{pair.query_id}:{pair.index}")
    attention = aggregate(att_inst)
    random = aggregate(rnd_inst)
    for summary in (attention, random):
        summary["evidence_fraction"] = float(np.mean(fractions)) if fractions else float("nan")
    attention["attention_mass"] = float(np.mean(masses)) if masses else float("nan")
    return {
        "attention": attention,
        "random": random,
        "attention_mass": masses,
        "evidence_fraction": fractions,
        "per_instance": {
            "auprc": dict(zip(keys, [float(i["auprc"]) for i in att_inst], strict=True)),
            "auprc_random": dict(zip(keys, [float(i["auprc"]) for i in rnd_inst], strict=True)),
        },
        "n_pairs": len(pairs),
        "n_scored": len(att_inst),
    }
