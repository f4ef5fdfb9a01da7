"""What cutting queries at ``max_query_length`` tokens costs a trained bi-encoder, without retraining.

    python evals/query_length.py --systems "checkpoints/rows/07k_best_4negatives-s*" --lengths 64,128

Each checkpoint's passages are embedded once (the evaluation cache that ``run_retrieval.py`` fills);
its validation queries are embedded again at each length (the checkpoint's own passage length is
kept) and ranked within the article and over the whole corpus, in the paper's query form and in
held-out phrasings. Per-query MRR@10 is averaged over a system's seeds, and every length is
compared with the first by a paired bootstrap CI and randomisation test. Rows trained with longer
queries (row 7p) answer the training side; this answers the query-time side.
Writes ``results/query_length.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cera_rag.atomic import write_json, write_text  # noqa: E402
from cera_rag.data.dataset import DataConfig, load_processed  # noqa: E402
from cera_rag.encoders import load_encoder  # noqa: E402
from cera_rag.evaluation.cache import PassageVectorCache  # noqa: E402
from cera_rag.evaluation.retrieval import (  # noqa: E402
    build_qrels,
    dense_run_from_vectors,
    eval_examples,
    evaluate_run,
    pool_articles,
    query_text,
)
from cera_rag.evaluation.stats import mean_per_query, paired_comparison  # noqa: E402
from cera_rag.experiments.runner import parse_systems  # noqa: E402

STYLES = ("paper", "heldout")
POOLS = ("article", "corpus")


def _markdown(payload: dict[str, Any]) -> str:
    first = payload["lengths"][0]
    lines = [
        f"MRR@10 on {payload['split']} with queries cut at each length (passages as trained), seed means; "
        f"the change against {first} tokens is paired per query. Queries longer than each length: "
        + "; ".join(
            f"{style} " + ", ".join(f"> {n}: {c}" for n, c in over.items())
            for style, over in payload["queries_over"].items()
        )
        + f". Command: `{payload['command']}`.",
        "",
        "| system | seeds | query | pool | " + " | ".join(f"{n} tokens" for n in payload["lengths"]) + " | change "
        "(95% CI, p) |",
        "|---|---|---|---|" + "---|" * len(payload["lengths"]) + "---|",
    ]
    for name, row in payload["systems"].items():
        for key, cell in row["cells"].items():
            style, pool = key.split("/")
            means = " | ".join(f"{cell['mrr@10'][str(n)]:.3f}" for n in payload["lengths"])
            changes = "; ".join(
                f"{c['diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], p {c['p_value']:.3f}"
                for c in cell["change"].values()
            )
            lines.append(f"| {name} | {row['seeds']} | {style} | {pool} | {means} | {changes} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", required=True, help="Comma-separated checkpoint folders or globs (one row each).")
    ap.add_argument("--lengths", default="64,128", help="Query lengths in tokens; the first is the reference.")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="results/query_length")
    args = ap.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    if len(lengths) < 2 or any(n < 8 for n in lengths):
        raise SystemExit(f"--lengths needs two or more lengths of at least 8 tokens, got {args.lengths!r}.")

    split = load_processed(args.split, DataConfig(), args.data_dir)
    exs = eval_examples(split)
    qrels = build_qrels(split)
    queries = {style: [query_text(ex, style) for ex in exs] for style in STYLES}
    systems: dict[str, Any] = {}
    queries_over: dict[str, dict[str, int]] = {}
    for system in parse_systems(args.systems.split(",")):
        if system.kind != "dense":
            raise SystemExit(f"{system.label!r} is not a dense encoder; pass checkpoint folders or globs.")
        # (style, pool) -> length -> per-seed per-query MRR@10
        per_seed: dict[str, dict[int, list[dict[str, float]]]] = {}
        for member in system.members:
            encoder = load_encoder(member)
            # one encoding of every passage serves both pools (the article pool reads its own article's rows)
            vectors = PassageVectorCache(encoder, split, source=member).vectors(
                pool_articles(split, exs, "corpus"), show_progress=True
            )
            for n in lengths:
                encoder.config.max_query_length = n
                for style in STYLES:
                    token_counts = [len(ids) for ids in encoder.tokenizer(queries[style])["input_ids"]]
                    queries_over.setdefault(style, {})[str(n)] = sum(c > n for c in token_counts)
                    qv = np.asarray(encoder.encode_queries(queries[style]))
                    for pool in POOLS:
                        run = dense_run_from_vectors(split, exs, qv, vectors, pool, top_k=10)
                        res = evaluate_run(qrels, run, ["mrr@10"], per_query=True)
                        per_seed.setdefault(f"{style}/{pool}", {}).setdefault(n, []).append(res["per_query"]["mrr@10"])
            print(Path(member).name, "done", flush=True)
        cells: dict[str, Any] = {}
        for key, by_length in per_seed.items():
            means = {n: mean_per_query(runs) for n, runs in by_length.items()}
            cells[key] = {
                "mrr@10": {str(n): float(np.mean(list(m.values()))) for n, m in means.items()},
                "change": {
                    str(n): paired_comparison(means[n], means[lengths[0]], n_resamples=10000) for n in lengths[1:]
                },
            }
        systems[system.label] = {"seeds": len(system.members), "members": list(system.members), "cells": cells}
    payload = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python evals/query_length.py " + " ".join(f"'{a}'" if "*" in a else a for a in sys.argv[1:]),
        "split": args.split,
        "lengths": lengths,
        "queries_over": queries_over,
        "systems": systems,
    }
    write_json(Path(args.out).with_suffix(".json"), payload, indent=1)
    write_text(Path(args.out).with_suffix(".md"), _markdown(payload))
    print(_markdown(payload))


if __name__ == "__main__":
    main()
