"""What the CPU offers int8 kernels, read once from ``/proc/cpuinfo`` (Linux; elsewhere unknown)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import Any

#: CPU instructions int8 kernels use: VNNI dot products and AMX tiles, and the AVX2 fallback. Without
#: VNNI or AMX, ONNX Runtime's int8 matmuls multiply unsigned activations by signed 8-bit weights with
#: AVX2's 16-bit saturating adds, which overflow on full-range weights (scores of a test reader were
#: off by 0.21 on an AVX2-only AMD EPYC), and the int8 speed-up over fp32 shrinks (1.12x there, ~2x
#: on the VMs of earlier runs).
INT8_INSTRUCTIONS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
_INT8_DOT_PRODUCTS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """The CPU's model name and which of ``INT8_INSTRUCTIONS`` it reports (``None``: could not tell)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return {"cpu_model": platform.processor() or "unknown", "int8_instructions": None}
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()  # the first processor's block
    flags = set(fields.get("flags", "").split())
    return {
        "cpu_model": fields.get("model name") or platform.processor() or "unknown",
        "int8_instructions": [f for f in INT8_INSTRUCTIONS if f in flags] if "flags" in fields else None,
    }


@functools.lru_cache(maxsize=1)
def int8_needs_reduced_range() -> bool:
    """True on an x86 CPU with AVX2 but no VNNI/AMX: there int8 weights must use 7 bits (``reduce_range``)."""
    isa = cpu_info()["int8_instructions"]
    return isa is not None and "avx2" in isa and not (_INT8_DOT_PRODUCTS & set(isa))
