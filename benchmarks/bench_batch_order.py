"""Batch order: token-length batches (what cera-rag does) against character-length batches (what
sentence-transformers does), for the encoder and for the reader, in one process, interleaved.

The encoder's and the reader's outputs do not depend on the order (tests/unit/test_model.py); only
the padding does. This benchmark shows where the encode-with-spans speed-up over
sentence-transformers comes from: the padded tokens each order processes, and the time.

    python benchmarks/bench_batch_order.py [--passages 1000] [--questions 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from common import default_model, interleaved, spread, timed, validation_passages, write_result


def character_lengths(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[int]:
    """The order sentence-transformers batches in: by characters (same signature as ``token_lengths``)."""
    return [len(t) for t in texts]


def padded_ratio(lengths: list[int], order_key: list[int], batch_size: int) -> float:
    """Tokens a batched forward pass processes over the real tokens, for batches sorted by ``order_key``."""
    order = sorted(range(len(lengths)), key=lambda i: -order_key[i])
    padded = sum(
        max(lengths[i] for i in order[s : s + batch_size]) * len(order[s : s + batch_size])
        for s in range(0, len(order), batch_size)
    )
    return padded / sum(lengths)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=1000)
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()

    import numpy as np
    import torch
    from bench_reader import candidates

    import cera_rag.model as model_mod
    import cera_rag.reader as reader_mod
    from cera_rag.paths import DEFAULT_BASE_MODEL

    orders = {"characters": character_lengths, "tokens": model_mod.token_lengths}
    path = args.model or default_model()
    texts = validation_passages(args.passages)
    enc = model_mod.CERAEncoder.from_pretrained(path, device="cpu", max_passage_length=args.max_length)
    max_length = args.max_length
    lengths = model_mod.token_lengths(enc.tokenizer, texts, max_length)
    chars = [len(t) for t in texts]

    def encode_in(order: str) -> Callable[[], Any]:
        def run() -> Any:
            model_mod.token_lengths = orders[order]  # the encoder's _batches looks the helper up here
            try:
                return enc.encode_passages(texts, batch_size=args.batch_size, return_rationales=True)
            finally:
                model_mod.token_lengths = orders["tokens"]

        return run

    with torch.inference_mode():
        vectors = {k: encode_in(k)()[0] for k in orders}  # also the warm-up
        enc_seconds = interleaved({k: encode_in(k) for k in orders}, args.repeats)

    reader = reader_mod.CERAReader.from_base(DEFAULT_BASE_MODEL)  # latency does not depend on the weights
    cases = candidates(args.questions)
    reader.read(*cases[0])  # warm-up
    read_ms: dict[str, list[float]] = {k: [] for k in orders}
    for query, passages in cases:
        for order, fn in orders.items():
            reader_mod.token_lengths = fn
            try:
                read_ms[order].append(1000 * timed(lambda q=query, p=passages: reader.read(q, p)))
            finally:
                reader_mod.token_lengths = orders["tokens"]

    payload = {
        "model": path,
        "passages": len(texts),
        "batch_size": args.batch_size,
        "max_length": max_length,
        "repeats": args.repeats,
        "char_token_correlation": float(np.corrcoef(chars, lengths)[0, 1]),
        "padded_over_real_tokens": {
            "characters": padded_ratio(lengths, chars, args.batch_size),
            "tokens": padded_ratio(lengths, lengths, args.batch_size),
        },
        "encode_with_spans_passages_per_s": {k: spread([len(texts) / s for s in v]) for k, v in enc_seconds.items()},
        "encode_speedup_tokens_over_characters": spread(
            [c / t for c, t in zip(enc_seconds["characters"], enc_seconds["tokens"], strict=True)]
        ),
        "same_vectors_max_abs_diff": float(np.abs(vectors["characters"] - vectors["tokens"]).max()),
        "reader": {
            "questions": len(cases),
            "candidates": 20,
            "rerank_top20_p50_ms": {k: statistics.median(v) for k, v in read_ms.items()},
        },
    }
    print(write_result("batch_order", payload))
    print("padding", payload["padded_over_real_tokens"])
    print("encode with spans", payload["encode_with_spans_passages_per_s"])
    print("reader p50 ms", payload["reader"]["rerank_top20_p50_ms"])
    print("encoder vectors, max |diff| between the two orders", payload["same_vectors_max_abs_diff"])


if __name__ == "__main__":
    main()
