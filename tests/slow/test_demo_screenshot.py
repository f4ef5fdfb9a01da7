"""demo.html in headless Chromium: the highlighted evidence really renders (pixels of the highlight colour)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cera_rag.experiments.demo import HIGHLIGHT_RGB, DemoAnswer, DemoPassage, write_html

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


def _rendered_evidence(html_path: Path) -> list[list[str]]:
    """Per answer section of the page Chromium rendered (``--dump-dom``): the texts of its evidence marks."""
    from html.parser import HTMLParser

    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", html_path.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout

    class Marks(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.sections: list[list[str]] = []
            self.depth = 0

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag == "section":
                self.sections.append([])
            if tag == "mark" and "cera-evidence" in (dict(attrs).get("class") or ""):
                self.depth = 1
                self.sections[-1].append("")

        def handle_endtag(self, tag: str) -> None:
            if tag == "mark":
                self.depth = 0

        def handle_data(self, data: str) -> None:
            if self.depth:
                self.sections[-1][-1] += data

    parser = Marks()
    parser.feed(dom)
    return parser.sections


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)")
def test_highlighted_words_of_the_first_answer_are_the_readers_evidence(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from cera_rag.reader import CERAReader

    reader = CERAReader.from_base(str(tiny_bert_dir)).eval()
    text = "After 12 weeks pain was significantly lower with aspirin than with placebo (p < 0.001). Few dropped out."
    questions = ["Did aspirin lower pain?", "How many patients dropped out?"]
    answers = []
    for q in questions:
        evidence = [s.to_dict() for s in reader.evidence_spans(q, [text], top_fraction=0.3)[0]]
        answers.append(DemoAnswer(q, "Yes.", [DemoPassage("PMC1:0-100", text, 0.8, [], evidence=evidence)]))
    html = write_html(tmp_path / "demo.html", answers, "cera", "llm")
    rendered = _rendered_evidence(html)
    assert len(rendered) == 2
    first = answers[0].passages[0].evidence
    assert first, "the reader marked no evidence"
    # what the browser shows highlighted is exactly the reader's spans for that question, in order
    assert rendered[0] == [text[int(s["start"]) : int(s["end"])] for s in sorted(first, key=lambda s: s["start"])]
    assert rendered[0] == [s["text"] for s in sorted(first, key=lambda s: s["start"])]
