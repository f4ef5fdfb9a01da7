"""RAGAS comparison of five retrieval systems behind the same RAG pipeline (``evals/run_ragas.py``).

For the first ``limit`` prompts (with evidence) of a split, every system indexes the same
passages (all passages of those prompts' articles, one pool) and answers each prompt's question,
phrased in the wording held out of training, with the same prompt, LLM and top-k:

* ``cera``: the CERA bi-encoder (``checkpoints/cera-best`` by default; the report names the checkpoint);
* ``cera+reader``: CERA's top ``candidates`` re-ranked by the CERA reader (``CERARationalePostprocessor``
  / ``CERARationaleCompressor``), which also marks the evidence;
* ``minilm``: all-MiniLM-L6-v2 off the shelf, cosine (what sentence-transformers gives in one line);
* ``contriever-config``: mean pooling and an unnormalised dot product, the way Contriever is used,
  on ``facebook/contriever`` where the hub is reachable, else on all-MiniLM-L6-v2 (the report says which);
* ``bm25``: ``bm25s`` with English stopwords (``cera_rag.experiments.rag.bm25``).

Each system is built in LlamaIndex (``RetrieverQueryEngine``) and in LangChain (LCEL, with a
``ContextualCompressionRetriever`` for the reader). The first framework's answer is scored; the
other runs too and the row records whether both sent the LLM the same request (the chat
messages, model, temperature and budget, captured on the wire) and got the same answer: one row
per system instead of the same system shown twice.

Besides RAGAS (``cera_rag.experiments.rag.scoring``), every row carries LLM-free evidence metrics
(``cera_rag.experiments.rag.evidence``): the share of the annotated evidence inside the context and, for the
reader, inside the evidence sentences alone, with the tokens each context costs.

Every (system, question) row is appended to ``<out>/ragas_rows.jsonl`` as soon as it is scored
(flushed and fsynced); answers go to ``<out>/ragas_generations.jsonl`` first, so an outage of the
judge never costs a generation. A rerun skips every finished row. The settings are recorded in
``<out>/ragas_run.json`` and a rerun with other settings stops instead of mixing results.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cera_rag.errors import ConfigError
from cera_rag.experiments.rag.llm import LLMEndpoint, check_answer, check_endpoint, endpoint_errors
from cera_rag.experiments.rag.pipelines import RAG_PROMPT, RAGAnswer
from cera_rag.experiments.rag.results import JsonlLog, check_manifest, summarise, write_summary
from cera_rag.experiments.rag.scoring import METRICS, RagasScorer, ScoreInput, Scorer, reference_text

logger = logging.getLogger(__name__)

FRAMEWORKS = ("llamaindex", "langchain")
SYSTEMS = ("cera", "cera+reader", "minilm", "contriever-config", "bm25")
#: Checkpoints tried, in order, when no CERA model is given.
DEFAULT_CERA_MODELS = ("checkpoints/cera-best", "checkpoints/cera-quick")
#: Reader checkpoints tried, in order, when no reader is given.
DEFAULT_READER_MODELS = ("checkpoints/cera-reader", "checkpoints/cera-reader-quick")
#: Passages the reader re-ranks (the first stage's top ``candidates``).
CANDIDATES = 20
#: Metrics of every row: RAGAS' and the LLM-free share of the evidence inside the context.
ROW_METRICS = (*METRICS, "evidence_recall")

ROWS_FILE = "ragas_rows.jsonl"
GENERATIONS_FILE = "ragas_generations.jsonl"
MANIFEST_FILE = "ragas_run.json"
#: What the local judge is, and why its numbers are weak (printed with every summary).
LOCAL_JUDGE_NOTE = (
    "The judge is SmolLM2-135M-Instruct: its JSON is always complete (bounded schemas compiled into a "
    "grammar), but a 135M model's verdicts are close to guesses; faithfulness from it ranks systems only "
    "coarsely. Pass --judge-base-url/--judge-model for a real judge."
)


def question_templates() -> tuple[str, ...]:
    """The phrasings of the questions: ``HELDOUT_TEMPLATES`` (never used in training), in turn."""
    from cera_rag.data.queries import HELDOUT_TEMPLATES

    return HELDOUT_TEMPLATES


def system_label(system: str, cera_model: str, contriever_source: str | None = None) -> str:
    """What a system is, for reports: ``cera`` becomes the checkpoint's name (``cera-best``)."""
    name = Path(cera_model).name or str(cera_model)
    if system == "cera":
        return name
    if system == "cera+reader":
        return f"{name} + reader"
    if system == "contriever-config" and contriever_source:
        return f"contriever-config ({Path(contriever_source).name or contriever_source})"
    return system


