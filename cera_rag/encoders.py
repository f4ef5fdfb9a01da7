"""Loading an encoder, and the name a store records for it: one place for both (the model layer).

``load_encoder`` is what every entry point (stores, CLI, integrations, evaluations) calls;
``contriever=True`` is the Contriever-style configuration (mean pooling, unnormalised dot product).
``canonical_encoder_name`` is the identity a collection records.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cera_rag.errors import ConfigError

#: Hub id of the Contriever checkpoint the comparison uses where the hub is reachable.
CONTRIEVER_MODEL = "facebook/contriever"


def canonical_encoder_name(name: str | os.PathLike[str]) -> str:
    """The name recorded for an encoder: a local model folder becomes its absolute path, anything else is kept.

    ``checkpoints/cera-best`` and ``/repo/checkpoints/cera-best`` then name the same encoder, so a
    collection built from one working directory can be queried from another.
    """
    text = str(name)
    try:
        path = Path(text).expanduser()
        if path.is_dir():
            return str(path.resolve())
    except (OSError, ValueError):  # a hub id that is no valid path on this system
        pass
    return text


def default_contriever_model() -> str:
    """``facebook/contriever`` when the hub is usable (online, or the model is cached), else MiniLM.

    On an offline machine the off-the-shelf ``all-MiniLM-L6-v2`` (shipped as a Python package)
    stands in, used the way Contriever is: mean pooling, unnormalised dot product.
    """
    from cera_rag.paths import DEFAULT_BASE_MODEL

    offline = any(
        os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    if not offline:
        return CONTRIEVER_MODEL
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(CONTRIEVER_MODEL, "config.json")
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        cached = None
    return CONTRIEVER_MODEL if isinstance(cached, str) else DEFAULT_BASE_MODEL


def load_encoder(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    contriever: bool = False,
    device: str | None = None,
    pooling: str | None = None,
    normalize: bool | None = None,
    backend: str = "torch",
) -> Any:
    """Load a ``CERAEncoder``; ``contriever=True`` makes it Contriever-style (mean pooling, unnormalised).

    Args:
        name_or_path: Checkpoint folder or hub id. Required unless ``contriever`` (then the default
            is ``default_contriever_model()``).
        contriever: Use mean pooling and unnormalised vectors, as Contriever is used.
        device: Torch device; default picks one.
        pooling: Override the checkpoint's pooling (``"mean"`` or ``"cls"``).
        normalize: Override the checkpoint's normalisation.
        backend: ``torch``, or ``onnx`` / ``onnx-int8`` for ONNX Runtime on the CPU (the ``fast`` extra).
    """
    from cera_rag.model import CERAEncoder
    from cera_rag.paths import resolve_model_path

    if contriever:
        pooling = pooling or "mean"
        normalize = False if normalize is None else normalize
        if name_or_path is None:
            name_or_path = default_contriever_model()
    if name_or_path is None:
        raise ConfigError("Give a model: a checkpoint folder (e.g. checkpoints/cera-best) or a hub id.")
    kwargs: dict[str, Any] = {"device": device, "backend": backend}
    if pooling is not None:
        kwargs["pooling"] = pooling
    if normalize is not None:
        kwargs["normalize"] = normalize
    return CERAEncoder.from_pretrained(resolve_model_path(name_or_path), **kwargs)
