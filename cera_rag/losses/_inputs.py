"""Shared input handling of the ranking losses: shape checks, masks, normalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def prepare(
    q: Tensor, p: Tensor, n: Tensor | None, n_mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Checked, unit-normalised ``(q, p, n, n_mask)``; padded negatives zeroed before anything else.

    Zeroing first means a padded value (even NaN) never reaches a score or a gradient.
    """
    q, p, n, n_mask = check_shapes(q, p, n, n_mask)
    q = F.normalize(q, dim=-1)
    p = F.normalize(p, dim=-1)
    if n is not None and n_mask is not None:
        n = n.masked_fill(~n_mask.unsqueeze(-1), 0.0)
    if n is not None:
        n = F.normalize(n, dim=-1)
    return q, p, n, n_mask


def check_shapes(
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


def full_mask(n: Tensor, n_mask: Tensor | None) -> Tensor:
    if n_mask is None:
        return torch.ones(n.shape[:2], dtype=torch.bool, device=n.device)
    return n_mask
