"""A CERA encoder as a Chroma embedding function, so plain ``chromadb`` code works on a cera-rag collection.

Collections that cera-rag creates carry this function in their configuration, so a Chroma user
can write (after ``import cera_rag.chroma_embedding``, which registers the ``"cera"`` name)::

    collection = client.get_collection("cera-passages")       # the function is rebuilt from its config
    collection.query(query_texts=["Does aspirin lower pain?"], n_results=5)

Documents go through ``encode_passages`` and queries through ``embed_query`` ->
``encode_queries`` (Chroma 1.x calls ``embed_query`` for ``query_texts``), in the ``ip`` space:
a CERA score is a dot product (``1 - distance``), for normalised and Contriever-style
unnormalised vectors alike. ``get_config`` records the model and the pooling / normalisation it
was loaded with; ``build_from_config`` loads the same encoder again. Importing this module needs
``chromadb`` (the ``chroma`` extra).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from cera_rag.encoders import Encoder, canonical_encoder_name, load_encoder
from cera_rag.errors import ConfigError

#: The name Chroma records in a collection's configuration.
EMBEDDING_FUNCTION_NAME = "cera"

#: Encoders handed to ``CERAEmbeddingFunction.shared``, by identity: Chroma rebuilds a collection's
#: function from its config every time it reads the configuration, and this avoids loading the model again.
_SHARED: weakref.WeakValueDictionary[tuple[Any, ...], Any] = weakref.WeakValueDictionary()


def _identity(config: dict[str, Any]) -> tuple[Any, ...]:
    return (config.get("model"), config.get("pooling"), config.get("normalize"))


@functools.lru_cache(maxsize=2)
def _load(model: str, pooling: str | None, normalize: bool | None) -> Any:
    return load_encoder(model, pooling=pooling, normalize=normalize)


@register_embedding_function
class CERAEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma ``EmbeddingFunction`` over a ``CERAEncoder`` (passages for documents, queries for queries).

    Args:
        model: Checkpoint folder, alias or hub id to load (ignored when ``encoder`` is given).
        encoder: An already loaded encoder (shared with the caller; nothing is loaded twice).
        batch_size: Texts per forward pass.
        pooling: Override the checkpoint's pooling (``"mean"`` / ``"cls"``), as ``load_encoder`` does.
        normalize: Override the checkpoint's normalisation (``False``: Contriever-style dot product).
        device: Torch device for a model loaded here.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        encoder: Encoder | None = None,
        batch_size: int = 32,
        pooling: str | None = None,
        normalize: bool | None = None,
        device: str | None = None,
    ) -> None:
        if encoder is None:
            if not model:
                raise ConfigError("CERAEmbeddingFunction needs a model (checkpoint folder or hub id) or an encoder.")
            encoder = load_encoder(model, pooling=pooling, normalize=normalize, device=device)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}.")
        self.encoder = encoder
        self.batch_size = batch_size

    @classmethod
    def shared(cls, encoder: Encoder, batch_size: int = 32) -> CERAEmbeddingFunction:
        """A function over ``encoder`` that Chroma's ``build_from_config`` hands back instead of loading a copy."""
        ef = cls(encoder=encoder, batch_size=batch_size)
        _SHARED[_identity(ef.get_config())] = encoder
        return ef

    # ------------------------------------------------------------------ embedding
    def __call__(self, input: Documents) -> Embeddings:
        vectors = self.encoder.encode_passages(list(input), batch_size=self.batch_size)
        return _rows(vectors)

    def embed_query(self, input: Documents) -> Embeddings:
        return _rows(self.encoder.encode_queries(list(input), batch_size=self.batch_size))

    # ------------------------------------------------------------------ Chroma's registry
    @staticmethod
    def name() -> str:
        return EMBEDDING_FUNCTION_NAME

    def default_space(self) -> Space:
        return "ip"

    def supported_spaces(self) -> list[Space]:
        # A CERA score is a dot product; cosine or l2 would rank unnormalised vectors differently.
        return ["ip"]

    def get_config(self) -> dict[str, Any]:
        cfg = self.encoder.config
        return {
            "model": canonical_encoder_name(self.encoder.name),
            "pooling": cfg.pooling,
            "normalize": bool(cfg.normalize),
            "batch_size": self.batch_size,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> CERAEmbeddingFunction:
        CERAEmbeddingFunction.validate_config(config)
        encoder = _SHARED.get(_identity(config))
        if encoder is None:  # not in this process yet: load it once (kept for the next configuration read)
            encoder = _load(config["model"], config.get("pooling"), config.get("normalize"))
        return CERAEmbeddingFunction(encoder=encoder, batch_size=int(config.get("batch_size", 32)))

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not config.get("model"):
            raise ValueError("A CERA embedding function config needs 'model'.")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        for key in ("model", "pooling", "normalize"):
            if key in new_config and new_config[key] != old_config.get(key):
                raise ValueError(
                    f"A collection's CERA {key} cannot change ({old_config.get(key)!r} -> {new_config[key]!r}): "
                    "its vectors come from the old encoder; re-index into a new collection."
                )


def _rows(vectors: np.ndarray | Sequence[Any]) -> Embeddings:
    return [np.asarray(v, dtype=np.float32) for v in np.asarray(vectors, dtype=np.float32)]
