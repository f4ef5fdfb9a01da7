"""Indexing throughput into a real ``chroma run`` server: one process, then Ray Data on 1 and 2 workers.

The same passages (``--passages`` shared validation passages, spread over the articles), the same
encoder (the trained checkpoint when there is one), embeddings and attention spans in one pass,
each run into a fresh collection of one local server:

* ``single_process``: ``cera_rag.store.index_passages`` in this process (torch's default threads);
* ``ray_1_worker`` / ``ray_2_workers``: ``cera_rag.store.index_with_ray`` on a local Ray runtime,
  one CPU (and one torch thread) per worker.

Wall time counts from the start of the Ray job to the last batch written (actor start-up and model
loading included); ``busy`` throughput per worker is its passages over its own encode+write time.

    python benchmarks/bench_ray_index.py [--passages 2000] [--batch-size 64] [--backend torch]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import default_model, validation_passages, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--model", default=None)
    args = ap.parse_args()

    import ray

    from cera_rag import store, testing

    model = args.model or default_model()
    texts = validation_passages(args.passages)
    records = [(f"p{i}", t, {"n": i}) for i, t in enumerate(texts)]
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp, testing.chroma_server(Path(tmp) / "chroma") as (host, port):
        client_args = {"host": host, "port": port}
        encoder = store.load_encoder(model, backend=args.backend)
        coll = store.open_for_encoder(encoder, name="bench-single", client=store.get_client(**client_args))
        t0 = time.perf_counter()
        report = store.index_passages(encoder, coll, records, batch_size=args.batch_size)
        seconds = time.perf_counter() - t0
        assert report.added == len(records)
        results["single_process"] = {"seconds": seconds, "passages_per_s": len(records) / seconds}
        del encoder

        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            for workers in (1, 2):
                name = f"ray_{workers}_worker{'s' if workers > 1 else ''}"
                rep = store.index_with_ray(
                    records, model, f"bench-ray-{workers}", client=client_args, workers=workers,
                    batch_size=args.batch_size, backend=args.backend, show_progress=False,
                )  # fmt: skip
                assert rep.added == len(records) and not rep.missing
                results[name] = {
                    "seconds": rep.seconds,
                    "passages_per_s": rep.passages_per_second,
                    "workers": rep.workers,
                    "retried_batches": rep.retried_batches,
                }
                print(name, results[name], flush=True)
        finally:
            ray.shutdown()
    one = float(results["ray_1_worker"]["passages_per_s"])  # type: ignore[arg-type]
    two = float(results["ray_2_workers"]["passages_per_s"])  # type: ignore[arg-type]

    def steady(run: dict[str, object]) -> float:
        """Passages per second once the actors are up: all passages over the busiest worker's own time."""
        ws = run["workers"].values()  # type: ignore[attr-defined]
        return sum(w["passages"] for w in ws) / max(w["busy_seconds"] for w in ws)

    payload = {
        "model": model,
        "backend": args.backend,
        "passages": len(records),
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "runs": results,
        "ray_2_vs_1_worker": two / one,
        "ray_2_vs_1_worker_excluding_startup": steady(results["ray_2_workers"]) / steady(results["ray_1_worker"]),
        "ray_2_workers_vs_single_process": two / float(results["single_process"]["passages_per_s"]),  # type: ignore[arg-type]
        "target_2_vs_1": 1.7,
    }
    print(write_result("ray_index", payload))
    print({k: payload[k] for k in ("ray_2_vs_1_worker", "ray_2_vs_1_worker_excluding_startup")})


if __name__ == "__main__":
    main()