def _is_hub_id(model: str) -> bool:
    return "/" in model and not model.startswith((".", "/", "~")) and len(model.split("/")) == 2


def _resolve_checkpoint(model: str | None, candidates: Sequence[str], missing: str, none_found: str) -> str:
    """``model`` if it exists (or is a hub id), else the first existing folder of ``candidates``."""
    if model:
        if Path(model).expanduser().exists():
            return str(Path(model).expanduser())
        if _is_hub_id(model):
            return model
        raise ConfigError(missing.format(model=model))
    for c in candidates:
        if Path(c).is_dir():
            return c
    raise ConfigError(none_found.format(candidates=" or ".join(candidates)))


def resolve_cera_model(model: str | None = None, candidates: Sequence[str] = DEFAULT_CERA_MODELS) -> str:
    """The CERA checkpoint to use: ``model`` if given, else the first of ``candidates`` that exists.

    Raises:
        ConfigError: If ``model`` does not exist, or none of the candidates does.
    """
    return _resolve_checkpoint(
        model,
        candidates,
        "No CERA model at {model}; train one with `cera-rag train --preset quick`.",
        "No CERA checkpoint at {candidates}. Train one first: `cera-rag train --preset quick` "
        "(a few minutes on CPU) or `cera-rag train --preset best`, or pass --cera-model PATH.",
    )


def resolve_reader_model(model: str | None = None, candidates: Sequence[str] = DEFAULT_READER_MODELS) -> str:
    """The reader checkpoint: ``model`` if given, else the first of ``candidates`` that exists.

    Raises:
        ConfigError: If there is none (the message says how to train one or drop the system).
    """
    return _resolve_checkpoint(
        model,
        candidates,
        "No CERA reader at {model}; train one with `cera-rag train-reader --preset quick`.",
        "No CERA reader at {candidates}. Train one (`cera-rag train-reader --preset quick`), pass "
        "--reader-model PATH, or leave cera+reader out of --systems.",
    )


@dataclass
class Question:
    """One evaluation question with its references."""

    question_id: str
    article_id: str
    question: str
    label: str
    evidence_texts: list[str]
    reference_ids: list[str]
    #: passage id -> the annotated evidence's character spans, relative to the passage's start
    evidence: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return reference_text(self.evidence_texts, self.label)


def render_question(prompt: Any, template: str | None = None) -> str:
    """The natural question for an Evidence Inference prompt (default: the first held-out phrasing)."""
    from cera_rag.data.queries import render

    return render(template or question_templates()[0], prompt)


def select_questions(split: Any, limit: int | None) -> list[Question]:
    """The first ``limit`` prompts with evidence in a passage, in split order, as questions.

    The i-th question uses the i-th held-out phrasing (in turn), so no question is worded as in training.
    """
    templates = question_templates()
    out: list[Question] = []
    for ex in split.examples:
        if not ex.positives:
            continue
        passages = split.passages[ex.prompt.article_id]
        out.append(
            Question(
                question_id=str(ex.prompt.prompt_id),
                article_id=ex.prompt.article_id,
                question=render_question(ex.prompt, templates[len(out) % len(templates)]),
                label=ex.label,
                evidence_texts=list(ex.evidence_texts),
                reference_ids=[passages[i].passage_id for i in ex.positives],
                evidence={passages[i].passage_id: [tuple(x) for x in spans] for i, spans in ex.rationales.items()},
            )
        )
        if limit is not None and len(out) >= limit:
            break
    return out


