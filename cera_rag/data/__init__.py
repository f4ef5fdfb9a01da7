"""Evidence Inference data pipeline: reader, passages, queries, positives, negatives, rationale targets."""

from __future__ import annotations

from cera_rag.data.dataset import DataConfig, ProcessedSplit, PromptExample, load_processed
from cera_rag.data.passages import Passage, split_passages
from cera_rag.data.reader import Evidence, Prompt, SplitData, load_split

__all__ = [
    "DataConfig",
    "Evidence",
    "Passage",
    "ProcessedSplit",
    "Prompt",
    "PromptExample",
    "SplitData",
    "load_processed",
    "load_split",
    "split_passages",
]
