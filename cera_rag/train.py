"""Training CERA: contrastive loss on (query, evidence, hard negatives) plus attention alignment.

One step: sample a phrasing of each prompt, one positive passage and ``n_negatives`` mined
negatives; embed queries and passages with the shared encoder; add
``TripletLoss(q, p, n) + lambda * AttentionAlignmentLoss(CLS attention of p, POS-weighted rationale)``.

Runs are resumable: every ``checkpoint_every`` steps (and on Ctrl-C) the weights, optimizer and
scheduler state go to ``<output_dir>.run/`` (safetensors + JSON, never pickle); ``resume=True``
continues from there with the same batches, because each epoch's batches and each step's dropout
seed derive from the run seed. The best epoch on validation (MRR@10) is saved to ``output_dir``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from cera_rag.atomic import write_json
from cera_rag.config import TrainConfig, save_config
from cera_rag.data.dataset import (
    DataConfig,
    ProcessedSplit,
    PromptExample,
    PromptSelection,
    evidence_negative_pools,
    load_processed,
)
from cera_rag.data.negatives import cross_article_negatives
from cera_rag.data.queries import PAPER_TEMPLATE, TRAIN_TEMPLATES, sample_query
from cera_rag.data.rationale import wordpiece_targets
from cera_rag.errors import ConfigError
from cera_rag.evaluation.retrieval import TRAIN_METRICS, build_qrels, dense_run, evaluate_run
from cera_rag.losses import AttentionAlignmentLoss, ranking_loss
from cera_rag.model import CERAEncoder, check_output_dir
from cera_rag.run_state import (
    RunState,
    adamw_groups,
    checkpoint_finished,
    run_dir_for,
    sigint_sets_interrupted,
    trim_log,
)

log = logging.getLogger(__name__)


@dataclass
class Batch:
    queries: list[str]
    examples: list[PromptExample]
    positives: list[int]
    #: per example, its negatives as ``(article_id, passage index)``: in-article, then cross-article
    negatives: list[list[tuple[str, int]]]


@dataclass
class TrainResult:
    output_dir: str
    best_metric: float
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def mine_corpus_negatives(split: ProcessedSplit, config: TrainConfig) -> dict[str, list[tuple[str, int]]]:
    """``config.corpus_negatives`` cross-article BM25 negatives per training prompt (deterministic)."""
    prompts = [ex.prompt for ex in split.examples if ex.positives]
    return cross_article_negatives(split.passages, prompts, config.corpus_negatives)


def epoch_batches(
    split: ProcessedSplit,
    config: TrainConfig,
    epoch: int,
    corpus_negatives: Mapping[str, Sequence[tuple[str, int]]] | None = None,
) -> list[Batch]:
    """The batches of one epoch; a pure function of (split, config, epoch), so a resumed run sees the same.

    ``corpus_negatives`` (``mine_corpus_negatives``) is mined here when the config asks for them and
    none are given; the trainer mines them once per run. ``evidence_negatives`` are drawn afresh each
    epoch from ``evidence_negative_pools`` with a generator of their own, so a config without them
    sees exactly the batches it saw before the option existed; ``negative_draw="sample"`` draws the
    in-article negatives from the mined pool with another, for the same reason.
    """
    rng = random.Random(config.seed * 1000 + epoch)
    evidence_rng = random.Random(f"evidence-negatives:{config.seed}:{epoch}")
    draw_rng = random.Random(f"negative-draw:{config.seed}:{epoch}")
    evidence_pools = evidence_negative_pools(split) if config.evidence_negatives else {}
    exs = [ex for ex in split.examples if ex.positives]
    if config.max_train_prompts:
        exs = random.Random(config.seed).sample(exs, min(config.max_train_prompts, len(exs)))
    if config.corpus_negatives and corpus_negatives is None:
        corpus_negatives = mine_corpus_negatives(split, config)
    rng.shuffle(exs)
    templates = (PAPER_TEMPLATE,) if config.query_templates == "paper" else TRAIN_TEMPLATES
    batches = []
    for s in range(0, len(exs), config.batch_size):
        chunk = exs[s : s + config.batch_size]
        negs = []
        for ex in chunk:
            pool = ex.negatives.get(config.negatives, []) if config.negatives != "none" else []
            if config.negative_draw == "sample":
                drawn = draw_rng.sample(pool, min(config.n_negatives, len(pool)))
            else:
                drawn = pool[: config.n_negatives]
            own = [(ex.prompt.article_id, i) for i in drawn]
            if config.evidence_negatives:
                taken = set(drawn)
                results = [i for i in evidence_pools.get(ex.prompt.prompt_id, []) if i not in taken]
                picked = evidence_rng.sample(results, min(config.evidence_negatives, len(results)))
                own += [(ex.prompt.article_id, i) for i in picked]
            other = list((corpus_negatives or {}).get(ex.prompt.prompt_id, []))[: config.corpus_negatives]
            negs.append(own + other)
        batches.append(
            Batch(
                queries=[sample_query(ex.prompt, rng, templates) for ex in chunk],
                examples=chunk,
                positives=[rng.choice(ex.positives) for ex in chunk],
                negatives=negs,
            )
        )
    return batches


class Trainer:
    """Fine-tunes a ``CERAEncoder`` under a ``TrainConfig``."""

    def __init__(self, config: TrainConfig, data_dir: str | os.PathLike[str] | None = None) -> None:
        self.config = config
        self.data_dir = data_dir
        self.output_dir = Path(config.output_dir).expanduser()
        if self.output_dir.name in ("", ".", ".."):
            raise ConfigError(
                f"output_dir {config.output_dir!r} names no folder of its own (the best checkpoint replaces "
                "the folder); give one such as checkpoints/my-run."
            )
        self.run_dir = run_dir_for(self.output_dir)
        self._interrupted = False

    # -------------------------------------------------------------------------- set-up
    def _data_config(self) -> DataConfig:
        return self.config.data

    def load_data(self) -> tuple[ProcessedSplit, ProcessedSplit | None]:
        """The train split and the evaluation split, each processed only as far as this run reads it."""
        cfg = self.config
        n_train = cfg.max_train_prompts
        train_select = PromptSelection(n_prompts=n_train, seed=cfg.seed) if n_train else None
        train = load_processed("train", cfg.data, self.data_dir, show_progress=True, select=train_select)
        val = None
        if cfg.eval_split:
            # The evaluation reads the first eval_max_prompts prompts (``dense_run(limit=...)``).
            val_select = PromptSelection(n_prompts=cfg.eval_max_prompts) if cfg.eval_max_prompts else None
            val = load_processed(cfg.eval_split, cfg.data, self.data_dir, show_progress=True, select=val_select)
        return train, val

    def build_encoder(self, source: str) -> CERAEncoder:
        return CERAEncoder.from_pretrained(
            source,
            device=self.config.device,
            pooling=self.config.pooling,
            max_query_length=self.config.max_query_length,
            max_passage_length=self.config.max_passage_length,
            rationale_layer=self.config.rationale_layer,
        )

    # -------------------------------------------------------------------------- one step
    def _targets(self, split: ProcessedSplit, batch: Batch, offsets: torch.Tensor, n: int) -> torch.Tensor:
        """POS-weighted rationale targets ``(n, T)`` for the positive passages of a batch."""
        t = offsets.shape[1]
        out = np.zeros((n, t), dtype=np.float32)
        offs = offsets.cpu().numpy()
        for row, (ex, pi) in enumerate(zip(batch.examples, batch.positives, strict=True)):
            passage = split.passage(ex.prompt.article_id, pi)
            words = split.pos_tags.get(passage.passage_id, [])
            out[row] = wordpiece_targets(
                [tuple(o) for o in offs[row]],
                words,
                ex.rationales.get(pi, []),
                passage.text,
                self.config.pos_table,
            )
        return torch.from_numpy(out)

    def step_loss(
        self,
        encoder: CERAEncoder,
        split: ProcessedSplit,
        batch: Batch,
        triplet: torch.nn.Module,
        align: AttentionAlignmentLoss,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        b = len(batch.examples)
        k = max((len(n) for n in batch.negatives), default=0)
        texts = [
            split.passage(ex.prompt.article_id, i).text for ex, i in zip(batch.examples, batch.positives, strict=False)
        ]
        neg_mask = torch.zeros(b, k, dtype=torch.bool)
        for row, negs in enumerate(batch.negatives):
            for j in range(k):
                if j < len(negs):
                    texts.append(split.passage(*negs[j]).text)
                    neg_mask[row, j] = True
                else:
                    texts.append("")  # padding slot, masked out of the loss
        q = encoder.tokenize(batch.queries, cfg.max_query_length)
        p = encoder.tokenize(texts, cfg.max_passage_length, offsets=True)
        q_emb, _ = encoder(q["input_ids"], q["attention_mask"])
        want_att = cfg.alignment_weight > 0
        p_emb, attention = encoder(p["input_ids"], p["attention_mask"], return_attention=want_att)
        pos, neg = p_emb[:b], p_emb[b:].view(b, k, -1) if k else None
        contrastive = triplet(q_emb, pos, neg, neg_mask.to(q_emb.device) if k else None)
        terms = {"contrastive": float(contrastive.detach())}
        loss = contrastive
        if want_att and attention is not None:
            offsets = p["offset_mapping"][:b]
            target = self._targets(split, batch, offsets, b).to(attention.device)
            content = (offsets[..., 1] > offsets[..., 0]) & p["attention_mask"][:b].bool()
            alignment = align(attention[:b], target, p["attention_mask"][:b], content)
            loss = loss + cfg.alignment_weight * alignment
            terms["alignment"] = float(alignment.detach())
        terms["loss"] = float(loss.detach())
        return loss, terms

    # -------------------------------------------------------------------------- evaluation
    def evaluate(self, encoder: CERAEncoder, val: ProcessedSplit) -> dict[str, float]:
        encoder.eval()
        run = dense_run(encoder, val, pool="article", limit=self.config.eval_max_prompts)
        return evaluate_run(build_qrels(val), run, TRAIN_METRICS)

    # -------------------------------------------------------------------------- state
    def _save_state(self, encoder: CERAEncoder, opt: torch.optim.Optimizer, sched: Any, state: dict) -> None:
        """Resumable state (see ``cera_rag.run_state``): model, optimizer tensors, counters, config."""
        RunState(self.run_dir).save(
            encoder.save_pretrained, lambda path: save_config(self.config, path), opt, sched, state
        )

    def _load_state(self, opt: torch.optim.Optimizer, sched: Any) -> dict[str, Any]:
        return RunState(self.run_dir).load(opt, sched)

    def _finish_interrupted_save(self) -> None:
        RunState(self.run_dir).recover()

    # -------------------------------------------------------------------------- loop
    # -------------------------------------------------------------------------- the loop
    def train(self, resume: bool = False, show_progress: bool = True) -> TrainResult:
        """Train (or, with ``resume``, continue) to the end; the best epoch is saved to ``output_dir``.

        Raises:
            ConfigError: ``resume`` without a resumable run, or an ``output_dir`` holding other files.
            KeyboardInterrupt: On Ctrl-C, after saving a resumable state (the message says how to resume).
        """
        run = self._start(resume)
        start = time.time()
        with sigint_sets_interrupted(self), run.log_path.open("a", encoding="utf-8") as log_file:
            while run.state["step"] < run.total and not self._interrupted:
                if not self._train_epoch(run, log_file, show_progress):
                    break
                self._end_epoch(run, log_file)
        if self._interrupted:
            self._save_state(run.encoder, run.opt, run.sched, run.state)
            raise KeyboardInterrupt(f"Interrupted at step {run.state['step']}; resume with --resume ({self.run_dir}).")
        if run.state["best"] < 0 and not (self.output_dir / "cera_config.json").exists():
            self._save_best(run, None)  # max_steps ended before an epoch finished
        state = run.state
        return TrainResult(str(self.output_dir), state["best"], state["history"], state["step"], time.time() - start)

    def _start(self, resume: bool) -> _Run:
        """Everything a run needs: data, encoder, losses, optimiser, schedule, state, log (resumed or fresh)."""
        from transformers import get_linear_schedule_with_warmup

        cfg = self.config
        if resume:
            self._finish_interrupted_save()
        if resume and not (self.run_dir / "state.json").is_file():
            raise ConfigError(f"--resume: no resumable run at {self.run_dir}; start without --resume.")
        check_output_dir(self.output_dir)  # before any work: the checkpoint must not replace other files
        set_seed(cfg.seed)
        train, val = self.load_data()
        encoder = self.build_encoder(str(self.run_dir / "model") if resume else cfg.base_model)
        if resume:
            encoder.config.base_model = cfg.base_model
        encoder.name = str(self.output_dir)
        corpus_negs = mine_corpus_negatives(train, cfg) if cfg.corpus_negatives else None
        steps_per_epoch = len(epoch_batches(train, cfg, 0, corpus_negs))
        total = min(steps_per_epoch * cfg.epochs, cfg.max_steps or steps_per_epoch * cfg.epochs)
        opt = torch.optim.AdamW(adamw_groups(encoder, cfg.weight_decay), lr=cfg.lr)
        sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
        state: dict[str, Any] = {"step": 0, "epoch": 0, "best": -1.0, "history": [], "total": total}
        if resume:
            state = self._load_state(opt, sched)
            state["total"] = total  # states saved before it was recorded gain it
            log.info("Resuming %s at step %d", self.run_dir, state["step"])
        self.output_dir.parent.mkdir(parents=True, exist_ok=True)
        log_path = self.output_dir.with_name(self.output_dir.name + ".log.jsonl")
        if resume:
            trim_log(log_path, state["step"])  # steps after the saved state are done again
        else:
            log_path.unlink(missing_ok=True)
        return _Run(
            train=train,
            val=val,
            encoder=encoder,
            ranking=ranking_loss(
                cfg.loss, margin=cfg.margin, temperature=cfg.temperature, in_batch_negatives=cfg.in_batch_negatives
            ),
            align=AttentionAlignmentLoss(support=cfg.alignment_support),
            opt=opt,
            sched=sched,
            state=state,
            steps_per_epoch=steps_per_epoch,
            total=total,
            log_path=log_path,
            corpus_negatives=corpus_negs,
        )

    def _train_epoch(self, run: _Run, log_file: IO[str], show_progress: bool) -> bool:
        """The rest of the current epoch's steps; ``True`` when the epoch is complete (then evaluate it)."""
        from tqdm.auto import tqdm

        cfg, state = self.config, run.state
        epoch = state["epoch"]
        batches = epoch_batches(run.train, cfg, epoch, run.corpus_negatives)
        done_in_epoch = state["step"] - epoch * run.steps_per_epoch
        bar = tqdm(
            total=min(len(batches), run.total - epoch * run.steps_per_epoch),
            initial=done_in_epoch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not show_progress,
        )
        for batch in batches[done_in_epoch:]:
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
                self._save_state(run.encoder, run.opt, run.sched, state)
        bar.close()
        complete = state["step"] >= min(run.total, (epoch + 1) * run.steps_per_epoch)
        return complete and not self._interrupted

    def _step(self, run: _Run, batch: Batch) -> dict[str, float]:
        """One optimiser step; returns the loss terms."""
        run.encoder.train()
        torch.manual_seed(self.config.seed + run.state["step"])  # dropout: the same masks when resumed
        loss, terms = self.step_loss(run.encoder, run.train, batch, run.ranking, run.align)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.encoder.parameters(), self.config.max_grad_norm)
        run.opt.step()
        run.sched.step()
        run.state["step"] += 1
        return terms

    def _end_epoch(self, run: _Run, log_file: IO[str]) -> None:
        """Evaluate the finished epoch, keep it if it is the best so far, save a resumable state."""
        state = run.state
        epoch = state["epoch"]
        metrics = self.evaluate(run.encoder, run.val) if run.val is not None else {}
        entry = {"epoch": epoch + 1, "step": state["step"], **metrics}
        state["history"].append(entry)
        log_file.write(json.dumps({"eval": entry}) + "\n")
        log.info("epoch %d: %s", epoch + 1, metrics)
        score = metrics.get("mrr@10", 0.0)
        if score > state["best"] or run.val is None:
            state["best"] = score
            self._save_best(run, entry)
        state["epoch"] = epoch + 1
        self._save_state(run.encoder, run.opt, run.sched, state)

    def _save_best(self, run: _Run, entry: dict[str, Any] | None) -> None:
        run.encoder.save_pretrained(self.output_dir)
        save_config(self.config, self.output_dir / "train_config.yaml")
        if entry is not None:
            write_json(self.output_dir / "metrics.json", entry)


