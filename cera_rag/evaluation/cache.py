"""Passage-vector cache: encoded passages per (model fingerprint, split, data config), so runs resume.

Layout::

    cache_dir()/eval/<model fingerprint>/<split>-<data hash>/<article id>-<passages hash>.npy

One ``.npy`` per article, written atomically (temporary file then ``os.replace``), so a run that
is interrupted keeps every article it finished and the next run encodes only the rest. The model
fingerprint covers the weights' files (name, size, modification time), the encoder settings
(pooling, normalisation, truncation) and the resolved source; the article file name covers the
passages' texts, so a changed passage never reads a stale vector.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cera_rag.atomic import write_file, write_json
from cera_rag.data.dataset import ProcessedSplit
from cera_rag.paths import cache_dir

#: Bumped when the cached vectors' meaning changes.
CACHE_VERSION = 1
_MODEL_FILES = (
    "config.json",
    "cera_config.json",
    "modules.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "1_Pooling/config.json",
)


def _digest(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def model_fingerprint(encoder: Any, source: str | os.PathLike[str] | None = None) -> str:
    """A short hash that changes whenever the encoder's vectors could change.

    Args:
        encoder: a ``CERAEncoder`` (uses its ``config`` and ``name``).
        source: what the encoder was loaded from (path, alias or hub id); a local folder adds its files' stats.

    Returns:
        16 hex characters.
    """
    from cera_rag.paths import resolve_model_path

    cfg = encoder.config.model_dump_json() if hasattr(encoder, "config") else "{}"
    source_name = str(getattr(encoder, "name", type(encoder).__name__))
    parts: list[str] = [f"v{CACHE_VERSION}", cfg]
    for candidate in (None if source is None else str(source), source_name):
        if candidate is None:
            continue
        path = Path(resolve_model_path(candidate)).expanduser()
        if path.is_dir():
            path = path.resolve()
            parts.append(str(path))
            files = sorted(path.glob("*.safetensors")) + [path / f for f in _MODEL_FILES]
            for f in files:
                if f.is_file():
                    st = f.stat()
                    parts.append(f"{f.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}")
            break
    else:
        parts.append(str(source or source_name))
    return _digest("|".join(parts))


def data_fingerprint(split: ProcessedSplit) -> str:
    """Hash of the split name and its ``DataConfig`` (passage cutting, etc.)."""
    return _digest(f"{split.name}|{split.config.model_dump_json()}", 12)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    def save(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.save(fh, array, allow_pickle=False)

    write_file(path, save)  # readers never see a half-written file


class PassageVectorCache:
    """Per-article passage vectors of one encoder on one processed split, cached on disk.

    Args:
        encoder: anything with ``encode_passages(texts, batch_size=...)`` (a ``CERAEncoder``).
        split: the processed split whose passages are encoded.
        root: cache root (default ``cache_dir()/eval``).
        enabled: when ``False`` nothing is read from or written to disk.
        fingerprint: the model fingerprint (default ``model_fingerprint(encoder, source)``).
        source: what the encoder was loaded from (for the fingerprint and the manifest).
    """

    def __init__(
        self,
        encoder: Any,
        split: ProcessedSplit,
        root: str | os.PathLike[str] | None = None,
        enabled: bool = True,
        fingerprint: str | None = None,
        source: str | None = None,
    ) -> None:
        self.encoder = encoder
        self.split = split
        self.enabled = enabled
        self.fingerprint = fingerprint or model_fingerprint(encoder, source)
        self.source = source or str(getattr(encoder, "name", ""))
        base = Path(root) if root is not None else cache_dir() / "eval"
        self.directory = base / self.fingerprint / f"{split.name}-{data_fingerprint(split)}"
        self.encoded_now = 0  # passages encoded by this object (not read from disk)

    def path(self, article_id: str) -> Path:
        """The cache file of one article (its name hashes the article's passage texts)."""
        texts = "\x1e".join(p.text for p in self.split.passages[article_id])
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in article_id)
        return self.directory / f"{safe}-{_digest(texts, 12)}.npy"

    def _read(self, article_id: str) -> np.ndarray | None:
        if not self.enabled:
            return None
        path = self.path(article_id)
        if not path.is_file():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a corrupt file is re-encoded, never trusted
            return None
        if arr.ndim != 2 or arr.shape[0] != len(self.split.passages[article_id]):
            path.unlink(missing_ok=True)
            return None
        return arr

    def vectors(
        self,
        article_ids: Iterable[str],
        batch_size: int = 32,
        chunk_passages: int = 512,
        show_progress: bool = False,
        desc: str = "encode passages",
    ) -> dict[str, np.ndarray]:
        """Vectors of every passage of ``article_ids``: read from the cache, the rest encoded and saved.

        Missing articles are encoded in chunks of about ``chunk_passages`` passages (so batches
        are well filled) and each article is saved as soon as its chunk is done.

        Args:
            article_ids: the articles wanted.
            batch_size: encoder batch size.
            chunk_passages: passages encoded per call before saving.
            show_progress: show a tqdm bar over passages.
            desc: the bar's label.

        Returns:
            article id -> ``(n_passages, d)`` float32 array, in ``split.passages[article_id]`` order.
        """
        from tqdm.auto import tqdm

        wanted = list(dict.fromkeys(article_ids))
        out: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for aid in wanted:
            arr = self._read(aid)
            if arr is None:
                missing.append(aid)
            else:
                out[aid] = arr
        total = sum(len(self.split.passages[a]) for a in missing)
        if missing and self.enabled:
            encoder_config: Any = getattr(self.encoder, "config", None)
            write_manifest(
                self.directory / "manifest.json",
                {
                    "source": self.source,
                    "encoder_config": getattr(encoder_config, "model_dump", dict)(),
                    "split": self.split.name,
                    "data_config": self.split.config.model_dump(),
                },
            )
        bar = tqdm(total=total, desc=desc, unit="passage", disable=not show_progress or total == 0, leave=False)
        try:
            for chunk in _chunks(missing, [len(self.split.passages[a]) for a in missing], chunk_passages):
                texts = [p.text for a in chunk for p in self.split.passages[a]]
                vecs = np.asarray(self.encoder.encode_passages(texts, batch_size=batch_size), dtype=np.float32)
                start = 0
                for aid in chunk:
                    n = len(self.split.passages[aid])
                    out[aid] = vecs[start : start + n]
                    start += n
                    if self.enabled:
                        _atomic_save(self.path(aid), out[aid])
                self.encoded_now += len(texts)
                bar.update(len(texts))
        finally:
            bar.close()
        return {aid: out[aid] for aid in wanted}

    def manifest(self) -> dict[str, Any]:
        """Where the vectors live and how many this object encoded (for the run's JSON)."""
        return {"directory": str(self.directory), "fingerprint": self.fingerprint, "encoded_now": self.encoded_now}


def _chunks(items: Sequence[str], sizes: Sequence[int], budget: int) -> Iterable[list[str]]:
    chunk: list[str] = []
    used = 0
    for item, size in zip(items, sizes, strict=True):
        chunk.append(item)
        used += size
        if used >= budget:
            yield chunk
            chunk, used = [], 0
    if chunk:
        yield chunk


def write_manifest(path: Path, obj: dict[str, Any]) -> None:
    """Small JSON beside the vectors naming the model and data they came from (written atomically)."""
    write_json(path, obj)
