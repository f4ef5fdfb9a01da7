"""``cera-rag data``: statistics of the processed splits, and download of the upstream release."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(no_args_is_help=True)

DataDirOption = Annotated[
    Optional[Path],  # noqa: UP045 - typer needs the Optional spelling on Python 3.10
    typer.Option("--data-dir", help="Evidence Inference folder (default: $CERA_DATA_DIR or ../shared/data/...)."),
]


@app.command("stats")
def stats(
    data_dir: DataDirOption = None,
    splits: Annotated[str, typer.Option(help="Comma-separated splits.")] = "train,validation",
    passage_mode: Annotated[str, typer.Option(help="'sentences' (packed, default) or 'windows' (the paper's).")] = (
        "sentences"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild instead of reading the cache.")] = False,
) -> None:
    """Per split: articles, prompts, evidence, passages, positives, and negatives per strategy."""
    from rich.console import Console
    from rich.table import Table

    from cera_rag.data.dataset import DataConfig, load_processed
    from cera_rag.data.stats import split_stats

    config = DataConfig(passage_mode=passage_mode)  # type: ignore[arg-type]
    console = Console()
    results = {}
    for split in [s.strip() for s in splits.split(",") if s.strip()]:
        with console.status(f"processing {split} (cached after the first run)..."):
            ps = load_processed(split, config, data_dir=data_dir, use_cache=not no_cache)
        results[split] = split_stats(ps)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    overview = Table(title="Evidence Inference 2.0 (processed)")
    overview.add_column("split")
    keys = ["articles", "prompts", "evidence_annotations", "evidence_spans", "passages", "passage_words_mean",
            "prompts_with_positive", "positives_per_prompt"]  # fmt: skip
    headers = ["articles", "prompts", "evidence rows", "unique spans", "passages", "words/passage",
               "prompts w/ positive", "positives/prompt"]  # fmt: skip
    for header in headers:
        overview.add_column(header, justify="right")
    for split, st in results.items():
        overview.add_row(split, *[str(st[k]) for k in keys])
    console.print(overview)
    negatives = Table(title="Hard negatives per strategy (same article, evidence guard applied)")
    for col in ("split", "strategy", "mean per query", "guard removed (total)", "guard removed / query",
                "mean subjectivity"):  # fmt: skip
        negatives.add_column(col, justify="right" if col not in ("split", "strategy") else "left")
    for split, st in results.items():
        for strategy, v in st["negatives"].items():
            negatives.add_row(
                split, strategy, str(v["mean_per_query"]), str(v["guard_removed_total"]),
                str(v["guard_removed_mean"]), str(v["mean_subjectivity"]),
            )  # fmt: skip
    console.print(negatives)
    for split, st in results.items():
        if st["dropped"]:
            console.print(f"[dim]{split}: dropped {st['dropped']}[/]")


@app.command("download")
def download_cmd(dest: Annotated[Path, typer.Argument(help="Folder to unpack the release into.")]) -> None:
    """Fetch the upstream Evidence Inference release from GitHub (needs internet)."""
    from cera_rag.data.download import download

    path = download(dest)
    typer.echo(f"Downloaded to {path}; use it with --data-dir {path} or CERA_DATA_DIR={path}.")
