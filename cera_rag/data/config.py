"""``DataConfig``: how a split is cut into passages and mined for negatives (its own module, imported by both)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cera_rag.data.passages import PassageMode


class DataConfig(BaseModel):
    """How a split is turned into retrieval examples (hashed into the cache key)."""

    model_config = ConfigDict(extra="forbid")

    passage_mode: PassageMode = "sentences"
    max_words: int = Field(64, ge=4, description="Word budget of a packed passage (sentences mode).")
    window_words: int = Field(50, ge=4, description="Window size (windows mode; the paper's 50).")
    overlap_words: int = Field(10, ge=0, description="Window overlap (windows mode; the paper's 10).")
    min_positive_overlap: int = Field(
        8, ge=1, description="Characters of evidence a passage must hold to count as a positive."
    )
    negatives_per_query: int = Field(5, ge=1, description="Negatives mined per strategy and prompt.")
    hybrid_pool: int = Field(10, ge=1, description="Hybrid: re-rank the BM25 top-m by subjectivity.")
    spacy_model: str = "en_core_web_sm"
    seed: int = 13
