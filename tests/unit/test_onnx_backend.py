"""ONNX Runtime backend: same embeddings and spans as PyTorch, cached export, int8, clear errors."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cera_rag import onnx_backend
from cera_rag.errors import ConfigError
from cera_rag.model import CERAEncoder

pytest.importorskip("onnxruntime", reason="the fast extra (onnxruntime) is not installed")

TEXTS = [
    "Pain score was significantly lower with aspirin than placebo at week four.",
    "No difference.",
    "Headache duration was reduced in the aspirin group (p < 0.01), while nausea rates were similar "
    "between the groups and blood pressure did not change over twelve weeks of follow-up.",
    "Mortality was higher in the control group.",
    "",
]


@pytest.fixture(scope="module")
def encoders(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any]:
    folder = tmp_path_factory.mktemp("onnx")
    enc = CERAEncoder.from_pretrained(tiny_bert_dir)
    return enc, enc.to_onnx(folder=folder), enc.to_onnx(int8=True, folder=folder)


def offsets(spans: list[Any]) -> list[tuple[int, int, str]]:
    return [(s.start, s.end, s.text) for s in spans]


def test_onnx_matches_torch_embeddings_and_spans(encoders: tuple[Any, Any, Any]) -> None:
    enc, fast, _ = encoders
    assert (enc.backend, fast.backend) == ("torch", "onnx")
    for batch_size in (1, 2, 8):  # other batch sizes and paddings than the exported example
        ref, ref_spans = enc.encode_passages(TEXTS, batch_size=batch_size, return_rationales=True)
        got, got_spans = fast.encode_passages(TEXTS, batch_size=batch_size, return_rationales=True)
        np.testing.assert_allclose(got, ref, atol=1e-5)
        assert [offsets(s) for s in got_spans] == [offsets(s) for s in ref_spans]
        for a, b in zip(got_spans, ref_spans, strict=True):
            np.testing.assert_allclose([s.weight for s in a], [s.weight for s in b], atol=1e-5)
    np.testing.assert_allclose(fast.encode_queries(TEXTS[:4]), enc.encode_queries(TEXTS[:4]), atol=1e-5)
    assert fast.dim == enc.dim and fast.name == enc.name


def graph_ops(runner: Any) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(runner.path)).graph.node}


def test_graphs_are_exported_with_eager_attention(encoders: tuple[Any, Any, Any]) -> None:
    # SDPA exported guards its softmax with IsNaN + Where over every (batch, head, token, token)
    # score, which made the int8 graph 1.62x fp32 PyTorch instead of 2.20x; PyTorch keeps SDPA
    enc, fast, int8 = encoders
    for runner in (fast._onnx, int8._onnx):
        ops = graph_ops(runner)
        assert "Softmax" in ops and "IsNaN" not in ops
    assert enc.model.config._attn_implementation == "sdpa"


def test_onnx_int8_is_close(encoders: tuple[Any, Any, Any]) -> None:
    enc, _, int8 = encoders
    assert int8.backend == "onnx-int8"
    ref = enc.encode_passages(TEXTS[:4])
    got = int8.encode_passages(TEXTS[:4])
    assert got.shape == ref.shape and np.all((got * ref).sum(1) > 0.9)
    spans = int8.rationale_spans("q", TEXTS[0])
    assert spans and all(TEXTS[0][s.start : s.end] == s.text for s in spans)


def test_export_is_cached_by_weights(tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERA_CACHE_DIR", str(tmp_path / "cache"))
    enc = CERAEncoder.from_pretrained(tiny_bert_dir)
    first = onnx_backend.onnx_file(enc)
    assert first.is_file() and first.parent.parent == tmp_path / "cache" / "onnx"
    stamp = first.stat().st_mtime_ns
    calls: list[Path] = []
    monkeypatch.setattr(onnx_backend, "export_onnx", lambda e, p: calls.append(Path(p)))
    assert onnx_backend.onnx_file(enc) == first and first.stat().st_mtime_ns == stamp and calls == []
    other = CERAEncoder.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        next(other.model.parameters()).add_(0.01)  # other weights: another graph
    assert onnx_backend.fingerprint(other) != onnx_backend.fingerprint(enc)
    assert not list(first.parent.glob(".*"))  # no half-written temporary files left behind


def test_backend_argument_and_errors(tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERA_CACHE_DIR", str(tmp_path / "cache"))
    fast = CERAEncoder.from_pretrained(tiny_bert_dir, backend="onnx")
    assert fast.backend == "onnx"
    with pytest.raises(ConfigError, match="Unknown backend"):
        CERAEncoder.from_pretrained(tiny_bert_dir, backend="tensorrt")  # type: ignore[arg-type]
    ids = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(RuntimeError, match="training or gradients"):
        fast(ids, ids)  # grad mode on: inference only
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    with pytest.raises(ConfigError, match="delete it"):
        onnx_backend.session(tmp_path / "bad.onnx")

    real_import = builtins.__import__

    def no_ort(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(ConfigError, match=r"cera-rag\[fast\]"):
        onnx_backend.session(tmp_path / "bad.onnx")
