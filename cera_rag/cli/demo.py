"""``cera-rag demo``: index a few validation articles, ask three questions, highlight the evidence.

Examples::

    cera-rag demo                                   # local SmolLM2 via llama-cpp-python, writes demo.html
    cera-rag demo --model checkpoints/cera-best --top-k 5
    cera-rag demo --llm-base-url http://127.0.0.1:8000/v1 --llm-model my-model   # key: $OPENAI_API_KEY
"""

from __future__ import annotations

from pathlib import Path

import typer


def demo_command(
    model: str | None = typer.Option(
        None, "--model", "-m", help="CERA checkpoint (default: checkpoints/cera-best, cera-quick, else train quick)."
    ),
    articles: int = typer.Option(5, "--articles", min=1, help="Validation articles indexed."),
    questions: int = typer.Option(3, "--questions", min=1, help="Questions asked."),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="Passages retrieved per question."),
    html: Path = typer.Option(Path("demo.html"), "--html", help="Where the HTML page goes."),
    store: Path | None = typer.Option(None, "--store", help="Embedded Chroma folder (default: the cache)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Evidence Inference folder."),
    llm_base_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint (default: local SmolLM2)."),
    llm_model: str | None = typer.Option(None, help="Model name at --llm-base-url."),
    max_tokens: int = typer.Option(160, min=16, help="Answer length budget."),
    max_steps: int | None = typer.Option(
        None, min=1, help="Cap training steps if the demo must train (default: $CERA_DEMO_MAX_STEPS or the preset's)."
    ),
    train_output_dir: str | None = typer.Option(
        None, help="Where the demo saves a checkpoint it trains (default: checkpoints/cera-quick)."
    ),
    reader: str | None = typer.Option(None, help="CERAReader checkpoint (default: checkpoints/cera-reader[-quick])."),
    use_reader: bool = typer.Option(True, "--reader-rerank/--no-reader", help="Re-rank and mark evidence."),
    candidates: int = typer.Option(20, min=1, help="Passages CERA retrieves for the reader to re-rank."),
    reader_output_dir: str | None = typer.Option(
        None, help="Where the demo saves a reader it trains (default: checkpoints/cera-reader-quick)."
    ),
) -> None:
    """Answer three clinical questions with CERA retrieval and show the evidence it attends to."""
    import logging
    import warnings

    from cera_rag.experiments.demo import DemoConfig, run_demo

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from cera_rag.model import TruncationWarning

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=TruncationWarning)  # long passages: only their start is embedded
    run_demo(
        DemoConfig(
            model=model,
            n_articles=articles,
            n_questions=questions,
            top_k=top_k,
            html_path=html,
            store_dir=store,
            data_dir=data_dir,
            llm_base_url=llm_base_url,
            llm_model=llm_model,
            max_tokens=max_tokens,
            max_steps=max_steps,
            train_output_dir=train_output_dir,
            reader=reader,
            use_reader=use_reader,
            candidates=candidates,
            reader_output_dir=reader_output_dir,
        )
    )


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the ``cera-rag`` app."""
    app.command("demo")(demo_command)
