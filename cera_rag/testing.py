"""Test helpers shared by the repository's tests and both integrations' tests.

* ``write_tiny_bert``: a tiny random BERT (safetensors) and its WordPiece tokenizer, built from a
  ``BertConfig`` (no download), the encoder every fast test uses.
* ``assert_metadata_close``: two backends (PyTorch and ONNX Runtime, fp32 and int8) or two
  machines compute the same floats to a tolerance, not bit for bit: ids, texts and span offsets
  must match exactly, scores and span weights within a tolerance.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cera_rag.spans import SPANS_KEY

#: A small vocabulary that covers the synthetic articles and queries used in tests.
TINY_BERT_WORDS = (
    "the a an of in on at to and or with was were is are be for by from as than versus vs compared "
    "patients group groups placebo drug aspirin pain score scores headache headaches duration weeks week "
    "months trial randomized randomised control controlled significantly significant increased decreased "
    "reduced reduce lower higher difference differences no not effect effects outcome outcomes result results "
    "we believe may might could should suggest suggests think interesting important further research needed "
    "introduction background discussion conclusion methods method study studies mean sd ci p hr rr or "
    "blood pressure mortality risk rate rates treatment treatments intervention comparator dose daily "
    "what did does how which whose compare characterize reported between those receiving respect "
    "this that these it its our their there here has have had been vitamin d e insulin metformin "
    "improved improve worse better outcome title abstract body results methods evidence"
).split()


def write_tiny_bert(path: Path, seed: int = 0) -> Path:
    """Write a tiny random BERT (2 layers, 4 heads, width 32; safetensors) and its WordPiece tokenizer.

    Args:
        path: The folder (created if needed).
        seed: Seeds the random weights: two seeds give two different encoders.

    Returns:
        ``path``.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast  # type: ignore[attr-defined]

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("0123456789.,;:%()=<>-+/!?'\"abcdefghijklmnopqrstuvwxyz")
    vocab = specials + sorted(set(TINY_BERT_WORDS)) + chars + ["##" + c for c in "0123456789abcdefghijklmnopqrstuvwxyz"]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast.from_pretrained(str(path), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    BertModel(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


#: Metadata keys that hold span JSON (compared span by span, weights with the tolerance).
SPAN_KEYS = (SPANS_KEY, "cera_evidence_spans")


def _close(a: float, b: float, rel: float, abs_tol: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def assert_metadata_close(
    got: Mapping[str, Any], want: Mapping[str, Any], rel: float = 1e-5, abs_tol: float = 1e-6
) -> None:
    """``got == want`` with floats (scores, span weights) compared within ``rel`` / ``abs_tol``.

    Raises:
        AssertionError: naming the first key that differs.
    """
    from cera_rag.spans import parse_spans

    assert set(got) == set(want), f"metadata keys differ: {sorted(set(got) ^ set(want))}"
    for key, w in want.items():
        g = got[key]
        if key in SPAN_KEYS:
            gs, ws = parse_spans(g), parse_spans(w)
            assert [(s["start"], s["end"], s["text"]) for s in gs] == [(s["start"], s["end"], s["text"]) for s in ws], (
                f"{key}: span offsets differ"
            )
            for a, b in zip(gs, ws, strict=True):
                assert _close(a["weight"], b["weight"], rel, abs_tol), f"{key}: weight {a['weight']} != {b['weight']}"
        elif isinstance(w, float) and not isinstance(w, bool):
            assert isinstance(g, (int, float)) and _close(float(g), w, rel, abs_tol), f"{key}: {g} != {w} (tolerance)"
        else:
            assert g == w, f"{key}: {g!r} != {w!r}"


def chroma_executable() -> str | None:
    """The ``chroma`` command of this environment (beside the interpreter), else the one on PATH."""
    candidate = Path(sys.executable).with_name("chroma")
    return str(candidate) if candidate.exists() else shutil.which("chroma")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def chroma_server(data_dir: Path, timeout: float = 60.0) -> Iterator[tuple[str, int]]:
    """A real ``chroma run`` server on a free local port, storing under ``data_dir``; yields (host, port).

    Raises:
        FileNotFoundError: If the ``chroma`` command is not installed.
        RuntimeError: If the server exits or does not answer its heartbeat within ``timeout`` seconds.
    """
    exe = chroma_executable()
    if exe is None:
        raise FileNotFoundError("the `chroma` command is not installed (pip install chromadb)")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir.with_name(data_dir.name + ".log")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [exe, "run", "--path", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            import chromadb
            from chromadb.config import Settings

            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"chroma run exited with {proc.returncode}: {log_path.read_text()}")
                try:
                    chromadb.HttpClient(
                        host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False)
                    ).heartbeat()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"chroma run did not answer its heartbeat within {timeout:.0f} s") from None
                    time.sleep(0.3)
            yield "127.0.0.1", port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
