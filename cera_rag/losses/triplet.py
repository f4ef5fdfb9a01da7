"""Ranking loss of CERA: the paper's cosine triplet hinge, or InfoNCE with in-batch negatives."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossKind = Literal["triplet", "infonce"]


class TripletLoss(nn.Module):
    r"""Contrastive ranking loss over (query, positive, hard negatives) embeddings.

    Embeddings need not be normalised: every score is the cosine similarity
    :math:`s(x, y) = \frac{x \cdot y}{\lVert x \rVert \lVert y \rVert}`.

    ``loss="triplet"`` (Vargas et al., *CERA: Contrastive Evidence Rationale Attention*,
    arXiv 2606.01482): the mean over every valid (query, negative) pair :math:`(i, n)` of the batch of

    .. math::

        \max\bigl(0,\ m - s(q_i, p_i) + s(q_i, n)\bigr),

    where the negatives of query :math:`i` are its hard negatives :math:`n_{ik}` with
    ``n_mask[i, k]`` true and, with ``in_batch_negatives``, the other queries' positives
    :math:`p_j, j \ne i`. With no valid pair at all the loss is 0 (still attached to the graph).

    ``loss="infonce"`` (Karpukhin et al., 2020, *Dense Passage Retrieval*; van den Oord et al., 2018,
    *Representation Learning with Contrastive Predictive Coding*; like sentence-transformers'
    ``MultipleNegativesRankingLoss`` with hard negatives): the mean over queries of

    .. math::

        -\log \frac{e^{s(q_i, p_i) / \tau}}{e^{s(q_i, p_i) / \tau} + \sum_{n \in N_i} e^{s(q_i, n) / \tau}},

    where :math:`N_i` holds the valid hard negatives of query :math:`i` and, with
    ``in_batch_negatives``, the other queries' positives :math:`p_j, j \ne i` and the valid hard
    negatives :math:`n_{jk}` of every query of the batch.

    Padded negatives (``n_mask`` false) are ignored exactly: they are zeroed before any score is
    computed, so even NaN padding neither changes the loss nor reaches the gradients.

    Args:
        margin: Hinge margin :math:`m` of ``"triplet"`` (the paper uses 0.2); unused by ``"infonce"``.
        loss: ``"triplet"`` or ``"infonce"``.
        temperature: Softmax temperature :math:`\tau` of ``"infonce"``; unused by ``"triplet"``.
        in_batch_negatives: Also use the other queries' positives (and, for ``"infonce"``, their hard
            negatives) as negatives.

    Example:
        >>> loss_fn = TripletLoss(loss="infonce")
        >>> q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 2, 8)
        >>> loss_fn(q, p, n).shape
        torch.Size([])
    """

    def __init__(
        self,
        margin: float = 0.2,
        loss: LossKind = "triplet",
        temperature: float = 0.05,
        in_batch_negatives: bool = True,
    ) -> None:
        super().__init__()
        if loss not in ("triplet", "infonce"):
            raise ValueError(f"loss must be 'triplet' or 'infonce', got {loss!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin!r}")
        self.margin = float(margin)
        self.loss = loss
        self.temperature = float(temperature)
        self.in_batch_negatives = bool(in_batch_negatives)

    def extra_repr(self) -> str:
        return (
            f"loss={self.loss!r}, margin={self.margin}, temperature={self.temperature}, "
            f"in_batch_negatives={self.in_batch_negatives}"
        )

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
        q, p, n, n_mask = _check_shapes(q, p, n, n_mask)
        q = F.normalize(q, dim=-1)
        p = F.normalize(p, dim=-1)
        if n is not None and n_mask is not None:
            # Zero padded negatives first so their values (even NaN) never reach the loss or its gradients.
            n = n.masked_fill(~n_mask.unsqueeze(-1), 0.0)
        if n is not None:
            n = F.normalize(n, dim=-1)
        if self.loss == "triplet":
            return self._triplet(q, p, n, n_mask)
        return self._infonce(q, p, n, n_mask)

    def _triplet(self, q: Tensor, p: Tensor, n: Tensor | None, n_mask: Tensor | None) -> Tensor:
        batch = q.shape[0]
        scores: list[Tensor] = []
        valid: list[Tensor] = []
        if self.in_batch_negatives:
            scores.append(q @ p.T)  # (B, B); the diagonal holds the positives, never negatives
            valid.append(~torch.eye(batch, dtype=torch.bool, device=q.device))
        if n is not None:
            scores.append(torch.einsum("bd,bkd->bk", q, n))  # (B, K)
            valid.append(_full_mask(n, n_mask))
        if not scores:
            return (q.sum() + p.sum()) * 0.0  # no negative at all: 0, attached to the graph
        score = torch.cat(scores, dim=1)
        is_valid = torch.cat(valid, dim=1)
        positive = (q * p).sum(dim=-1, keepdim=True)  # (B, 1)
        hinge = torch.clamp(self.margin - positive + score, min=0.0)
        # No valid pair: 0 / 1, still attached to the graph (and no host sync on the count).
        return hinge.masked_fill(~is_valid, 0.0).sum() / is_valid.sum().clamp_min(1)

    def _infonce(self, q: Tensor, p: Tensor, n: Tensor | None, n_mask: Tensor | None) -> Tensor:
        batch = q.shape[0]
        logits: list[Tensor] = [(q * p).sum(dim=-1, keepdim=True)]  # (B, 1): the target, index 0
        valid: list[Tensor] = [torch.ones(batch, 1, dtype=torch.bool, device=q.device)]
        if self.in_batch_negatives:
            logits.append(q @ p.T)  # (B, B); the diagonal repeats the positive, so it is masked out
            valid.append(~torch.eye(batch, dtype=torch.bool, device=q.device))
        if n is not None:
            mask = _full_mask(n, n_mask)
            if self.in_batch_negatives:
                # Every query's hard negatives, its own included: (B, B*K).
                logits.append(q @ n.reshape(-1, n.shape[-1]).T)
                valid.append(mask.reshape(1, -1).expand(batch, -1))
            else:
                logits.append(torch.einsum("bd,bkd->bk", q, n))  # (B, K)
                valid.append(mask)
        logit = torch.cat(logits, dim=1) / self.temperature
        logit = logit.masked_fill(~torch.cat(valid, dim=1), float("-inf"))
        target = torch.zeros(batch, dtype=torch.long, device=q.device)
        return F.cross_entropy(logit, target)


def _check_shapes(
    q: Tensor, p: Tensor, n: Tensor | None, n_mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    if q.dim() != 2:
        raise ValueError(f"q must have shape (B, d), got {tuple(q.shape)}")
    if q.shape[0] == 0:
        raise ValueError("q is an empty batch (B = 0)")
    if p.shape != q.shape:
        raise ValueError(f"p must have the shape of q {tuple(q.shape)}, got {tuple(p.shape)}")
    if n is not None and (n.dim() != 3 or n.shape[0] != q.shape[0] or n.shape[2] != q.shape[1]):
        raise ValueError(f"n must have shape (B, K, d) = ({q.shape[0]}, K, {q.shape[1]}), got {tuple(n.shape)}")
    if n_mask is not None:
        if n is None:
            raise ValueError("n_mask was given without n")
        if tuple(n_mask.shape) != tuple(n.shape[:2]):
            raise ValueError(f"n_mask must have shape (B, K) = {tuple(n.shape[:2])}, got {tuple(n_mask.shape)}")
        n_mask = n_mask.to(device=n.device, dtype=torch.bool)
    return q, p, n, n_mask


def _full_mask(n: Tensor, n_mask: Tensor | None) -> Tensor:
    if n_mask is None:
        return torch.ones(n.shape[:2], dtype=torch.bool, device=n.device)
    return n_mask