@dataclass
class _Run:
    """The state of one training run, shared by the loop's steps."""

    train: ProcessedSplit
    val: ProcessedSplit | None
    encoder: CERAEncoder
    ranking: torch.nn.Module
    align: AttentionAlignmentLoss
    opt: torch.optim.Optimizer
    sched: Any
    state: dict[str, Any]
    steps_per_epoch: int
    total: int
    log_path: Path
    corpus_negatives: dict[str, list[tuple[str, int]]] | None = None


def train(config: TrainConfig, resume: bool = False, data_dir: str | os.PathLike[str] | None = None) -> TrainResult:
    """Train under ``config``; see ``Trainer``."""
    return Trainer(config, data_dir).train(resume=resume)


def train_unless_finished(config: TrainConfig, data_dir: str | os.PathLike[str] | None = None) -> float:
    """Train into ``config.output_dir`` unless a finished checkpoint is there, resuming an interrupted run.

    Returns the seconds spent training (0 when the checkpoint was finished). Checks the resumable
    state, not only the checkpoint: an interrupted run has already saved its best epoch so far.
    """
    output_dir = Path(config.output_dir).expanduser()
    if checkpoint_finished(output_dir):
        return 0.0
    start = time.time()
    Trainer(config, data_dir).train(resume=RunState(run_dir_for(output_dir)).exists)
    return time.time() - start


__all__ = [
    "Batch",
    "TrainResult",
    "Trainer",
    "epoch_batches",
    "mine_corpus_negatives",
    "train",
    "train_unless_finished",
]
