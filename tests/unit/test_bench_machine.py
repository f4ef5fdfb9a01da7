"""The benchmarks record the CPU model and its int8 instructions (the int8 speed-up depends on them)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import INT8_INSTRUCTIONS, cpu_info  # noqa: E402
from run_all import cpu_cell  # noqa: E402

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni

processor\t: 1
model name\t: Another CPU
flags\t\t: fpu
"""


def test_cpu_info_reads_the_model_and_the_int8_instructions() -> None:
    info = cpu_info(CPUINFO)
    assert info == {
        "cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
        "int8_instructions": ["avx2", "avx512f", "avx512_vnni"],
    }
    assert cpu_info("model name : AMD EPYC\nflags : fpu avx2 fma\n")["int8_instructions"] == ["avx2"]
    here = cpu_info()
    assert here["cpu_model"] and (
        here["int8_instructions"] is None or set(here["int8_instructions"]) <= set(INT8_INSTRUCTIONS)
    )


def test_the_summary_cell_says_what_was_recorded() -> None:
    assert cpu_cell({}) == "not recorded"
    assert cpu_cell({"cpu_model": "AMD EPYC", "int8_instructions": ["avx2"]}) == "AMD EPYC, avx2"
    assert cpu_cell({"cpu_model": "X", "int8_instructions": []}).startswith("X, none of avx2/")
    assert cpu_cell({"cpu_model": "X", "int8_instructions": None}) == "X, instructions unknown"
