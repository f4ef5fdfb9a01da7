"""One evaluation run: retrieval of every system on every pool and query style, statistics,
plausibility and faithfulness of the dense systems, written as JSON, markdown and PNGs.

Systems (``EvalConfig.systems``):

* ``bm25``: ``bm25s`` with English stopwords, one index per article (article pool) or one over
  the whole split (corpus pool);
* ``minilm``: off-the-shelf all-MiniLM-L6-v2 with mean pooling; ``minilm-cls``: the same with
  [CLS] pooling;
* any local folder (a CERA checkpoint, a sentence-transformers folder, a HF model folder) or hub
  id, loaded with ``CERAEncoder.from_pretrained``; a ``@cls`` / ``@mean`` suffix overrides pooling;
* a glob (``checkpoints/rows/cera-s*``): every matching folder is one seed of one system, reported
  as mean ± std over seeds, with per-query values averaged over seeds for the paired tests.

Every dense model goes through the same ``CERAEncoder`` code; passage vectors are cached per
(model fingerprint, split, data config) so an interrupted run resumes.
"""

from __future__ import annotations

import glob
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cera_rag.data.dataset import DataConfig, ProcessedSplit
from cera_rag.evaluation.retrieval import DEFAULT_METRICS, Pool

log = logging.getLogger(__name__)

#: Aliases of off-the-shelf encoders: name -> (model path or hub id, pooling).
ALIASES: dict[str, tuple[str, str]] = {
    "minilm": ("minilm", "mean"),
    "minilm-mean": ("minilm", "mean"),
    "minilm-cls": ("minilm", "cls"),
}
LEXICAL = ("bm25",)
_POOLS: tuple[Pool, ...] = ("article", "corpus")


class EvalConfig(BaseModel):
    """Everything an evaluation run depends on (stored in the run's JSON)."""

    model_config = ConfigDict(extra="forbid")

    split: str = "validation"
    systems: list[str] = Field(default_factory=lambda: ["bm25", "minilm"])
    pools: list[Pool] = Field(default_factory=lambda: list(_POOLS))
    query_styles: list[str] = Field(default_factory=lambda: ["paper"])
    limit: int | None = Field(None, ge=1, description="Evaluate the first N prompts with positives.")
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    top_k: int = Field(100, ge=1)
    baseline: str | None = Field(None, description="System the others are compared with (default: the first).")
    plausibility: bool = True
    faithfulness: bool = True
    faithfulness_limit: int | None = Field(100, ge=1, description="Positive pairs for faithfulness (None = all).")
    aopc_fractions: list[float] = Field(default_factory=lambda: [0.01, 0.05, 0.1, 0.2, 0.5])
    n_bootstrap: int = Field(2000, ge=100)
    n_permutations: int = Field(10000, ge=100)
    seed: int = 0
    batch_size: int = Field(32, ge=1)
    #: what runs dense encoders' forward passes: ``onnx`` (ONNX Runtime, fp32: the same vectors
    #: and attention as PyTorch to ~1e-6, faster on CPU), ``torch``, or ``auto`` (onnx when installed)
    backend: Literal["auto", "torch", "onnx"] = "auto"
    use_cache: bool = True
    data: DataConfig = Field(default_factory=DataConfig)
    #: a ``CERAReader`` checkpoint: adds the two-stage system "<first stage>+reader" (re-ranks the top N)
    reader: str | None = None
    reader_first_stage: str | None = Field(None, description="Dense system the reader re-ranks (default: the first).")
    rerank_top_n: int = Field(20, ge=1)
    #: also report "<first stage>+reader+fusion": z(reader) + w * z(first stage) over the top N (None: off)
    reader_fusion: float | None = Field(None, gt=0.0)
    reader_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    #: base-rate-aware explanation rows (random, query overlap, each encoder's attention, the reader)
    explanations: bool = True


@dataclass
class System:
    """A system to evaluate: BM25, or one dense model, or several seeds of one."""

    label: str
    kind: str  # "lexical" or "dense"
    members: list[str] = field(default_factory=list)

    @property
    def is_group(self) -> bool:
        return len(self.members) > 1


