"""The CPU model and its int8 instructions: recorded by the benchmarks, and they decide 7-bit int8 weights."""

from __future__ import annotations

import sys
from pathlib import Path

from cera_rag.cpu import INT8_INSTRUCTIONS, cpu_info

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

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


def test_int8_weights_use_seven_bits_only_on_avx2_cpus_without_vnni(monkeypatch) -> None:
    """AVX2's saturating int8 path overflows on full-range weights; VNNI/AMX CPUs keep 8 bits."""
    from cera_rag import cpu, onnx_backend

    for isa, reduced in (
        (["avx2"], True),
        (["avx2", "avx512f", "avx512_vnni"], False),
        (["avx2", "avx_vnni"], False),
        ([], False),  # not x86 AVX2 (e.g. ARM): ONNX Runtime's kernels differ
        (None, False),  # unknown: keep the default
    ):
        monkeypatch.setattr(cpu, "cpu_info", lambda isa=isa: {"cpu_model": "x", "int8_instructions": isa})
        cpu.int8_needs_reduced_range.cache_clear()
        assert cpu.int8_needs_reduced_range() is reduced
        name = onnx_backend.int8_file_name("model")
        assert name == ("model.avx2.int8.onnx" if reduced else "model.int8.onnx")
        assert name.endswith(".int8.onnx")  # backend_name still reports onnx-int8
    cpu.int8_needs_reduced_range.cache_clear()


def test_summary_only_rewrites_the_table_from_the_json_files_and_judges_the_training_row(tmp_path) -> None:
    """``run_all.py --summary-only`` runs no benchmark; the training row says met / not met against 15 min."""
    import json
    import subprocess

    record = {
        "command": "python benchmarks/bench_train.py --preset best --steps 10",
        "seconds_per_step": {"median": 7.64},
        "epoch_minutes_estimate": 15.7,
        "peak_rss_mb": 5341.5,
        "n_negatives": 4,
    }
    (tmp_path / "bench_train_best.json").write_text(json.dumps(record))
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--summary-only", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "$ " not in out.stdout  # no benchmark was started
    table = (tmp_path / "bench_summary.md").read_text()
    assert "| training, best preset (4 negatives a query) | 7.64 s/step, epoch 15.7 min" in table
    assert "<= 15 min/epoch: **not met** |" in table
