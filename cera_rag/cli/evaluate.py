"""``cera-rag evaluate``: retrieval metrics, paired statistics, plausibility and faithfulness, with plots.

Examples::

    cera-rag evaluate --split validation --systems bm25,minilm,checkpoints/cera-best --pool article,corpus
    cera-rag evaluate --systems bm25,minilm --limit 60 --out results/
    cera-rag evaluate --systems "bm25,minilm,checkpoints/rows/cera-s*" --query-style paper,heldout

``python evals/run_retrieval.py`` takes the same options.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def evaluate_command(
    split: str = typer.Option("validation", help="Split to evaluate (train or validation)."),
    systems: str = typer.Option(
        "bm25,minilm",
        help="Comma-separated: bm25, minilm, minilm-cls, a model folder or hub id (suffix @cls/@mean overrides "
        "pooling), or a glob of seed folders (mean ± std over seeds).",
    ),
    pool: str = typer.Option("article,corpus", help="Comma-separated pools: article (within-article), corpus."),
    query_style: str = typer.Option("paper", help="Comma-separated query styles: paper, heldout."),
    limit: int | None = typer.Option(None, help="Evaluate only the first N prompts with a positive passage."),
    out: Path = typer.Option(Path("results"), help="Output folder for JSON, markdown and PNGs."),
    name: str | None = typer.Option(None, help="File stem of the outputs (default eval-<split>[-limitN])."),
    baseline: str | None = typer.Option(None, help="System the others are compared with (default: the first)."),
    faithfulness: bool = typer.Option(True, "--faithfulness/--no-faithfulness", help="Run faithfulness."),
    faithfulness_limit: int = typer.Option(100, help="Positive pairs (seeded subsample) for faithfulness."),
    plausibility: bool = typer.Option(True, "--plausibility/--no-plausibility", help="Run plausibility."),
    top_k: int = typer.Option(100, help="Passages kept per query in a run."),
    n_bootstrap: int = typer.Option(2000, help="Bootstrap resamples for confidence intervals."),
    n_permutations: int = typer.Option(10000, help="Sign flips for the randomisation test."),
    seed: int = typer.Option(0, help="Seed of bootstrap, permutation test and random baselines."),
    batch_size: int = typer.Option(32, help="Encoder batch size."),
    threads: int | None = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
    backend: str = typer.Option(
        "auto",
        help="Dense forward pass: onnx (ONNX Runtime, same vectors, faster), torch, or auto (onnx if installed).",
    ),
    reader: str | None = typer.Option(
        None, help="A CERAReader checkpoint: adds '<first stage>+reader', re-ranking the first stage's top N."
    ),
    first_stage: str | None = typer.Option(None, help="Dense system the reader re-ranks (default: the first)."),
    rerank_top_n: int = typer.Option(20, help="Passages the reader re-ranks per query."),
    reader_fusion: float | None = typer.Option(
        None, help="Also report z(reader) + W * z(first stage) over the top N as '<first>+reader+fusion'."
    ),
    reader_backend: str = typer.Option("auto", help="Reader forward pass: auto, torch, onnx or onnx-int8."),
    explanations: bool = typer.Option(
        True, "--explanations/--no-explanations", help="Base-rate-aware span rows (lift, evidence hit@1)."
    ),
    data_dir: Path | None = typer.Option(None, help="Evidence Inference folder (default: $CERA_DATA_DIR)."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Read and write the passage-vector cache."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or logs."),
) -> None:
    """Evaluate retrieval systems; writes <out>/<name>.json, .per_query.json, .md and PNG plots."""
    from cera_rag.experiments.report import write_report
    from cera_rag.experiments.runner import EvalConfig, run_evaluation

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    if quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if backend not in ("auto", "torch", "onnx"):
        raise typer.BadParameter(f"{backend!r} is not a backend; use auto, torch or onnx.", param_hint="--backend")
    if threads:
        import torch

        torch.set_num_threads(threads)
    config = EvalConfig(
        split=split,
        systems=_csv(systems),
        pools=_csv(pool),  # type: ignore[arg-type]
        query_styles=_csv(query_style),
        limit=limit,
        top_k=top_k,
        baseline=baseline,
        plausibility=plausibility,
        faithfulness=faithfulness,
        faithfulness_limit=faithfulness_limit,
        n_bootstrap=n_bootstrap,
        n_permutations=n_permutations,
        seed=seed,
        batch_size=batch_size,
        backend=backend,  # type: ignore[arg-type]
        use_cache=cache,
        reader=reader,
        reader_first_stage=first_stage,
        rerank_top_n=rerank_top_n,
        reader_fusion=reader_fusion,
        reader_backend=reader_backend,  # type: ignore[arg-type]
        explanations=explanations,
    )
    stem = name or f"eval-{split}" + (f"-limit{limit}" if limit else "")
    t0 = time.perf_counter()
    try:
        results, per_query = run_evaluation(config, data_dir, show_progress=not quiet)
    except KeyboardInterrupt:
        typer.echo("\nInterrupted; encoded passages are cached, rerun the same command to resume.", err=True)
        raise typer.Exit(130) from None
    paths = write_report(results, per_query, out, stem)
    typer.echo(f"Wrote {', '.join(str(p) for p in paths)} ({time.perf_counter() - t0:.0f} s)")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
