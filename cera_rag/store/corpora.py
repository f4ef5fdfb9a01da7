"""Passages to index: every text file of a folder, or every passage of a processed Evidence Inference split."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cera_rag.store.errors import StoreError

if TYPE_CHECKING:
    from cera_rag.data.passages import Passage, PassageMode

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------- corpora
def passages_from_directory(
    directory: str | os.PathLike[str],
    pattern: str = "*.txt",
    mode: PassageMode = "sentences",
    **split_kwargs: Any,
) -> list[Passage]:
    """Passages of every text file under ``directory`` (recursively); the article id is the relative path.

    Files are read as UTF-8, undecodable bytes becoming U+FFFD. Empty files give no passages;
    binary files (holding a NUL byte) are skipped with a logged warning. Only files inside
    ``directory`` are read: a symlink that points outside it is refused.

    Raises:
        StoreError: If the folder does not exist, holds no matching file, or holds a symlink to a
            file outside it.
    """
    out: list[Passage] = []
    for f in text_files(directory, pattern):
        out.extend(passages_from_file(directory, f, mode, **split_kwargs))
    return out


def text_files(directory: str | os.PathLike[str], pattern: str = "*.txt") -> list[Path]:
    """The files ``passages_from_directory`` reads, sorted; refuses a missing folder and links outside it."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise StoreError(f"{root} is not a folder; give a folder of {pattern} files to index.")
    files = sorted(p for p in root.rglob(pattern) if p.is_file())
    if not files:
        raise StoreError(f"No {pattern} files under {root}.")
    real_root = root.resolve()
    for f in files:
        target = f.resolve()
        if not target.is_relative_to(real_root):
            raise StoreError(
                f"{f} points outside {root} (to {target}); only files inside the folder are indexed. "
                "Copy the file into the folder, or index the folder it lives in."
            )
    return files


def passages_from_file(
    directory: str | os.PathLike[str],
    file: str | os.PathLike[str],
    mode: PassageMode = "sentences",
    **split_kwargs: Any,
) -> list[Passage]:
    """The passages of one file of ``directory`` (article id: its path relative to the folder, no suffix).

    A binary file (holding a NUL byte) gives none, with a logged warning.
    """
    from cera_rag.data.passages import split_passages

    root, f = Path(directory).expanduser(), Path(file)
    data = f.read_bytes()
    if b"\0" in data:
        logger.warning("Skipping %s: it looks binary (it holds NUL bytes), not text.", f)
        return []
    article_id = f.relative_to(root).with_suffix("").as_posix()
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")  # as read_text
    return split_passages(text, article_id, mode, **split_kwargs)


def passages_from_split(
    split: str, data_dir: str | os.PathLike[str] | None = None, config: Any = None
) -> list[Passage]:
    """Every passage of a processed Evidence Inference split (``cera_rag.data.dataset.load_processed``)."""
    from cera_rag.data.dataset import load_processed

    return load_processed(split, config, data_dir=Path(data_dir) if data_dir is not None else None).all_passages()
