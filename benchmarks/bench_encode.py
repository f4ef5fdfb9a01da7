"""Encode throughput: CERAEncoder (PyTorch / ONNX Runtime, fp32 / int8, with / without spans) vs sentence-transformers.

All systems load the same weights and encode the same validation passages at the same maximum
length; runs are interleaved (A, B, C, A, B, C, ...) so machine noise hits each alike, and the
ratio to sentence-transformers (its default PyTorch backend) is reported with min/median/max over
repeats. The int8 paths' retrieval quality delta (within-article MRR@10 on validation) is measured
next to their speed-up.

    python benchmarks/bench_encode.py [--passages 2000] [--repeats 3] [--quality-prompts 233]
"""

from __future__ import annotations

import argparse
from typing import Any

from common import default_model, interleaved, peak_rss_mb, spread, validation_passages, write_result


def quality(encoders: dict[str, Any], prompts: int | None) -> dict[str, Any]:
    """Within-article MRR@10 / R@5 of each encoder on validation; deltas in points against ``fp32``."""
    from cera_rag.data.dataset import DataConfig, load_processed
    from cera_rag.evaluation.retrieval import build_qrels, dense_run, evaluate_run

    val = load_processed("validation", DataConfig())
    out: dict[str, Any] = {}
    for name, enc in encoders.items():
        run = dense_run(enc, val, pool="article", limit=prompts)
        out[name] = evaluate_run(build_qrels(val), run, ("mrr@10", "recall@5"))
    for name in encoders:
        if name != "fp32":
            out[f"{name}_mrr@10_delta_points"] = 100 * (out[name]["mrr@10"] - out["fp32"]["mrr@10"])
    out["prompts"] = prompts
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--quality-prompts", type=int, default=None, help="Validation prompts for the int8 delta.")
    ap.add_argument("--model", default=None)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from cera_rag.model import CERAEncoder

    path = args.model or default_model()
    texts = validation_passages(args.passages)
    cera = CERAEncoder.from_pretrained(path, device="cpu", max_passage_length=args.max_length)
    int8 = cera.quantized()
    onnx = cera.to_onnx()
    onnx_int8 = cera.to_onnx(int8=True)
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = args.max_length
    bs = args.batch_size
    systems = {
        "sentence_transformers": lambda t: st.encode(t, batch_size=bs, convert_to_numpy=True),
        "cera": lambda t: cera.encode_passages(t, batch_size=bs),
        "cera_with_spans": lambda t: cera.encode_passages(t, batch_size=bs, return_rationales=True),
        "cera_onnx": lambda t: onnx.encode_passages(t, batch_size=bs),
        "cera_onnx_with_spans": lambda t: onnx.encode_passages(t, batch_size=bs, return_rationales=True),
        "cera_int8": lambda t: int8.encode_passages(t, batch_size=bs),
        "cera_int8_with_spans": lambda t: int8.encode_passages(t, batch_size=bs, return_rationales=True),
        "cera_onnx_int8": lambda t: onnx_int8.encode_passages(t, batch_size=bs),
        "cera_onnx_int8_with_spans": lambda t: onnx_int8.encode_passages(t, batch_size=bs, return_rationales=True),
    }
    with torch.inference_mode():
        for fn in systems.values():
            fn(texts[:64])  # warm-up
        seconds = interleaved({k: lambda fn=fn: fn(texts) for k, fn in systems.items()}, args.repeats)
    throughput = {k: [len(texts) / s for s in v] for k, v in seconds.items()}
    base = throughput["sentence_transformers"]
    ratios = {k: spread([a / b for a, b in zip(v, base, strict=True)]) for k, v in throughput.items()}
    payload = {
        "model": path,
        "passages": len(texts),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "repeats": args.repeats,
        "passages_per_second": {k: spread(v) for k, v in throughput.items()},
        "ratio_to_sentence_transformers": ratios,
        "int8_speedup_vs_fp32": spread(
            [a / b for a, b in zip(throughput["cera_int8"], throughput["cera"], strict=True)]
        ),
        "onnx_int8_speedup_vs_fp32": spread(
            [a / b for a, b in zip(throughput["cera_onnx_int8"], throughput["cera"], strict=True)]
        ),
        # ONNX fp32 gives the PyTorch vectors to ~1e-6 (tests/unit/test_onnx_backend.py): not re-scored here
        "int8_quality": quality({"fp32": cera, "torch_int8": int8, "onnx_int8": onnx_int8}, args.quality_prompts),
        "peak_rss_mb": peak_rss_mb(),
    }
    print(write_result("encode", payload))
    for k, v in payload["ratio_to_sentence_transformers"].items():
        print(f"{k:24s} {payload['passages_per_second'][k]['median']:8.1f} passages/s  x{v['median']:.2f} vs ST")
    print("int8 speed-up: torch", payload["int8_speedup_vs_fp32"], "onnx", payload["onnx_int8_speedup_vs_fp32"])
    print("quality", payload["int8_quality"])


if __name__ == "__main__":
    main()
