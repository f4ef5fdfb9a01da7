"""Retrieval, plausibility and faithfulness evaluation: the same as ``cera-rag evaluate``.

    python evals/run_retrieval.py --split validation --systems bm25,minilm,checkpoints/cera-best \
        --pool article,corpus --limit 60 --out results/

Runnable from the repository root without installing the package (the root is put on sys.path).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import typer  # noqa: E402

from cera_rag.cli.evaluate import evaluate_command  # noqa: E402
from cera_rag.errors import CERAError  # noqa: E402


def main() -> None:
    try:
        typer.run(evaluate_command)
    except CERAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
