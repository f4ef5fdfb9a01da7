"""Loading an encoder, and the name a store records for it: one place for both (the model layer).

``load_encoder`` is what every entry point (stores, CLI, integrations, evaluations) calls. Named
configurations (``ENCODER_CONFIGS``) ride on the model name: ``MODEL@contriever`` is the
Contriever-style configuration (mean pooling, unnormalised dot product), ``contriever`` alone is
``default_contriever_model()@contriever``, ``MODEL@cls`` / ``MODEL@mean`` set the pooling.
``canonical_encoder_name`` is the identity a collection records, ``weights_digest`` the content hash
that lets a moved model folder still match it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cera_rag.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cera_rag.model import EncoderConfig


class Encoder(Protocol):
    """The one encoder type the store and the adapters take (``cera_rag.model.CERAEncoder`` provides it).

    ``encode_passages(..., return_rationales=True)`` returns ``(vectors, spans)``: the embeddings
    and each passage's attention spans from the same forward pass.
    """

    name: str
    config: EncoderConfig

    @property
    def dim(self) -> int: ...

    def encode_queries(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray: ...

    def encode_passages(
        self, texts: Sequence[str], batch_size: int = 32, return_rationales: bool = False, top_fraction: float = 0.2
    ) -> Any: ...

    def rationale_spans_batch(self, query: str, passages: Sequence[str], top_fraction: float = 0.2) -> Any: ...


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


def weights_digest(source: str | os.PathLike[str] | None) -> str | None:
    """A hash of a local checkpoint's weight files' contents, for records that must name the exact model.

    It tells a retrained checkpoint saved at the same path from the one a result or an index was made
    with, and recognises the same weights after their folder moved (a new virtual environment, another
    checkout). ``None`` for a hub id or an alias (nothing local to read).
    """
    if source is None:
        return None
    path = Path(source).expanduser()
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(path.rglob("*.safetensors")):
        h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


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


#: Named encoder configurations: ``load_encoder("MODEL@NAME")`` loads MODEL with these settings.
ENCODER_CONFIGS: dict[str, dict[str, Any]] = {
    # How Contriever is used: mean pooling, unnormalised vectors, dot product.
    "contriever": {"pooling": "mean", "normalize": False},
    "mean": {"pooling": "mean"},
    "cls": {"pooling": "cls"},
}
#: A model spec on its own: ``contriever`` = ``default_contriever_model()@contriever``.
CONTRIEVER_SPEC = "contriever"


def parse_encoder_spec(spec: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """``(model, settings)`` for ``MODEL``, ``MODEL@CONFIG`` (a name of ``ENCODER_CONFIGS``) or ``contriever``.

    An existing folder is always a model, even when its name holds ``@``.

    Raises:
        ConfigError: For an unknown ``@CONFIG``.
    """
    text = str(spec)
    if Path(text).expanduser().exists():
        return text, {}
    if text == CONTRIEVER_SPEC:
        return default_contriever_model(), dict(ENCODER_CONFIGS["contriever"])
    if "@" in text:
        name, _, config = text.rpartition("@")
        if config not in ENCODER_CONFIGS:
            raise ConfigError(
                f"Unknown encoder configuration @{config} in {text!r}; use one of "
                + ", ".join(f"@{c}" for c in ENCODER_CONFIGS)
                + "."
            )
        if not name:
            if config != CONTRIEVER_SPEC:
                raise ConfigError(f"{text!r} names no model; write MODEL@{config} (a folder or hub id before the @).")
            name = default_contriever_model()
        return name, dict(ENCODER_CONFIGS[config])
    return text, {}


def is_contriever_style(encoder: Any) -> bool:
    """Whether an encoder gives unnormalised vectors (the ``contriever`` configuration)."""
    return getattr(getattr(encoder, "config", None), "normalize", True) is False


def load_encoder(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    contriever: bool = False,
    device: str | None = None,
    pooling: str | None = None,
    normalize: bool | None = None,
    backend: str = "torch",
) -> Any:
    """Load a ``CERAEncoder`` from a folder, hub id or spec (``MODEL@contriever``, ``MODEL@cls``, ``contriever``).

    Args:
        name_or_path: Checkpoint folder, hub id or alias, optionally ``@CONFIG`` (``ENCODER_CONFIGS``:
            ``@contriever`` = mean pooling + unnormalised dot product); ``contriever`` alone is
            ``default_contriever_model()@contriever``. Required unless ``contriever``.
        contriever: The ``contriever`` configuration (what ``@contriever`` does).
        device: Torch device; default picks one.
        pooling: Override the checkpoint's pooling (``"mean"`` or ``"cls"``).
        normalize: Override the checkpoint's normalisation.
        backend: ``torch``, or ``onnx`` / ``onnx-int8`` for ONNX Runtime on the CPU (the ``fast`` extra).
    """
    from cera_rag.model import CERAEncoder
    from cera_rag.paths import resolve_model_path

    settings: dict[str, Any] = {}
    if name_or_path is not None:
        name_or_path, settings = parse_encoder_spec(name_or_path)
    if contriever:
        settings = {**settings, **ENCODER_CONFIGS["contriever"]}
        if name_or_path is None:
            name_or_path = default_contriever_model()
    pooling = pooling if pooling is not None else settings.get("pooling")
    normalize = normalize if normalize is not None else settings.get("normalize")
    if name_or_path is None:
        raise ConfigError("Give a model: a checkpoint folder (e.g. checkpoints/cera-best) or a hub id.")
    kwargs: dict[str, Any] = {"device": device, "backend": backend}
    if pooling is not None:
        kwargs["pooling"] = pooling
    if normalize is not None:
        kwargs["normalize"] = normalize
    return CERAEncoder.from_pretrained(resolve_model_path(name_or_path), **kwargs)
