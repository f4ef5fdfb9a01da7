"""demo.html in headless Chromium: the highlighted evidence really renders (pixels of the highlight colour)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cera_rag.demo import HIGHLIGHT_RGB, DemoAnswer, DemoPassage, write_html

pytestmark = pytest.mark.slow

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def _screenshot(html: Path, png: Path) -> None:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,800",
           f"--screenshot={png}", html.resolve().as_uri()]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.is_file(), proc.stderr[-2000:]


def _highlight_pixels(png: Path, min_alpha: float) -> int:
    """Pixels whose colour is the highlight colour blended on white with at least ``min_alpha`` opacity."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).astype(float)
    target = np.array(HIGHLIGHT_RGB, dtype=float)
    # On white, alpha a gives white - a * (white - target); solve a per pixel from the blue channel.
    alpha = (255.0 - img[..., 2]) / (255.0 - target[2])
    expected = 255.0 - alpha[..., None] * (255.0 - target)
    close = np.abs(img - expected).max(axis=-1) < 12
    return int((close & (alpha >= min_alpha) & (alpha <= 1.05)).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)")
def test_highlighted_evidence_renders_in_chromium(tmp_path: Path) -> None:
    text = "After 12 weeks pain was significantly lower with aspirin than with placebo (p < 0.001)."
    start = text.index("significantly lower")
    spans = [
        {"start": start, "end": start + len("significantly lower"), "text": "significantly lower", "weight": 1.0},
        {"start": text.index("p < 0.001"), "end": text.index("p < 0.001") + 9, "text": "p < 0.001", "weight": 0.3},
    ]
    answer = DemoAnswer("Did aspirin lower pain?", "Yes.", [DemoPassage("PMC1:0-90", text, 0.8, spans)])
    html = write_html(tmp_path / "demo.html", [answer], "cera", "llm")
    plain = write_html(tmp_path / "plain.html", [DemoAnswer("Q?", "A.", [DemoPassage("x", text, 0.8, [])])], "c", "l")
    png, plain_png = tmp_path / "demo.png", tmp_path / "plain.png"
    _screenshot(html, png)
    _screenshot(plain, plain_png)
    strong = _highlight_pixels(png, min_alpha=0.9)
    weak = _highlight_pixels(png, min_alpha=0.35) - strong
    assert strong > 500, f"only {strong} fully highlighted pixels"
    assert weak > 100, f"only {weak} lighter (lower-weight) highlighted pixels"
    assert _highlight_pixels(plain_png, min_alpha=0.35) < 50  # no spans: no highlight colour
