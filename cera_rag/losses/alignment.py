"""Attention alignment loss of CERA: KL divergence from human rationale weights to [CLS] attention."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

Support = Literal["rationale", "full"]


class AttentionAlignmentLoss(nn.Module):
    r"""KL divergence between a rationale distribution and the [CLS]-to-token attention of a passage.

    From Vargas et al., *CERA: Contrastive Evidence Rationale Attention*, arXiv 2606.01482: the
    attention that the [CLS] token of a passage pays to its tokens (one layer, averaged over the
    chosen heads) is pulled towards the human rationale. For each example, with non-negative
    rationale weights :math:`w_t` (e.g. from the POS tags of the rationale tokens) over the valid
    tokens :math:`V` (``mask``, and ``content_mask`` when given),

    .. math::

        r_t = \frac{w_t}{\sum_{s \in V} w_s}, \qquad
        a'_t = \frac{a_t}{\sum_{s \in S} a_s} \ (t \in S), \qquad
        \mathrm{KL}(r \,\|\, a') = \sum_{t:\, r_t > 0} r_t \bigl(\log r_t - \log(a'_t + \epsilon)\bigr),

    and the loss is the mean of :math:`\mathrm{KL}(r \| a')` over the examples whose rationale
    mass :math:`\sum_t w_t` is positive; examples without rationale contribute nothing, and a batch
    without any gives 0 (still attached to the graph).

    The support :math:`S` over which the attention is renormalised:

    * ``support="rationale"`` (the paper): :math:`S = \{t : r_t > 0\}`, so attention paid outside the
      rationale is never penalised; only its distribution over the rationale tokens is.
    * ``support="full"`` (our extension, not in the paper): :math:`S = V`, all valid tokens, so mass
      on non-rationale tokens is penalised as well (:math:`r_t = 0` there, hence
      :math:`\sum_{t: r_t>0} a'_t < 1`). Pass ``content_mask`` to leave [CLS]/[SEP] out of :math:`V`.

    Rationale weights outside :math:`V` are ignored in both cases.

    Args:
        support: ``"rationale"`` (the paper) or ``"full"`` (ours); see above.
        eps: Added inside the logarithm (and floor of the normaliser) for numerical stability.

    Example:
        >>> loss_fn = AttentionAlignmentLoss(support="rationale")
        >>> attention = torch.tensor([[0.5, 0.3, 0.2]])
        >>> target = torch.tensor([[2.0, 0.0, 1.0]])
        >>> round(loss_fn(attention, target, torch.ones(1, 3)).item(), 4)
        0.0054
    """

    def __init__(self, support: Support = "rationale", eps: float = 1e-8) -> None:
        super().__init__()
        if support not in ("rationale", "full"):
            raise ValueError(f"support must be 'rationale' or 'full', got {support!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.support = support
        self.eps = float(eps)

    def extra_repr(self) -> str:
        return f"support={self.support!r}, eps={self.eps}"

    def forward(self, attention: Tensor, target: Tensor, mask: Tensor, content_mask: Tensor | None = None) -> Tensor:
        """Compute the loss.

        Args:
            attention: [CLS]-to-token attention, shape ``(B, T)``, non-negative (one layer's row,
                averaged over the chosen heads; it need not sum to 1, it is renormalised).
            target: Non-negative, unnormalised rationale weights, shape ``(B, T)``.
            mask: Attention mask, shape ``(B, T)`` (bool or 0/1 integers): true for real tokens.
            content_mask: Optional ``(B, T)`` mask of the tokens that count for ``support="full"`` and
                may carry rationale (e.g. without [CLS] and [SEP]); ``None`` means ``mask``.

        Returns:
            The scalar loss (float32, or the dtype of ``attention`` if wider).

        Raises:
            ValueError: If a shape is inconsistent or ``target`` has a negative weight.
        """
        if attention.dim() != 2:
            raise ValueError(f"attention must have shape (B, T), got {tuple(attention.shape)}")
        shape = tuple(attention.shape)
        for name, tensor in (("target", target), ("mask", mask), ("content_mask", content_mask)):
            if tensor is not None and tuple(tensor.shape) != shape:
                raise ValueError(f"{name} must have the shape of attention {shape}, got {tuple(tensor.shape)}")
        if bool((target < 0).any()):
            raise ValueError("target must be non-negative (rationale weights)")

        dtype = torch.promote_types(attention.dtype, torch.float32)
        valid = mask.to(device=attention.device, dtype=torch.bool)
        if content_mask is not None:
            valid = valid & content_mask.to(device=attention.device, dtype=torch.bool)
        zero = torch.zeros((), dtype=dtype, device=attention.device)

        weights = torch.where(valid, target.to(device=attention.device, dtype=dtype), zero)
        mass = weights.sum(dim=-1, keepdim=True)
        has_rationale = mass.squeeze(-1) > 0
        r = weights / mass.clamp_min(self.eps)

        support = r > 0 if self.support == "rationale" else valid
        a = torch.where(support, attention.to(dtype), zero)
        a = a / a.sum(dim=-1, keepdim=True).clamp_min(self.eps)

        kl = (torch.xlogy(r, r) - r * torch.log(a + self.eps)).sum(dim=-1)
        kl = torch.where(has_rationale, kl, zero)
        return kl.sum() / has_rationale.sum().clamp_min(1)
