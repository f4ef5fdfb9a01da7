"""``cera-rag demo``: a trained CERA retriever answering clinical questions, with its evidence highlighted.

Steps: find a CERA checkpoint (``checkpoints/cera-best``, else ``checkpoints/cera-quick``, else train the
``quick`` preset with a progress bar) and a reader (``checkpoints/cera-reader``, else
``checkpoints/cera-reader-quick``, else train the reader's ``quick`` preset); index a handful of
validation articles into an embedded Chroma store; ask three clinical questions about them
through the LlamaIndex pipeline (``cera_rag.experiments.rag.pipelines``): CERA retrieves the top
``candidates`` passages, the reader re-ranks them and marks the evidence for each question, and
the embedded local LLM (SmolLM2-135M through llama-cpp's OpenAI-compatible server, or
``--llm-base-url``) answers; print each answer with its passages, the reader's evidence
highlighted, and write the same as ``demo.html``. Every step is timed.

The answers of a 135M-parameter model are often wrong: the point is the retrieval and the
highlighted evidence, which a reader can check against the answer.
"""

from __future__ import annotations

import html
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cera_rag.experiments.rag.ragas_eval import DEFAULT_READER_MODELS
from cera_rag.spans import SpanDict

logger = logging.getLogger(__name__)

#: Environment variable capping the training steps when the demo has to train (smoke tests).
MAX_STEPS_ENV = "CERA_DEMO_MAX_STEPS"
#: Colour of highlighted evidence (RGB); a span's opacity grows with its weight.
HIGHLIGHT_RGB = (255, 191, 0)
#: Colour of the reader's evidence spans.
EVIDENCE_RGB = (80, 200, 120)


@dataclass
class DemoPassage:
    """One retrieved passage with its rationale spans (offsets into ``text``)."""

    id: str
    text: str
    score: float | None
    spans: list[SpanDict] = field(default_factory=list)
    #: the reader's evidence for the question (offsets into ``text``); highlighted when present
    evidence: list[SpanDict] = field(default_factory=list)


@dataclass
class DemoAnswer:
    """A question, the LLM's answer, the retrieved passages and the annotated label (for reference)."""

    question: str
    answer: str
    passages: list[DemoPassage]
    reference_label: str = ""
    seconds: float = 0.0


# ----------------------------------------------------------------------------------- checkpoint
def find_checkpoint(candidates: Sequence[str] | None = None) -> str | None:
    """The first finished checkpoint folder of ``candidates`` (default: cera-best, then cera-quick).

    A folder whose training run is still going (or was interrupted) holds only its best epoch so far,
    so it is passed over.
    """
    from cera_rag.experiments.rag.ragas_eval import DEFAULT_CERA_MODELS
    from cera_rag.run_state import checkpoint_finished

    for c in candidates or DEFAULT_CERA_MODELS:
        if checkpoint_finished(Path(c)):
            return c
    return None


def ensure_checkpoint(
    model: str | None = None,
    max_steps: int | None = None,
    output_dir: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    echo: Callable[[str], None] = print,
) -> str:
    """``model`` if given, else an existing checkpoint, else a freshly trained ``quick`` preset.

    Args:
        model: Checkpoint folder (or hub id) to use as is.
        max_steps: Cap on training steps when training (default ``$CERA_DEMO_MAX_STEPS``, else the preset's).
        output_dir: Where a trained checkpoint goes (default the preset's ``checkpoints/cera-quick``).
        data_dir: Evidence Inference folder.
        echo: Where progress lines go.
    """
    if model:
        return model
    found = find_checkpoint()
    if found:
        return found
    from cera_rag.config import load_config
    from cera_rag.train import train_unless_finished

    if max_steps is None and os.environ.get(MAX_STEPS_ENV):
        max_steps = int(os.environ[MAX_STEPS_ENV])
    cfg = load_config("quick", overrides={"max_steps": max_steps, "output_dir": output_dir})
    echo(f"No CERA checkpoint yet: training the quick preset into {cfg.output_dir} (a few minutes on a CPU).")
    train_unless_finished(cfg, data_dir)  # an interrupted demo resumes its run
    return str(Path(cfg.output_dir).expanduser())


