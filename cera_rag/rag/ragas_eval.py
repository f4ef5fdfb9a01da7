"""RAGAS comparison of CERA- and Contriever-backed RAG in LlamaIndex and LangChain (``evals/run_ragas.py``).

For the first ``limit`` prompts (with evidence) of a split, one Chroma store per encoder is built
over those prompts' articles; four systems answer each prompt's question with the same prompt,
LLM and top-k:

* ``llamaindex-cera``, ``llamaindex-contriever``: ``RetrieverQueryEngine`` over
  ``llama_index.retrievers.cera.CERARetriever``;
* ``langchain-cera``, ``langchain-contriever``: the LCEL chain over ``langchain_cera.CERARetriever``.

"Contriever" is the off-the-shelf encoder used the Contriever way (mean pooling, unnormalised
dot product): ``facebook/contriever`` where the hub is reachable, else all-MiniLM-L6-v2.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cera_rag.errors import ConfigError
from cera_rag.rag.llm import LLMEndpoint, check_answer, check_endpoint, endpoint_errors
from cera_rag.rag.pipelines import RAG_PROMPT, RAGAnswer
from cera_rag.rag.results import JsonlLog, check_manifest, summarise, write_summary
from cera_rag.rag.scoring import METRICS, RagasScorer, ScoreInput, Scorer, reference_text

logger = logging.getLogger(__name__)

FRAMEWORKS = ("llamaindex", "langchain")
RETRIEVERS = ("cera", "contriever")
#: Checkpoints tried, in order, when no CERA model is given.
DEFAULT_CERA_MODELS = ("checkpoints/cera-best", "checkpoints/cera-quick")
#: How questions are phrased (a natural question from ``cera_rag.data.queries.TRAIN_TEMPLATES``).
QUESTION_TEMPLATE = "What was the effect of {intervention} compared with {comparator} on {outcome}?"

ROWS_FILE = "ragas_rows.jsonl"
GENERATIONS_FILE = "ragas_generations.jsonl"
MANIFEST_FILE = "ragas_run.json"


def system_names(frameworks: Sequence[str] = FRAMEWORKS, retrievers: Sequence[str] = RETRIEVERS) -> list[str]:
    """``{framework}-{retriever}`` for every combination, framework-major."""
    return [f"{f}-{r}" for f in frameworks for r in retrievers]


def resolve_cera_model(model: str | None = None, candidates: Sequence[str] = DEFAULT_CERA_MODELS) -> str:
    """The CERA checkpoint to use: ``model`` if given, else the first of ``candidates`` that exists.

    Raises:
        ConfigError: If ``model`` does not exist, or none of the candidates does.
    """
    if model:
        if Path(model).expanduser().exists():
            return str(Path(model).expanduser())
        if "/" in model and not model.startswith((".", "/", "~")) and len(model.split("/")) == 2:
            return model  # a hub id
        raise ConfigError(f"No CERA model at {model}; train one with `cera-rag train --preset quick`.")
    for c in candidates:
        if (Path(c) / "config.json").exists() or Path(c).is_dir():
            return c
    raise ConfigError(
        f"No CERA checkpoint at {' or '.join(candidates)}. Train one first: `cera-rag train --preset quick` "
        "(a few minutes on CPU) or `cera-rag train --preset best`, or pass --cera-model PATH."
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

    @property
    def reference(self) -> str:
        return reference_text(self.evidence_texts, self.label)


def render_question(prompt: Any, template: str = QUESTION_TEMPLATE) -> str:
    """The natural question for an Evidence Inference prompt."""
    from cera_rag.data.queries import render

    return render(template, prompt)


def select_questions(split: Any, limit: int | None) -> list[Question]:
    """The first ``limit`` prompts with evidence in a passage, in split order, as questions."""
    out: list[Question] = []
    for ex in split.examples:
        if not ex.positives:
            continue
        passages = split.passages[ex.prompt.article_id]
        out.append(
            Question(
                question_id=str(ex.prompt.prompt_id),
                article_id=ex.prompt.article_id,
                question=render_question(ex.prompt),
                label=ex.label,
                evidence_texts=list(ex.evidence_texts),
                reference_ids=[passages[i].passage_id for i in ex.positives],
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
    """Settings of one RAGAS comparison run (see ``evals/run_ragas.py`` for the flags)."""

    split: str = "validation"
    limit: int | None = 30
    top_k: int = 5
    cera_model: str | None = None
    out_dir: Path = Path("results/ragas")
    store_dir: Path | None = None
    data_dir: Path | None = None
    frameworks: tuple[str, ...] = FRAMEWORKS
    retrievers: tuple[str, ...] = RETRIEVERS
    generator: LLMEndpoint | None = None
    judge: LLMEndpoint | None = None
    skip_faithfulness: bool = False
    judge_timeout: float | None = 900.0
    local_n_ctx: int = 4096
    local_max_tokens: int = 256
    local_judge_max_tokens: int = 512
    n_resamples: int = 2000
    restart: bool = False
    device: str | None = None

    @property
    def systems(self) -> list[str]:
        return system_names(self.frameworks, self.retrievers)


@contextlib.contextmanager
def resolve_endpoints(cfg: RagasEvalConfig) -> Iterator[tuple[LLMEndpoint, LLMEndpoint | None]]:
    """The generator and judge endpoints, starting the embedded local server when no generator is given.

    Without a judge endpoint the judge is the generator's endpoint (with a larger ``max_tokens``).
    """
    with contextlib.ExitStack() as stack:
        generator = cfg.generator
        judge = cfg.judge
        local: LLMEndpoint | None = None
        if generator is None:
            from cera_rag.rag.local_llm import LocalLLMServer

            server = stack.enter_context(LocalLLMServer(n_ctx=cfg.local_n_ctx))
            local = LLMEndpoint(
                base_url=server.base_url, model=server.model, max_tokens=cfg.local_max_tokens, local=True
            )
            generator = local
        if cfg.skip_faithfulness:
            judge = None
        elif judge is None:
            # The judge is the generator's endpoint with a budget that does not cut verdicts off
            # (the local server's context window caps it); JSON mode helps the small local model.
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


def build_pipelines(
    systems: Sequence[str], encoders: dict[str, Any], collections: dict[str, Any], generator: LLMEndpoint, top_k: int
) -> dict[str, Callable[[str], RAGAnswer]]:
    """One ``question -> RAGAnswer`` callable per system."""
    from cera_rag.rag import pipelines
    from cera_rag.rag.llm import langchain_llm, llamaindex_llm

    out: dict[str, Callable[[str], RAGAnswer]] = {}
    li_llm = lc_llm = None
    for system in systems:
        framework, kind = system.split("-", 1)
        enc, coll = encoders[kind], collections[kind]
        if framework == "llamaindex":
            from llama_index.retrievers.cera import CERARetriever as LlamaCERARetriever

            li_llm = li_llm or llamaindex_llm(generator)
            retriever = LlamaCERARetriever(enc, coll, similarity_top_k=top_k, rationales=False)
            engine = pipelines.build_llamaindex_engine(retriever, li_llm)
            out[system] = lambda q, e=engine: pipelines.answer_llamaindex(e, q)
        elif framework == "langchain":
            from langchain_cera import CERARetriever as LangchainCERARetriever

            lc_llm = lc_llm or langchain_llm(generator)
            retriever = LangchainCERARetriever(encoder=enc, collection=coll, k=top_k, rationales=False)
            chain = pipelines.build_langchain_chain(retriever, lc_llm)
            out[system] = lambda q, c=chain: pipelines.answer_langchain(c, q)
        else:
            raise ConfigError(f"Unknown framework {framework!r}; choose from {FRAMEWORKS}.")
    return out


def settings_of(cfg: RagasEvalConfig, cera_model: str, generator: LLMEndpoint, judge: LLMEndpoint | None) -> dict:
    """What rows depend on: a rerun with other values must not resume into the same folder."""
    try:
        import ragas

        ragas_version = ragas.__version__
    except Exception:  # noqa: BLE001 - recorded for information only
        ragas_version = "?"
    gen = generator.public()
    jud = judge.public() if judge is not None else None
    if generator.local:
        gen.pop("base_url")  # the local server's port changes every run
    if jud is not None and judge is not None and judge.local:
        jud.pop("base_url")
    return {
        "split": cfg.split,
        "limit": cfg.limit,
        "top_k": cfg.top_k,
        "cera_model": str(Path(cera_model).resolve()) if Path(cera_model).exists() else cera_model,
        "generator": gen,
        "judge": jud,
        "prompt_sha": hashlib.sha256(RAG_PROMPT.encode()).hexdigest()[:12],
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
        pipelines_factory: ``(systems, questions, generator, cfg, cera_model) -> {system: answer_fn}``
            (default: real encoders, Chroma stores and pipelines; tests pass fakes).
        load_split: ``cfg -> ProcessedSplit`` (default ``load_processed``).
        echo: Where progress lines go.

    Raises:
        EndpointError: If the generator or judge endpoint is down or answers garbage (finished rows
            are kept and the summary of them written first).
        ConfigError: For missing checkpoints or settings that differ from the rows in ``out_dir``.
    """
    from cera_rag.data.dataset import load_processed

    cera_model = resolve_cera_model(cfg.cera_model) if "cera" in cfg.retrievers else (cfg.cera_model or "-")
    split = (load_split or (lambda c: load_processed(c.split, data_dir=c.data_dir)))(cfg)
    questions = select_questions(split, cfg.limit)
    if not questions:
        raise ConfigError(f"The {cfg.split!r} split has no prompt with evidence to ask about.")
    out_dir = Path(cfg.out_dir)
    systems = cfg.systems
    if cfg.restart:
        for name in (ROWS_FILE, GENERATIONS_FILE, MANIFEST_FILE):
            (out_dir / name).unlink(missing_ok=True)
    rows = JsonlLog(out_dir / ROWS_FILE)
    generations = JsonlLog(out_dir / GENERATIONS_FILE)
    if rows.dropped_tail or generations.dropped_tail:
        echo(f"Dropped {rows.dropped_tail + generations.dropped_tail} torn line(s) left by an interrupted run.")
    pending = [(q, s) for q in questions for s in systems if (s, q.question_id) not in rows]
    echo(f"{len(questions)} questions x {len(systems)} systems: {len(rows)} rows done, {len(pending)} to go.")

    meta: dict[str, Any] = {"split": cfg.split, "n_questions": len(questions), "top_k": cfg.top_k}
    with resolve_endpoints(cfg) as (generator, judge):
        settings = settings_of(cfg, cera_model, generator, judge)
        check_manifest(
            out_dir / MANIFEST_FILE,
            settings,
            "Pass --out to write elsewhere, or --restart to discard the old rows.",
        )
        meta.update(
            generator=generator.describe(),
            judge=judge.describe() if judge else "none (faithfulness skipped)",
            cera_model=settings["cera_model"],
            systems=systems,
        )
        try:
            if pending:
                _run_pending(cfg, pending, questions, systems, generator, judge, cera_model, rows, generations,
                             scorer_factory, pipelines_factory, echo)  # fmt: skip
        finally:
            summary = summarise(
                [rows.rows[(s, q.question_id)] for q in questions for s in systems if (s, q.question_id) in rows],
                systems,
                METRICS,
                n_resamples=cfg.n_resamples,
            )
            meta["n_rows"] = sum(e["n"] for e in summary.values())
            paths = write_summary(out_dir, summary, METRICS, meta)
            echo("Wrote " + ", ".join(str(p) for p in paths))
    return {"meta": meta, "systems": summary}


