"""Ray Data indexing into a real ``chroma run`` server, on a real local Ray runtime (2 workers).

The property users rely on: the Ray path gives exactly the ids, documents and spans (vectors to a
tolerance) of single-process indexing; a worker that dies mid-batch or a batch that fails is retried,
and nothing is duplicated or lost; a re-run adds nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cera_rag import store, testing

ray = pytest.importorskip("ray", reason="needs the scale extra (ray[data])")
pytestmark = pytest.mark.slow

from cera_rag.store.distributed import IndexWorker, index_with_ray  # noqa: E402 - after the skip

ARTICLES = 4  # ~360 sentence-packed passages


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cera_rag.data.reader import resolve_data_dir

    src = sorted((resolve_data_dir() / "annotations" / "txt_files").glob("*.txt"))[:ARTICLES]
    out = tmp_path_factory.mktemp("ray-corpus")
    for f in src:
        shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testing.write_tiny_bert(tmp_path_factory.mktemp("ray-model") / "tiny")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if testing.chroma_executable() is None:
        pytest.skip("the `chroma` command is not installed")
    with testing.chroma_server(tmp_path_factory.mktemp("ray-chroma") / "data") as (host, port):
        yield {"host": host, "port": port}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local runtime for the module (index_with_ray joins a runtime that is already up)."""
    # The test's worker subclasses live in this module, which Ray's workers cannot import by name.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def _contents(client: Any, name: str) -> dict[str, tuple[str, dict[str, Any], np.ndarray]]:
    got = client.get_collection(name, embedding_function=None).get(include=["documents", "metadatas", "embeddings"])
    return {
        i: (d, m, np.asarray(e))
        for i, d, m, e in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True)
    }


@pytest.fixture(scope="module")
def single_process(model_dir: Path, corpus_dir: Path, server: dict[str, Any]) -> dict[str, Any]:
    encoder = store.load_encoder(model_dir)
    client = store.get_client(**server)
    coll = store.open_for_encoder(encoder, name="single-process", client=client)
    store.index_passages(encoder, coll, store.passages_from_directory(corpus_dir))
    return _contents(client, "single-process")


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert sorted(got) == sorted(want), "the same deterministic ids"
    for pid, (doc, meta, vec) in want.items():
        g_doc, g_meta, g_vec = got[pid]
        assert g_doc == doc
        testing.assert_metadata_close(g_meta, meta)
        np.testing.assert_allclose(g_vec, vec, atol=1e-5)


def test_ray_indexing_matches_single_process(
    local_ray: None, model_dir: Path, corpus_dir: Path, server: dict[str, Any], single_process: dict[str, Any]
) -> None:
    report = index_with_ray(corpus_dir, str(model_dir), "ray-plain", client=server, workers=2, batch_size=32)
    assert report.missing == [] and report.retried_batches == 0
    assert report.added == report.passages == len(single_process)
    assert len(report.workers) == 2, "both workers took batches"
    assert all(w["passages_per_s"] > 0 for w in report.workers.values())
    _assert_same(_contents(store.get_client(**server), "ray-plain"), single_process)

    again = index_with_ray(corpus_dir, str(model_dir), "ray-plain", client=server, workers=2, batch_size=32)
    assert again.added == 0 and again.skipped == len(single_process), "a re-run adds only what is missing"


class _FailsOnce(IndexWorker):
    """Dies (the process exits, as when killed) on the first batch of the run; raises on the second."""

    markers: Path

    def index(self, records: list[tuple[str, str, dict[str, Any]]]) -> Any:
        for kind in ("die", "raise"):
            try:  # O_EXCL: exactly one batch of the whole run claims each fault
                os.close(os.open(self.markers / kind, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            if kind == "die":
                # half the batch written first: the re-run must not duplicate it
                super().index(records[: len(records) // 2])
                os._exit(1)
            raise ConnectionError("injected: the Chroma server dropped the connection")
        return super().index(records)


def test_a_dead_worker_and_a_failed_batch_are_retried_without_loss_or_duplicates(
    local_ray: None,
    model_dir: Path,
    corpus_dir: Path,
    server: dict[str, Any],
    single_process: dict[str, Any],
    tmp_path: Path,
) -> None:
    worker = type("FailsOnce", (_FailsOnce,), {"markers": tmp_path})
    report = index_with_ray(
        corpus_dir, str(model_dir), "ray-faults", client=server, workers=2, batch_size=32, worker=worker
    )
    assert (tmp_path / "die").exists() and (tmp_path / "raise").exists(), "both faults happened"
    assert report.retried_batches >= 1, "the failed batch is counted"
    assert report.missing == []
    assert store.get_client(**server).get_collection("ray-faults", embedding_function=None).count() == len(
        single_process
    ), "nothing lost, nothing duplicated"
    _assert_same(_contents(store.get_client(**server), "ray-faults"), single_process)


def test_cli_index_on_ray(
    local_ray: None, model_dir: Path, corpus_dir: Path, server: dict[str, Any], single_process: dict[str, Any]
) -> None:
    from typer.testing import CliRunner

    from cera_rag.cli import app

    args = ["index", str(corpus_dir), "--model", str(model_dir), "--host", server["host"], "--port",
            str(server["port"]), "--collection", "ray-cli", "--ray", "local", "--workers", "2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"{len(single_process)} passages added" in result.output and "passages/s" in result.output
    _assert_same(_contents(store.get_client(**server), "ray-cli"), single_process)
