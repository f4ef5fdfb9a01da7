"""Atomic writes: a file or a folder appears complete or not at all, never half-written.

One helper per shape of write, so every checkpoint, cache entry and result file goes through
the same path: write into a temporary sibling, then rename it into place (a rename within one
folder is atomic on POSIX filesystems).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The process umask, read once at import (reading it means setting it, so not per call, from any thread).
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_file(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it 0600; the file gets the mode a plain open() would
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``Path.write_text`` (UTF-8), atomically."""

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return write_file(path, write)


def write_json(path: str | os.PathLike[str], obj: Any, **dumps: Any) -> Path:
    """``json.dumps(obj, **dumps)`` to ``path`` (UTF-8), atomically; ``indent=1`` unless given."""
    dumps.setdefault("indent", 1)
    return write_text(path, json.dumps(obj, **dumps))


def replace_dir(directory: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary folder beside ``directory``, then swap it in for ``directory``.

    The old folder is moved aside (``.<name>.old``) before the new one is renamed into place and
    deleted after, so a crash leaves either the old or the new folder complete.
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            if old.exists():
                shutil.rmtree(old)
            target.rename(old)
        tmp.rename(target)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
