"""Training losses of CERA, on embeddings and attention tensors (independent of the encoder).

* :class:`TripletLoss`: the CERA paper's cosine triplet hinge.
* :class:`InfoNCELoss`: InfoNCE (DPR-style) with hard and in-batch negatives.
* :class:`AttentionAlignmentLoss`: KL divergence between human rationale weights and the
  [CLS]-to-token attention of a layer (the CERA paper, plus our full-support variant).

``ranking_loss(kind, ...)`` builds the one a ``TrainConfig.loss`` names.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from cera_rag.losses.alignment import AttentionAlignmentLoss
from cera_rag.losses.infonce import InfoNCELoss
from cera_rag.losses.triplet import TripletLoss

LossKind = Literal["triplet", "infonce"]


def ranking_loss(
    kind: LossKind, margin: float = 0.2, temperature: float = 0.05, in_batch_negatives: bool = True
) -> nn.Module:
    """``TripletLoss(margin)`` for ``"triplet"``, ``InfoNCELoss(temperature)`` for ``"infonce"``.

    Raises:
        ValueError: For another ``kind``.
    """
    if kind == "triplet":
        return TripletLoss(margin=margin, in_batch_negatives=in_batch_negatives)
    if kind == "infonce":
        return InfoNCELoss(temperature=temperature, in_batch_negatives=in_batch_negatives)
    raise ValueError(f"loss must be 'triplet' or 'infonce', got {kind!r}")


__all__ = ["AttentionAlignmentLoss", "InfoNCELoss", "LossKind", "TripletLoss", "ranking_loss"]
