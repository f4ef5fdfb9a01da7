"""How often a mined negative restates the prompt's reported result (a likely false negative).

    python evals/negative_overlap.py --split validation --n-negatives 2

For every prompt and strategy, the first ``n`` negatives are compared with the prompt's evidence
text: a negative counts as a likely restatement when it shares at least ``--min-shared`` of the
evidence's result numbers (decimals, percentages, numbers of two or more digits; small integers
such as group counts are too common to mean anything). Writes ``results/negative_overlap.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cera_rag.data.dataset import DataConfig, load_processed  # noqa: E402
from cera_rag.data.negatives import NEGATIVE_STRATEGIES  # noqa: E402
from cera_rag.evaluation.errors import result_numbers  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="validation")
    ap.add_argument("--n-negatives", type=int, default=2)
    ap.add_argument("--min-shared", type=int, default=2)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="results/negative_overlap.json")
    args = ap.parse_args()

    split = load_processed(args.split, DataConfig(), args.data_dir)
    out: dict[str, dict[str, float]] = {}
    for strategy in NEGATIVE_STRATEGIES:
        shared = total = 0
        for ex in split.examples:
            evidence = result_numbers(" ".join(ex.evidence_texts))
            for i in ex.negatives.get(strategy, [])[: args.n_negatives]:
                total += 1
                shared += (
                    len(evidence & result_numbers(split.passages[ex.prompt.article_id][i].text)) >= args.min_shared
                )
        out[strategy] = {"negatives": total, "restating": shared, "fraction": round(shared / max(total, 1), 4)}
        print(
            f"{strategy:>10}: {shared}/{total} negatives share >= {args.min_shared} result numbers "
            f"with the evidence ({out[strategy]['fraction']:.1%})"
        )
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"split": args.split, **vars(args), "strategies": out}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
