"""ONNX Runtime inference for a ``CERAEncoder``: the same embeddings and spans, faster on CPU.

``CERAEncoder.to_onnx()`` (or ``CERAEncoder.from_pretrained(path, backend="onnx")``) exports the
encoder's forward pass, pooled embedding *and* the rationale layer's CLS-attention row, to one
ONNX graph and runs it with ONNX Runtime; ``int8=True`` (``backend="onnx-int8"``) quantises the
graph's weights to int8 per output channel with ``onnxruntime.quantization.quantize_dynamic``.
Tokenisation, batching, span extraction and every public method are ``CERAEncoder``'s own, so
only the forward pass changes. fp32 matches the PyTorch encoder to ~1e-6.

Exported graphs are cached under ``cache_dir()/onnx/<fingerprint>/`` (the fingerprint hashes the
weights and encoder settings), written atomically, so the export (a few seconds) happens once.

Needs the ``fast`` extra: ``pip install "cera-rag[fast]"`` (``onnxruntime`` and ``onnx``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cera_rag.atomic import write_file
from cera_rag.cpu import int8_needs_reduced_range
from cera_rag.errors import ConfigError
from cera_rag.paths import cache_dir

if TYPE_CHECKING:
    from cera_rag.model import CERAEncoder

#: ONNX opset of the exported graphs.
OPSET = 17
#: Part of every graph's cache key: changed when the export writes a different graph for the same
#: weights (``eager-attention``: see ``eager_attention``), so graphs cached before are exported again.
GRAPH_FORMAT = "eager-attention"


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            'The ONNX backend needs onnxruntime and onnx: pip install "cera-rag[fast]" (or use backend="torch").'
        ) from None
    return onnxruntime


def weights_fingerprint(settings: str, *modules: nn.Module) -> str:
    """A hash of some settings (a JSON string) and the weights of ``modules``: a cache key."""
    h = hashlib.sha256(f"{GRAPH_FORMAT}|{settings}".encode())
    for module in modules:
        for name, tensor in module.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(encoder: CERAEncoder) -> str:
    """A hash of the encoder's weights and settings: the cache key of its exported graphs."""
    return weights_fingerprint(encoder.config.model_dump_json(), encoder.model)


def backend_name(runner: Any) -> str:
    """``torch`` (no ONNX runner), ``onnx`` or ``onnx-int8``, from the graph an ONNX runner holds."""
    if runner is None:
        return "torch"
    return "onnx-int8" if runner.path.name.endswith(".int8.onnx") else "onnx"