def parse_systems(specs: list[str]) -> list[System]:
    """Turn ``--systems`` entries into ``System`` objects (aliases, globs for seed groups).

    Args:
        specs: entries such as ``bm25``, ``minilm``, ``checkpoints/cera-best``, ``checkpoints/cera-s*``.

    Returns:
        Systems in the given order (duplicates dropped).

    Raises:
        ConfigError: a glob matches no folder, or no system is given.
    """
    from cera_rag.errors import ConfigError

    systems: list[System] = []
    seen: set[str] = set()
    for raw in specs:
        spec = raw.strip()
        if not spec or spec in seen:
            continue
        seen.add(spec)
        if spec.lower() in LEXICAL:
            systems.append(System(spec.lower(), "lexical"))
        elif any(c in spec.split("@")[0] for c in "*?["):
            base, _, suffix = spec.partition("@")
            # Only model folders: `-s*` also matches the trainer's `<checkpoint>.run` resume folders and logs.
            matches = sorted(p for p in glob.glob(base) if (Path(p) / "config.json").is_file())
            if not matches:
                raise ConfigError(f"System {spec!r} matches no model folder (one with a config.json); check the glob.")
            systems.append(System(spec, "dense", [m + (f"@{suffix}" if suffix else "") for m in matches]))
        else:
            systems.append(System(spec, "dense", [spec]))
    if not systems:
        raise ConfigError("No system to evaluate; pass e.g. --systems bm25,minilm.")
    return systems


def resolve_backend(backend: str) -> str:
    """``auto`` is ``onnx`` where onnxruntime is installed, else ``torch``."""
    if backend != "auto":
        return backend
    import importlib.util

    return "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"


def load_encoder(spec: str, backend: str = "torch") -> Any:
    """Load a dense system member: an alias, a path or hub id, optionally ``@cls`` / ``@mean`` / ``@contriever``.

    Args:
        spec: e.g. ``minilm``, ``minilm-cls``, ``checkpoints/cera-best``, ``checkpoints/cera-best@mean``,
            ``minilm@contriever``.
        backend: ``torch``, ``onnx`` or ``auto`` (gradients still use the PyTorch weights).

    Returns:
        A ``CERAEncoder`` in eval mode.
    """
    from cera_rag.encoders import load_encoder as load

    if spec in ALIASES:
        name, pooling = ALIASES[spec]
        return load(name, pooling=pooling, backend=resolve_backend(backend))
    return load(spec, backend=resolve_backend(backend))  # MODEL, MODEL@cls / @mean / @contriever


def load_reader(spec: str, backend: str = "auto") -> Any:
    """A ``CERAReader`` for the evaluation; ``auto`` runs it in ONNX Runtime (fp32) where installed."""
    from cera_rag.reader import CERAReader

    return CERAReader.from_pretrained(spec, backend=resolve_backend(backend))  # type: ignore[arg-type]


def _member_source(spec: str) -> str:
    if spec in ALIASES:
        return ALIASES[spec][0]
    return spec.rpartition("@")[0] if "@" in spec and spec.rpartition("@")[2] in ("cls", "mean") else spec


