"""What a user would do instead of CERA: a plain sentence-transformers fine-tune.

``MultipleNegativesRankingLoss`` (in-batch negatives plus one BM25 hard negative per query),
one epoch, lr 2e-5, batch 16, on the same queries and positives CERA trains on. The result is a
sentence-transformers folder, which ``CERAEncoder.from_pretrained`` loads like any checkpoint, so
it is evaluated through exactly the same code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cera_rag.data.dataset import DataConfig, load_processed
from cera_rag.data.queries import TRAIN_TEMPLATES, sample_query
from cera_rag.paths import DEFAULT_BASE_MODEL, resolve_model_path


class STBaselineConfig(BaseModel):
    """Settings of the plain sentence-transformers fine-tune (row 2 of the README table)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = DEFAULT_BASE_MODEL
    output_dir: str = "checkpoints/st-mnrl"
    data: DataConfig = Field(default_factory=DataConfig)
    hard_negative: str = "bm25"
    epochs: int = 1
    lr: float = 2e-5
    batch_size: int = 16
    warmup_ratio: float = 0.1
    max_seq_length: int = 128
    seed: int = 42
    max_train_prompts: int | None = None


def training_rows(config: STBaselineConfig, data_dir: str | Path | None = None) -> list[dict[str, str]]:
    """(anchor, positive, negative) rows: a sampled phrasing, a positive, the top hard negative."""
    split = load_processed("train", config.data, data_dir)
    rng = random.Random(config.seed)
    rows = []
    for ex in split.examples:
        negs = ex.negatives.get(config.hard_negative, [])
        if not ex.positives or not negs:
            continue
        passages = split.passages[ex.prompt.article_id]
        rows.append(
            {
                "anchor": sample_query(ex.prompt, rng, TRAIN_TEMPLATES),
                "positive": passages[rng.choice(ex.positives)].text,
                "negative": passages[negs[0]].text,
            }
        )
    if config.max_train_prompts:
        rows = rng.sample(rows, min(config.max_train_prompts, len(rows)))
    return rows


def train_st_baseline(config: STBaselineConfig, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune with sentence-transformers' own trainer and save to ``config.output_dir``."""
    import time

    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    rows = training_rows(config, data_dir)
    model = SentenceTransformer(resolve_model_path(config.base_model), device="cpu")
    model.max_seq_length = config.max_seq_length
    out = Path(config.output_dir)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out.with_name(out.name + ".trainer")),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        warmup_ratio=config.warmup_ratio,
        seed=config.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        report_to="none",
        logging_steps=20,
        use_cpu=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        loss=MultipleNegativesRankingLoss(model),
    )
    t0 = time.time()
    trainer.train()
    seconds = time.time() - t0
    model.save(str(out), safe_serialization=True)
    return {"output_dir": str(out), "rows": len(rows), "seconds": round(seconds, 1)}
