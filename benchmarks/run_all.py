"""Run every benchmark, each in its own process (so peak memory is per job), and print the README table.

    python benchmarks/run_all.py --quick     # < 10 min on a 2-core CPU
    python benchmarks/run_all.py             # full sizes

``--smoke`` runs each on a tiny input (used by the test suite; numbers are meaningless).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"

JOBS = {
    "full": [
        ["bench_encode.py", "--passages", "2000", "--repeats", "3"],
        ["bench_query.py", "--size", "100000", "--encode", "8000", "--queries", "100", "--backends", "torch,onnx"],
        ["bench_train.py", "--preset", "best", "--steps", "10"],
        ["bench_reader.py", "--questions", "100"],
    ],
    "quick": [
        ["bench_encode.py", "--passages", "320", "--repeats", "3", "--quality-prompts", "60"],
        ["bench_query.py", "--size", "100000", "--encode", "500", "--queries", "50", "--backends", "torch,onnx"],
        ["bench_train.py", "--preset", "best", "--steps", "4"],
        ["bench_reader.py", "--questions", "40"],
    ],
}


def table(results: Path = RESULTS) -> str:
    rows = ["| benchmark | result | target |", "|---|---|---|"]
    enc = results / "bench_encode.json"
    if enc.is_file():
        e = json.loads(enc.read_text())
        r = e["ratio_to_sentence_transformers"]
        pps = e["passages_per_second"]
        st = pps["sentence_transformers"]["median"]
        for key, label in (("cera_with_spans", "PyTorch"), ("cera_onnx_with_spans", "ONNX Runtime")):
            rows.append(
                f"| encode with spans, CERA ({label}) vs sentence-transformers | {pps[key]['median']:.0f} vs "
                f"{st:.0f} passages/s: x{r[key]['median']:.2f} (min {r[key]['min']:.2f}, max {r[key]['max']:.2f})"
                " | >= 1.0x |"
            )
        q = e["int8_quality"]
        for key, speed, label in (
            ("torch_int8", "int8_speedup_vs_fp32", "torch.ao"),
            ("onnx_int8", "onnx_int8_speedup_vs_fp32", "ONNX Runtime, per-channel"),
        ):
            rows.append(
                f"| int8 ({label}) vs fp32 PyTorch | x{e[speed]['median']:.2f} speed, MRR@10 "
                f"{q[key + '_mrr@10_delta_points']:+.1f} points ({q['prompts']} prompts) | >= 2x, >= -1 point |"
            )
    for name in ("query_torch", "query_onnx", "query_onnx-int8", "query_torch-int8"):
        f = results / f"bench_{name}.json"
        if f.is_file():
            d = json.loads(f.read_text())
            rows.append(
                f"| retrieve top-{d['k']} + spans @ {d['collection_size']:,} ({d['backend']})"
                f" | p50 {d['retrieve_ms']['p50']:.1f} ms, p95 {d['retrieve_ms']['p95']:.1f} ms (spans recomputed at"
                f" query time: p50 {d['spans_at_query_time_ms']['p50']:.1f} ms; no spans: p50 "
                f"{d['no_spans_ms']['p50']:.1f} ms); indexing {d['index_throughput']['index_passages_per_s']:.0f}"
                f" passages/s with spans, upsert {d['index_throughput']['upsert_passages_per_s']:.0f}/s | p50 < 30 ms |"
            )
    f = results / "bench_train_best.json"
    if f.is_file():
        d = json.loads(f.read_text())
        rows.append(
            f"| training, best preset | {d['seconds_per_step']['median']:.2f} s/step, epoch "
            f"{d['epoch_minutes_estimate']:.1f} min, peak {d['peak_rss_mb']:.0f} MB | <= 15 min/epoch |"
        )
    f = results / "bench_reader.json"
    if f.is_file():
        d = json.loads(f.read_text())
        for backend, r in d["backends"].items():
            rows.append(
                f"| reader ({backend}, {d['layers']} layers): re-rank top 20 with evidence spans / spans for the top 5 "
                f"| p50 {r['rerank_top20_ms']['p50']:.0f} ms (p95 {r['rerank_top20_ms']['p95']:.0f}) / "
                f"p50 {r['spans_top5_ms']['p50']:.0f} ms | <= 250 ms (ONNX) / <= 80 ms |"
            )
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="Tiny inputs; checks the scripts run.")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    jobs = JOBS["quick" if args.quick or args.smoke else "full"]
    if args.smoke:
        jobs = [
            ["bench_encode.py", "--passages", "16", "--repeats", "1", "--quality-prompts", "2"],
            ["bench_query.py", "--size", "300", "--encode", "50", "--queries", "3", "--backends", "torch,onnx"],
            ["bench_train.py", "--preset", "quick", "--steps", "1"],
            ["bench_reader.py", "--questions", "3", "--backends", "torch,onnx"],
        ]
    t0 = time.time()
    for job in jobs:
        cmd = [sys.executable, str(HERE / job[0]), *job[1:]]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env={**__import__("os").environ, "CERA_BENCH_OUT": args.out})
    md = table(Path(args.out))
    (Path(args.out) / "bench_summary.md").write_text(md, encoding="utf-8")
    print(md)
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
