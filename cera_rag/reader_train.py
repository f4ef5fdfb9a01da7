"""Training the CERA reader: relevance and evidence tokens of (question, passage) pairs, jointly.

Each question of a step comes with a group of passages of its own article: one positive
(holding its human evidence), passages that hold the evidence of *other* prompts of the same
article (so the reader must read the question to tell them apart, and its evidence marks must
depend on the question), and mined hard negatives (``hybrid`` by default: subjective and on-topic).

``loss = CE(relevance logits of the group, positive) + token_weight * BCE(evidence logits, evidence tokens)``

The relevance term is listwise (softmax over the group); the token term covers every passage
token of every pair: tokens inside this question's evidence are 1, all others (including every
token of a negative) 0. Runs resume from ``<output_dir>.run/`` like the encoder's trainer, log
JSONL, and keep the best validation epoch (MRR@10 of re-ranking each validation prompt's BM25
top ``eval_candidates`` plus its positives).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from cera_rag.atomic import write_json
from cera_rag.config import load_settings, save_settings
from cera_rag.data.dataset import DataConfig, ProcessedSplit, PromptExample, PromptSelection, load_processed
from cera_rag.data.queries import TRAIN_TEMPLATES, sample_query
from cera_rag.errors import ConfigError
from cera_rag.model import TruncationWarning, check_output_dir, token_lengths
from cera_rag.paths import DEFAULT_BASE_MODEL
from cera_rag.reader import CERAReader
from cera_rag.run_state import RunState, adamw_groups, run_dir_for, sigint_sets_interrupted, trim_log

log = logging.getLogger(__name__)


class ReaderTrainConfig(BaseModel):
    """Everything a reader training run depends on; saved next to its checkpoint."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = DEFAULT_BASE_MODEL
    output_dir: str = "checkpoints/cera-reader"
    data: DataConfig = Field(default_factory=DataConfig)
    layers: int | None = Field(None, ge=1, description="Encoder layers kept (None: all).")

    negatives: Literal["random", "bm25", "subjective", "hybrid"] = "hybrid"
    n_negatives: int = Field(2, ge=0, le=5, description="Mined negatives per question (of the 5 mined).")
    n_other_evidence: int = Field(1, ge=0, description="Passages holding other prompts' evidence, per question.")
    token_weight: float = Field(1.0, ge=0.0, description="Weight of the evidence-token loss.")

    max_length: int = Field(256, ge=16)
    max_query_length: int = Field(64, ge=4)

    epochs: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1, description="Questions per step (each with its group of passages).")
    lr: float = Field(5e-5, gt=0.0)
    warmup_ratio: float = Field(0.1, ge=0.0, le=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    seed: int = 42
    max_train_prompts: int | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=1)

    eval_split: str | None = "validation"
    eval_max_prompts: int | None = Field(None, ge=1)
    eval_candidates: int = Field(20, ge=1, description="BM25 top-k of the article re-ranked at validation.")
    checkpoint_every: int = Field(50, ge=1)
    device: str | None = None


READER_PRESETS: dict[str, dict[str, Any]] = {
    # Minutes on a 2-core CPU: the demo and the slow test.
    "quick": {
        "output_dir": "checkpoints/cera-reader-quick",
        "max_train_prompts": 240,
        "batch_size": 8,
        "n_negatives": 1,
        "n_other_evidence": 1,
        "max_length": 192,
        "eval_max_prompts": 60,
        "checkpoint_every": 10,
        "lr": 8e-5,
    },
    # The README's reader row.
    "best": {
        "output_dir": "checkpoints/cera-reader",
        "batch_size": 8,
        "n_negatives": 2,
        "n_other_evidence": 1,
        "max_length": 256,
        "epochs": 2,
        "lr": 5e-5,
        "eval_max_prompts": 120,
    },
}


