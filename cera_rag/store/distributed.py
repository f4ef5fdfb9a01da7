"""Scale-out indexing on Ray Data: many encoder workers writing to one Chroma server.

``index_with_ray`` reads the passages with Ray Data (a folder's files are split into passages on the
workers; passages already in memory are handed over as they are), encodes them with ``map_batches``
over a pool of actors that each load the encoder once (embeddings and attention spans in one
forward pass, the ``torch``/``onnx``/``onnx-int8`` backend of ``load_encoder``), and each actor writes
its batches to the Chroma server through ``index_passages``: deterministic ids, ids already stored
are skipped, so a re-run after a failure adds only what is missing.

Failures: a batch whose encoding or write raises is retried by its actor (``retries`` times, with a
back-off); an actor that dies (killed, out of memory) is restarted by Ray and its batch re-run (the
upsert of ids written before the death is idempotent). After the run every expected id is looked up
in the collection, and any still missing is reported (``RayIndexReport.missing``).

Without ``address`` a local Ray runtime with ``workers * cpus_per_worker + 1`` logical CPUs is started (and shut
down after); with one (``"auto"``, ``"ray://head:10001"``) the run joins that cluster. The Chroma
server must be reachable from every worker. ``ray`` comes with ``pip install 'cera-rag[scale]'``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cera_rag.store.errors import StoreError

logger = logging.getLogger(__name__)


@dataclass
class RayIndexReport:
    """What ``index_with_ray`` did, with the throughput of the run and of each worker."""

    added: int = 0
    skipped: int = 0
    passages: int = 0
    batches: int = 0
    #: batches that raised at least once and were retried by their worker
    retried_batches: int = 0
    #: expected ids not in the collection after the run (empty when nothing was lost)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: worker (host:pid) -> {"passages", "busy_seconds", "passages_per_s"}
    workers: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def passages_per_second(self) -> float:
        return self.passages / self.seconds if self.seconds else 0.0


def _ray() -> Any:
    try:
        import ray
    except ImportError:  # pragma: no cover - depends on the environment
        raise StoreError("Ray is not installed; install it with `pip install 'cera-rag[scale]'`.") from None
    return ray


class IndexWorker:
    """A Ray actor: loads the encoder and opens the collection once, then indexes the batches it is given.

    Every batch is a dict of columns ``id``, ``text``, ``metadata`` (JSON); the answer is one row per
    batch (its worker, counts, time, attempts) for the driver's report.
    """

    def __init__(
        self,
        model: str,
        collection: str,
        client: Mapping[str, Any],
        backend: str = "torch",
        device: str | None = None,
        top_fraction: float = 0.2,
        batch_size: int = 64,
        threads: int | None = None,
        retries: int = 3,
    ) -> None:
        import socket

        import torch

        from cera_rag.encoders import load_encoder
        from cera_rag.store.client import get_client
        from cera_rag.store.collection import open_for_encoder

        if threads:
            torch.set_num_threads(threads)  # one intra-op pool per worker, sized to its CPUs
        self.encoder = load_encoder(model, device=device, backend=backend)
        self.collection = open_for_encoder(self.encoder, name=collection, client=get_client(**client), create=False)
        self.top_fraction = top_fraction
        self.batch_size = batch_size
        self.retries = retries
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def index(self, records: list[tuple[str, str, dict[str, Any]]]) -> Any:
        """``index_passages`` on one batch (this worker's encoder, its collection)."""
        from cera_rag.store.indexing import index_passages

        return index_passages(
            self.encoder,
            self.collection,
            records,
            batch_size=self.batch_size,
            check=False,
            top_fraction=self.top_fraction,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = [
            (str(i), str(t), json.loads(m) if m else {})
            for i, t, m in zip(batch["id"], batch["text"], batch["metadata"], strict=True)
        ]
        t0 = time.perf_counter()
        for attempt in range(1, self.retries + 2):
            try:
                report = self.index(records)
                break
            except Exception as exc:  # a failed write or encode: retried, then raised to Ray
                if attempt > self.retries:
                    raise
                logger.warning("%s: batch of %d failed (%s); retry %d of %d", self.name, len(records), exc, attempt,
                               self.retries)  # fmt: skip
                time.sleep(min(2.0 ** (attempt - 1), 10.0))
        return {
            "worker": np.array([self.name]),
            "added": np.array([report.added]),
            "skipped": np.array([report.skipped]),
            "seconds": np.array([time.perf_counter() - t0]),
            "attempts": np.array([attempt]),
            "ids": np.array([json.dumps(report.ids)]),
        }


def _record_row(item: Any) -> dict[str, str]:
    from cera_rag.store.indexing import _scalar_metadata, as_record

    pid, text, meta = as_record(item)
    return {"id": pid, "text": text, "metadata": json.dumps(_scalar_metadata(meta))}


def _file_passages(row: dict[str, Any], directory: str, mode: str) -> list[dict[str, str]]:
    from cera_rag.store.corpora import passages_from_file

    return [_record_row(p) for p in passages_from_file(directory, row["path"], mode)]  # type: ignore[arg-type]


def index_with_ray(
    source: str | os.PathLike[str] | Iterable[Any],
    model: str,
    collection: str,
    *,
    client: Mapping[str, Any],
    address: str | None = None,
    workers: int = 2,
    cpus_per_worker: float = 1.0,
    batch_size: int = 64,
    backend: str = "torch",
    device: str | None = None,
    top_fraction: float = 0.2,
    mode: str = "sentences",
    pattern: str = "*.txt",
    retries: int = 3,
    show_progress: bool = True,
    worker: type[IndexWorker] = IndexWorker,
) -> RayIndexReport:
    """Index a folder of text files (or passages / ``(id, text, metadata)`` records) on Ray workers.

    Args:
        source: A folder (its ``pattern`` files, split in ``mode`` on the workers) or an iterable of
            ``Passage`` objects / records.
        model: Encoder checkpoint (folder or hub id, ``MODEL@contriever``), loaded once per worker.
        collection: Collection name; created (with the encoder's identity) if it does not exist.
        client: ``get_client`` arguments of the Chroma server every worker writes to (``host``, ``port``,
            ``ssl``, ``headers``, ``tenant``, ``database``); a ``path`` works only on one machine.
        address: A Ray cluster to join (``"auto"``, ``"ray://head:10001"``); ``None`` starts a local runtime.
        workers: Encoder actors.
        cpus_per_worker: CPUs each actor reserves (and its torch threads).
        batch_size: Passages per Ray batch (one encode + one upsert).
        backend: ``torch``, ``onnx`` or ``onnx-int8`` (as ``load_encoder``).
        device: Torch device of the workers' encoders.
        top_fraction: Share of words kept in the stored spans (as ``index_passages``).
        mode: Passage mode for a folder: ``sentences`` or ``windows``.
        pattern: Files of a folder to read.
        retries: Attempts after the first for a batch that raises.
        show_progress: A progress bar over the passages (folder input: over the batches).
        worker: The actor class (a subclass can add instrumentation).

    Raises:
        StoreError: If Ray is missing, the folder is empty, or the server cannot be reached.
    """
    ray = _ray()
    from tqdm.auto import tqdm

    from cera_rag.encoders import load_encoder
    from cera_rag.store.client import get_client
    from cera_rag.store.collection import open_for_encoder
    from cera_rag.store.corpora import text_files

    if workers < 1 or batch_size < 1:
        raise ValueError(f"workers and batch_size must be >= 1, got {workers} and {batch_size}.")
    # The collection is created here, once, with the encoder's identity; workers only open it.
    open_for_encoder(load_encoder(model, device="cpu"), name=collection, client=get_client(**client))
    started = False
    if not ray.is_initialized():
        if address is None:
            # One logical CPU more than the actors reserve: the reading/splitting stage runs beside them.
            ray.init(num_cpus=int(np.ceil(workers * cpus_per_worker)) + 1, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)  # fmt: skip
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        started = True
    # Our bar counts passages; Ray Data's own bars (log lines every 10 s off a terminal) would repeat it.
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        if isinstance(source, (str, os.PathLike)):
            files = [{"path": str(f)} for f in text_files(source, pattern)]
            ds = ray.data.from_items(files, override_num_blocks=min(len(files), 4 * workers)).flat_map(
                _file_passages, fn_kwargs={"directory": str(Path(source).expanduser()), "mode": mode}, num_cpus=0.5
            )
            total = None
        else:
            rows: dict[str, dict[str, str]] = {}
            for item in source:
                row = _record_row(item)
                rows.setdefault(row["id"], row)  # a repeated id keeps its first passage, as index_passages does
            ds = ray.data.from_items(list(rows.values()), override_num_blocks=max(1, len(rows) // batch_size))
            total = len(rows)
        ds = ds.map_batches(
            worker,
            fn_constructor_kwargs={
                "model": model, "collection": collection, "client": dict(client), "backend": backend,
                "device": device, "top_fraction": top_fraction, "batch_size": batch_size,
                "threads": max(1, int(cpus_per_worker)), "retries": retries,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            # Ray Data's actor pools restart a dead actor and re-run the batch it held (max_restarts and
            # max_task_retries default to -1 there); the test kills one mid-batch to hold it to that.
            num_cpus=cpus_per_worker,
        )  # fmt: skip
        report = RayIndexReport()
        expected: list[str] = []
        t0 = time.perf_counter()
        with tqdm(total=total, desc=f"Indexing into {collection} (Ray)", unit="passage",
                  disable=not show_progress) as bar:  # fmt: skip
            for row in ds.iter_rows():
                ids = json.loads(row["ids"])
                expected.extend(ids)
                report.batches += 1
                report.added += int(row["added"])
                report.skipped += int(row["skipped"])
                report.retried_batches += int(row["attempts"]) > 1
                w = report.workers.setdefault(str(row["worker"]), {"passages": 0.0, "busy_seconds": 0.0})
                w["passages"] += len(ids)
                w["busy_seconds"] += float(row["seconds"])
                bar.update(len(ids))
        report.seconds = time.perf_counter() - t0
    finally:
        if started:
            ray.shutdown()
    for w in report.workers.values():
        w["passages_per_s"] = w["passages"] / w["busy_seconds"] if w["busy_seconds"] else 0.0
    unique = list(dict.fromkeys(expected))
    report.passages = len(unique)
    report.missing = _missing(get_client(**client), collection, unique)
    return report


def _missing(client: Any, collection: str, ids: Sequence[str], chunk: int = 1000) -> list[str]:
    """The ids not in the collection (looked up in chunks)."""
    coll = client.get_collection(collection, embedding_function=None)
    missing: list[str] = []
    for s in range(0, len(ids), chunk):
        part = list(ids[s : s + chunk])
        found = set(coll.get(ids=part, include=[])["ids"])
        missing.extend(i for i in part if i not in found)
    return missing


__all__ = ["IndexWorker", "RayIndexReport", "index_with_ray"]