def articles_of(questions: Sequence[Question]) -> list[str]:
    """The article ids of the questions, in first-seen order."""
    return list(dict.fromkeys(q.article_id for q in questions))


@dataclass
class RagasEvalConfig:
    """Settings of one RAGAS comparison run (see ``evals/run_ragas.py`` for the flags).

    ``frameworks[0]`` answers (its answer is scored); the others re-run each question as a check.
    """

    split: str = "validation"
    limit: int | None = 30
    top_k: int = 5
    cera_model: str | None = None
    reader_model: str | None = None
    candidates: int = CANDIDATES
    out_dir: Path = Path("results/ragas")
    store_dir: Path | None = None
    data_dir: Path | None = None
    frameworks: tuple[str, ...] = FRAMEWORKS
    systems: tuple[str, ...] = SYSTEMS
    generator: LLMEndpoint | None = None
    judge: LLMEndpoint | None = None
    skip_faithfulness: bool = False
    judge_timeout: float | None = 900.0
    local_n_ctx: int = 4096
    local_max_tokens: int = 256
    local_judge_max_tokens: int = 1536
    n_resamples: int = 2000
    restart: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        bad = [s for s in self.systems if s not in SYSTEMS]
        if bad or not self.systems:
            raise ConfigError(f"Unknown system(s) {bad or '(none)'}; choose from {', '.join(SYSTEMS)}.")
        bad = [f for f in self.frameworks if f not in FRAMEWORKS]
        if bad or not self.frameworks:
            raise ConfigError(f"Unknown framework(s) {bad or '(none)'}; choose from {', '.join(FRAMEWORKS)}.")
        if self.candidates < self.top_k:
            raise ConfigError(f"--candidates ({self.candidates}) must be at least --top-k ({self.top_k}).")


@contextlib.contextmanager
def resolve_endpoints(cfg: RagasEvalConfig) -> Iterator[tuple[LLMEndpoint, LLMEndpoint | None]]:
    """The generator and judge endpoints, starting the embedded local server when no generator is given.

    Without a judge endpoint the judge is the generator's endpoint (with a larger ``max_tokens``).
    """
    with contextlib.ExitStack() as stack:
        generator = cfg.generator
        judge = cfg.judge
        if generator is None:
            from cera_rag.experiments.rag.local_llm import LocalLLMServer

            server = stack.enter_context(LocalLLMServer(n_ctx=cfg.local_n_ctx))
            generator = LLMEndpoint(
                base_url=server.base_url, model=server.model, max_tokens=cfg.local_max_tokens, local=True
            )
        if cfg.skip_faithfulness:
            judge = None
        elif judge is None:
            # The judge is the generator's endpoint with a budget that holds the longest bounded verdict
            # (the local server's context window caps it); a local llama-cpp server gets bounded schemas.
            judge = generator.with_options(
                max_tokens=cfg.local_judge_max_tokens if generator.local else max(generator.max_tokens, 4096),
                json_mode=generator.local or generator.json_mode,
            )
        yield generator, judge


def collection_name(prefix: str, article_ids: Sequence[str], fingerprint: str) -> str:
    """A Chroma collection name that changes with the articles indexed and the encoder's weights."""
    digest = hashlib.sha256(("|".join(sorted(article_ids)) + "|" + fingerprint).encode()).hexdigest()[:12]
    return f"{prefix}-{len(article_ids)}a-{digest}"


def build_store(encoder: Any, tag: str, source: str, passages: Sequence[Any], cfg: RagasEvalConfig, ids: Sequence[str]):
    """Open (or build) the Chroma store of one encoder over the passages (indexing is idempotent)."""
    from cera_rag import store
    from cera_rag.evaluation.cache import model_fingerprint
    from cera_rag.paths import cache_dir

    root = Path(cfg.store_dir) if cfg.store_dir is not None else cache_dir() / "ragas-chroma"
    client = store.get_client(path=root / tag)
    name = collection_name(f"ragas-{cfg.split}", ids, model_fingerprint(encoder, source))
    collection = store.open_for_encoder(encoder, name=name, client=client)
    report = store.index_passages(encoder, collection, passages, show_progress=True)
    logger.info("%s store %s: %d added, %d already indexed", tag, name, report.added, report.skipped)
    return collection