def load_reader_config(
    preset: str | None = None, path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> ReaderTrainConfig:
    """Preset, then YAML file, then explicit overrides (later wins)."""
    return load_settings(ReaderTrainConfig, READER_PRESETS, preset, path, overrides, "reader training config")


@dataclass
class ReaderGroup:
    """One question and its passages: index 0 is the positive."""

    query: str
    example: PromptExample
    passages: list[int]


@dataclass
class ReaderTrainResult:
    output_dir: str
    best_metric: float
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0


def _other_evidence(split: ProcessedSplit) -> dict[str, list[int]]:
    """Article id -> passages that are a positive of some prompt of that article."""
    out: dict[str, set[int]] = {}
    for ex in split.examples:
        out.setdefault(ex.prompt.article_id, set()).update(ex.positives)
    return {k: sorted(v) for k, v in out.items()}


def epoch_groups(split: ProcessedSplit, config: ReaderTrainConfig, epoch: int) -> list[list[ReaderGroup]]:
    """The batches of one epoch: a pure function of (split, config, epoch), so a resumed run sees the same."""
    rng = random.Random(config.seed * 1000 + epoch)
    exs = [ex for ex in split.examples if ex.positives]
    if config.max_train_prompts:
        exs = random.Random(config.seed).sample(exs, min(config.max_train_prompts, len(exs)))
    rng.shuffle(exs)
    evidence = _other_evidence(split)
    groups = []
    for ex in exs:
        own = set(ex.positives)
        others = [i for i in evidence.get(ex.prompt.article_id, []) if i not in own]
        mined = [i for i in ex.negatives.get(config.negatives, []) if i not in own]
        chosen = rng.sample(others, min(config.n_other_evidence, len(others)))
        pool = [i for i in mined if i not in chosen]
        chosen += rng.sample(pool, min(config.n_negatives, len(pool)))
        query = sample_query(ex.prompt, rng, TRAIN_TEMPLATES)
        groups.append(ReaderGroup(query, ex, [rng.choice(ex.positives), *chosen]))
    return [groups[s : s + config.batch_size] for s in range(0, len(groups), config.batch_size)]


def token_labels(offsets: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """``(T,)`` 1.0 where a passage token (offsets relative to the passage) overlaps an evidence span."""
    out = np.zeros(len(offsets), dtype=np.float32)
    for t, (s, e) in enumerate(offsets.tolist()):
        if e > s and any(s < b and a < e for a, b in spans):
            out[t] = 1.0
    return out


def reader_loss(
    reader: CERAReader, split: ProcessedSplit, batch: list[ReaderGroup], token_weight: float, micro_batch: int = 16
) -> tuple[torch.Tensor, dict[str, float]]:
    """Listwise relevance CE over each group plus token BCE over all passage tokens of the batch.

    The pairs of all groups go through the reader in length-sorted micro-batches (less padding);
    the group logits are put back together before the softmax, so the loss is the same.
    """
    queries, texts, labels, owners = [], [], [], []
    for g, group in enumerate(batch):
        aid = group.example.prompt.article_id
        for row, i in enumerate(group.passages):
            queries.append(group.query)
            texts.append(split.passage(aid, i).text)
            labels.append(group.example.rationales.get(i, []) if row == 0 else [])
            owners.append(g)
    # order by tokens, not characters (clinical text tokenises unevenly: cera_rag.model.token_lengths)
    limit = reader.config.max_length
    # each group repeats one query over its passages: tokenise every distinct query once
    distinct = list(dict.fromkeys(queries))
    q_tokens = dict(zip(distinct, token_lengths(reader.tokenizer, distinct, limit), strict=True))
    t_tokens = token_lengths(reader.tokenizer, texts, limit)
    order = sorted(range(len(texts)), key=lambda j: q_tokens[queries[j]] + t_tokens[j])
    relevance_parts, positions = [], []
    token_sum: torch.Tensor | float = 0.0
    n_tokens = 0
    for s in range(0, len(order), micro_batch):
        idx = order[s : s + micro_batch]
        pairs = reader.tokenize_pairs([queries[j] for j in idx], [texts[j] for j in idx])
        relevance, token_logits = reader(**pairs.inputs)  # (m,), (m, T)
        relevance_parts.append(relevance)
        positions.extend(idx)
        target = np.stack([token_labels(pairs.offsets[r], labels[j]) for r, j in enumerate(idx)])
        mask = torch.from_numpy(pairs.passage_mask).to(token_logits.device)
        target_t = torch.from_numpy(target).to(token_logits.device)
        token_sum = token_sum + torch.nn.functional.binary_cross_entropy_with_logits(
            token_logits[mask], target_t[mask], reduction="sum"
        )
        n_tokens += int(mask.sum())
    relevance_all = torch.empty(len(texts), dtype=relevance_parts[0].dtype, device=relevance_parts[0].device)
    relevance_all[torch.tensor(positions, device=relevance_all.device)] = torch.cat(relevance_parts)
    owner = np.array(owners)
    relevance_terms = []
    for g in range(len(batch)):
        rows = torch.from_numpy(np.nonzero(owner == g)[0]).to(relevance_all.device)
        group_logits = relevance_all.index_select(0, rows).unsqueeze(0)  # (1, G): the positive comes first
        positive = torch.zeros(1, dtype=torch.long, device=relevance_all.device)
        relevance_terms.append(torch.nn.functional.cross_entropy(group_logits, positive))
    relevance_loss = torch.stack(relevance_terms).mean()
    token_loss = token_sum / max(1, n_tokens)
    assert isinstance(token_loss, torch.Tensor)
    loss = relevance_loss + token_weight * token_loss
    terms = {
        "relevance": float(relevance_loss.detach()),
        "token": float(token_loss.detach()),
        "loss": float(loss.detach()),
    }
    return loss, terms


def evaluate_reader(
    reader: CERAReader, val: ProcessedSplit, limit: int | None = None, candidates: int = 20
) -> dict[str, float]:
    """Re-rank each validation prompt's BM25 top ``candidates`` of its article plus its positives.

    Returns MRR@10 and hit@1 of that re-ranking, and the evidence-word lift at 20% of the words
    on the positive passages (precision of the marked words / evidence share of the passage).
    """
    from cera_rag.evaluation.explanations import marked_precision
    from cera_rag.evaluation.retrieval import bm25_run, build_qrels, eval_examples, evaluate_run, query_id, query_text

    reader.eval()
    exs = eval_examples(val, limit)
    first = bm25_run(val, "article", "paper", top_k=candidates, exs=exs)
    run: dict[str, dict[str, float]] = {}
    precisions, shares = [], []
    for ex in exs:
        aid = ex.prompt.article_id
        passages = val.passages[aid]
        by_id = {p.passage_id: j for j, p in enumerate(passages)}
        idx = sorted({by_id[pid] for pid in first[query_id(ex)]} | set(ex.positives))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncationWarning)  # a few long passages per prompt; read from the start
            result = reader.read(query_text(ex, "paper"), [passages[j].text for j in idx])
        run[query_id(ex)] = {passages[j].passage_id: float(s) for j, s in zip(idx, result.scores, strict=True)}
        for row, j in enumerate(idx):
            spans = ex.rationales.get(j, [])
            if j in ex.positives and spans and result.words[row]:
                p, share = marked_precision(result.words[row], result.probabilities[row], spans, 0.2)
                precisions.append(p)
                shares.append(share)
    qrels = {k: v for k, v in build_qrels(val).items() if k in run}
    metrics = evaluate_run(qrels, run, ("mrr@10", "hit_rate@1"))
    metrics["evidence_precision@20%"] = float(np.mean(precisions)) if precisions else float("nan")
    metrics["evidence_share"] = float(np.mean(shares)) if shares else float("nan")
    metrics["evidence_lift@20%"] = (
        metrics["evidence_precision@20%"] / metrics["evidence_share"] if shares else float("nan")
    )
    return metrics


class ReaderTrainer:
    """Fine-tunes a ``CERAReader`` under a ``ReaderTrainConfig``."""

    def __init__(self, config: ReaderTrainConfig, data_dir: str | os.PathLike[str] | None = None) -> None:
        self.config = config
        self.data_dir = data_dir
        self.output_dir = Path(config.output_dir).expanduser()
        if self.output_dir.name in ("", ".", ".."):
            raise ConfigError(
                f"output_dir {config.output_dir!r} names no folder of its own; give one such as checkpoints/my-reader."
            )
        self.run_dir = run_dir_for(self.output_dir)
        self._interrupted = False

    def train(self, resume: bool = False, show_progress: bool = True) -> ReaderTrainResult:
        """Train (or, with ``resume``, continue) to the end; the best epoch is saved to ``output_dir``.

        Raises:
            ConfigError: ``resume`` without a resumable run, or an ``output_dir`` holding other files.
            KeyboardInterrupt: On Ctrl-C, after saving a resumable state (the message says how to resume).
        """
        run = self._start(resume, show_progress)
        start = time.time()
        with sigint_sets_interrupted(self), run.log_path.open("a", encoding="utf-8") as log_file:
            while run.state["step"] < run.total and not self._interrupted:
                if not self._train_epoch(run, log_file, show_progress):
                    break
                self._end_epoch(run, log_file)
        if self._interrupted:
            self._save_state(run)
            raise KeyboardInterrupt(f"Interrupted at step {run.state['step']}; resume with --resume ({self.run_dir}).")
        if run.state["best"] < 0 and not (self.output_dir / "reader_heads.safetensors").exists():
            self._save_best(run, None)  # max_steps ended before an epoch finished
        state = run.state
        return ReaderTrainResult(
            str(self.output_dir), state["best"], state["history"], state["step"], time.time() - start
        )

    def load_data(self, show_progress: bool = True) -> tuple[ProcessedSplit, ProcessedSplit | None]:
        """Only what this run reads: the sampled training prompts with every prompt of their articles
        (the other evidence of an article is a negative), and the first eval_max_prompts to evaluate.
        """
        cfg = self.config
        train_select = (
            PromptSelection(n_prompts=cfg.max_train_prompts, seed=cfg.seed, whole_articles=True)
            if cfg.max_train_prompts
            else None
        )
        train = load_processed("train", cfg.data, self.data_dir, show_progress=show_progress, select=train_select)
        val_select = PromptSelection(n_prompts=cfg.eval_max_prompts) if cfg.eval_max_prompts else None
        val = (
            load_processed(cfg.eval_split, cfg.data, self.data_dir, show_progress=show_progress, select=val_select)
            if cfg.eval_split
            else None
        )
        return train, val

    def _start(self, resume: bool, show_progress: bool) -> _ReaderRun:
        """Everything a run needs: data, reader, optimiser, schedule, state, log (resumed or fresh)."""
        from transformers import get_linear_schedule_with_warmup

        from cera_rag.train import set_seed

        cfg = self.config
        run_state = RunState(self.run_dir)
        if resume:
            run_state.recover()
            if not run_state.exists:
                raise ConfigError(f"--resume: no resumable run at {self.run_dir}; start without --resume.")
        check_output_dir(self.output_dir)
        set_seed(cfg.seed)
        train, val = self.load_data(show_progress)
        if resume:
            reader = CERAReader.from_pretrained(run_state.model_dir, device=cfg.device)
        else:
            reader = CERAReader.from_base(
                cfg.base_model, device=cfg.device, max_length=cfg.max_length,
                max_query_length=cfg.max_query_length, layers=cfg.layers,
            )  # fmt: skip
        reader.config.base_model = cfg.base_model
        reader.name = str(self.output_dir)
        steps_per_epoch = len(epoch_groups(train, cfg, 0))
        total = min(steps_per_epoch * cfg.epochs, cfg.max_steps or steps_per_epoch * cfg.epochs)
        opt = torch.optim.AdamW(adamw_groups(reader, cfg.weight_decay), lr=cfg.lr)
        sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
        state: dict[str, Any] = {"step": 0, "epoch": 0, "best": -1.0, "history": [], "total": total}
        if resume:
            state = run_state.load(opt, sched)
            state["total"] = total  # states saved before it was recorded gain it
            log.info("Resuming %s at step %d", self.run_dir, state["step"])
        self.output_dir.parent.mkdir(parents=True, exist_ok=True)
        log_path = self.output_dir.with_name(self.output_dir.name + ".log.jsonl")
        if resume:
            trim_log(log_path, state["step"])  # steps after the saved state are done again
        else:
            log_path.unlink(missing_ok=True)
        return _ReaderRun(
            train=train, val=val, reader=reader, opt=opt, sched=sched, state=state,
            steps_per_epoch=steps_per_epoch, total=total, log_path=log_path, run_state=run_state,
        )  # fmt: skip

    def _train_epoch(self, run: _ReaderRun, log_file: IO[str], show_progress: bool) -> bool:
        """The rest of the current epoch's steps; ``True`` when the epoch is complete (then evaluate it)."""
        from tqdm.auto import tqdm

        cfg, state = self.config, run.state
        epoch = state["epoch"]
        groups = epoch_groups(run.train, cfg, epoch)
        done_in_epoch = state["step"] - epoch * run.steps_per_epoch
        bar = tqdm(
            total=min(len(groups), run.total - epoch * run.steps_per_epoch),
            initial=done_in_epoch,
            desc=f"reader epoch {epoch + 1}/{cfg.epochs}",
            disable=not show_progress,
        )
        for batch in groups[done_in_epoch:]:
            if state["step"] >= run.total or self._interrupted:
                break
            terms = self._step(run, batch)
            log_file.write(
                json.dumps({"step": state["step"], "epoch": epoch, "lr": run.sched.get_last_lr()[0], **terms}) + "\n"
            )
            log_file.flush()
            bar.set_postfix({k: f"{v:.4f}" for k, v in terms.items()})
            bar.update(1)
            if state["step"] % cfg.checkpoint_every == 0:
                self._save_state(run)
        bar.close()
        complete = state["step"] >= min(run.total, (epoch + 1) * run.steps_per_epoch)
        return complete and not self._interrupted

    def _step(self, run: _ReaderRun, batch: list[ReaderGroup]) -> dict[str, float]:
        """One optimiser step; returns the loss terms."""
        cfg = self.config
        run.reader.train()
        torch.manual_seed(cfg.seed + run.state["step"])  # dropout: the same masks when resumed
        loss, terms = reader_loss(run.reader, run.train, batch, cfg.token_weight)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.reader.parameters(), cfg.max_grad_norm)
        run.opt.step()
        run.sched.step()
        run.state["step"] += 1
        return terms

    def _end_epoch(self, run: _ReaderRun, log_file: IO[str]) -> None:
        """Evaluate the finished epoch, keep it if it is the best so far, save a resumable state."""
        cfg, state = self.config, run.state
        epoch = state["epoch"]
        metrics = (
            evaluate_reader(run.reader, run.val, cfg.eval_max_prompts, cfg.eval_candidates)
            if run.val is not None
            else {}
        )
        entry = {"epoch": epoch + 1, "step": state["step"], **metrics}
        state["history"].append(entry)
        log_file.write(json.dumps({"eval": entry}) + "\n")
        log.info("reader epoch %d: %s", epoch + 1, metrics)
        score = metrics.get("mrr@10", 0.0)
        if score > state["best"] or run.val is None:
            state["best"] = score
            self._save_best(run, entry)
        state["epoch"] = epoch + 1
        self._save_state(run)

    def _save_state(self, run: _ReaderRun) -> None:
        cfg = self.config
        run.run_state.save(run.reader.save_pretrained, lambda p: save_settings(cfg, p), run.opt, run.sched, run.state)

    def _save_best(self, run: _ReaderRun, entry: dict[str, Any] | None) -> None:
        run.reader.save_pretrained(self.output_dir)
        save_settings(self.config, self.output_dir / "train_config.yaml")
        if entry is not None:
            write_json(self.output_dir / "metrics.json", entry)


@dataclass
class _ReaderRun:
    """The state of one reader training run, shared by the loop's steps."""

    train: ProcessedSplit
    val: ProcessedSplit | None
    reader: CERAReader
    opt: torch.optim.Optimizer
    sched: Any
    state: dict[str, Any]
    steps_per_epoch: int
    total: int
    log_path: Path
    run_state: RunState


__all__ = [
    "READER_PRESETS",
    "ReaderGroup",
    "ReaderTrainConfig",
    "ReaderTrainer",
    "epoch_groups",
    "evaluate_reader",
    "load_reader_config",
    "reader_loss",
    "token_labels",
]
