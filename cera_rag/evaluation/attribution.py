"""Word-level attributions of a passage: CERA attention, gradient x input, random.

A *token* here is a word: wordpieces whose character offsets touch are merged, exactly as
``cera_rag.model`` does when it turns attention into rationale spans (``_words``). Special tokens
and words cut off by truncation (``max_passage_length``) are not tokens. A word's score is the
sum over its wordpieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PassageWords:
    """A passage cut into words, with the encoder's CLS attention per word.

    Attributes:
        text: the passage.
        words: ``[(start, end)]`` character spans of the words the encoder sees, in text order.
        pieces: wordpiece positions of each word in the tokenised input.
        attention: ``(n_words,)`` CLS attention summed over each word's pieces, renormalised to sum 1
            over words (special tokens excluded).
    """

    text: str
    words: list[tuple[int, int]]
    pieces: list[list[int]]
    attention: np.ndarray

    @property
    def n(self) -> int:
        return len(self.words)


def _word_groups(text: str, offsets: np.ndarray) -> tuple[list[tuple[int, int]], list[list[int]]]:
    from cera_rag.model import _words

    groups = _words(text, offsets)
    return [(s, e) for s, e, _ in groups], [list(p) for _, _, p in groups]


def passage_words(encoder: Any, texts: Sequence[str], batch_size: int = 32) -> list[PassageWords]:
    """Words and per-word CLS attention of each passage (one forward pass per batch, no gradients).

    Args:
        encoder: a ``CERAEncoder`` (its rationale layer and heads give the attention).
        texts: passages.
        batch_size: passages per forward pass.

    Returns:
        One ``PassageWords`` per text, in order.
    """
    import torch

    out: list[PassageWords] = []
    max_len = encoder.config.max_passage_length
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            chunk = list(texts[s : s + batch_size])
            batch = encoder.tokenize(chunk, max_len, offsets=True)
            _, attention = encoder(batch["input_ids"], batch["attention_mask"], return_attention=True)
            att = attention.float().cpu().numpy()
            offs = batch["offset_mapping"].cpu().numpy()
            for row, text in enumerate(chunk):
                words, pieces = _word_groups(text, offs[row])
                w = np.array([float(att[row, p].sum()) for p in pieces], dtype=np.float64)
                total = w.sum()
                w = w / total if total > 0 and np.isfinite(total) else np.full(len(w), 1.0 / max(1, len(w)))
                out.append(PassageWords(text, words, pieces, w))
    return out


def per_head_attention(
    encoder: Any, texts: Sequence[str], batch_size: int = 32
) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
    """Per passage, its words and the CLS attention of *every* layer and head summed per word.

    What ``passage_words`` gives for the encoder's configured rationale layer and heads, for all of
    them at once (one forward pass per batch): used to ask whether any single head points at the
    evidence. Returns ``(words, scores)`` with ``scores`` of shape ``(n_layers, n_heads, n_words)``.
    """
    import torch

    model = encoder.model
    layers = model.encoder.layer
    max_len = encoder.config.max_passage_length
    out: list[tuple[list[tuple[int, int]], np.ndarray]] = []
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            chunk = list(texts[s : s + batch_size])
            batch = encoder.tokenize(chunk, max_len, offsets=True)
            mask = batch["attention_mask"]
            hidden = model(input_ids=batch["input_ids"], attention_mask=mask, output_hidden_states=True).hidden_states
            # hidden_states[i] is the input of layer i, as in CERAEncoder.forward
            rows = [encoder.cls_attention_heads(hidden[i], mask, lay.attention.self) for i, lay in enumerate(layers)]
            att = torch.stack(rows, 1).float().cpu().numpy()  # (B, L, H, T)
            offs = batch["offset_mapping"].cpu().numpy()
            for row, text in enumerate(chunk):
                words, pieces = _word_groups(text, offs[row])
                w = np.stack([att[row][:, :, p].sum(-1) for p in pieces], -1) if pieces else att[row][:, :, :0]
                out.append((words, w.astype(np.float64)))
    return out


def gradient_x_input(
    encoder: Any, query_vectors: np.ndarray, texts: Sequence[str], batch_size: int = 16
) -> list[np.ndarray]:
    """Gradient x input per word of ``s(q, d) = cos(q, d)``.

    For each passage, the gradient of the cosine between the (fixed) query vector and the
    passage vector with respect to the input word embeddings, times those embeddings, summed
    over embedding dimensions and over each word's wordpieces; the magnitude ``|sum|`` is
    returned (sign-agnostic saliency). The signed value is not used: the LayerNorm right after
    the embeddings makes the signed contributions sum to about zero, and on 12 validation pairs
    with all-MiniLM-L6-v2 ranking by the signed value removed words *less* harmful than random
    ones (comprehensiveness AOPC -0.002 vs 0.041) while ``|sum|`` gave 0.116.

    Args:
        encoder: a ``CERAEncoder`` whose model exposes ``get_input_embeddings`` and ``inputs_embeds``.
        query_vectors: ``(n, d)`` query vectors, one per text.
        texts: passages.
        batch_size: passages per backward pass.

    Returns:
        ``(n_words,)`` float64 non-negative scores per text (words as in ``passage_words``).
    """
    import torch
    from torch.nn import functional as F

    from cera_rag.model import pool

    model = encoder.model
    max_len = encoder.config.max_passage_length
    emb_layer = model.get_input_embeddings()
    out: list[np.ndarray] = []
    for s in range(0, len(texts), batch_size):
        chunk = list(texts[s : s + batch_size])
        batch = encoder.tokenize(chunk, max_len, offsets=True)
        mask = batch["attention_mask"]
        extra = {k: v for k, v in batch.items() if k == "token_type_ids"}
        q = torch.as_tensor(np.asarray(query_vectors[s : s + batch_size]), dtype=torch.float32, device=encoder.device)
        q = F.normalize(q, dim=-1)
        with torch.enable_grad():
            x = emb_layer(batch["input_ids"]).detach().requires_grad_(True)
            hidden = model(inputs_embeds=x, attention_mask=mask, **extra).last_hidden_state
            d = F.normalize(pool(hidden, mask, encoder.config.pooling), dim=-1)
            score = (d * q).sum()  # passages are independent: one backward gives every passage's gradient
            (grad,) = torch.autograd.grad(score, x)
        gxi = (grad * x.detach()).sum(-1).float().cpu().numpy()
        offs = batch["offset_mapping"].cpu().numpy()
        for row, text in enumerate(chunk):
            _, pieces = _word_groups(text, offs[row])
            out.append(np.array([abs(float(gxi[row, p].sum())) for p in pieces], dtype=np.float64))
    return out


def random_scores(n: int, seed: int | Sequence[int]) -> np.ndarray:
    """A random importance per word (a seeded permutation), the chance baseline."""
    rng = np.random.default_rng(seed)
    return rng.permutation(n).astype(np.float64)


def rationale_mask(words: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Which words are human rationale words: those sharing at least one character with a span.

    Args:
        words: ``[(start, end)]`` word character spans.
        spans: human rationale character spans, in the same coordinates.

    Returns:
        Boolean ``(n_words,)`` array.
    """
    mask = np.zeros(len(words), dtype=bool)
    for i, (ws, we) in enumerate(words):
        mask[i] = any(min(we, e) > max(ws, s) for s, e in spans)
    return mask


def ranking(scores: np.ndarray) -> np.ndarray:
    """Word indices from most to least important (ties keep text order)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