@dataclass
class Resources:
    """What the systems are built from: encoders with their Chroma collections, the reader, BM25."""

    encoders: dict[str, Any] = field(default_factory=dict)
    collections: dict[str, Any] = field(default_factory=dict)
    reader: Any = None
    bm25: Any = None


def framework_retrievers(system: str, res: Resources, top_k: int, candidates: int) -> dict[str, tuple[Any, list]]:
    """Per framework, the retriever of ``system`` and the LlamaIndex node post-processors it needs."""
    from langchain_cera import CERARationaleCompressor
    from langchain_cera import CERARetriever as LangchainCERARetriever
    from llama_index.postprocessor.cera import CERARationalePostprocessor
    from llama_index.retrievers.cera import CERARetriever as LlamaCERARetriever

    from cera_rag.experiments.rag import bm25

    if system == "bm25":
        return {
            "llamaindex": (bm25.llamaindex_retriever(res.bm25, top_k), []),
            "langchain": (bm25.langchain_retriever(res.bm25, top_k), []),
        }
    kind = "cera" if system == "cera+reader" else system
    enc, coll = res.encoders[kind], res.collections[kind]
    if system != "cera+reader":
        return {
            "llamaindex": (LlamaCERARetriever(enc, coll, similarity_top_k=top_k, rationales=False), []),
            "langchain": (LangchainCERARetriever(encoder=enc, collection=coll, k=top_k, rationales=False), []),
        }
    from langchain_classic.retrievers import ContextualCompressionRetriever

    rerank = CERARationalePostprocessor(reader=res.reader, top_n=top_k)
    compressed = ContextualCompressionRetriever(
        base_compressor=CERARationaleCompressor(reader=res.reader, top_n=top_k),
        base_retriever=LangchainCERARetriever(encoder=enc, collection=coll, k=candidates, rationales=False),
    )
    return {
        "llamaindex": (LlamaCERARetriever(enc, coll, similarity_top_k=candidates, rationales=False), [rerank]),
        "langchain": (compressed, []),
    }


def build_pipelines(
    systems: Sequence[str],
    res: Resources,
    generator: LLMEndpoint,
    top_k: int,
    candidates: int = CANDIDATES,
    frameworks: Sequence[str] = FRAMEWORKS,
) -> dict[str, Callable[[str], RAGAnswer]]:
    """One ``question -> RAGAnswer`` callable per system.

    ``frameworks[0]`` gives the answer; every other framework answers the same question and
    ``RAGAnswer.checks`` says whether it sent the same request, retrieved the same passages and got
    the same answer.
    """
    from cera_rag.experiments.rag import pipelines
    from cera_rag.experiments.rag.llm import RequestRecorder, chat_request, langchain_llm, llamaindex_llm

    recorder = RequestRecorder()
    llms = {
        "llamaindex": lambda: llamaindex_llm(generator, http_client=recorder.client(generator.timeout)),
        "langchain": lambda: langchain_llm(generator, http_client=recorder.client(generator.timeout)),
    }
    made = {f: llms[f]() for f in frameworks}

    def runner(framework: str, retriever: Any, post: list) -> Callable[[str], RAGAnswer]:
        if framework == "llamaindex":
            engine = pipelines.build_llamaindex_engine(retriever, made[framework], postprocessors=post)
            return lambda q: pipelines.answer_llamaindex(engine, q)
        chain = pipelines.build_langchain_chain(retriever, made[framework])
        return lambda q: pipelines.answer_langchain(chain, q)

    def combine(runs: list[tuple[str, Callable[[str], RAGAnswer]]]) -> Callable[[str], RAGAnswer]:
        def answer(question: str) -> RAGAnswer:
            recorder.take()
            results = []
            for framework, run in runs:
                ans = run(question)
                results.append((framework, ans, [chat_request(b) for b in recorder.take()]))
            first_name, first, first_requests = results[0]
            if len(results) > 1:
                first.checks = {
                    "frameworks": [name for name, _, _ in results],
                    "same_request": all(bool(r) and r == first_requests for _, _, r in results[1:]),
                    "same_contexts": all(a.context_ids == first.context_ids for _, a, _ in results[1:]),
                    "same_answer": all(a.answer == first.answer for _, a, _ in results[1:]),
                }
            return first

        return answer

    out: dict[str, Callable[[str], RAGAnswer]] = {}
    for system in systems:
        per_framework = framework_retrievers(system, res, top_k, candidates)
        out[system] = combine([(f, runner(f, *per_framework[f])) for f in frameworks])
    return out


