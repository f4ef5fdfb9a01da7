from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REAL_DATA_DIR

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not REAL_DATA_DIR.is_dir(), reason=f"shared Evidence Inference data not found at {REAL_DATA_DIR}")
def test_quick_preset_trains_real_minilm_on_shared_data(tmp_path: Path) -> None:
    from cera_rag.config import load_config
    from cera_rag.model import CERAEncoder
    from cera_rag.train import Trainer

    cfg = load_config("quick", None, {"output_dir": str(tmp_path / "quick"), "max_steps": 4, "eval_max_prompts": 20})
    result = Trainer(cfg, REAL_DATA_DIR).train(show_progress=False)
    assert result.steps == 4
    log = [json.loads(line) for line in (tmp_path / "quick.log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 4 and all(r["loss"] > 0 and "alignment" in r for r in steps)
    enc = CERAEncoder.from_pretrained(tmp_path / "quick")
    assert enc.dim == 384
    passage = "Pain was significantly lower with aspirin than placebo (2.1 vs 4.3; p < 0.001)."
    spans = enc.rationale_spans("Did aspirin lower pain compared with placebo?", passage)
    assert spans and all(passage[s.start : s.end] == s.text for s in spans)


@pytest.mark.skipif(not REAL_DATA_DIR.is_dir(), reason=f"shared Evidence Inference data not found at {REAL_DATA_DIR}")
def test_quick_reader_trains_real_minilm_on_shared_data(tmp_path: Path) -> None:
    from cera_rag.reader import CERAReader
    from cera_rag.reader_train import ReaderTrainer, load_reader_config

    cfg = load_reader_config("quick", None, {"output_dir": str(tmp_path / "reader"), "max_steps": 3})
    result = ReaderTrainer(cfg, REAL_DATA_DIR).train(show_progress=False)
    assert result.steps == 3
    log = [json.loads(line) for line in (tmp_path / "reader.log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 3 and all(r["relevance"] > 0 and r["token"] > 0 for r in steps)
    reader = CERAReader.from_pretrained(tmp_path / "reader")
    assert int(reader.model.config.hidden_size) == 384
    passage = "Pain was significantly lower with aspirin than placebo (2.1 vs 4.3; p < 0.001). Nausea was rare."
    spans = reader.evidence_spans("Did aspirin lower pain compared with placebo?", [passage])[0]
    assert spans and all(passage[s.start : s.end] == s.text for s in spans)
    assert reader.score("Did aspirin lower pain?", [passage, "Methods were standard."]).shape == (2,)
