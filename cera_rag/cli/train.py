"""``cera-rag train``: fine-tune a CERA encoder from a preset, a YAML config and flags.

Examples::

    cera-rag train --preset quick                      # a few minutes on a laptop CPU
    cera-rag train --preset best                       # the README's best row -> checkpoints/cera-best
    cera-rag train --config configs/06_cera_paper.yaml --seed 2
    cera-rag train --preset best --resume              # continue an interrupted run
    cera-rag train --preset paper --base-model facebook/contriever   # where the hub is reachable
    cera-rag soup checkpoints/rows/07h_best_3epochs_lambda1-s{42,43,44} -o checkpoints/cera-soup
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

from cera_rag.config import PRESETS, load_config


def train_command(
    preset: str | None = typer.Option(None, help=f"One of {sorted(PRESETS)}."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file of TrainConfig keys."),
    output_dir: str | None = typer.Option(None, "--output-dir", "-o", help="Where the best checkpoint goes."),
    base_model: str | None = typer.Option(None, help="Local folder or hub id (default all-MiniLM-L6-v2)."),
    negatives: str | None = typer.Option(None, help="none, random, bm25, subjective or hybrid."),
    n_negatives: int | None = typer.Option(None),
    alignment_weight: float | None = typer.Option(None, "--lambda", help="Weight of the alignment loss."),
    epochs: int | None = typer.Option(None),
    batch_size: int | None = typer.Option(None),
    lr: float | None = typer.Option(None),
    max_query_length: int | None = typer.Option(None, help="Query tokens kept, in training and in the checkpoint."),
    seed: int | None = typer.Option(None),
    max_steps: int | None = typer.Option(None, help="Stop after this many steps (smoke runs)."),
    max_train_prompts: int | None = typer.Option(None),
    data_dir: Path | None = typer.Option(None, help="Evidence Inference folder (default: $CERA_DATA_DIR)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from <output-dir>.run/."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train a CERA encoder; the best validation epoch is saved to --output-dir."""
    from cera_rag.train import Trainer

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    overrides: dict[str, Any] = {
        "output_dir": output_dir,
        "base_model": base_model,
        "negatives": negatives,
        "n_negatives": n_negatives,
        "alignment_weight": alignment_weight,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "max_query_length": max_query_length,
        "seed": seed,
        "max_steps": max_steps,
        "max_train_prompts": max_train_prompts,
    }
    cfg = load_config(preset, config, overrides)
    try:
        result = Trainer(cfg, data_dir).train(resume=resume, show_progress=not quiet)
    except KeyboardInterrupt as exc:
        typer.echo(f"\n{exc}", err=True)
        raise typer.Exit(130) from None
    typer.echo(
        json.dumps(
            {
                "output_dir": result.output_dir,
                "steps": result.steps,
                "seconds": round(result.seconds, 1),
                "history": result.history,
            },
            indent=1,
        )
    )


def train_reader_command(
    preset: str | None = typer.Option("best", help="quick (minutes) or best (the README's reader row)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file of ReaderTrainConfig keys."),
    output_dir: str | None = typer.Option(None, "--output-dir", "-o", help="Default: checkpoints/cera-reader."),
    base_model: str | None = typer.Option(None, help="Local folder or hub id (default all-MiniLM-L6-v2)."),
    epochs: int | None = typer.Option(None),
    batch_size: int | None = typer.Option(None, help="Questions per step."),
    lr: float | None = typer.Option(None),
    layers: int | None = typer.Option(None, help="Keep only the first N encoder layers (a faster reader)."),
    seed: int | None = typer.Option(None),
    max_steps: int | None = typer.Option(None, help="Stop after this many steps (smoke runs)."),
    max_train_prompts: int | None = typer.Option(None),
    data_dir: Path | None = typer.Option(None, help="Evidence Inference folder (default: $CERA_DATA_DIR)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from <output-dir>.run/."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train the CERA reader (re-ranks and marks the evidence for each question); best epoch -> --output-dir."""
    from cera_rag.reader_train import ReaderTrainer, load_reader_config

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    overrides: dict[str, Any] = {
        "output_dir": output_dir,
        "base_model": base_model,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "layers": layers,
        "seed": seed,
        "max_steps": max_steps,
        "max_train_prompts": max_train_prompts,
    }
    cfg = load_reader_config(preset, config, overrides)
    try:
        result = ReaderTrainer(cfg, data_dir).train(resume=resume, show_progress=not quiet)
    except KeyboardInterrupt as exc:
        typer.echo(f"\n{exc}", err=True)
        raise typer.Exit(130) from None
    typer.echo(
        json.dumps(
            {"output_dir": result.output_dir, "steps": result.steps, "seconds": round(result.seconds, 1),
             "history": result.history},
            indent=1,
        )
    )  # fmt: skip


def soup_command(
    checkpoints: list[Path] = typer.Argument(..., help="Two or more checkpoints of one recipe (e.g. its seeds)."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Where the averaged checkpoint goes."),
) -> None:
    """Average the weights of checkpoints fine-tuned with one recipe into one encoder (a model soup)."""
    from cera_rag.soup import average_checkpoints

    average_checkpoints(checkpoints, output_dir)
    typer.echo(json.dumps({"output_dir": str(output_dir), "checkpoints": [str(c) for c in checkpoints]}, indent=1))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("train-reader")(train_reader_command)
    app.command("soup")(soup_command)