def settings_of(
    cfg: RagasEvalConfig, cera_model: str, reader_model: str | None, generator: LLMEndpoint, judge: LLMEndpoint | None
) -> dict:
    """What rows depend on: a rerun with other values must not resume into the same folder."""
    try:
        import ragas

        ragas_version = ragas.__version__
    except Exception:  # noqa: BLE001 - recorded for information only
        ragas_version = "?"
    from cera_rag.encoders import weights_digest

    gen = generator.public()
    jud = judge.public() if judge is not None else None
    if generator.local:
        gen.pop("base_url")  # the local server's port changes every run
    if jud is not None and judge is not None and judge.local:
        jud.pop("base_url")

    def where(model: str | None) -> str | None:
        return str(Path(model).resolve()) if model and Path(model).exists() else model

    return {
        "split": cfg.split,
        "limit": cfg.limit,
        "top_k": cfg.top_k,
        "candidates": cfg.candidates,
        "cera_model": where(cera_model),
        "reader_model": where(reader_model),
        # A checkpoint retrained at the same path must not resume into rows of the old one.
        "cera_weights": weights_digest(cera_model),
        "reader_weights": weights_digest(reader_model),
        "frameworks": list(cfg.frameworks),
        "generator": gen,
        "judge": jud,
        "prompt_sha": hashlib.sha256(RAG_PROMPT.encode()).hexdigest()[:12],
        "questions_sha": hashlib.sha256("|".join(question_templates()).encode()).hexdigest()[:12],
        "ragas": ragas_version,
    }


