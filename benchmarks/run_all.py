"""Run every benchmark, each in its own process (so peak memory is per job), and print the README table.

    python benchmarks/run_all.py --quick     # < 15 min on a 2-core CPU (once the corpus cache exists)
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

from common import ROOT  # noqa: F401 - ROOT puts the repository on sys.path

from cera_rag.atomic import write_text
from cera_rag.cpu import INT8_INSTRUCTIONS

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"

JOBS = {
    "full": [
        # int8 quality on the whole validation split (every prompt)
        ["bench_encode.py", "--passages", "2000", "--repeats", "3"],
        ["bench_query.py", "--queries", "100", "--backends", "torch,onnx"],
        ["bench_train.py", "--preset", "best", "--steps", "10"],
        ["bench_reader.py", "--questions", "100"],
        ["bench_ray_index.py", "--passages", "4000"],
        ["bench_batch_order.py", "--passages", "1000", "--questions", "40"],
    ],
    "quick": [
        ["bench_encode.py", "--passages", "320", "--repeats", "3", "--quality-prompts", "60"],
        # the whole 154k-passage corpus: encoded once (~30 min here) and cached, then minutes
        ["bench_query.py", "--queries", "50", "--backends", "torch,onnx"],
        ["bench_train.py", "--preset", "best", "--steps", "4"],
        ["bench_reader.py", "--questions", "40"],
        ["bench_ray_index.py", "--passages", "1000"],
        ["bench_batch_order.py", "--passages", "320", "--questions", "20", "--repeats", "2"],
    ],
}


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def table(results: Path = RESULTS) -> str:
    rows = ["| benchmark | result | target |", "|---|---|---|"]
    enc = results / "bench_encode.json"
    if enc.is_file():
        e = json.loads(enc.read_text())
        r = e["ratio_to_sentence_transformers"]
        pps = e["passages_per_second"]
        st = pps["sentence_transformers"]["median"]
        for key, label, target in (("cera_with_spans", "PyTorch", 1.0), ("cera_onnx_with_spans", "ONNX Runtime", 1.2)):
            ratio = r[key]["median"]
            rows.append(
                f"| encode with spans, CERA ({label}) vs sentence-transformers | {pps[key]['median']:.0f} vs "
                f"{st:.0f} passages/s: x{ratio:.2f} (min {r[key]['min']:.2f}, max {r[key]['max']:.2f})"
                f" | >= {target:.1f}x: {_met(ratio >= target)} |"
            )
        q = e["int8_quality"]
        for key, speed, label in (
            ("torch_int8", "int8_speedup_vs_fp32", "torch.ao"),
            ("onnx_int8", "onnx_int8_speedup_vs_fp32", "ONNX Runtime, per-channel"),
        ):
            delta, x = q[key + "_mrr@10_delta_points"], e[speed]["median"]
            prompts = q["prompts"] or "all validation"
            rows.append(
                f"| int8 ({label}) vs fp32 PyTorch | x{x:.2f} speed, MRR@10 {delta:+.1f} points ({prompts} prompts)"
                f" | >= 2x, >= -1 point: {_met(x >= 2.0 and delta >= -1.0)} |"
            )
    for name in ("query_torch", "query_onnx", "query_onnx-int8", "query_torch-int8"):
        f = results / f"bench_{name}.json"
        if not f.is_file():
            continue
        d = json.loads(f.read_text())
        if "unique_passages" not in d:
            continue  # an older run over repeated passages: not comparable
        where = f"{d['unique_passages']:,} unique passages ({d['backend']} query encoder)"
        p50 = d["retrieve_ms"]["p50"]
        rows.append(
            f"| retrieve top-{d['k']} with stored spans @ {where} | p50 {p50:.1f} ms, p95 "
            f"{d['retrieve_ms']['p95']:.1f} ms (spans recomputed: p50 {d['spans_at_query_time_ms']['p50']:.1f} ms; "
            f"no spans: p50 {d['no_spans_ms']['p50']:.1f} ms) | p50 <= 30 ms: {_met(p50 <= 30)} |"
        )
        rr = d.get("reader_rerank_top20_ms")
        if rr:
            rows.append(
                f"| retrieve top 20 + reader re-rank ({d['reader']['backend']}) @ {where} | p50 {rr['p50']:.0f} ms, "
                f"p95 {rr['p95']:.0f} ms | p50 <= 300 ms: {_met(rr['p50'] <= 300)} |"
            )
        if name == "query_torch":
            r = d["hnsw_recall@10"]
            rows.append(
                f"| HNSW recall@10 vs exact search @ {d['unique_passages']:,} | {r:.3f} ({d['queries']} queries) "
                f"| >= 0.95: {_met(r >= 0.95)} |"
            )
    f = results / "bench_batch_order.json"
    if f.is_file():
        d = json.loads(f.read_text())
        pad, pps, rd = d["padded_over_real_tokens"], d["encode_with_spans_passages_per_s"], d["reader"]
        rows.append(
            f"| why: batches by characters vs by tokens ({d['passages']} passages, batch {d['batch_size']}) | "
            f"padded tokens x{pad['characters']:.2f} vs x{pad['tokens']:.2f} the real ones; encode with spans "
            f"{pps['characters']['median']:.0f} vs {pps['tokens']['median']:.0f} passages/s; reader re-rank of 20 "
            f"p50 {rd['rerank_top20_p50_ms']['characters']:.0f} vs {rd['rerank_top20_p50_ms']['tokens']:.0f} ms "
            f"| (explains the encode ratio) |"
        )
    f = results / "bench_ray_index.json"
    if f.is_file():
        d = json.loads(f.read_text())
        runs = d["runs"]
        per = ", ".join(f"{w['passages_per_s']:.0f}" for w in runs["ray_2_workers"]["workers"].values())
        rows.append(
            f"| Ray indexing into `chroma run`, 2 workers vs 1 ({d['passages']} passages with spans) | "
            f"x{d['ray_2_vs_1_worker']:.2f} wall ({runs['ray_2_workers']['passages_per_s']:.0f} vs "
            f"{runs['ray_1_worker']['passages_per_s']:.0f} passages/s; x{d['ray_2_vs_1_worker_excluding_startup']:.2f}"
            f" once the actors are up; per worker {per}/s busy; one process, 2 threads: "
            f"{runs['single_process']['passages_per_s']:.0f}/s) | >= 1.7x: {_met(d['ray_2_vs_1_worker'] >= 1.7)} |"
        )
    f = results / "bench_train_best.json"
    if f.is_file():
        d = json.loads(f.read_text())
        rows.append(
            f"| training, best preset ({d.get('n_negatives', '?')} negatives a query) | "
            f"{d['seconds_per_step']['median']:.2f} s/step, epoch {d['epoch_minutes_estimate']:.1f} min, peak "
            f"{d['peak_rss_mb']:.0f} MB | <= 15 min/epoch: {_met(d['epoch_minutes_estimate'] <= 15)} |"
        )
    f = results / "bench_reader.json"
    if f.is_file():
        d = json.loads(f.read_text())
        for backend, r in d["backends"].items():
            rerank, spans = r["rerank_top20_ms"]["p50"], r["spans_top5_ms"]["p50"]
            # the 250 ms target is set for the ONNX backends; PyTorch is listed for comparison
            verdict = _met(rerank <= 250 and spans <= 80) if backend.startswith("onnx") else "(ONNX target)"
            rows.append(
                f"| reader ({backend}, {d['layers']} layers): re-rank top 20 with evidence spans / spans for the top 5 "
                f"| p50 {rerank:.0f} ms (p95 {r['rerank_top20_ms']['p95']:.0f}) / "
                f"p50 {spans:.0f} ms | <= 250 ms / <= 80 ms: {verdict} |"
            )
    return "\n".join(rows) + "\n"


def cpu_cell(machine: dict) -> str:
    """The CPU model and its int8 instructions, as a table cell (files from before they were recorded say so)."""
    if "cpu_model" not in machine:
        return "not recorded"
    isa = machine.get("int8_instructions")
    if isa is None:
        return f"{machine['cpu_model']}, instructions unknown"
    return f"{machine['cpu_model']}, " + (" ".join(isa) if isa else "none of " + "/".join(INT8_INSTRUCTIONS))


def provenance(results: Path = RESULTS) -> str:
    """Where each figure comes from: the command, when it ran, the machine and its load at the start."""
    rows = [
        "| results file | command | date (UTC) | CPUs, load average at start | CPU, int8 instructions |",
        "|---|---|---|---|---|",
    ]
    for f in sorted(results.glob("bench_*.json")):
        d = json.loads(f.read_text())
        m = d.get("machine", {})
        load = ", ".join(f"{x:.2f}" for x in m.get("load_average_at_start", []))
        rows.append(
            f"| `{f.name}` | `{d.get('command', '?')}` | {d.get('date', '?')} | {m.get('cpus', '?')}, {load} "
            f"| {cpu_cell(m)} |"
        )
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="Tiny inputs; checks the scripts run.")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--summary-only", action="store_true", help="Rewrite bench_summary.md from the JSON files.")
    args = ap.parse_args()
    jobs = JOBS["quick" if args.quick or args.smoke else "full"]
    if args.smoke:
        jobs = [
            ["bench_encode.py", "--passages", "16", "--repeats", "1", "--quality-prompts", "2"],
            ["bench_query.py", "--limit", "300", "--queries", "3", "--backends", "torch,onnx"],
            ["bench_train.py", "--preset", "quick", "--steps", "1"],
            ["bench_reader.py", "--questions", "3", "--backends", "torch,onnx"],
            ["bench_ray_index.py", "--passages", "64", "--batch-size", "16"],
            ["bench_batch_order.py", "--passages", "16", "--questions", "2", "--repeats", "1", "--batch-size", "4"],
        ]
    if args.summary_only:
        jobs = []
    t0 = time.time()
    for job in jobs:
        cmd = [sys.executable, str(HERE / job[0]), *job[1:]]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env={**__import__("os").environ, "CERA_BENCH_OUT": args.out})
    md = table(Path(args.out)) + "\n" + provenance(Path(args.out))
    write_text(Path(args.out) / "bench_summary.md", md)  # atomic: a killed run leaves the old table
    print(md)
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