class _ExportedForward(nn.Module):
    """``(input_ids, attention_mask) -> (embedding, CLS attention row)``: what the graph computes."""

    def __init__(self, encoder: CERAEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb, att = self.encoder.forward(input_ids, attention_mask, return_attention=True)
        assert att is not None
        return emb, att


def export_onnx(encoder: CERAEncoder, path: str | os.PathLike[str]) -> Path:
    """Export ``encoder``'s forward pass (embedding + CLS attention) to an ONNX file.

    The example batch is padded (two texts of different lengths), so the traced graph keeps the
    attention-mask path; batch size and sequence length are dynamic axes.
    """
    target = Path(path)
    model = _ExportedForward(encoder).cpu().eval()
    example = encoder.tokenize(["the results were significantly better " * 2, "the results"], max_length=32)
    ids, mask = example["input_ids"].cpu(), example["attention_mask"].cpu()
    if bool(mask.all()):
        raise RuntimeError("The export example must be padded, so the graph keeps the attention-mask path.")

    return export_graph(
        model,
        {"input_ids": ids, "attention_mask": mask},
        {"embedding": {0: "batch"}, "attention": {0: "batch", 1: "tokens"}},
        target,
    )


@contextmanager
def eager_attention(module: nn.Module) -> Iterator[None]:
    """Every Hugging Face model inside ``module`` uses eager attention while the block runs.

    The exported graphs compute attention the eager way: torch's ONNX export writes SDPA's padding
    mask as a ``Where`` over the whole ``(batch, heads, tokens, tokens)`` score tensor and guards
    the softmax with ``IsNaN`` + ``Where``, where eager attention adds the mask once. Same numbers
    (embeddings equal to ~1e-6), but those ops were 29% of ONNX Runtime's kernel time in the int8
    encoder (400 validation passages); exported eager, int8 encoding with spans ran 2.20x fp32
    PyTorch instead of 1.62x and fp32 ONNX 1.01x instead of 0.86x (2026-12-06, AVX-512/AMX CPU).
    PyTorch inference keeps SDPA: the models are switched back afterwards.
    """
    switched: list[tuple[Any, str]] = []
    for m in module.modules():
        model: Any = m  # a transformers PreTrainedModel, where it has set_attn_implementation
        impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
        if hasattr(model, "set_attn_implementation") and impl not in (None, "eager"):
            model.set_attn_implementation("eager")
            switched.append((model, impl))
    try:
        yield
    finally:
        for m, impl in reversed(switched):
            m.set_attn_implementation(impl)


def export_graph(
    module: nn.Module,
    example: dict[str, torch.Tensor],
    outputs: dict[str, dict[int, str]],
    path: str | os.PathLike[str],
) -> Path:
    """Export ``module`` (called with the ``example`` tensors, in order) to an ONNX file, atomically.

    Every input has dynamic ``batch`` and ``tokens`` axes; ``outputs`` maps each output name to
    its dynamic axes. Attention is exported eager (``eager_attention``).
    """
    names = list(example)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "tokens"} for n in names}
    axes.update(outputs)

    def write(tmp: Path) -> None:
        with torch.no_grad(), warnings.catch_warnings(), eager_attention(module):
            warnings.simplefilter("ignore")  # tracer warnings about python control flow on shapes
            torch.onnx.export(
                module.cpu().eval(),
                tuple(example[n] for n in names),
                str(tmp),
                input_names=names,
                output_names=list(outputs),
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )

    return write_file(path, write)


def int8_file_name(stem: str) -> str:
    """``<stem>.int8.onnx``, or ``<stem>.avx2.int8.onnx`` where weights are quantised to 7 bits (see below)."""
    return f"{stem}.avx2.int8.onnx" if int8_needs_reduced_range() else f"{stem}.int8.onnx"


def quantize_onnx(
    source: str | os.PathLike[str], target: str | os.PathLike[str], reduce_range: bool | None = None
) -> Path:
    """int8 weights, per output channel, activations quantised on the fly (ONNX Runtime dynamic quantisation).

    ``reduce_range`` (default: ``int8_needs_reduced_range()``, true on AVX2 CPUs without VNNI or AMX)
    quantises the weights to 7 bits: there ONNX Runtime's int8 matmul adds pairs of 8-bit products
    in saturating 16-bit lanes, which overflow on full-range weights.
    """
    _require_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(target)
    reduced = int8_needs_reduced_range() if reduce_range is None else reduce_range

    def write(tmp: Path) -> None:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_dynamic logs a generic pre-processing hint on the root logger
        try:
            quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduced)
        finally:
            root.setLevel(level)

    write_file(out, write)
    return out


def onnx_file(encoder: CERAEncoder, int8: bool = False, folder: str | os.PathLike[str] | None = None) -> Path:
    """The cached ONNX graph of ``encoder`` (exported, and quantised for ``int8``, on first use)."""
    base = Path(folder) if folder is not None else cache_dir() / "onnx" / fingerprint(encoder)
    fp32 = base / "model.onnx"
    if not fp32.is_file():
        export_onnx(encoder, fp32)
    if not int8:
        return fp32
    q = base / int8_file_name("model")
    if not q.is_file():
        quantize_onnx(fp32, q)
    return q


def session(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session with all graph optimisations and ``threads`` intra-op threads."""
    ort = _require_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ConfigError(f"Could not load the ONNX graph {path} ({exc}); delete it to export it again.") from exc


class OnnxForward:
    """Runs the exported graph: a drop-in for ``CERAEncoder.forward`` at inference time."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = Path(path)
        self.session = session(path, threads)

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, return_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        feeds = {
            "input_ids": np.ascontiguousarray(input_ids.cpu().numpy(), dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask.cpu().numpy(), dtype=np.int64),
        }
        emb, att = self.session.run(None, feeds)
        return torch.from_numpy(emb), (torch.from_numpy(att) if return_attention else None)