#: Reader checkpoints the demo looks for, best first (the same list as the RAGAS evaluation's).
DEFAULT_READERS = DEFAULT_READER_MODELS


def ensure_reader(
    reader: str | None = None,
    max_steps: int | None = None,
    output_dir: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    echo: Callable[[str], None] = print,
) -> str:
    """``reader`` if given, else an existing reader checkpoint, else a freshly trained ``quick`` reader."""
    if reader:
        return reader
    from cera_rag.reader import HEADS_NAME
    from cera_rag.run_state import RunState, checkpoint_finished, run_dir_for

    for c in DEFAULT_READERS:  # a reader whose training is unfinished holds only its best epoch so far
        if checkpoint_finished(Path(c), HEADS_NAME):
            return c
    from cera_rag.reader_train import ReaderTrainer, load_reader_config

    if max_steps is None and os.environ.get(MAX_STEPS_ENV):
        max_steps = int(os.environ[MAX_STEPS_ENV])
    cfg = load_reader_config("quick", overrides={"max_steps": max_steps, "output_dir": output_dir})
    echo(f"No CERA reader yet: training the quick reader preset into {cfg.output_dir} (a few minutes on a CPU).")
    resume = RunState(run_dir_for(Path(cfg.output_dir).expanduser())).exists  # an interrupted demo resumes
    return ReaderTrainer(cfg, data_dir).train(resume=resume, show_progress=True).output_dir


# ------------------------------------------------------------------------------------ questions
def demo_questions(split: Any, n_articles: int = 5, n_questions: int = 3) -> tuple[list[str], list[Any]]:
    """The first ``n_articles`` articles with evidence, and ``n_questions`` prompt examples about them.

    Questions come from different articles first, so the answers do not all cite the same trial.
    """
    articles: list[str] = []
    for ex in split.examples:
        if ex.positives and ex.prompt.article_id not in articles:
            articles.append(ex.prompt.article_id)
        if len(articles) >= n_articles:
            break
    chosen: list[Any] = []
    used: set[str] = set()
    for ex in split.examples:  # one per article first
        if ex.prompt.article_id in articles and ex.positives and ex.prompt.article_id not in used:
            chosen.append(ex)
            used.add(ex.prompt.article_id)
        if len(chosen) >= n_questions:
            return articles, chosen
    for ex in split.examples:
        if ex.prompt.article_id in articles and ex.positives and all(ex is not c for c in chosen):
            chosen.append(ex)
        if len(chosen) >= n_questions:
            break
    return articles, chosen


