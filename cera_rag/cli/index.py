"""``cera-rag index`` and ``cera-rag query``: build a Chroma collection and search it with evidence highlighted.

Examples::

    cera-rag index --split validation --model checkpoints/cera-best
    cera-rag index notes/ --model checkpoints/cera-best --collection my-notes
    cera-rag index --split validation --contriever          # the Contriever-style baseline collection
    cera-rag index corpus/ --host 10.0.0.5 --ray local --workers 2   # Ray Data workers -> a Chroma server
    cera-rag query "Does drug A lower pain at 6 weeks compared with placebo?" -k 5
    cera-rag query "..." --host 127.0.0.1 --port 8000      # the same against a `chroma run` server
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

import typer

from cera_rag import store
from cera_rag.errors import ConfigError
from cera_rag.spans import highlight

#: Model used when ``--model`` is not given (unless ``--contriever``).
DEFAULT_MODEL = os.environ.get("CERA_MODEL", "checkpoints/cera-best")
#: Collection of the Contriever-style baseline when ``--collection`` is not given.
CONTRIEVER_COLLECTION = store.CONTRIEVER_COLLECTION

_MODEL = typer.Option(None, "--model", "-m", help=f"Checkpoint folder or hub id [default: {DEFAULT_MODEL}].")
_CONTRIEVER = typer.Option(
    False, "--contriever", help="Contriever-style encoder: mean pooling, unnormalised dot product."
)
_STORE = typer.Option(None, "--store", help="Embedded Chroma folder [default: $CERA_CHROMA_DIR or the cache].")
_HOST = typer.Option(None, "--host", help="Host of a `chroma run` server (instead of the embedded store).")
_PORT = typer.Option(None, "--port", help="Port of that server [default: 8000].")
_COLLECTION = typer.Option(
    None,
    "--collection",
    "-c",
    help=f"Collection [default: {store.DEFAULT_COLLECTION}, or {CONTRIEVER_COLLECTION}].",
)
_DEVICE = typer.Option(None, "--device", help="Torch device, e.g. cpu or cuda [default: auto].")
_BACKEND = typer.Option(
    "torch", "--backend", help="Forward pass: torch, onnx or onnx-int8 (ONNX Runtime on the CPU; the fast extra)."
)


def _encoder(model: str | None, contriever: bool, device: str | None, backend: str = "torch") -> Any:
    if model is None and not contriever:
        model = DEFAULT_MODEL
        if not Path(model).exists():
            raise ConfigError(
                f"No model at {model}; pass --model CHECKPOINT (a trained CERA folder or a hub id), "
                "or --contriever for the baseline."
            )
    return store.load_encoder(model, contriever=contriever, device=device, backend=backend)


def _collection(
    encoder: Any,
    collection: str | None,
    contriever: bool,
    path: Path | None,
    host: str | None,
    port: int | None,
    create: bool = True,
) -> Any:
    name = collection or (CONTRIEVER_COLLECTION if contriever else store.DEFAULT_COLLECTION)
    return store.open_for_encoder(encoder, name=name, path=path, host=host, port=port, create=create)


def index(
    directory: Path | None = typer.Argument(
        None, help="Folder of .txt files to index (each file is split into passages)."
    ),
    split: str | None = typer.Option(
        None, "--split", help="Index every passage of a processed Evidence Inference split instead."
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Evidence Inference folder."),
    passage_mode: str = typer.Option("sentences", "--passage-mode", help="sentences or windows (folders only)."),
    model: str | None = _MODEL,
    contriever: bool = _CONTRIEVER,
    store_path: Path | None = _STORE,
    host: str | None = _HOST,
    port: int | None = _PORT,
    collection: str | None = _COLLECTION,
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Passages embedded and written per step."),
    device: str | None = _DEVICE,
    backend: str = _BACKEND,
    ray: str | None = typer.Option(
        None,
        "--ray",
        help="Index on Ray Data workers writing to the --host server: 'local' starts a local Ray runtime, "
        "or give a cluster address (auto, ray://head:10001). Needs the scale extra.",
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="Ray encoder workers (with --ray)."),
    cpus_per_worker: float = typer.Option(1.0, "--cpus-per-worker", min=0.1, help="CPUs each Ray worker reserves."),
) -> None:
    """Embed passages into a Chroma collection (idempotent: re-running resumes and adds no duplicates)."""
    from rich.console import Console

    if (directory is None) == (split is None):
        raise ConfigError("Give either a DIRECTORY of .txt files or --split NAME (not both).")
    if passage_mode not in ("sentences", "windows"):
        raise ConfigError(f"--passage-mode must be 'sentences' or 'windows', not {passage_mode!r}.")
    if ray is not None:
        _index_on_ray(directory, split, data_dir, passage_mode, model, contriever, host, port, collection,
                      batch_size, device, backend, ray, workers, cpus_per_worker)  # fmt: skip
        return
    if directory is not None:
        passages = store.passages_from_directory(directory, mode=passage_mode)  # type: ignore[arg-type]
        source = str(directory)
    else:
        passages = store.passages_from_split(str(split), data_dir=data_dir)
        source = f"split {split!r}"
    encoder = _encoder(model, contriever, device, backend)
    coll = _collection(encoder, collection, contriever, store_path, host, port)
    report = store.index_passages(encoder, coll, passages, batch_size=batch_size, show_progress=True)
    Console().print(
        f"[bold]{coll.name}[/]: {report.added} passages added, {report.skipped} already indexed"
        + (f", {report.duplicates} repeated ids dropped" if report.duplicates else "")
        + f" (from {source}; {coll.count()} in the collection)."
    )


def _index_on_ray(
    directory: Path | None,
    split: str | None,
    data_dir: Path | None,
    passage_mode: str,
    model: str | None,
    contriever: bool,
    host: str | None,
    port: int | None,
    collection: str | None,
    batch_size: int,
    device: str | None,
    backend: str,
    address: str,
    workers: int,
    cpus_per_worker: float,
) -> None:
    """``cera-rag index --ray``: the same collection, encoded by Ray workers (``store.distributed``)."""
    from rich.console import Console

    from cera_rag.encoders import parse_encoder_spec
    from cera_rag.store.distributed import index_with_ray

    if host is None and port is None:
        raise ConfigError(
            "--ray writes from many processes, so it needs a Chroma server: start one with "
            "`chroma run --path DIR --port 8000` and pass --host/--port (an embedded --store is one process's)."
        )
    if model is None and not contriever:
        model = DEFAULT_MODEL
        if not Path(model).exists():
            raise ConfigError(f"No model at {model}; pass --model CHECKPOINT (a trained CERA folder or a hub id).")
    spec = str(model) if not contriever else (f"{model}@contriever" if model else "contriever")
    parse_encoder_spec(spec)  # a bad spec fails here, not on every worker
    source: Any = directory if directory is not None else store.passages_from_split(str(split), data_dir=data_dir)
    name = collection or (CONTRIEVER_COLLECTION if contriever else store.DEFAULT_COLLECTION)
    report = index_with_ray(
        source, spec, name, client={"host": host, "port": port}, address=None if address == "local" else address,
        workers=workers, cpus_per_worker=cpus_per_worker, batch_size=batch_size, backend=backend, device=device,
        mode=passage_mode,
    )  # fmt: skip
    console = Console()
    console.print(
        f"[bold]{name}[/] (Ray, {workers} workers): {report.added} passages added, {report.skipped} already indexed, "
        f"{report.passages} in {report.batches} batches, {report.passages_per_second:.1f} passages/s"
        + (f"; {report.retried_batches} batches retried" if report.retried_batches else "")
    )
    for worker, w in sorted(report.workers.items()):
        console.print(f"  worker {worker}: {w['passages']:.0f} passages, {w['passages_per_s']:.1f} passages/s busy")
    if report.missing:
        raise ConfigError(
            f"{len(report.missing)} passages are not in {name} after the run (e.g. {report.missing[0]}); "
            "run the same command again: it adds only what is missing."
        )


def query(
    text: str = typer.Argument(..., help="The question."),
    k: int = typer.Option(5, "-k", "--top-k", min=1, help="Passages to return."),
    where: str | None = typer.Option(
        None, "--where", help='Chroma metadata filter as JSON, e.g. \'{"article_id": "1234"}\'.'
    ),
    top_fraction: float = typer.Option(0.2, "--top-fraction", min=0.0, max=1.0, help="Share of tokens highlighted."),
    as_json: bool = typer.Option(False, "--json", help="Print the hits as JSON lines (one object a line) instead."),
    model: str | None = _MODEL,
    contriever: bool = _CONTRIEVER,
    store_path: Path | None = _STORE,
    host: str | None = _HOST,
    port: int | None = _PORT,
    collection: str | None = _COLLECTION,
    device: str | None = _DEVICE,
    backend: str = _BACKEND,
    reader: str | None = typer.Option(
        None,
        "--reader",
        help="A CERAReader checkpoint: re-rank the top --candidates and mark this question's evidence.",
    ),
    candidates: int = typer.Option(20, "--candidates", min=1, help="Passages the reader re-ranks (with --reader)."),
) -> None:
    """Search a collection; print passages with their evidence highlighted (the reader's, with --reader)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.panel import Panel

    try:
        filt = json.loads(where) if where else None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--where is not valid JSON ({exc}).") from None
    if filt is not None and not isinstance(filt, dict):
        raise ConfigError(f'--where must be a JSON object such as \'{{"article_id": "1234"}}\', not {where}.')
    if not 0.0 < top_fraction <= 1.0:
        raise ConfigError(f"--top-fraction must be in (0, 1], got {top_fraction}.")
    encoder = _encoder(model, contriever, device, backend)
    coll = _collection(encoder, collection, contriever, store_path, host, port, create=False)
    hits = store.query(
        encoder, coll, text, k=max(k, candidates) if reader else k, where=filt, top_fraction=top_fraction
    )
    evidence: list[list[Any]] = [[] for _ in hits]
    if reader:
        from cera_rag.reader import CERAReader, ReaderBackend
        from cera_rag.spans import span_to_dict

        # from_pretrained names an unknown backend in a ConfigError; the cast only informs mypy.
        loaded = CERAReader.from_pretrained(reader, device=device, backend=cast(ReaderBackend, backend))
        ranked = loaded.rerank(
            # fused with the retrieval score (z-scores, weight 1): better than either alone on validation
            text, [h.text for h in hits], top_fraction=top_fraction,
            first_stage_scores=[h.score for h in hits], fusion_weight=1.0,
        )[:k]  # fmt: skip
        evidence = [[span_to_dict(s) for s in r.spans] for r in ranked]
        hits = [hits[r.index] for r in ranked]
        reader_scores = [r.score for r in ranked]
    if as_json:
        for i, h in enumerate(hits):
            row = {"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata, "spans": h.spans}
            if reader:
                row.update({"reader_score": reader_scores[i], "evidence_spans": evidence[i]})
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    console = Console()
    if not hits:
        console.print(f"No passages in {coll.name!r}" + (" match the filter." if filt else "; index some first."))
        return
    for rank, h in enumerate(hits, 1):
        if reader:
            title = f"#{rank}  reader {reader_scores[rank - 1]:.3f}  retrieval {h.score:.4f}  [dim]{escape(h.id)}[/]"
            subtitle = "highlighted: the reader's evidence for this question"
            console.print(Panel(highlight(h.text, evidence[rank - 1]), title=title, title_align="left",
                                subtitle=subtitle, subtitle_align="right"))  # fmt: skip
        else:
            title = f"#{rank}  score {h.score:.4f}  [dim]{escape(h.id)}[/]"
            console.print(Panel(highlight(h.text, h.spans), title=title, title_align="left"))


def register(app: typer.Typer) -> None:
    """Add the ``index`` and ``query`` commands to the ``cera-rag`` app."""
    app.command("index")(index)
    app.command("query")(query)