def package_versions() -> dict[str, str]:
    """Versions of the packages the numbers depend on."""
    from importlib import metadata

    out: dict[str, str] = {}
    for dist in ("cera-rag", "torch", "transformers", "ranx", "bm25s", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        import subprocess

        repo = Path(__file__).resolve().parents[2]
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
        if commit:
            out["git_commit"] = commit
    except (OSError, ValueError):
        pass
    return out


def _ci_table(per_query: dict[str, dict[str, float]], metrics: list[str], cfg: EvalConfig) -> dict[str, list[float]]:
    from cera_rag.evaluation.stats import bootstrap_ci

    out = {}
    for m in metrics:
        vals = np.array([per_query[m][k] for k in sorted(per_query[m])], dtype=np.float64)
        _, lo, hi = bootstrap_ci(vals, cfg.n_bootstrap, 0.05, cfg.seed)
        out[m] = [lo, hi]
    return out


def run_evaluation(
    config: EvalConfig,
    data_dir: str | Path | None = None,
    show_progress: bool = True,
    split: ProcessedSplit | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate every system; returns ``(results, per_query)`` ready for ``report.write_report``.

    Args:
        config: the run's settings.
        data_dir: Evidence Inference folder (default: ``$CERA_DATA_DIR`` / ``../shared``).
        show_progress: tqdm bars.
        split: an already processed split (skips loading; tests).

    Returns:
        ``results``: config, versions, timestamp, data summary, metric means with bootstrap CIs, paired
        comparisons, plausibility and faithfulness summaries, timings. ``per_query``: the per-query values
        behind them.
    """
    from cera_rag.errors import ConfigError

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    for style in config.query_styles:
        if style not in ("paper", "heldout"):
            raise ConfigError(f"Unknown query style {style!r}; use paper or heldout.")
    systems = parse_systems(config.systems)
    labels = [s.label for s in systems]
    baseline = config.baseline or labels[0]
    if baseline not in labels:
        raise ConfigError(f"Baseline {baseline!r} is not one of the systems {labels}.")
    data = _EvalData.load(config, data_dir, show_progress, split)
    split, exs, pairs = data.split, data.exs, data.pairs
    timings["load_data"] = time.perf_counter() - t_start

    got = _Gathered()
    for system in systems:
        t0 = time.perf_counter()
        if system.kind == "lexical":
            _evaluate_lexical(system, config, data, got)
        else:
            for spec in system.members:
                _evaluate_dense_member(system, spec, config, data, got, show_progress)
        timings[system.label] = time.perf_counter() - t0

    dense_labels = [s.label for s in systems if s.kind == "dense"]
    first_stage = config.reader_first_stage or (dense_labels[0] if dense_labels else None)
    if (config.reader or config.explanations) and first_stage is not None and first_stage not in got.kept_runs:
        raise ConfigError(f"reader_first_stage {first_stage!r} is not one of the dense systems {dense_labels}.")
    if config.reader:
        if first_stage is None:
            raise ConfigError("The reader re-ranks a dense system's top passages; add one to --systems.")
        t0 = time.perf_counter()
        reader_labels = _evaluate_reader(first_stage, config, data, got, show_progress)
        labels.extend(reader_labels)
        timings[reader_labels[0]] = time.perf_counter() - t0
    _explanation_baselines(first_stage, config, data, got)

    per_query_out: dict[str, Any] = {"retrieval": {}, "plausibility": {}, "faithfulness": {}}
    explanations_out = _explanations_summary(got.explain, per_query_out)
    retrieval = _retrieval_summary(got.member_pq, got.member_means, labels, baseline, config, per_query_out)
    plausibility = _plausibility_summary(got.plaus, config, per_query_out)
    faithfulness = _faithfulness_summary(got.faith, config, per_query_out)
    members_info = got.members_info

    from cera_rag.evaluation.faithfulness import DEFINITIONS as FAITH_DEFINITIONS

    timings["total"] = time.perf_counter() - t_start
    results: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.model_dump(),
        "versions": package_versions(),
        "data": {
            "split": split.name,
            "n_articles": len(split.passages),
            "n_passages": split.n_passages,
            "n_queries": len(exs),
            "n_articles_queried": len({ex.prompt.article_id for ex in exs}),
            "n_positive_pairs": len(pairs),
        },
        "systems": [{"label": s.label, "kind": s.kind, "members": members_info.get(s.label, [])} for s in systems]
        + [
            {"label": label, "kind": "two-stage", "members": members_info.get(label, [])}
            for label in labels
            if label not in {s.label for s in systems}
        ],
        "baseline": baseline,
        "retrieval": retrieval,
        "plausibility": plausibility,
        "faithfulness": faithfulness,
        "explanations": explanations_out,
        "definitions": {
            "explanations": "per (prompt, positive passage) with k = ceil(20% of the words) marked: precision of the "
            "marked words on the prompt's evidence, the evidence share of the words (random marking), lift = mean "
            "precision / mean share, AUPRC - share; 'evidence_lt50' = pairs whose evidence covers < 50% of the words. "
            "evidence_hit@1: the highest-weight span of the ranker's top passage in the article overlaps the evidence; "
            "sentence_top1: the sentence holding it does. random and query_overlap are marked on the first stage's "
            "top passage, attention rows on their own encoder's, the reader on the two-stage top passage",
            "retrieval": "ranx metrics over qrels = positive passages of each prompt; article pool = the prompt's own "
            "article, corpus pool = every passage of the split; ci95 = percentile bootstrap of the mean over queries",
            "comparisons": "system - baseline on per-query values: mean difference, paired bootstrap 95% CI, "
            "two-sided paired randomisation (sign-flip) test p-value",
            "seeds": "glob systems: metrics are the mean over seeds, std the sample std over seeds; per-query values "
            "are averaged over seeds before paired tests",
            "plausibility": "ERASER token-level AUPRC, token F1 and IOU F1 (IOU >= 0.5) of CLS attention vs human "
            "evidence words in positive passages; @rationale: k = human words, @20%: k = ceil(20% words)",
            **{f"faithfulness/{k}": v for k, v in FAITH_DEFINITIONS.items()},
        },
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    return results, per_query_out


# ---------------------------------------------------------------------------------------- units
@dataclass
class _EvalData:
    """The evaluated split, its prompts, qrels, the articles to encode, the (prompt, positive) pairs."""

    split: ProcessedSplit
    exs: list[Any]
    qrels: dict[str, dict[str, int]]
    needed: list[str]
    pairs: list[Any]
    passage_text: dict[str, str]
    explain_style: str

    @classmethod
    def load(
        cls, config: EvalConfig, data_dir: str | Path | None, show_progress: bool, split: ProcessedSplit | None
    ) -> _EvalData:
        from cera_rag.data.dataset import load_processed
        from cera_rag.evaluation.plausibility import positive_pairs
        from cera_rag.evaluation.retrieval import build_qrels, eval_examples, pool_articles

        if split is None:
            split = load_processed(config.split, config.data, data_dir, show_progress=show_progress)
        exs = eval_examples(split, config.limit)
        wanted = {q.prompt.prompt_id for q in exs}
        needed = sorted({a for pool in config.pools for a in pool_articles(split, exs, pool)})
        return cls(
            split=split,
            exs=exs,
            qrels={k: v for k, v in build_qrels(split).items() if k in wanted},
            needed=needed,
            pairs=positive_pairs(split, exs, config.query_styles[0]),
            passage_text={p.passage_id: p.text for a in needed for p in split.passages[a]},
            explain_style=config.query_styles[0],
        )

    def explain_query(self, e: Any) -> str:
        """The question every explanation row is marked for."""
        from cera_rag.evaluation.retrieval import query_text

        return query_text(e, self.explain_style)


@dataclass
class _Gathered:
    """What the systems' evaluations collect, before the summaries."""

    #: [pool/style][system] = one {metric: {qid: value}} per member (seed)
    member_pq: dict[str, dict[str, list[dict[str, dict[str, float]]]]] = field(default_factory=dict)
    member_means: dict[str, dict[str, list[dict[str, float]]]] = field(default_factory=dict)
    plaus: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    faith: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    members_info: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: the first member's runs per system and pool/style (the reader re-ranks them)
    kept_runs: dict[str, dict[str, dict[str, dict[str, float]]]] = field(default_factory=dict)
    explain: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, key: str, label: str, ev: dict[str, Any]) -> None:
        self.member_pq.setdefault(key, {}).setdefault(label, []).append(ev.pop("per_query"))
        self.member_means.setdefault(key, {}).setdefault(label, []).append(ev)


def _evaluate_lexical(system: System, config: EvalConfig, data: _EvalData, got: _Gathered) -> None:
    from cera_rag.evaluation.retrieval import bm25_run, evaluate_run

    for style in config.query_styles:
        for pool in config.pools:
            run = bm25_run(data.split, pool, style, top_k=config.top_k, exs=data.exs)
            got.record(f"{pool}/{style}", system.label, evaluate_run(data.qrels, run, config.metrics, per_query=True))
    got.members_info[system.label] = [{"spec": "bm25", "library": "bm25s", "stopwords": "en"}]


def _evaluate_dense_member(
    system: System, spec: str, config: EvalConfig, data: _EvalData, got: _Gathered, show_progress: bool
) -> None:
    """One encoder (one seed of ``system``): retrieval, plausibility, faithfulness, its explanation row."""
    from cera_rag.evaluation import two_stage
    from cera_rag.evaluation.cache import PassageVectorCache
    from cera_rag.evaluation.faithfulness import evaluate_faithfulness
    from cera_rag.evaluation.plausibility import evaluate_plausibility
    from cera_rag.evaluation.retrieval import dense_run_from_vectors, evaluate_run, query_text

    log.info("Evaluating %s", spec)
    first = spec == system.members[0]
    encoder = load_encoder(spec, config.backend)
    cache = PassageVectorCache(encoder, data.split, enabled=config.use_cache, source=_member_source(spec))
    t1 = time.perf_counter()
    vectors = cache.vectors(data.needed, config.batch_size, show_progress=show_progress, desc=f"encode {spec}")
    stage: dict[str, float] = {"encode_passages": time.perf_counter() - t1}
    t1 = time.perf_counter()
    for style in config.query_styles:
        qv = encoder.encode_queries([query_text(ex, style) for ex in data.exs], batch_size=config.batch_size)
        for pool in config.pools:
            run = dense_run_from_vectors(data.split, data.exs, qv, vectors, pool, config.top_k)
            got.record(f"{pool}/{style}", system.label, evaluate_run(data.qrels, run, config.metrics, per_query=True))
            if first:
                got.kept_runs.setdefault(system.label, {})[f"{pool}/{style}"] = run
    stage["retrieval"] = time.perf_counter() - t1
    info: dict[str, Any] = {
        "spec": spec,
        "name": encoder.name,
        "backend": encoder.backend,
        "encoder_config": encoder.config.model_dump(),
        "cache": cache.manifest(),
    }
    t1 = time.perf_counter()
    if config.plausibility and data.pairs:
        got.plaus.setdefault(system.label, []).append(
            evaluate_plausibility(encoder, data.pairs, config.batch_size, config.seed, show_progress)
        )
    stage["plausibility"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    if config.faithfulness and data.pairs:
        got.faith.setdefault(system.label, []).append(
            evaluate_faithfulness(
                encoder,
                data.pairs,
                config.faithfulness_limit,
                config.aopc_fractions,
                seed=config.seed,
                batch_size=config.batch_size,
                show_progress=show_progress,
            )
        )
    stage["faithfulness"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    article_run = got.kept_runs.get(system.label, {}).get(f"article/{data.explain_style}")
    if config.explanations and data.pairs and first and article_run is not None:
        top = two_stage.top_of(article_run)
        texts = [p.text for p in data.pairs] + [data.passage_text[pid] for pid in top.values()]
        mark = two_stage.encoder_marker(encoder, texts, config.batch_size)
        # A seed group's row is its first seed's (the kept runs are that seed's): named so, not as the group.
        name = spec if system.is_group else system.label
        got.explain[f"{name} attention"] = two_stage.explanation_row(
            mark, data.split, data.exs, data.pairs, top, data.explain_query, name
        )
    stage["explanations"] = time.perf_counter() - t1
    info["timings_s"] = {k: round(v, 2) for k, v in stage.items()}
    got.members_info.setdefault(system.label, []).append(info)


def _evaluate_reader(
    first_stage: str, config: EvalConfig, data: _EvalData, got: _Gathered, show_progress: bool
) -> list[str]:
    """The reader re-ranking ``first_stage``'s runs (and fused with it); returns the new system labels."""
    from cera_rag.evaluation import two_stage
    from cera_rag.evaluation.retrieval import evaluate_run, query_id, query_text

    reader = load_reader(config.reader or "", config.reader_backend)
    cache = two_stage.ReaderCache(reader)
    reader_label = f"{first_stage}+reader"
    labels = [reader_label] + ([f"{reader_label}+fusion"] if config.reader_fusion else [])
    reranked: dict[str, dict[str, dict[str, float]]] = {}
    for key, first_run in got.kept_runs[first_stage].items():
        style = key.split("/")[1]
        questions = {query_id(e): query_text(e, style) for e in data.exs}
        run = two_stage.rerank(
            cache, first_run, questions, data.passage_text, config.rerank_top_n, show_progress, desc=f"re-rank {key}"
        )
        reranked[key] = run
        got.record(key, reader_label, evaluate_run(data.qrels, run, config.metrics, per_query=True))
        if config.reader_fusion:
            fused = two_stage.rerank(
                cache, first_run, questions, data.passage_text, config.rerank_top_n, fusion=config.reader_fusion
            )
            got.record(key, f"{reader_label}+fusion", evaluate_run(data.qrels, fused, config.metrics, per_query=True))
    got.members_info[reader_label] = [
        {
            "spec": config.reader,
            "first_stage": first_stage,
            "rerank_top_n": config.rerank_top_n,
            "fusion_weight": config.reader_fusion,
            "backend": reader.backend,
            "reader_config": reader.config.model_dump(),
            "pairs_read": cache.pairs_read,
        }
    ]
    if config.reader_fusion:
        got.members_info[f"{reader_label}+fusion"] = got.members_info[reader_label]
    article_key = f"article/{data.explain_style}"
    if config.explanations and data.pairs and article_key in reranked:
        ids = {t: pid for pid, t in data.passage_text.items()}
        got.explain["reader evidence spans"] = two_stage.explanation_row(
            two_stage.reader_marker(cache, ids), data.split, data.exs, data.pairs,
            two_stage.top_of(reranked[article_key]), data.explain_query, reader_label,
        )  # fmt: skip
    return labels


def _explanation_baselines(first_stage: str | None, config: EvalConfig, data: _EvalData, got: _Gathered) -> None:
    """The two free baselines every explanation is measured against, on the first stage's top passages."""
    from cera_rag.evaluation import two_stage

    first_article_run = got.kept_runs.get(first_stage or "", {}).get(f"article/{data.explain_style}")
    if config.explanations and data.pairs and first_article_run is not None:
        top = two_stage.top_of(first_article_run)
        for kind in ("random", "query_overlap"):
            got.explain[kind] = two_stage.explanation_row(
                two_stage.baseline_marker(kind, config.seed), data.split, data.exs, data.pairs, top,
                data.explain_query, first_stage,
            )  # fmt: skip


def _explanations_summary(explain: dict[str, dict[str, Any]], per_query_out: dict[str, Any]) -> dict[str, Any]:
    """The explanation rows, baselines first; their per-pair values move to ``per_query_out``."""
    out: dict[str, Any] = {}
    for name in ["random", "query_overlap", *[k for k in explain if k not in ("random", "query_overlap")]]:
        if name in explain:
            row = dict(explain[name])
            per_query_out.setdefault("explanations", {})[name] = {
                "lift": row.pop("per_pair_lift"),
                "share": row.pop("per_pair_share"),
            }
            out[name] = row
    return out


# ---------------------------------------------------------------------------------------- summaries
def _retrieval_summary(
    member_pq: dict[str, dict[str, list[dict[str, dict[str, float]]]]],
    member_means: dict[str, dict[str, list[dict[str, float]]]],
    labels: list[str],
    baseline: str,
    config: EvalConfig,
    per_query_out: dict[str, Any],
) -> dict[str, Any]:
    """Per pool/style: each system's metrics (mean and std over seeds, CI), and paired comparisons with the baseline."""
    from cera_rag.evaluation import stats

    retrieval: dict[str, Any] = {}
    for key, by_system in member_pq.items():
        pq = {
            label: {m: stats.mean_per_query([mem[m] for mem in runs]) for m in config.metrics}
            for label, runs in by_system.items()
        }
        per_query_out["retrieval"][key] = pq
        entry: dict[str, Any] = {"n_queries": len(next(iter(pq.values()))[config.metrics[0]]), "systems": {}}
        for label in labels:
            if label not in pq:
                continue
            seeds = stats.aggregate_seeds(member_means[key][label])
            entry["systems"][label] = {
                "metrics": {m: seeds[m]["mean"] for m in config.metrics},
                "std": {m: seeds[m]["std"] for m in config.metrics},
                "n_seeds": len(member_means[key][label]),
                "ci95": _ci_table(pq[label], config.metrics, config),
            }
        entry["comparisons"] = {
            label: {
                m: stats.paired_comparison(
                    pq[label][m], pq[baseline][m], config.n_bootstrap, config.n_permutations, seed=config.seed
                )
                for m in config.metrics
            }
            for label in labels
            if label != baseline and label in pq
        }
        retrieval[key] = entry

    return retrieval


def _plausibility_summary(
    plaus: dict[str, list[dict[str, Any]]], config: EvalConfig, per_query_out: dict[str, Any]
) -> dict[str, Any]:
    """Per dense system: attention against random marking of the human evidence, over seeds."""
    from cera_rag.evaluation import stats

    plausibility: dict[str, Any] = {}
    for label, runs in plaus.items():
        att = stats.aggregate_seeds([r["attention"] for r in runs])
        rnd = stats.aggregate_seeds([r["random"] for r in runs])
        per_query_out["plausibility"][label] = [r["per_instance"] for r in runs]
        auprc = stats.mean_per_query([r["per_instance"]["auprc"] for r in runs])
        auprc_rnd = stats.mean_per_query([r["per_instance"]["auprc_random"] for r in runs])
        plausibility[label] = {
            "attention": {k: v["mean"] for k, v in att.items()},
            "attention_std": {k: v["std"] for k, v in att.items()},
            "random": {k: v["mean"] for k, v in rnd.items()},
            "attention_vs_random_auprc": stats.paired_comparison(
                auprc, auprc_rnd, config.n_bootstrap, config.n_permutations, seed=config.seed
            ),
            "attention_mass": [x for r in runs for x in r["attention_mass"]],
            "evidence_fraction": [x for r in runs for x in r["evidence_fraction"]],
            "n_pairs": runs[0]["n_scored"],
            "n_seeds": len(runs),
        }

    return plausibility


def _faithfulness_summary(
    faith: dict[str, list[dict[str, Any]]], config: EvalConfig, per_query_out: dict[str, Any]
) -> dict[str, Any]:
    """Per dense system: comprehensiveness/sufficiency AOPC of attention against the other rankings."""
    from cera_rag.evaluation import stats

    faithfulness: dict[str, Any] = {}
    for label, runs in faith.items():
        runs = [r for r in runs if r["summary"]]
        if not runs:
            continue
        methods = list(runs[0]["summary"])
        per_query_out["faithfulness"][label] = [r["per_pair"] for r in runs]
        summary = {m: stats.aggregate_seeds([r["summary"][m] for r in runs]) for m in methods}
        entry = {
            "summary": {m: {k: v["mean"] for k, v in s.items()} for m, s in summary.items()},
            "std": {m: {k: v["std"] for k, v in s.items()} for m, s in summary.items()},
            "fractions": runs[0]["fractions"],
            "n_pairs": runs[0]["n_pairs"],
            "n_seeds": len(runs),
            "comparisons": {},
        }
        if "attention" in methods:
            for other in (m for m in methods if m != "attention"):
                entry["comparisons"][f"attention_vs_{other}"] = {
                    k: stats.paired_comparison(
                        stats.mean_per_query([r["per_pair"]["attention"][k] for r in runs]),
                        stats.mean_per_query([r["per_pair"][other][k] for r in runs]),
                        config.n_bootstrap,
                        config.n_permutations,
                        seed=config.seed,
                    )
                    for k in (
                        "eraser_comprehensiveness_aopc",
                        "eraser_sufficiency_aopc",
                        "paper_comprehensiveness",
                        "paper_sufficiency",
                    )
                }
        faithfulness[label] = entry
    return faithfulness