# ------------------------------------------------------------------------------------------ HTML
def highlight_html(
    text: str, spans: Sequence[SpanDict], rgb: tuple[int, int, int] = HIGHLIGHT_RGB, css_class: str = "cera-span"
) -> str:
    """``text`` HTML-escaped, each span wrapped in ``<mark>`` with opacity from its weight.

    Overlapping spans are clipped to the part after the previous span; spans outside the text are ignored.
    """
    good = sorted((s for s in spans if 0 <= int(s["start"]) < int(s["end"]) <= len(text)), key=lambda s: s["start"])
    top = max((float(s["weight"]) for s in good), default=0.0) or 1.0
    out: list[str] = []
    pos = 0
    for s in good:
        start, end = max(int(s["start"]), pos), int(s["end"])
        if start >= end:
            continue
        alpha = 0.35 + 0.65 * max(0.0, min(1.0, float(s["weight"]) / top))
        out.append(html.escape(text[pos:start]))
        out.append(
            f'<mark class="{css_class}" data-weight="{float(s["weight"]):.4f}" '
            f'style="background-color: rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {alpha:.2f})">'
            f"{html.escape(text[start:end])}</mark>"
        )
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1a1a1a; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.answer { background: #eef4ff; border-left: 4px solid #3b6fd8; padding: .6rem .9rem; margin: .5rem 0 1rem; }
.passage { border: 1px solid #ddd; border-radius: 6px; padding: .6rem .9rem; margin: .6rem 0; line-height: 1.55; }
.meta { color: #666; font-size: .85rem; margin-bottom: .3rem; }
mark.cera-span, mark.cera-evidence { color: inherit; padding: 0 1px; border-radius: 2px; }
.attention { color: #555; font-size: .85rem; margin-top: .4rem; }
.note { color: #555; font-size: .9rem; }
"""


def render_html(answers: Sequence[DemoAnswer], model: str, llm: str) -> str:
    """The demo page: every question, its answer, and its passages with evidence highlighted."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>CERA demo</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>CERA: evidence-highlighted retrieval</h1>",
        f'<p class="note">Retriever: {html.escape(model)}. LLM: {html.escape(llm)}. Highlighted in the passage: '
        "the reader's evidence for the question (green; stronger colour, higher weight) when a reader ran, else "
        "the words CERA's attention points at. Below each passage: the bi-encoder's attention spans (the paper's "
        "explanation, the same for every question).</p>",
    ]
    for i, a in enumerate(answers, 1):
        parts.append(f"<section><h2>{i}. {html.escape(a.question)}</h2>")
        parts.append(f'<div class="answer"><strong>Answer:</strong> {html.escape(a.answer)}</div>')
        if a.reference_label:
            parts.append(f'<p class="note">Annotated result: {html.escape(a.reference_label)}</p>')
        for rank, p in enumerate(a.passages, 1):
            score = "" if p.score is None else f" &middot; score {p.score:.3f}"
            if p.evidence:
                body = highlight_html(p.text, p.evidence, EVIDENCE_RGB, "cera-evidence")
                attention = " &middot; ".join(
                    f'<mark class="cera-span">{html.escape(p.text[int(s["start"]) : int(s["end"])])}</mark>'
                    for s in p.spans
                    if 0 <= int(s["start"]) < int(s["end"]) <= len(p.text)
                )
                body += f'<div class="attention">CERA attention: {attention or "none"}</div>'
            else:
                body = highlight_html(p.text, p.spans)
            parts.append(f'<div class="passage"><div class="meta">#{rank} {html.escape(p.id)}{score}</div>{body}</div>')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(path: str | os.PathLike[str], answers: Sequence[DemoAnswer], model: str, llm: str) -> Path:
    """Write ``render_html`` to ``path`` (UTF-8) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(answers, model, llm), encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------- console
def print_answers(answers: Sequence[DemoAnswer], console: Any = None) -> None:
    """Print each answer and its passages with the evidence highlighted (``rich``)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.panel import Panel

    from cera_rag.spans import highlight

    console = console or Console()
    for i, a in enumerate(answers, 1):
        console.rule(f"[bold]{i}. {escape(a.question)}")  # LLM and document text is never markup
        label = f"\n[dim]annotated result: {escape(a.reference_label)}[/]" if a.reference_label else ""
        console.print(
            Panel(f"[bold]{escape(a.answer)}[/]{label}", title="answer", title_align="left", border_style="blue")
        )
        for rank, p in enumerate(a.passages, 1):
            score = "" if p.score is None else f"  score {p.score:.3f}"
            marked = list(p.evidence) if p.evidence else list(p.spans)
            what = "reader evidence" if p.evidence else "CERA attention"
            console.print(Panel(highlight(p.text, marked), title=f"#{rank}{score}  [dim]{escape(p.id)}[/]",
                                title_align="left", subtitle=what, subtitle_align="right"))  # fmt: skip


# ----------------------------------------------------------------------------------------- run
@dataclass
class DemoConfig:
    """What ``run_demo`` does (the ``cera-rag demo`` options).

    Attributes:
        model: CERA checkpoint (default: ``checkpoints/cera-best``, else ``cera-quick``, else train quick).
        n_articles: Validation articles indexed.
        n_questions: Questions asked.
        top_k: Passages handed to the LLM per question.
        html_path: Where the HTML page goes.
        store_dir: Embedded Chroma folder (default: the cache).
        data_dir: Evidence Inference folder.
        llm_base_url: OpenAI-compatible endpoint (default: the embedded SmolLM2 server).
        llm_model: Model name at ``llm_base_url``.
        max_tokens: Answer length budget.
        max_steps: Cap on training steps if the demo must train (default ``$CERA_DEMO_MAX_STEPS``).
        train_output_dir: Where a CERA checkpoint the demo trains goes.
        reader: CERAReader checkpoint (default: ``checkpoints/cera-reader``, else the quick one, else train).
        use_reader: Re-rank with the reader and mark its evidence.
        candidates: Passages CERA retrieves for the reader to re-rank.
        reader_output_dir: Where a reader the demo trains goes.
    """

    model: str | None = None
    n_articles: int = 5
    n_questions: int = 3
    top_k: int = 3
    html_path: str | os.PathLike[str] = "demo.html"
    store_dir: str | os.PathLike[str] | None = None
    data_dir: str | os.PathLike[str] | None = None
    llm_base_url: str | None = None
    llm_model: str | None = None
    max_tokens: int = 160
    max_steps: int | None = None
    train_output_dir: str | None = None
    reader: str | None = None
    use_reader: bool = True
    candidates: int = 20
    reader_output_dir: str | None = None


def run_demo(config: DemoConfig | None = None, console: Any = None) -> list[DemoAnswer]:
    """Run the demo end to end and return the answers (also printed and written to ``config.html_path``)."""
    import contextlib

    from rich.console import Console

    cfg = config or DemoConfig()
    console = console or Console()
    echo = console.print
    checkpoint, reader_path = _models(cfg, echo)
    encoder, collection, examples = _index(cfg, checkpoint, echo)
    with contextlib.ExitStack() as stack:
        endpoint = _endpoint(cfg, stack, echo)
        answers = _ask(cfg, encoder, collection, reader_path, endpoint, examples)
    print_answers(answers, console)
    for i, a in enumerate(answers, 1):
        echo(f"[dim]question {i}: retrieved, re-ranked and answered in {a.seconds:.1f} s[/]")
    described = checkpoint + (f" + reader {reader_path}" if reader_path else "")
    path = write_html(cfg.html_path, answers, described, endpoint.describe())
    echo(f"[bold green]Wrote {path}[/] (open it in a browser).")
    if any("quick" in str(p) for p in (checkpoint, reader_path) if p):
        echo("Next: `cera-rag train --preset best` and `cera-rag train-reader --preset best` for the README's models.")
    return answers


def _models(cfg: DemoConfig, echo: Callable[[str], None]) -> tuple[str, str | None]:
    """The CERA checkpoint and the reader (found, or trained with the quick presets), each step timed."""
    t0 = time.perf_counter()
    checkpoint = ensure_checkpoint(cfg.model, cfg.max_steps, cfg.train_output_dir, cfg.data_dir, echo=echo)
    echo(f"[bold]CERA checkpoint:[/] {checkpoint}  [dim]({time.perf_counter() - t0:.1f} s)[/]")
    reader_path = None
    if cfg.use_reader:
        t0 = time.perf_counter()
        reader_path = ensure_reader(cfg.reader, cfg.max_steps, cfg.reader_output_dir, cfg.data_dir, echo=echo)
        echo(f"[bold]CERA reader:[/] {reader_path}  [dim]({time.perf_counter() - t0:.1f} s)[/]")
    return checkpoint, reader_path


def _index(cfg: DemoConfig, checkpoint: str, echo: Callable[[str], None]) -> tuple[Any, Any, list[Any]]:
    """Index the first validation articles (processing only those); returns encoder, collection, questions."""
    from cera_rag import store
    from cera_rag.data.dataset import PromptSelection, load_processed
    from cera_rag.evaluation.cache import model_fingerprint
    from cera_rag.experiments.rag.ragas_eval import collection_name
    from cera_rag.paths import cache_dir

    t0 = time.perf_counter()
    # Only the articles the demo indexes (two spare, in case one has no evidence passage).
    select = PromptSelection(n_articles=cfg.n_articles + 2)
    split = load_processed("validation", data_dir=cfg.data_dir, select=select)
    articles, examples = demo_questions(split, cfg.n_articles, cfg.n_questions)
    passages = [p for aid in articles for p in split.passages[aid]]
    encoder = store.load_encoder(checkpoint)
    folder = Path(cfg.store_dir) if cfg.store_dir is not None else cache_dir() / "demo-chroma"
    client = store.get_client(path=folder)
    name = collection_name("demo", articles, model_fingerprint(encoder, checkpoint))
    collection = store.open_for_encoder(encoder, name=name, client=client)
    report = store.index_passages(encoder, collection, passages, show_progress=True)
    echo(
        f"Indexed {len(articles)} validation articles ({report.added} passages added, {report.skipped} already there)."
        f"  [dim]({time.perf_counter() - t0:.1f} s)[/]"
    )
    return encoder, collection, examples


def _endpoint(cfg: DemoConfig, stack: Any, echo: Callable[[str], None]) -> Any:
    """The generator: the given endpoint, or the embedded local LLM started (and stopped) on ``stack``."""
    from cera_rag.experiments.rag.llm import LLMEndpoint, api_key_from_env, check_endpoint

    if cfg.llm_base_url:
        if not cfg.llm_model:
            from cera_rag.errors import ConfigError

            raise ConfigError("--llm-base-url needs --llm-model.")
        endpoint = LLMEndpoint(cfg.llm_base_url, cfg.llm_model, api_key_from_env(), max_tokens=cfg.max_tokens)
    else:
        from cera_rag.experiments.rag.local_llm import LocalLLMServer

        echo("Starting the local LLM (SmolLM2-135M-Instruct, llama-cpp-python server)...")
        t0 = time.perf_counter()
        server = stack.enter_context(LocalLLMServer())
        echo(f"Local LLM ready  [dim]({time.perf_counter() - t0:.1f} s)[/]")
        endpoint = LLMEndpoint(server.base_url, server.model, max_tokens=cfg.max_tokens, local=True)
    check_endpoint(endpoint)
    return endpoint


def _ask(
    cfg: DemoConfig, encoder: Any, collection: Any, reader_path: str | None, endpoint: Any, examples: list[Any]
) -> list[DemoAnswer]:
    """Ask each question through the LlamaIndex pipeline (CERA top ``candidates``, reader re-rank to ``top_k``)."""
    from llama_index.retrievers.cera import CERARetriever

    from cera_rag.experiments.rag import pipelines
    from cera_rag.experiments.rag.llm import check_answer, endpoint_errors, llamaindex_llm
    from cera_rag.experiments.rag.ragas_eval import render_question

    postprocessors: list[Any] = []
    if reader_path is not None:
        from llama_index.postprocessor.cera import CERARationalePostprocessor

        from cera_rag.reader import CERAReader

        reader = CERAReader.from_pretrained(reader_path)
        postprocessors.append(CERARationalePostprocessor(reader=reader, top_n=cfg.top_k))
    first_k = max(cfg.candidates, cfg.top_k) if reader_path is not None else cfg.top_k
    retriever = CERARetriever(encoder, collection, similarity_top_k=first_k, rationales=True)
    engine = pipelines.build_llamaindex_engine(retriever, llamaindex_llm(endpoint), postprocessors=postprocessors)
    answers: list[DemoAnswer] = []
    for ex in examples:
        question = render_question(ex.prompt)
        started = time.perf_counter()
        with endpoint_errors(endpoint):
            result = pipelines.answer_llamaindex(engine, question)
        check_answer(result.answer, endpoint)
        passages = [
            DemoPassage(id=i, text=t, score=s, spans=sp, evidence=ev)
            for i, t, s, sp, ev in zip(
                result.context_ids,
                result.contexts,
                result.scores,
                result.spans,
                result.evidence or [[] for _ in result.contexts],
                strict=True,
            )
        ]
        answers.append(
            DemoAnswer(
                question=question,
                answer=result.answer.strip(),
                passages=passages,
                reference_label=ex.label,
                seconds=time.perf_counter() - started,
            )
        )
    return answers