def _run_pending(
    cfg: RagasEvalConfig,
    pending: list[tuple[Question, str]],
    questions: list[Question],
    systems: list[str],
    generator: LLMEndpoint,
    judge: LLMEndpoint | None,
    cera_model: str,
    rows: JsonlLog,
    generations: JsonlLog,
    scorer_factory: Callable[[LLMEndpoint | None], Scorer] | None,
    pipelines_factory: Callable[..., dict[str, Callable[[str], RAGAnswer]]] | None,
    echo: Callable[[str], None],
) -> None:
    check_endpoint(generator, "generator")
    if judge is not None and judge.base_url != generator.base_url:
        check_endpoint(judge, "judge")
    scorer = (scorer_factory or (lambda j: RagasScorer(j, timeout=cfg.judge_timeout)))(judge)
    need_gen = sorted({s for q, s in pending if (s, q.question_id) not in generations})
    answer_fns = (pipelines_factory or default_pipelines)(need_gen, questions, generator, cfg, cera_model)
    t0 = time.perf_counter()
    for i, (q, system) in enumerate(pending, 1):
        key = (system, q.question_id)
        gen = generations.get(key)
        if gen is None:
            started = time.perf_counter()
            with endpoint_errors(generator, "generator"):
                ans = answer_fns[system](q.question)
            check_answer(ans.answer, generator)
            gen = {
                "system": system,
                "question_id": q.question_id,
                "question": q.question,
                "answer": ans.answer,
                "contexts": ans.contexts,
                "context_ids": ans.context_ids,
                "context_scores": ans.scores,
                "generation_seconds": round(time.perf_counter() - started, 2),
            }
            generations.append(gen)
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
        row = {
            **gen,
            "article_id": q.article_id,
            "reference_ids": q.reference_ids,
            "reference": q.reference,
            "reference_label": q.label,
            "predicted_label": result.predicted_label,
            "scores": result.scores,
            "errors": result.errors,
            "scoring_seconds": round(time.perf_counter() - started, 2),
        }
        rows.append(row)
        shown = " ".join(f"{k}={'n/a' if v is None else f'{v:.2f}'}" for k, v in result.scores.items())
        elapsed = time.perf_counter() - t0
        echo(f"[{i}/{len(pending)}] {system} q{q.question_id}: {shown} ({elapsed / i:.0f}s/row)")


