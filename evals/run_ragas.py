"""RAGAS comparison of CERA (bi-encoder, and with its reader), MiniLM, a Contriever-style encoder and BM25.

Every system runs behind the same LlamaIndex and LangChain pipelines (one row per system; the
summary says whether both frameworks sent the LLM identical requests).

    python evals/run_ragas.py --split validation --limit 30
    python evals/run_ragas.py --limit 30 --llm-base-url http://127.0.0.1:8000/v1 --llm-model my-model \
        --judge-base-url https://api.openai.com/v1 --judge-model gpt-4o-mini      # key from OPENAI_API_KEY

Without --llm-base-url the embedded llama-cpp server runs SmolLM2-135M-Instruct locally (no key);
it is a weak generator and a weak judge: its verdicts always parse (bounded JSON schemas compiled
into a grammar) but rank systems only coarsely. Rows go to
<out>/ragas_rows.jsonl as they are scored; rerunning the same command resumes
(stop with Ctrl-C, `kill -INT PID` or `kill PID`).
Summary: <out>/ragas_summary.{md,json,png}.

Runnable from the repository root without installing the package (the root is put on sys.path).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# No model hub here: encoders come from local folders and the packaged MiniLM.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import typer  # noqa: E402

from cera_rag.errors import CERAError  # noqa: E402


class Terminated(KeyboardInterrupt):
    """SIGTERM, stopping the run the way Ctrl-C does (finished rows kept, summary written)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def run_ragas_command(
    split: str = typer.Option("validation", help="Evidence Inference split."),
    limit: int | None = typer.Option(30, min=1, help="Questions: the first N prompts with evidence."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Passages retrieved per question (all systems)."),
    cera_model: str | None = typer.Option(
        None, help="CERA checkpoint (default: checkpoints/cera-best, else checkpoints/cera-quick)."
    ),
    reader_model: str | None = typer.Option(
        None, help="CERA reader of cera+reader (default: checkpoints/cera-reader, else cera-reader-quick)."
    ),
    candidates: int = typer.Option(20, min=1, help="Passages the reader re-ranks (cera+reader)."),
    out: Path = typer.Option(Path("results/ragas"), "--out", help="Folder of the rows and the summary."),
    store_dir: Path | None = typer.Option(None, help="Chroma stores (one per encoder) (default: the cache)."),
    data_dir: Path | None = typer.Option(None, help="Evidence Inference folder (default: $CERA_DATA_DIR)."),
    frameworks: str = typer.Option(
        "llamaindex,langchain", help="Comma-separated: the first answers, the others check it (same request)."
    ),
    systems: str = typer.Option(
        "cera,cera+reader,minilm,contriever-config,bm25",
        help="Comma-separated subset of cera, cera+reader, minilm, contriever-config, bm25.",
    ),
    llm_base_url: str | None = typer.Option(
        None, help="OpenAI-compatible generator endpoint (ends in /v1) (default: embedded llama-cpp server)."
    ),
    llm_model: str | None = typer.Option(None, help="Generator model name (required with --llm-base-url)."),
    llm_max_tokens: int = typer.Option(256, min=16, help="Generator completion budget."),
    judge_base_url: str | None = typer.Option(
        None, help="OpenAI-compatible judge endpoint (default: the generator's)."
    ),
    judge_model: str | None = typer.Option(None, help="Judge model name (default: the generator's)."),
    judge_max_tokens: int | None = typer.Option(
        None, min=64, help="Judge completion budget (default: 4096; 1536 on the local server)."
    ),
    judge_json_mode: bool | None = typer.Option(
        None,
        "--judge-json-mode/--no-judge-json-mode",
        help="Bounded JSON schemas in response_format (llama-cpp servers; default: local only); else instructor.",
    ),
    judge_timeout: float = typer.Option(900.0, help="Seconds for one sample's faithfulness (all its judge calls)."),
    request_timeout: float = typer.Option(300.0, help="Seconds per LLM request."),
    skip_faithfulness: bool = typer.Option(False, "--skip-faithfulness", help="LLM-free metrics only."),
    restart: bool = typer.Option(False, "--restart", help="Discard the rows in --out and start over."),
    device: str | None = typer.Option(None, help="Torch device of the encoders."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Score five retrieval systems behind the same RAG pipeline with RAGAS (resumable)."""
    from cera_rag.errors import ConfigError
    from cera_rag.experiments.rag.llm import LLMEndpoint, api_key_from_env
    from cera_rag.experiments.rag.ragas_eval import FRAMEWORKS, SYSTEMS, RagasEvalConfig, run_ragas_eval

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    if not verbose:
        warnings.filterwarnings("ignore")

    def parse(value: str, allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
        items = tuple(v.strip() for v in value.split(",") if v.strip())
        bad = [v for v in items if v not in allowed]
        if not items or bad:
            raise ConfigError(f"{flag} takes a comma-separated subset of {', '.join(allowed)}; got {value!r}.")
        return items

    key = api_key_from_env()
    generator = None
    if llm_base_url:
        if not llm_model:
            raise ConfigError("--llm-base-url needs --llm-model (the model name the endpoint serves).")
        generator = LLMEndpoint(
            base_url=llm_base_url, model=llm_model, api_key=key, max_tokens=llm_max_tokens, timeout=request_timeout
        )
    elif llm_model:
        raise ConfigError("--llm-model needs --llm-base-url (without it the embedded local model is used).")
    judge = None
    if judge_base_url or judge_model:
        base = judge_base_url or llm_base_url
        if base is None:
            raise ConfigError("--judge-model needs --judge-base-url (or --llm-base-url) to say where it runs.")
        judge = LLMEndpoint(
            base_url=base,
            model=judge_model or llm_model or "",
            api_key=key,
            max_tokens=judge_max_tokens or 4096,
            timeout=request_timeout,
            json_mode=bool(judge_json_mode),
        )
        if not judge.model:
            raise ConfigError("--judge-base-url needs --judge-model.")
    cfg = RagasEvalConfig(
        split=split,
        limit=limit,
        top_k=top_k,
        cera_model=cera_model,
        reader_model=reader_model,
        candidates=candidates,
        out_dir=out,
        store_dir=store_dir,
        data_dir=data_dir,
        frameworks=parse(frameworks, FRAMEWORKS, "--frameworks"),
        systems=parse(systems, SYSTEMS, "--systems"),
        generator=generator,
        judge=judge,
        skip_faithfulness=skip_faithfulness,
        judge_timeout=judge_timeout,
        local_max_tokens=llm_max_tokens,
        local_judge_max_tokens=judge_max_tokens or 1536,
        restart=restart,
        device=device,
    )
    try:
        summary = run_ragas_eval(cfg, echo=lambda line: typer.echo(line, err=True))
    except KeyboardInterrupt as exc:  # caught here: Click turns one reaching it into "Aborted!"
        typer.echo("interrupted: finished rows are saved; rerun the same command to resume.", err=True)
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    md = Path(out) / "ragas_summary.md"
    typer.echo(md.read_text(encoding="utf-8") if md.exists() else summary)


def main() -> None:
    import signal

    # SIGINT as Ctrl-C even where the shell started us ignoring it (its rule for `cmd &` in a script), as
    # `cera-rag train` does; and SIGTERM (`kill PID`) gets the same clean stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        typer.run(run_ragas_command)
    except CERAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