def run_ragas_eval(
    cfg: RagasEvalConfig,
    scorer_factory: Callable[[LLMEndpoint | None], Scorer] | None = None,
    pipelines_factory: Callable[..., dict[str, Callable[[str], RAGAnswer]]] | None = None,
    load_split: Callable[[RagasEvalConfig], Any] | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the comparison and write the summary; returns the summary dict.

    Args:
        cfg: The settings.
        scorer_factory: ``judge -> Scorer`` (default ``RagasScorer``; tests pass a fake).
        pipelines_factory: ``(systems, questions, generator, cfg, cera_model, reader_model) ->
            {system: answer_fn}`` (default: real encoders, Chroma stores and pipelines; tests pass fakes).
        load_split: ``cfg -> ProcessedSplit`` (default ``load_processed``).
        echo: Where progress lines go.

    Raises:
        EndpointError: If the generator or judge endpoint is down or answers garbage (finished rows
            are kept and the summary of them written first).
        ConfigError: For missing checkpoints or settings that differ from the rows in ``out_dir``.
    """
    from cera_rag.data.dataset import load_processed
    from cera_rag.store import default_contriever_model

    needs_cera = any(s in ("cera", "cera+reader") for s in cfg.systems)
    cera_model = resolve_cera_model(cfg.cera_model) if needs_cera else (cfg.cera_model or "-")
    reader_model = resolve_reader_model(cfg.reader_model) if "cera+reader" in cfg.systems else None
    split = (load_split or (lambda c: load_processed(c.split, data_dir=c.data_dir)))(cfg)
    questions = select_questions(split, cfg.limit)
    if not questions:
        raise ConfigError(f"The {cfg.split!r} split has no prompt with evidence to ask about.")
    out_dir = Path(cfg.out_dir)
    systems = list(cfg.systems)
    if cfg.restart:
        for name in (ROWS_FILE, GENERATIONS_FILE, MANIFEST_FILE):
            (out_dir / name).unlink(missing_ok=True)
    rows = JsonlLog(out_dir / ROWS_FILE)
    generations = JsonlLog(out_dir / GENERATIONS_FILE)
    if rows.dropped_tail or generations.dropped_tail:
        echo(f"Dropped {rows.dropped_tail + generations.dropped_tail} torn line(s) left by an interrupted run.")
    pending = [(q, s) for q in questions for s in systems if (s, q.question_id) not in rows]
    echo(f"{len(questions)} questions x {len(systems)} systems: {len(rows)} rows done, {len(pending)} to go.")

    contriever_source = default_contriever_model() if "contriever-config" in systems else None
    labels = {s: system_label(s, cera_model, contriever_source) for s in systems}
    meta: dict[str, Any] = {"split": cfg.split, "n_questions": len(questions), "top_k": cfg.top_k}
    with resolve_endpoints(cfg) as (generator, judge):
        settings = settings_of(cfg, cera_model, reader_model, generator, judge)
        check_manifest(
            out_dir / MANIFEST_FILE,
            settings,
            "Pass --out to write elsewhere, or --restart to discard the old rows.",
        )
        meta.update(
            generator=generator.describe(),
            judge=judge.describe() if judge else "none (faithfulness skipped)",
            judge_note=LOCAL_JUDGE_NOTE if judge is not None and judge.local else "",
            cera_model=settings["cera_model"],
            reader_model=settings["reader_model"],
            contriever_source=contriever_source,
            systems=systems,
            labels=labels,
            frameworks=list(cfg.frameworks),
            candidates=cfg.candidates,
            question_templates=list(question_templates()),
        )
        try:
            if pending:
                run = _Run(cfg, questions, generator, judge, cera_model, reader_model, rows, generations, echo)
                _run_pending(run, pending, scorer_factory, pipelines_factory)
        finally:
            done = [rows.rows[(s, q.question_id)] for q in questions for s in systems if (s, q.question_id) in rows]
            summary = summarise(done, systems, ROW_METRICS, n_resamples=cfg.n_resamples)
            meta["n_rows"] = sum(e["n"] for e in summary.values())
            meta["evidence"] = evidence_summary(done, systems)
            meta["framework_check"] = framework_check(done, systems)
            paths = write_summary(
                out_dir,
                {labels[s]: summary[s] for s in systems},
                ROW_METRICS,
                meta,
                extra=summary_sections(meta, labels),
            )
            echo("Wrote " + ", ".join(str(p) for p in paths))
    return {"meta": meta, "systems": summary}


def evidence_summary(rows: Sequence[dict[str, Any]], systems: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per system: mean evidence recall of the full context and of the evidence-only one, and their token costs."""
    import math

    out: dict[str, dict[str, Any]] = {}
    for system in systems:
        ev = [r.get("evidence") or {} for r in rows if r.get("system") == system]
        entry: dict[str, Any] = {"n": len(ev)}
        for key in ("evidence_recall", "evidence_only_recall", "context_tokens", "evidence_only_tokens"):
            values = [float(e[key]) for e in ev if e.get(key) is not None]
            entry[key] = sum(values) / len(values) if values else math.nan
            entry[f"{key}_n"] = len(values)
        out[system] = entry
    return out


def framework_check(rows: Sequence[dict[str, Any]], systems: Sequence[str]) -> dict[str, Any]:
    """How many answers the other frameworks matched: same request, same passages, same answer."""
    checked = [r["checks"] for r in rows if r.get("system") in systems and r.get("checks")]
    out: dict[str, Any] = {"n": len(checked), "frameworks": checked[0]["frameworks"] if checked else []}
    for key in ("same_request", "same_contexts", "same_answer"):
        out[key] = sum(bool(c.get(key)) for c in checked)
    out["differing"] = sorted(
        {f"{r['system']}:{r['question_id']}" for r in rows if r.get("checks") and not r["checks"].get("same_request")}
    )
    return out


def summary_sections(meta: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """The markdown below the RAGAS table: the judge's weakness, the framework check, the evidence table."""
    import math

    lines: list[str] = []
    if meta.get("judge_note"):
        lines += [meta["judge_note"], ""]
    check = meta.get("framework_check") or {}
    if check.get("n"):
        names = " and ".join(check["frameworks"])
        lines += [
            f"Framework check: {names} sent identical requests (messages, model, temperature, token budget) for "
            f"{check['same_request']} of {check['n']} answers, retrieved the same passages for "
            f"{check['same_contexts']} and got the same answer for {check['same_answer']}; each system is one row.",
            "",
        ]
    from cera_rag.experiments.rag.evidence import token_unit
    from cera_rag.experiments.rag.results import format_number as fmt

    ev = meta.get("evidence") or {}

    lines += [
        f"LLM-free evidence metrics (no judge): share of the annotated evidence characters inside the context "
        f"the LLM gets, and its size in {token_unit()}. Evidence only: each passage cut to the sentences holding "
        'the reader\'s evidence spans (`CERARationaleCompressor(mode="evidence")`).',
        "",
        "| system | evidence recall (context) | context tokens | evidence recall (evidence only) "
        "| evidence-only tokens | tokens kept |",
        "|---|---|---|---|---|---|",
    ]
    for system, e in ev.items():
        ratio = e["evidence_only_tokens"] / e["context_tokens"] if e.get("evidence_only_tokens_n") else math.nan
        lines.append(
            f"| {labels.get(system, system)} | {fmt(e['evidence_recall'])} | {fmt(e['context_tokens'], 0)} | "
            f"{fmt(e['evidence_only_recall'])} | {fmt(e['evidence_only_tokens'], 0)} | {fmt(ratio, 2)} |"
        )
    return lines


@dataclass
class _Run:
    """One run's settings, endpoints, models and logs, shared by its steps."""

    cfg: RagasEvalConfig
    questions: list[Question]
    generator: LLMEndpoint
    judge: LLMEndpoint | None
    cera_model: str
    reader_model: str | None
    rows: JsonlLog
    generations: JsonlLog
    echo: Callable[[str], None]


def _run_pending(
    run: _Run,
    pending: list[tuple[Question, str]],
    scorer_factory: Callable[[LLMEndpoint | None], Scorer] | None,
    pipelines_factory: Callable[..., dict[str, Callable[[str], RAGAnswer]]] | None,
) -> None:
    """Answer (unless an answer is saved) and score every pending (question, system), one row at a time."""
    cfg = run.cfg
    check_endpoint(run.generator, "generator")
    if run.judge is not None and run.judge.base_url != run.generator.base_url:
        check_endpoint(run.judge, "judge")
    scorer = (scorer_factory or (lambda j: RagasScorer(j, timeout=cfg.judge_timeout)))(run.judge)
    need_gen = [
        s for s in cfg.systems if any(s == ps and (s, q.question_id) not in run.generations for q, ps in pending)
    ]
    answer_fns = (pipelines_factory or default_pipelines)(
        need_gen, run.questions, run.generator, cfg, run.cera_model, run.reader_model
    )
    t0 = time.perf_counter()
    for i, (q, system) in enumerate(pending, 1):
        gen = run.generations.get((system, q.question_id)) or _generate(run, answer_fns[system], q, system)
        scores = _score(run, scorer, q, gen)
        shown = " ".join(f"{k}={'n/a' if v is None else f'{v:.2f}'}" for k, v in scores.items())
        run.echo(f"[{i}/{len(pending)}] {system} q{q.question_id}: {shown} ({(time.perf_counter() - t0) / i:.0f}s/row)")


def _generate(run: _Run, answer: Callable[[str], RAGAnswer], q: Question, system: str) -> dict[str, Any]:
    """Answer ``q`` with ``system``'s pipeline and save the generation (before it is scored)."""
    started = time.perf_counter()
    with endpoint_errors(run.generator, "generator"):
        ans = answer(q.question)
    check_answer(ans.answer, run.generator)
    gen = {
        "system": system,
        "question_id": q.question_id,
        "question": q.question,
        "answer": ans.answer,
        "contexts": ans.contexts,
        "context_ids": ans.context_ids,
        "context_scores": ans.scores,
        "evidence_spans": ans.evidence if any(ans.evidence) else None,
        "checks": ans.checks or None,
        "generation_seconds": round(time.perf_counter() - started, 2),
    }
    run.generations.append(gen)
    return gen


def _score(run: _Run, scorer: Scorer, q: Question, gen: dict[str, Any]) -> dict[str, float | None]:
    """Score a saved generation (RAGAS + the LLM-free evidence metrics) and append its row; returns the scores."""
    from cera_rag.experiments.rag.evidence import evidence_metrics

    started = time.perf_counter()
    result = scorer.score(
        ScoreInput(
            question=q.question,
            answer=str(gen["answer"]),
            contexts=list(gen["contexts"]),
            context_ids=list(gen["context_ids"]),
            reference_ids=q.reference_ids,
            reference=q.reference,
            reference_label=q.label,
        )
    )
    evidence = evidence_metrics(list(gen["context_ids"]), list(gen["contexts"]), q.evidence, gen.get("evidence_spans"))
    scores = {**result.scores, "evidence_recall": evidence["evidence_recall"]}
    errors = dict(result.errors)
    if evidence["evidence_recall"] is None:
        errors["evidence_recall"] = "no_reference"
    run.rows.append(
        {
            **gen,
            "article_id": q.article_id,
            "reference_ids": q.reference_ids,
            "reference": q.reference,
            "reference_label": q.label,
            "predicted_label": result.predicted_label,
            "scores": scores,
            "errors": errors,
            "evidence": evidence,
            "scoring_seconds": round(time.perf_counter() - started, 2),
        }
    )
    return scores


def default_pipelines(
    systems: Sequence[str],
    questions: Sequence[Question],
    generator: LLMEndpoint,
    cfg: RagasEvalConfig,
    cera_model: str,
    reader_model: str | None = None,
) -> dict[str, Callable[[str], RAGAnswer]]:
    """Load what ``systems`` need (encoders + Chroma stores, the reader, BM25) and build their pipelines."""
    from cera_rag import store
    from cera_rag.data.dataset import load_processed
    from cera_rag.paths import DEFAULT_BASE_MODEL

    if not systems:
        return {}
    split = load_processed(cfg.split, data_dir=cfg.data_dir)
    ids = articles_of(questions)
    passages = [p for aid in ids for p in split.passages[aid]]
    res = Resources()
    dense = {"cera" if s == "cera+reader" else s for s in systems if s != "bm25"}
    for kind in sorted(dense):
        if kind == "cera":
            source = cera_model
            res.encoders[kind] = store.load_encoder(cera_model, device=cfg.device)
        elif kind == "minilm":
            source = DEFAULT_BASE_MODEL
            res.encoders[kind] = store.load_encoder(DEFAULT_BASE_MODEL, device=cfg.device)
        else:
            source = store.default_contriever_model()
            res.encoders[kind] = store.load_encoder(None, contriever=True, device=cfg.device)
        res.collections[kind] = build_store(res.encoders[kind], kind, source, passages, cfg, ids)
    if "cera+reader" in systems:
        from cera_rag.reader import CERAReader

        res.reader = CERAReader.from_pretrained(reader_model or resolve_reader_model(), device=cfg.device)
    if "bm25" in systems:
        from cera_rag.experiments.rag.bm25 import PassageBM25

        res.bm25 = PassageBM25(passages)
    return build_pipelines(systems, res, generator, cfg.top_k, cfg.candidates, cfg.frameworks)
