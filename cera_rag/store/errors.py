"""The store's errors: a collection built by another encoder, or Chroma missing/unreachable."""

from __future__ import annotations

from cera_rag.errors import ConfigError


class CollectionMismatchError(ConfigError):
    """A collection was built with another encoder (name, dimension, pooling or normalisation)."""


class StoreError(ConfigError):
    """Chroma is missing, unreachable, or a collection is unusable."""
