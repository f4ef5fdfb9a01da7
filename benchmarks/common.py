"""Shared helpers of the benchmarks: timing, peak memory, result files, the validation passages."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(os.environ.get("CERA_BENCH_OUT", ROOT / "results"))

from cera_rag.atomic import write_json  # noqa: E402 - after the repository root is on sys.path
from cera_rag.cpu import cpu_info  # noqa: E402


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        **cpu_info(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(systems: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds per run of each system, the systems taking turns so that noise hits every one alike."""
    seconds: dict[str, list[float]] = {k: [] for k in systems}
    for _ in range(repeats):
        for name, fn in systems.items():
            seconds[name].append(timed(fn))
    return seconds


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def write_result(name: str, payload: dict[str, Any], out_dir: Path = RESULTS) -> Path:
    """Write ``bench_<name>.json`` atomically, with the command line and machine info."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench_{name}.json"
    from datetime import datetime, timezone

    payload = {
        "benchmark": name,
        "command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        **payload,
    }
    return write_json(path, payload)


def validation_passages(limit: int | None = None, data_dir: str | None = None) -> list[str]:
    """Passage texts of the shared validation split (``limit`` spread across articles)."""
    from cera_rag.data.dataset import DataConfig, load_processed

    split = load_processed("validation", DataConfig(), data_dir)
    texts = [p.text for p in split.all_passages()]
    if limit and limit < len(texts):
        step = len(texts) / limit
        texts = [texts[int(i * step)] for i in range(limit)]
    return texts


def default_model() -> str:
    """The trained checkpoint when there is one, else the off-the-shelf base (same architecture)."""
    for path in ("checkpoints/cera-best", "checkpoints/cera-quick"):
        if (ROOT / path / "cera_config.json").is_file():
            return str(ROOT / path)
    from cera_rag.paths import resolve_model_path

    return resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")


def load_reader(path: str | None = None) -> tuple[Any, str]:
    """The reader to time and what it is: ``path``, else ``checkpoints/cera-reader``, else an untrained one.

    A checkout without a trained reader still times the same architecture (the base encoder with
    freshly initialised heads): latency does not depend on the weights, and the JSON says which it was.
    """
    from cera_rag.reader import CERAReader

    if path is not None:
        return CERAReader.from_pretrained(path), path
    trained = ROOT / "checkpoints" / "cera-reader"
    if (trained / "reader_heads.safetensors").is_file():
        return CERAReader.from_pretrained(trained), str(trained)
    from cera_rag.paths import DEFAULT_BASE_MODEL

    return CERAReader.from_base(DEFAULT_BASE_MODEL), f"untrained reader on {DEFAULT_BASE_MODEL}"


def reader_on(reader: Any, backend: str) -> Any:
    """``reader`` on ``backend`` (torch, onnx or onnx-int8)."""
    if backend == "torch":
        return reader
    if backend not in ("onnx", "onnx-int8"):
        raise ValueError(f"unknown reader backend {backend!r}: use torch, onnx or onnx-int8")
    return reader.to_onnx(int8=backend == "onnx-int8")
