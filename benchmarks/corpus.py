"""The benchmarks' real corpus: every shared article split in both passage modes, de-duplicated.

``unique_passages()`` reads every article of the shared Evidence Inference folder (train and
validation), splits it into sentence-packed passages and into 50-word windows, and keeps each
distinct passage text once (first occurrence; article, mode and passage order), under its
deterministic id (``cera_rag.store.text_id``). On the shared data that is 154,297 passages.

``encoded(...)`` encodes them once, embeddings and attention spans in one forward pass (what
``cera-rag index`` stores), in chunk files under the cache, so an interrupted encoding resumes at its
last finished chunk and later runs read the cache. ``chroma_collection(...)`` builds (once, resumably)
an embedded Chroma collection of those vectors, documents and spans.

    python benchmarks/corpus.py [--backend onnx-int8] [--limit N]   # encode now (takes a while)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, default_model  # noqa: F401 - ROOT puts the repository on sys.path

from cera_rag.atomic import write_file, write_text

MODES = ("sentences", "windows")
CHUNK = 2000


def unique_passages(data_dir: str | None = None, limit: int | None = None) -> list[tuple[str, str]]:
    """``(id, text)`` of every distinct passage text of the shared articles, both modes, in a fixed order."""
    from cera_rag.data.passages import split_passages
    from cera_rag.data.reader import resolve_data_dir
    from cera_rag.store import text_id

    folder = resolve_data_dir(data_dir) / "annotations" / "txt_files"
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for path in sorted(folder.glob("*.txt")):
        article = path.read_text(encoding="utf-8", errors="replace")
        for mode in MODES:
            for p in split_passages(article, path.stem, mode=mode):
                if p.text.strip() and p.text not in seen:
                    seen.add(p.text)
                    out.append((text_id(p.text), p.text))
    return out[:limit] if limit else out


def cache_folder(model: str, backend: str, passages: list[tuple[str, str]], top_fraction: float) -> Path:
    """Where the vectors of these passages under this model and backend live (one folder per key)."""
    from cera_rag.encoders import weights_digest
    from cera_rag.onnx_backend import GRAPH_FORMAT
    from cera_rag.paths import cache_dir

    parts = [str(weights_digest(model) or model), backend, top_fraction]
    if backend.startswith("onnx"):
        parts.append(GRAPH_FORMAT)  # another export of the same weights encodes (slightly) other vectors
    key = hashlib.sha256()
    key.update(json.dumps(parts).encode())
    for pid, _ in passages:
        key.update(pid.encode())
    return cache_dir() / "bench-corpus" / key.hexdigest()[:16]


def encoded(
    encoder: Any, backend: str, model: str, passages: list[tuple[str, str]], top_fraction: float = 0.2
) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """``(vectors (n, d) float32, spans JSON per passage, info)``, encoded once and cached in chunks."""
    from tqdm.auto import tqdm

    from cera_rag.spans import spans_to_json

    folder = cache_folder(model, backend, passages, top_fraction)
    folder.mkdir(parents=True, exist_ok=True)
    n_chunks = (len(passages) + CHUNK - 1) // CHUNK
    encoded_now, seconds = 0, 0.0
    for c in tqdm(range(n_chunks), desc=f"encode corpus ({backend})", unit="chunk"):
        vec_path, span_path = folder / f"{c:05d}.npy", folder / f"{c:05d}.spans.json"
        if vec_path.is_file() and span_path.is_file():
            continue
        texts = [t for _, t in passages[c * CHUNK : (c + 1) * CHUNK]]
        t0 = time.perf_counter()
        vectors, spans = encoder.encode_passages(
            texts, batch_size=64, return_rationales=True, top_fraction=top_fraction
        )
        seconds += time.perf_counter() - t0
        encoded_now += len(texts)
        # spans first: a chunk counts as done only when its vectors exist, and they are written last
        write_text(span_path, json.dumps([spans_to_json(s) for s in spans]))
        chunk_vectors = np.asarray(vectors, dtype=np.float32)
        write_file(vec_path, lambda tmp: _save_npy(tmp, chunk_vectors))  # noqa: B023 - called right here
    vectors = np.concatenate([np.load(folder / f"{c:05d}.npy") for c in range(n_chunks)])
    spans_json: list[str] = []
    for c in range(n_chunks):
        spans_json.extend(json.loads((folder / f"{c:05d}.spans.json").read_text(encoding="utf-8")))
    info = {
        "cache": str(folder),
        "encoded_this_run": encoded_now,
        "encode_passages_per_s_this_run": encoded_now / seconds if seconds else None,
    }
    return vectors, spans_json, info


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as f:  # a file object: np.save would add ".npy" to the temporary name
        np.save(f, array)


def chroma_collection(
    encoder: Any, folder: Path, passages: list[tuple[str, str]], vectors: np.ndarray, spans_json: list[str]
) -> Any:
    """An embedded Chroma collection (``ip`` space, cera-rag's identity) holding the cached corpus.

    Built beside the vectors and kept; a run that stopped half-way upserts the batches still missing.
    """
    from tqdm.auto import tqdm

    from cera_rag import store
    from cera_rag.store import SPANS_FRACTION_KEY, SPANS_KEY

    col = store.open_for_encoder(encoder, path=folder / "chroma", name="bench-corpus")
    if col.count() == len(passages):
        return col
    batch = 5000
    for s in tqdm(range(0, len(passages), batch), desc="upsert corpus into Chroma", unit="batch"):
        ids = [pid for pid, _ in passages[s : s + batch]]
        if len(col.get(ids=ids, include=[])["ids"]) == len(ids):
            continue
        col.upsert(
            ids=ids,
            embeddings=vectors[s : s + batch],
            documents=[t for _, t in passages[s : s + batch]],
            metadatas=[{SPANS_KEY: sj, SPANS_FRACTION_KEY: 0.2} for sj in spans_json[s : s + batch]],
        )
    return col


def load_encoder(model: str, backend: str) -> Any:
    from cera_rag.model import CERAEncoder

    if backend == "torch-int8":
        return CERAEncoder.from_pretrained(model, device="cpu").quantized()
    return CERAEncoder.from_pretrained(model, device="cpu", backend=backend)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--backend", default="onnx-int8")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    model = args.model or default_model()
    passages = unique_passages(limit=args.limit)
    enc = load_encoder(model, args.backend)
    vectors, spans, info = encoded(enc, args.backend, model, passages)
    t0 = time.perf_counter()
    col = chroma_collection(enc, Path(info["cache"]), passages, vectors, spans)
    upsert_s = time.perf_counter() - t0
    print(json.dumps({**info, "passages": len(passages), "chroma_count": col.count(), "upsert_s": upsert_s}))


if __name__ == "__main__":
    main()
