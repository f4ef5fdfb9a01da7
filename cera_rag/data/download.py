"""Fetch the upstream Evidence Inference release (for users with internet access).

Downloads the GitHub archive of ``jayded/evidence-inference`` and unpacks its ``annotations/``
folder (CSV files, ``txt_files/`` and ``splits/``) into ``DIR``. Fails fast, with a clear
message, where GitHub is unreachable.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from cera_rag.errors import DataError

UPSTREAM_ARCHIVE = "https://github.com/jayded/evidence-inference/archive/refs/heads/master.tar.gz"


def download(dest: str | Path, url: str = UPSTREAM_ARCHIVE, timeout: float = 10.0) -> Path:
    """Download and unpack the release into ``dest`` (which must not already hold data)."""
    dest = Path(dest).expanduser()
    if (dest / "annotations").exists():
        raise DataError(f"{dest / 'annotations'} already exists; remove it or choose another folder.")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed https URL
            payload = resp.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DataError(
            f"Could not download {url} ({exc}). Check your internet connection, or download the "
            "release by hand and point $CERA_DATA_DIR at its folder."
        ) from exc
    with tempfile.TemporaryDirectory(dir=dest.parent if dest.parent.exists() else None) as tmp:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        roots = list(Path(tmp).glob("*/annotations"))
        if not roots:
            raise DataError(f"The archive from {url} has no annotations/ folder; the upstream layout changed.")
        ann = roots[0]
        for archive in list(ann.glob("*.zip")):  # upstream ships txt_files as a zip in some versions
            shutil.unpack_archive(str(archive), str(ann))
        dest.mkdir(parents=True, exist_ok=True)
        shutil.move(str(ann), str(dest / "annotations"))
    return dest
