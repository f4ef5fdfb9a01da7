"""Where a bi-encoder's top passage goes wrong within the article (``cera_rag.evaluation.errors``).

    python evals/error_analysis.py --systems "checkpoints/rows/07i_best_3epochs_lambda5-s*"

Each checkpoint ranks the passages of each validation prompt's own article (the paper's query form,
the table's "mrr@10" column); every miss of the top passage is sorted into a kind (restates the
result with two or more of the evidence's result numbers, another prompt's evidence, next to the
evidence, other), and lenient hit@1 / MRR@10 also count the restating passages as relevant: how
much of the distance to a perfect score is the annotations' single location rather than the
retriever. Passage vectors come from the evaluation cache that ``run_retrieval.py`` fills (what is
missing is encoded and added).
Writes ``results/error_analysis.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cera_rag.atomic import write_json, write_text  # noqa: E402
from cera_rag.data.dataset import DataConfig, load_processed  # noqa: E402
from cera_rag.encoders import load_encoder  # noqa: E402
from cera_rag.evaluation.cache import PassageVectorCache  # noqa: E402
from cera_rag.evaluation.errors import MISS_KINDS, error_summary  # noqa: E402
from cera_rag.evaluation.retrieval import (  # noqa: E402
    dense_run_from_vectors,
    eval_examples,
    pool_articles,
    query_text,
)
from cera_rag.experiments.runner import parse_systems  # noqa: E402

SUMMED = ("misses_at_1", "misses_with_a_positive_second", "hit@1", "lenient_hit@1", "mrr@10", "lenient_mrr@10")


def _markdown(payload: dict[str, Any]) -> str:
    kinds = " | ".join(k.replace("_", " ") for k in MISS_KINDS)
    lines = [
        f"Within-article misses of the top passage, {payload['split']} ({payload['queries']} prompts, paper query "
        f"form; {payload['queries_with_a_restating_passage']} prompts have a passage outside their positives that "
        f"shares >= {payload['min_shared']} result numbers with the evidence). Command: `{payload['command']}`.",
        "",
        f"| checkpoint | hit@1 | lenient hit@1 | MRR@10 | lenient MRR@10 | misses | positive 2nd | {kinds} |",
        "|---|---|---|---|---|---|---|" + "---|" * len(MISS_KINDS),
    ]
    for name, row in payload["systems"].items():
        counts = " | ".join(f"{row['miss_kinds'][k]} ({row['miss_kind_share'][k]:.0%})" for k in MISS_KINDS)
        lines.append(
            f"| {name} | {row['hit@1']:.3f} | {row['lenient_hit@1']:.3f} | {row['mrr@10']:.3f} | "
            f"{row['lenient_mrr@10']:.3f} | {row['misses_at_1']} | {row['misses_with_a_positive_second']} | {counts} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", required=True, help="Comma-separated checkpoint folders or globs (one row each).")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--min-shared", type=int, default=2, help="Result numbers a restating passage shares.")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="results/error_analysis")
    args = ap.parse_args()

    split = load_processed(args.split, DataConfig(), args.data_dir)
    exs = eval_examples(split)
    articles = pool_articles(split, exs, "article")
    systems: dict[str, Any] = {}
    for system in parse_systems(args.systems.split(",")):
        if system.kind != "dense":
            raise SystemExit(f"{system.label!r} is not a dense encoder; pass checkpoint folders or globs.")
        for member in system.members:
            encoder = load_encoder(member)
            vectors = PassageVectorCache(encoder, split, source=member).vectors(articles, show_progress=True)
            qv = encoder.encode_queries([query_text(ex, "paper") for ex in exs])
            run = dense_run_from_vectors(split, exs, qv, vectors, "article", top_k=10)
            systems[Path(member).name] = error_summary(split, exs, run, args.min_shared)
            print(Path(member).name, {k: systems[Path(member).name][k] for k in SUMMED})
    first = next(iter(systems.values()))
    payload = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python evals/error_analysis.py " + " ".join(f"'{a}'" if "*" in a else a for a in sys.argv[1:]),
        "split": args.split,
        "min_shared": args.min_shared,
        "queries": first["queries"],
        "queries_with_a_restating_passage": first["queries_with_a_restating_passage"],
        "systems": systems,
    }
    write_json(Path(args.out).with_suffix(".json"), payload, indent=1)
    write_text(Path(args.out).with_suffix(".md"), _markdown(payload))
    print(f"Wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
