"""LLM-free evidence metrics of a RAG context: how much of the human evidence reaches the LLM, at what cost.

* ``evidence_recall``: the share of the prompt's annotated evidence characters that lie inside
  the retrieved passages (the context the LLM is given).
* ``evidence_only_recall``: the same share when each passage is cut down to the sentences that
  hold the reader's evidence spans (``cera_rag.spans.evidence_sentences``, what
  ``CERARationaleCompressor(mode="evidence")`` sends); only for systems with evidence spans.
* ``context_tokens`` / ``evidence_only_tokens``: the size of each context in tokens of the local
  generator's tokenizer (SmolLM2's, read from its GGUF without loading the weights), else words.

Evidence is located by character offsets (``PromptExample.rationales``: passage index -> spans
relative to the passage start), so no string matching is involved.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cera_rag.spans import SpanDict, evidence_sentences

logger = logging.getLogger(__name__)

#: Evidence character spans per passage id, relative to the passage's start.
EvidenceMap = Mapping[str, Sequence[tuple[int, int]]]


def _covered(spans: Sequence[tuple[int, int]], pieces: Sequence[tuple[int, int]]) -> int:
    return sum(max(0, min(e, pe) - max(s, ps)) for s, e in spans for ps, pe in pieces)


def _total(evidence: EvidenceMap) -> int:
    return sum(e - s for spans in evidence.values() for s, e in spans)


def evidence_recall(context_ids: Sequence[str], evidence: EvidenceMap) -> float | None:
    """Share of the evidence characters inside the passages ``context_ids`` (``None``: no evidence)."""
    total = _total(evidence)
    if not total:
        return None
    kept = sum(e - s for pid in dict.fromkeys(context_ids) for s, e in evidence.get(pid, ()))
    return kept / total


def evidence_only_context(texts: Sequence[str], spans: Sequence[Sequence[SpanDict]]) -> list[tuple[str, list]]:
    """Per passage: the text of the sentences holding its evidence spans and their ``(start, end)`` pieces."""
    out = []
    for text, passage_spans in zip(texts, spans, strict=True):
        ev = evidence_sentences(text, passage_spans)
        out.append((ev.text, list(ev.pieces)))
    return out


def evidence_only_recall(
    context_ids: Sequence[str], texts: Sequence[str], spans: Sequence[Sequence[SpanDict]], evidence: EvidenceMap
) -> float | None:
    """Share of the evidence characters inside the evidence sentences kept from each passage."""
    total = _total(evidence)
    if not total:
        return None
    kept = 0
    seen: set[str] = set()
    for pid, (_, pieces) in zip(context_ids, evidence_only_context(texts, spans), strict=True):
        if pid in seen:
            continue
        seen.add(pid)
        kept += _covered(list(evidence.get(pid, ())), pieces)
    return kept / total


@functools.lru_cache(maxsize=1)
def _gguf_tokenizer() -> Callable[[str], int] | None:
    try:
        from llama_cpp import Llama

        from cera_rag.experiments.rag.local_llm import default_gguf_path

        vocab = Llama(model_path=str(default_gguf_path()), vocab_only=True, verbose=False)
    except Exception as exc:  # noqa: BLE001 - fall back to words, and say so in the log
        logger.warning("No GGUF tokenizer (%s); context sizes are counted in words.", exc)
        return None
    return lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False))


def token_unit() -> str:
    """What ``count_tokens`` counts: ``"SmolLM2 tokens"`` or ``"words"``."""
    return "SmolLM2 tokens" if _gguf_tokenizer() is not None else "words"


def count_tokens(text: str) -> int:
    """Tokens of ``text`` for the local generator (words when its tokenizer is unavailable)."""
    tokenize = _gguf_tokenizer()
    return tokenize(text) if tokenize is not None else len(text.split())


def evidence_metrics(
    context_ids: Sequence[str],
    texts: Sequence[str],
    evidence: EvidenceMap,
    evidence_spans: Sequence[Sequence[SpanDict]] | None = None,
    separator: str = "\n\n",
) -> dict[str, Any]:
    """Every metric of the module docstring for one context (the evidence-only ones need ``evidence_spans``)."""
    out: dict[str, Any] = {
        "evidence_recall": evidence_recall(context_ids, evidence),
        "context_tokens": count_tokens(separator.join(t.strip() for t in texts)),
    }
    if evidence_spans is not None and any(evidence_spans):
        kept = [t for t, _ in evidence_only_context(texts, evidence_spans) if t]
        out["evidence_only_recall"] = evidence_only_recall(context_ids, texts, evidence_spans, evidence)
        out["evidence_only_tokens"] = count_tokens(separator.join(kept))
    return out
