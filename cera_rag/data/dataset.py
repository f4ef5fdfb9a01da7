"""Processed train/validation sets: passages, queries, positives, negatives and POS tags, cached.

``build_split(split, config)`` reads a split, cuts passages, finds positives and their
rationale spans, mines every negative strategy, tags positive passages with spaCy and
scores subjectivity, then caches the result as JSON keyed by a hash of the config and the
data files. ``load_processed`` is the one entry point the trainer and evaluators use.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cera_rag.atomic import write_file
from cera_rag.data.config import DataConfig
from cera_rag.data.negatives import NEGATIVE_STRATEGIES, NegativeMiner
from cera_rag.data.passages import Passage, split_passages
from cera_rag.data.positives import find_positives
from cera_rag.data.reader import Prompt, SplitData, load_split, resolve_data_dir
from cera_rag.errors import DataError
from cera_rag.paths import cache_dir

CACHE_VERSION = 4


@dataclass
class PromptExample:
    """One prompt with everything training and evaluation need (indices are passage indices in its article)."""

    prompt: Prompt
    label: str
    positives: list[int]
    #: passage index -> evidence character spans inside that passage (relative to ``passage.start``)
    rationales: dict[int, list[tuple[int, int]]]
    #: strategy -> ranked negative passage indices (never overlapping this prompt's evidence)
    negatives: dict[str, list[int]]
    #: strategy -> candidates the evidence guard removed
    guard_removed: dict[str, int]
    evidence_texts: list[str] = field(default_factory=list)


@dataclass
class ProcessedSplit:
    """A processed split: passages per article, prompt examples, tags and scores."""

    name: str
    config: DataConfig
    passages: dict[str, list[Passage]]
    examples: list[PromptExample]
    #: passage_id -> [(start, end, pos, tag)] words relative to the passage (positive passages only)
    pos_tags: dict[str, list[tuple[int, int, str, str]]]
    #: article id -> subjectivity of each passage (TextBlob PatternAnalyzer)
    subjectivity: dict[str, list[float]]
    dropped: dict[str, int]
    #: unique evidence spans kept, and annotation rows read for this split
    n_evidence: int = 0
    n_prompts: int = 0
    n_annotations: int = 0

    def passage(self, article_id: str, index: int) -> Passage:
        return self.passages[article_id][index]

    @property
    def n_passages(self) -> int:
        return sum(len(v) for v in self.passages.values())

    def all_passages(self) -> list[Passage]:
        return [p for ps in self.passages.values() for p in ps]


class PromptSelection(BaseModel):
    """Which prompts of a split to process, so a small run reads only what it uses.

    ``n_prompts`` prompts (drawn by ``seed``, or the split's first ones when ``seed`` is None), or
    every prompt of the split's first ``n_articles`` articles; only their articles are kept.
    ``whole_articles`` keeps every prompt of the chosen prompts' articles (a reader's "other
    evidence" of the same article needs them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_prompts: int | None = Field(None, ge=1)
    n_articles: int | None = Field(None, ge=1)
    seed: int | None = None
    whole_articles: bool = False

    @model_validator(mode="after")
    def _one_size(self) -> PromptSelection:
        if (self.n_prompts is None) == (self.n_articles is None):
            raise ValueError("PromptSelection takes exactly one of n_prompts and n_articles.")
        return self

    def apply(self, data: SplitData) -> SplitData:
        """The split cut to the selected prompts, their evidence and their articles."""
        prompts = list(data.prompts)
        if self.n_articles is not None:
            first = list(dict.fromkeys(p.article_id for p in prompts))[: self.n_articles]
            chosen = [p for p in prompts if p.article_id in set(first)]
        elif self.n_prompts is not None and self.n_prompts < len(prompts):
            rng = None if self.seed is None else random.Random(self.seed)
            chosen = prompts[: self.n_prompts] if rng is None else rng.sample(prompts, self.n_prompts)
        else:
            chosen = prompts
        articles = {p.article_id for p in chosen}
        if self.whole_articles:
            chosen = [p for p in prompts if p.article_id in articles]
        keep = {p.prompt_id for p in chosen}
        return replace(
            data,
            articles={aid: text for aid, text in data.articles.items() if aid in articles},
            prompts=[p for p in prompts if p.prompt_id in keep],  # split order, whatever the draw
            evidence={pid: ev for pid, ev in data.evidence.items() if pid in keep},
        )


def _majority_label(labels: list[str]) -> str:
    return Counter(labels).most_common(1)[0][0] if labels else ""


def _fingerprint(root: Path, split: str) -> str:
    ann = root / "annotations" if (root / "annotations").is_dir() else root
    parts = [CACHE_VERSION, split]
    for name in ("prompts_merged.csv", "annotations_merged.csv", "v2_annotations.csv",
                 f"splits/ev2_{split}_article_ids.txt"):  # fmt: skip
        path = ann / name
        if path.exists():
            st = path.stat()
            parts.append(f"{name}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(map(str, parts))


def cache_key(root: Path, split: str, config: DataConfig) -> str:
    payload = _fingerprint(root, split) + "|" + config.model_dump_json()
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_split(data: SplitData, config: DataConfig, show_progress: bool = False) -> ProcessedSplit:
    """Turn a read split into examples (no cache; see ``load_processed``)."""
    from cera_rag.data.rationale import PosTagger
    from cera_rag.data.subjectivity import subjectivity_scores

    passages = {
        aid: split_passages(text, aid, config.passage_mode, config.max_words, config.window_words, config.overlap_words)
        for aid, text in data.articles.items()
    }
    subjectivity = subjectivity_scores(passages, show_progress=show_progress)
    miner = NegativeMiner(passages, subjectivity, config, seed=config.seed)
    examples: list[PromptExample] = []
    dropped = Counter(data.dropped)
    for prompt in data.prompts:
        ev = data.evidence[prompt.prompt_id]
        spans = [(e.start, e.end) for e in ev]
        positives, rationales = find_positives(passages[prompt.article_id], spans, config.min_positive_overlap)
        if not positives:
            dropped["prompt whose evidence no passage holds"] += 1
            continue
        negatives, removed = miner.mine(prompt, spans)
        examples.append(
            PromptExample(
                prompt=prompt,
                label=_majority_label([e.label for e in ev]),
                positives=positives,
                rationales=rationales,
                negatives=negatives,
                guard_removed=removed,
                evidence_texts=sorted({e.text for e in ev}),
            )
        )
    if not examples:
        raise DataError(f"The {data.name!r} split yields no prompt with a positive passage.")
    tagger = PosTagger(config.spacy_model)
    positive_passages = {
        passages[ex.prompt.article_id][i].passage_id: passages[ex.prompt.article_id][i].text
        for ex in examples
        for i in ex.positives
    }
    pos_tags = tagger.tag_many(positive_passages, show_progress=show_progress)
    return ProcessedSplit(
        name=data.name,
        config=config,
        passages=passages,
        examples=examples,
        pos_tags=pos_tags,
        subjectivity=subjectivity,
        dropped=dict(dropped),
        n_evidence=data.n_evidence,
        n_prompts=len(data.prompts),
        n_annotations=data.n_annotations,
    )


# ---------------------------------------------------------------------------------------- cache
def _to_json(ps: ProcessedSplit) -> dict[str, Any]:
    return {
        "version": CACHE_VERSION,
        "name": ps.name,
        "config": ps.config.model_dump(),
        "passages": {aid: [[p.start, p.end] for p in v] for aid, v in ps.passages.items()},
        "examples": [
            {
                "prompt": asdict(ex.prompt),
                "label": ex.label,
                "positives": ex.positives,
                "rationales": {str(k): v for k, v in ex.rationales.items()},
                "negatives": ex.negatives,
                "guard_removed": ex.guard_removed,
                "evidence_texts": ex.evidence_texts,
            }
            for ex in ps.examples
        ],
        "pos_tags": ps.pos_tags,
        "subjectivity": ps.subjectivity,
        "dropped": ps.dropped,
        "n_evidence": ps.n_evidence,
        "n_prompts": ps.n_prompts,
        "n_annotations": ps.n_annotations,
    }


def _from_json(obj: dict[str, Any], articles: dict[str, str]) -> ProcessedSplit:
    passages = {
        aid: [Passage(aid, i, s, e, articles[aid][s:e]) for i, (s, e) in enumerate(spans)]
        for aid, spans in obj["passages"].items()
    }
    examples = [
        PromptExample(
            prompt=Prompt(**ex["prompt"]),
            label=ex["label"],
            positives=ex["positives"],
            rationales={int(k): [tuple(s) for s in v] for k, v in ex["rationales"].items()},  # type: ignore[misc]
            negatives=ex["negatives"],
            guard_removed=ex["guard_removed"],
            evidence_texts=ex["evidence_texts"],
        )
        for ex in obj["examples"]
    ]
    return ProcessedSplit(
        name=obj["name"],
        config=DataConfig(**obj["config"]),
        passages=passages,
        examples=examples,
        pos_tags={k: [tuple(t) for t in v] for k, v in obj["pos_tags"].items()},  # type: ignore[misc]
        subjectivity=obj["subjectivity"],
        dropped=obj["dropped"],
        n_evidence=obj.get("n_evidence", 0),
        n_prompts=obj.get("n_prompts", 0),
        n_annotations=obj.get("n_annotations", 0),
    )


def _atomic_write_gz(path: Path, obj: dict[str, Any]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=3) as fh:
            fh.write(json.dumps(obj).encode())

    write_file(path, write)  # nothing half-written is ever read back


def load_processed(
    split: str,
    config: DataConfig | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    show_progress: bool = False,
    select: PromptSelection | None = None,
) -> ProcessedSplit:
    """The processed split, from the cache when its key matches, else built and cached.

    Args:
        split: ``train`` or ``validation`` (an official split name).
        config: How passages are cut and negatives mined (default ``DataConfig()``).
        data_dir: The Evidence Inference folder (default ``$CERA_DATA_DIR``).
        use_cache: Read and write the cache (``False``: always build, write nothing).
        show_progress: Progress bars while building.
        select: Process only these prompts and their articles (quick runs; cached under their own key).
    """
    config = config or DataConfig()
    root = resolve_data_dir(data_dir)
    data = load_split(root, split)
    key = cache_key(root, split, config)
    if select is not None:
        data = select.apply(data)
        ids = "|".join(p.prompt_id for p in data.prompts)
        key += "-" + hashlib.sha256(ids.encode()).hexdigest()[:8]  # the selection's own cache entry
    path = cache_dir() / "processed" / f"{split}-{key}.json.gz"
    if use_cache and path.is_file():
        try:
            with gzip.open(path, "rb") as fh:
                return _from_json(json.loads(fh.read()), data.articles)
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # a corrupt cache is rebuilt, never trusted
    t0 = time.perf_counter()
    processed = build_split(data, config, show_progress=show_progress)
    processed.dropped["_build_seconds"] = round(time.perf_counter() - t0, 1)  # type: ignore[assignment]
    if use_cache:
        _atomic_write_gz(path, _to_json(processed))
    return processed


def question_key(ex: PromptExample) -> tuple[str, ...]:
    """Intervention, comparator and outcome, case and spacing folded: two prompts that ask the same."""
    p = ex.prompt
    return tuple(" ".join(x.lower().split()) for x in (p.intervention, p.comparator, p.outcome))


def evidence_negative_pools(split: ProcessedSplit) -> dict[str, list[int]]:
    """Per prompt id, the passages of its article that are a positive of *another* prompt and not its own.

    Within an article the passage that competes hardest with the evidence is not opinion or
    background but another reported result (the same trial's other outcomes): the reader trains
    against it (``n_other_evidence``), and so can the bi-encoder (``evidence_negatives``). Unlike the
    reader's pool, a prompt that repeats this one's intervention, comparator and outcome is skipped:
    its evidence answers this question too. (A passage holding fewer than ``min_positive_overlap``
    characters of this prompt's evidence is not its positive and may be drawn, as for the reader.)
    """
    by_article: dict[str, list[PromptExample]] = {}
    for ex in split.examples:
        if ex.positives:
            by_article.setdefault(ex.prompt.article_id, []).append(ex)
    out: dict[str, list[int]] = {}
    for exs in by_article.values():
        for ex in exs:
            own, key = set(ex.positives), question_key(ex)
            pool = {i for other in exs if question_key(other) != key for i in other.positives}
            out[ex.prompt.prompt_id] = sorted(pool - own)
    return out


def sample_training_triples(
    split: ProcessedSplit, strategy: str, n_negatives: int, rng: random.Random
) -> list[tuple[PromptExample, int, list[int]]]:
    """One (example, positive index, negative indices) per prompt, sampled afresh each call."""
    if strategy not in NEGATIVE_STRATEGIES:
        raise ValueError(f"Unknown negative strategy {strategy!r}; choose one of {NEGATIVE_STRATEGIES}.")
    out = []
    for ex in split.examples:
        negs = ex.negatives.get(strategy, [])[:n_negatives]
        out.append((ex, rng.choice(ex.positives), negs))
    return out
