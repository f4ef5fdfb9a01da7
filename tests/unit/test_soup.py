from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cera_rag.errors import CheckpointError
from cera_rag.model import CERAEncoder
from cera_rag.soup import SOUP_FILE, average_checkpoints, average_state_dicts
from cera_rag.testing import write_tiny_bert

PASSAGES = ["Pain score was significantly lower with aspirin than placebo (p < 0.001).", "No difference was seen."]


def test_soup_weights_are_the_mean_of_its_checkpoints(tmp_path: Path) -> None:
    a, b = write_tiny_bert(tmp_path / "a", seed=1), write_tiny_bert(tmp_path / "b", seed=2)
    soup = average_checkpoints([a, b], tmp_path / "soup")
    wa = CERAEncoder.from_pretrained(a).model.state_dict()
    wb = CERAEncoder.from_pretrained(b).model.state_dict()
    for key, value in soup.model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (wa[key] + wb[key]) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(soup.encode_passages(PASSAGES), CERAEncoder.from_pretrained(a).encode_passages(PASSAGES))
    assert json.loads((tmp_path / "soup" / SOUP_FILE).read_text())["checkpoints"] == [str(a), str(b)]


def test_soup_of_copies_encodes_like_the_original(tiny_bert_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_bert_dir, tmp_path / "copy")
    soup = average_checkpoints([tiny_bert_dir, copy], tmp_path / "soup")
    original = CERAEncoder.from_pretrained(tiny_bert_dir)
    np.testing.assert_allclose(soup.encode_passages(PASSAGES), original.encode_passages(PASSAGES), atol=1e-5)


def test_soup_refuses_what_it_cannot_average(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="two or more"):
        average_checkpoints([tiny_bert_dir], tmp_path / "soup")
    with pytest.raises(CheckpointError, match="listed twice"):
        average_checkpoints([tiny_bert_dir, tiny_bert_dir], tmp_path / "soup")
    other = shutil.copytree(tiny_bert_dir, tmp_path / "other")
    (other / "cera_config.json").write_text(json.dumps({"pooling": "cls"}), encoding="utf-8")
    with pytest.raises(CheckpointError, match="different encoder settings"):
        average_checkpoints([tiny_bert_dir, other], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()

    weights = {"w": torch.ones(2, 2), "ids": torch.arange(3)}
    with pytest.raises(CheckpointError, match="different weights"):
        average_state_dicts([weights, {"w": torch.ones(2, 2)}], ["a", "b"])
    with pytest.raises(CheckpointError, match="shape"):
        average_state_dicts([weights, {"w": torch.ones(3, 2), "ids": torch.arange(3)}], ["a", "b"])
    with pytest.raises(CheckpointError, match="cannot be averaged"):
        average_state_dicts([weights, {"w": torch.ones(2, 2), "ids": torch.arange(1, 4)}], ["a", "b"])


def test_soup_command_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cera_rag.cli import app

    a, b = write_tiny_bert(tmp_path / "a", seed=1), write_tiny_bert(tmp_path / "b", seed=2)
    result = CliRunner().invoke(app, ["soup", str(a), str(b), "-o", str(tmp_path / "soup")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoints"] == [str(a), str(b)]
    assert CERAEncoder.from_pretrained(tmp_path / "soup").encode_queries(["pain"]).shape == (1, 32)
    refused = CliRunner().invoke(app, ["soup", str(a), "-o", str(tmp_path / "soup2")])
    assert isinstance(refused.exception, CheckpointError)
