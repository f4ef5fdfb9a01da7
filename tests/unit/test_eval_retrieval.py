"""Runs over the synthetic split: order invariance, BM25 pools, the cached dense path and its resume."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_dataset

from cera_rag.data.dataset import DataConfig, ProcessedSplit, load_processed
from cera_rag.evaluation.cache import PassageVectorCache, model_fingerprint
from cera_rag.evaluation.retrieval import (
    bm25_run,
    build_qrels,
    dense_run,
    dense_run_from_vectors,
    eval_examples,
    evaluate_run,
    pool_articles,
    query_text,
)

METRICS = ["mrr@10", "recall@1", "recall@3", "ndcg@10", "map@10", "precision@1", "hit_rate@1"]


class HashEmbedder:
    """Deterministic pseudo-random unit vectors per text (no ties), counting what it encodes."""

    def __init__(self, dim: int = 16) -> None:
        self.dim = dim
        self.encoded = 0

    def _vec(self, text: str) -> np.ndarray:
        seed = int(hashlib.md5(text.encode()).hexdigest()[:8], 16)
        v = np.random.default_rng(seed).normal(size=self.dim)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return np.stack([self._vec("q:" + t) for t in texts])

    def encode_passages(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        self.encoded += len(texts)
        return np.stack([self._vec(t) for t in texts])


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessedSplit]:
    tmp = tmp_path_factory.mktemp("eval-retrieval")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CERA_CACHE_DIR", str(tmp / "cache"))
        yield load_processed("train", DataConfig(), write_synthetic_dataset(tmp / "ei"))


def _permuted(split: ProcessedSplit, seed: int = 5) -> ProcessedSplit:
    """The same split with every article's passages in another order (positives remapped)."""
    rng = np.random.default_rng(seed)
    passages, inverse = {}, {}
    for aid, ps in split.passages.items():
        perm = rng.permutation(len(ps))
        passages[aid] = [ps[j] for j in perm]
        inverse[aid] = {int(old): new for new, old in enumerate(perm)}
    examples = [
        dataclasses.replace(
            ex,
            positives=[inverse[ex.prompt.article_id][i] for i in ex.positives],
            rationales={inverse[ex.prompt.article_id][i]: v for i, v in ex.rationales.items()},
        )
        for ex in split.examples
    ]
    return dataclasses.replace(split, passages=passages, examples=examples)


def _per_query(split: ProcessedSplit, run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return evaluate_run(build_qrels(split), run, METRICS, per_query=True)["per_query"]


def _assert_same(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> None:
    assert a.keys() == b.keys()
    for m in a:
        assert a[m] == pytest.approx(b[m]), m


@pytest.mark.parametrize("pool", ["article", "corpus"])
def test_permuting_passages_leaves_metrics_unchanged(split: ProcessedSplit, pool: str) -> None:
    perm = _permuted(split)
    assert [p.passage_id for p in perm.passages["1000"]] != [p.passage_id for p in split.passages["1000"]]
    assert build_qrels(perm) == build_qrels(split)
    emb = HashEmbedder()
    dense_a = _per_query(split, dense_run(emb, split, pool))  # type: ignore[arg-type]
    dense_b = _per_query(perm, dense_run(emb, perm, pool))  # type: ignore[arg-type]
    _assert_same(dense_a, dense_b)
    assert any(v > 0 for v in dense_a["mrr@10"].values())
    lex_a = _per_query(split, bm25_run(split, pool))  # type: ignore[arg-type]
    lex_b = _per_query(perm, bm25_run(perm, pool))  # type: ignore[arg-type]
    _assert_same(lex_a, lex_b)


def test_bm25_pools(split: ProcessedSplit) -> None:
    article = bm25_run(split, "article")
    corpus = bm25_run(split, "corpus", top_k=7)
    exs = eval_examples(split)
    assert set(article) == set(corpus) == {ex.prompt.prompt_id for ex in exs}
    for ex in exs:
        assert all(pid.startswith(f"{ex.prompt.article_id}:") for pid in article[ex.prompt.prompt_id])
        assert len(article[ex.prompt.prompt_id]) == len(split.passages[ex.prompt.article_id])
        assert len(corpus[ex.prompt.prompt_id]) == 7
    # the drug name is in the query: BM25 finds the positive at rank 1 for the pain-score prompts
    m = evaluate_run(build_qrels(split), article, ["hit_rate@5"])
    assert m["hit_rate@5"] == 1.0


@pytest.mark.parametrize("pool", ["article", "corpus"])
def test_cached_vectors_give_the_same_run(split: ProcessedSplit, pool: str, tmp_path: Path) -> None:
    emb = HashEmbedder()
    exs = eval_examples(split, limit=3)
    cache = PassageVectorCache(emb, split, root=tmp_path, fingerprint="fake")
    vectors = cache.vectors(pool_articles(split, exs, pool))
    qv = emb.encode_queries([query_text(ex) for ex in exs])
    assert dense_run_from_vectors(split, exs, qv, vectors, pool) == dense_run(emb, split, pool, limit=3)  # type: ignore[arg-type]


def test_cache_resumes_and_rejects_bad_files(split: ProcessedSplit, tmp_path: Path) -> None:
    articles = sorted(split.passages)
    emb = HashEmbedder()
    first = PassageVectorCache(emb, split, root=tmp_path, fingerprint="fp").vectors(articles[:1], chunk_passages=1)
    assert emb.encoded == len(split.passages[articles[0]])
    # "interrupted" after the first article: a new run encodes only the others
    cache = PassageVectorCache(emb, split, root=tmp_path, fingerprint="fp")
    out = cache.vectors(articles, chunk_passages=1)
    assert cache.encoded_now == sum(len(split.passages[a]) for a in articles[1:])
    np.testing.assert_array_equal(out[articles[0]], first[articles[0]])
    assert not list(cache.directory.glob("*.tmp")) and not list(cache.directory.glob(".*.tmp"))
    again = PassageVectorCache(emb, split, root=tmp_path, fingerprint="fp")
    again.vectors(articles)
    assert again.encoded_now == 0
    # a corrupt file is re-encoded, not trusted
    cache.path(articles[1]).write_bytes(b"not a numpy file")
    third = PassageVectorCache(emb, split, root=tmp_path, fingerprint="fp")
    np.testing.assert_array_equal(third.vectors(articles)[articles[1]], out[articles[1]])
    assert third.encoded_now == len(split.passages[articles[1]])
    # disabled: nothing is read
    off = PassageVectorCache(emb, split, root=tmp_path, fingerprint="fp", enabled=False)
    off.vectors(articles[:1])
    assert off.encoded_now == len(split.passages[articles[0]])


def test_model_fingerprint_tracks_pooling_and_files(tiny_bert_copy: Path) -> None:
    from cera_rag.model import CERAEncoder

    mean = CERAEncoder.from_pretrained(tiny_bert_copy, pooling="mean")
    cls = CERAEncoder.from_pretrained(tiny_bert_copy, pooling="cls")
    fp = model_fingerprint(mean, str(tiny_bert_copy))
    assert fp != model_fingerprint(cls, str(tiny_bert_copy))
    assert fp == model_fingerprint(mean, str(tiny_bert_copy))
    weights = next(tiny_bert_copy.glob("*.safetensors"))
    os.utime(weights, ns=(1, 1))  # a re-saved checkpoint has a new modification time
    assert fp != model_fingerprint(mean, str(tiny_bert_copy))