def default_pipelines(
    systems: Sequence[str], questions: Sequence[Question], generator: LLMEndpoint, cfg: RagasEvalConfig, cera_model: str
) -> dict[str, Callable[[str], RAGAnswer]]:
    """Load the encoders, build one Chroma store per encoder and the pipelines of ``systems``."""
    from cera_rag import store
    from cera_rag.data.dataset import load_processed

    if not systems:
        return {}
    kinds = sorted({s.split("-", 1)[1] for s in systems})
    split = load_processed(cfg.split, data_dir=cfg.data_dir)
    ids = articles_of(questions)
    passages = [p for aid in ids for p in split.passages[aid]]
    encoders: dict[str, Any] = {}
    collections: dict[str, Any] = {}
    for kind in kinds:
        if kind == "cera":
            source = cera_model
            encoders[kind] = store.load_encoder(cera_model, device=cfg.device)
        elif kind == "contriever":
            source = store.default_contriever_model()
            encoders[kind] = store.load_encoder(None, contriever=True, device=cfg.device)
        else:
            raise ConfigError(f"Unknown retriever {kind!r}; choose from {RETRIEVERS}.")
        collections[kind] = build_store(encoders[kind], kind, source, passages, cfg, ids)
    return build_pipelines(systems, encoders, collections, generator, cfg.top_k)
