"""Training cost: seconds per step of a preset on the shared train split, the epoch it implies, peak memory.

    python benchmarks/bench_train.py [--preset best] [--steps 10]

Runs ``--steps`` real optimiser steps (after one warm-up step) through ``Trainer.step_loss`` with
the preset's batches, and extrapolates to the preset's steps per epoch.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import peak_rss_mb, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="best")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()

    import torch

    from cera_rag.config import load_config
    from cera_rag.data.dataset import load_processed
    from cera_rag.losses import AttentionAlignmentLoss, ranking_loss
    from cera_rag.train import Trainer, epoch_batches

    cfg = load_config(args.preset, None, {"output_dir": "/tmp/cera-bench-train"})
    trainer = Trainer(cfg)
    train = load_processed("train", cfg.data)
    enc = trainer.build_encoder(cfg.base_model)
    enc.train()
    triplet = ranking_loss(
        cfg.loss, margin=cfg.margin, temperature=cfg.temperature, in_batch_negatives=cfg.in_batch_negatives
    )
    align = AttentionAlignmentLoss(support=cfg.alignment_support)
    opt = torch.optim.AdamW(enc.parameters(), lr=cfg.lr)
    batches = epoch_batches(train, cfg, 0)
    times = []
    for i, batch in enumerate(batches[: args.steps + 1]):
        t0 = time.perf_counter()
        loss, _ = trainer.step_loss(enc, train, batch, triplet, align)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    per_step = statistics.median(times)
    payload = {
        "preset": args.preset,
        "batch_size": cfg.batch_size,
        "n_negatives": cfg.n_negatives,
        "alignment_weight": cfg.alignment_weight,
        "steps_timed": len(times),
        "seconds_per_step": {"median": per_step, "min": min(times), "max": max(times)},
        "steps_per_epoch": len(batches),
        "epoch_minutes_estimate": per_step * len(batches) / 60,
        "peak_rss_mb": peak_rss_mb(),
    }
    print(write_result(f"train_{args.preset}", payload))
    print(payload)


if __name__ == "__main__":
    main()
