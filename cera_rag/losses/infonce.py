"""InfoNCE ranking loss with hard and in-batch negatives (DPR-style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cera_rag.losses._inputs import full_mask, prepare


class InfoNCELoss(nn.Module):
    r"""InfoNCE over (query, positive, hard negatives) embeddings, on cosine similarities.

    Karpukhin et al., 2020, *Dense Passage Retrieval*; van den Oord et al., 2018, *Representation
    Learning with Contrastive Predictive Coding*; like sentence-transformers'
    ``MultipleNegativesRankingLoss`` with hard negatives: the mean over queries of

    .. math::

        -\log \frac{e^{s(q_i, p_i) / \tau}}{e^{s(q_i, p_i) / \tau} + \sum_{n \in N_i} e^{s(q_i, n) / \tau}},

    where :math:`s` is the cosine similarity, :math:`N_i` holds the valid hard negatives of query
    :math:`i` and, with ``in_batch_negatives``, the other queries' positives :math:`p_j, j \ne i`
    and the valid hard negatives :math:`n_{jk}` of every query of the batch. Padded negatives
    (``n_mask`` false) are ignored exactly, even NaN padding.

    Args:
        temperature: Softmax temperature :math:`\tau`.
        in_batch_negatives: Also use the other queries' positives and hard negatives as negatives.

    Example:
        >>> loss_fn = InfoNCELoss(temperature=0.05)
        >>> q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 2, 8)
        >>> loss_fn(q, p, n).shape
        torch.Size([])
    """

    def __init__(self, temperature: float = 0.05, in_batch_negatives: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.in_batch_negatives = bool(in_batch_negatives)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, in_batch_negatives={self.in_batch_negatives}"

    def forward(self, q: Tensor, p: Tensor, n: Tensor | None = None, n_mask: Tensor | None = None) -> Tensor:
        """Compute the loss (arguments as ``TripletLoss.forward``).

        Args:
            q: Query embeddings, shape ``(B, d)``.
            p: Positive passage embeddings, shape ``(B, d)``.
            n: Hard negative embeddings, shape ``(B, K, d)``, or ``None``.
            n_mask: Shape ``(B, K)``, true where ``n[i, k]`` is a real negative; ``None``: all are.

        Returns:
            The scalar loss.

        Raises:
            ValueError: If a shape is inconsistent.
        """
        q, p, n, n_mask = prepare(q, p, n, n_mask)
        batch = q.shape[0]
        logits: list[Tensor] = [(q * p).sum(dim=-1, keepdim=True)]  # (B, 1): the target, index 0
        valid: list[Tensor] = [torch.ones(batch, 1, dtype=torch.bool, device=q.device)]
        if self.in_batch_negatives:
            logits.append(q @ p.T)  # (B, B); the diagonal repeats the positive, so it is masked out
            valid.append(~torch.eye(batch, dtype=torch.bool, device=q.device))
        if n is not None:
            mask = full_mask(n, n_mask)
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
