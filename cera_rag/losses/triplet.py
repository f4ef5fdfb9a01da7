"""The CERA paper's ranking loss: a cosine triplet hinge over hard (and in-batch) negatives."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cera_rag.losses._inputs import full_mask, prepare


class TripletLoss(nn.Module):
    r"""Cosine triplet hinge over (query, positive, hard negatives) embeddings.

    Embeddings need not be normalised: every score is the cosine similarity
    :math:`s(x, y) = \frac{x \cdot y}{\lVert x \rVert \lVert y \rVert}`.

    Vargas et al., *CERA: Contrastive Evidence Rationale Attention*, arXiv 2606.01482: the mean
    over every valid (query, negative) pair :math:`(i, n)` of the batch of

    .. math::

        \max\bigl(0,\ m - s(q_i, p_i) + s(q_i, n)\bigr),

    where the negatives of query :math:`i` are its hard negatives :math:`n_{ik}` with
    ``n_mask[i, k]`` true and, with ``in_batch_negatives``, the other queries' positives
    :math:`p_j, j \ne i`. With no valid pair at all the loss is 0 (still attached to the graph).
    Padded negatives (``n_mask`` false) are ignored exactly, even NaN padding.

    Args:
        margin: Hinge margin :math:`m` (the paper uses 0.2).
        in_batch_negatives: Also use the other queries' positives as negatives.

    Example:
        >>> loss_fn = TripletLoss(margin=0.2)
        >>> q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 2, 8)
        >>> loss_fn(q, p, n).shape
        torch.Size([])
    """

    def __init__(self, margin: float = 0.2, in_batch_negatives: bool = True) -> None:
        super().__init__()
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin!r}")
        self.margin = float(margin)
        self.in_batch_negatives = bool(in_batch_negatives)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, in_batch_negatives={self.in_batch_negatives}"

    def forward(self, q: Tensor, p: Tensor, n: Tensor | None = None, n_mask: Tensor | None = None) -> Tensor:
        """Compute the loss.

        Args:
            q: Query embeddings, shape ``(B, d)``.
            p: Positive passage embeddings, shape ``(B, d)``; ``p[i]`` is the positive of ``q[i]``.
            n: Hard negative embeddings, shape ``(B, K, d)`` (``K`` may be 0), or ``None``.
            n_mask: Shape ``(B, K)``, true where ``n[i, k]`` is a real negative (bool, or 0/1 integers);
                ``None`` means every negative is real. Requires ``n``.

        Returns:
            The scalar loss.

        Raises:
            ValueError: If a shape is inconsistent.
        """
        q, p, n, n_mask = prepare(q, p, n, n_mask)
        batch = q.shape[0]
        scores: list[Tensor] = []
        valid: list[Tensor] = []
        if self.in_batch_negatives:
            scores.append(q @ p.T)  # (B, B); the diagonal holds the positives, never negatives
            valid.append(~torch.eye(batch, dtype=torch.bool, device=q.device))
        if n is not None:
            scores.append(torch.einsum("bd,bkd->bk", q, n))  # (B, K)
            valid.append(full_mask(n, n_mask))
        if not scores:
            return (q.sum() + p.sum()) * 0.0  # no negative at all: 0, attached to the graph
        score = torch.cat(scores, dim=1)
        is_valid = torch.cat(valid, dim=1)
        positive = (q * p).sum(dim=-1, keepdim=True)  # (B, 1)
        hinge = torch.clamp(self.margin - positive + score, min=0.0)
        # No valid pair: 0 / 1, still attached to the graph (and no host sync on the count).
        return hinge.masked_fill(~is_valid, 0.0).sum() / is_valid.sum().clamp_min(1)
