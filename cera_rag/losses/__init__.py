"""Training losses of CERA, on embeddings and attention tensors (independent of the encoder).

* :class:`TripletLoss`: cosine triplet hinge (the CERA paper) or InfoNCE (DPR-style) ranking loss.
* :class:`AttentionAlignmentLoss`: KL divergence between human rationale weights and the
  [CLS]-to-token attention of a layer (the CERA paper, plus our full-support variant).
"""

from __future__ import annotations

from cera_rag.losses.alignment import AttentionAlignmentLoss
from cera_rag.losses.triplet import TripletLoss

__all__ = ["AttentionAlignmentLoss", "TripletLoss"]
