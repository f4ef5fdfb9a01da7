"""Processed splits on the synthetic dataset: positives, rationales, negatives, tags, the cache and stats."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import write_synthetic_dataset

from cera_rag.data import dataset as dataset_mod
from cera_rag.data.dataset import (
    DataConfig,
    ProcessedSplit,
    PromptSelection,
    build_split,
    cache_key,
    load_processed,
    sample_training_triples,
)
from cera_rag.data.negatives import NEGATIVE_STRATEGIES
from cera_rag.data.positives import overlaps_any
from cera_rag.data.reader import Evidence, Prompt, SplitData, load_split
from cera_rag.data.stats import split_stats
from cera_rag.errors import DataError
from cera_rag.paths import cache_dir

PAIN = "Pain score was significantly lower with {drug} than placebo"
BP = "No difference in blood pressure was seen (p = 0.41)."
DRUGS = {"1000": "aspirin", "1001": "metformin", "1002": "insulin"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A synthetic data folder and a private cache, shared by this module's tests."""
    tmp = tmp_path_factory.mktemp("dataset")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CERA_CACHE_DIR", str(tmp / "cache"))
        yield write_synthetic_dataset(tmp / "ei")


@pytest.fixture(scope="module")
def train(env: Path) -> ProcessedSplit:
    return load_processed("train", DataConfig(), env)


def _cache_files(split: str = "train") -> list[Path]:
    return sorted((cache_dir() / "processed").glob(f"{split}-*.json.gz"))


def _comparable(ps: ProcessedSplit) -> dict:
    return {
        "name": ps.name,
        "config": ps.config,
        "passages": ps.passages,
        "examples": ps.examples,
        "pos_tags": ps.pos_tags,
        "subjectivity": ps.subjectivity,
        "dropped": {k: v for k, v in ps.dropped.items() if not k.startswith("_")},
        "counts": (ps.n_evidence, ps.n_prompts, ps.n_annotations),
    }


# ---------------------------------------------------------------------------------- build
def test_passages_map_back_to_the_articles(env: Path, train: ProcessedSplit) -> None:
    data = load_split(env, "train")
    assert sorted(train.passages) == ["1000", "1001", "1002"]
    for aid, passages in train.passages.items():
        assert [p.index for p in passages] == list(range(len(passages)))
        for p in passages:
            assert data.articles[aid][p.start : p.end] == p.text
        assert len(train.subjectivity[aid]) == len(passages)
    assert train.n_passages == 15
    assert (train.n_prompts, train.n_evidence, train.n_annotations) == (6, 6, 6)


def test_positives_and_rationales(train: ProcessedSplit) -> None:
    assert len(train.examples) == 6
    for ex in train.examples:
        aid = ex.prompt.article_id
        results = next(i for i, p in enumerate(train.passages[aid]) if p.text.startswith("BODY.RESULTS:"))
        assert ex.positives == [results]
        (span,) = ex.rationales[results]
        passage = train.passage(aid, results)
        want = PAIN.format(drug=DRUGS[aid]) if ex.prompt.outcome == "pain score" else BP
        assert passage.text[span[0] : span[1]] == want  # relative to the passage, not the article
        assert ex.evidence_texts == [want]
        assert ex.label == (
            "significantly decreased" if ex.prompt.outcome == "pain score" else "no significant difference"
        )


def test_negatives_never_touch_the_evidence(train: ProcessedSplit) -> None:
    for ex in train.examples:
        passages = train.passages[ex.prompt.article_id]
        spans = [(passages[i].start + a, passages[i].start + b) for i in ex.positives for a, b in ex.rationales[i]]
        assert set(ex.negatives) == set(NEGATIVE_STRATEGIES)
        for strategy, idx in ex.negatives.items():
            assert idx and not set(idx) & set(ex.positives), strategy
            assert not any(overlaps_any(passages[i], spans) for i in idx), strategy
        # one passage holds the evidence: random and subjective drop it, BM25 only if it ranks high enough
        assert ex.guard_removed["random"] == ex.guard_removed["subjective"] == 1
        assert ex.guard_removed["bm25"] in (0, 1) and ex.guard_removed["hybrid"] in (0, 1)
        # 5 passages, 1 positive: every strategy can fill 4 of its 5 slots
        assert sorted(ex.negatives["subjective"]) == [i for i in range(5) if i not in ex.positives]


def test_pos_tags_cover_exactly_the_positive_passages(train: ProcessedSplit) -> None:
    want = {train.passage(ex.prompt.article_id, i).passage_id for ex in train.examples for i in ex.positives}
    assert set(train.pos_tags) == want
    pid = next(iter(want))
    aid = pid.split(":")[0]
    text = next(p.text for p in train.passages[aid] if p.passage_id == pid)
    tags = train.pos_tags[pid]
    assert [text[s:e] for s, e, _, _ in tags][:4] == ["BODY.RESULTS", ":", "Pain", "score"]
    assert all(0 <= s < e <= len(text) and text[s:e].strip() == text[s:e] for s, e, _, _ in tags)
    assert {"NOUN", "NUM"} <= {pos for _, _, pos, _ in tags}


def test_windows_mode(env: Path) -> None:
    cfg = DataConfig(passage_mode="windows", window_words=12, overlap_words=4, negatives_per_query=3)
    ps = build_split(load_split(env, "validation"), cfg)
    (aid,) = ps.passages
    passages = ps.passages[aid]
    assert all(len(p.text.split()) <= 12 for p in passages)
    assert all(a.start < b.start < a.end for a, b in pairwise(passages))  # windows overlap
    for ex in ps.examples:
        assert len(ex.positives) >= 1
        for i in ex.positives:
            for a, b in ex.rationales[i]:
                assert passages[i].text[a:b] in ex.evidence_texts[0]
        for strategy in NEGATIVE_STRATEGIES:
            assert len(ex.negatives[strategy]) == 3


def test_build_fails_clearly_when_no_passage_holds_evidence() -> None:
    text = "First sentence here.\n\n\nSecond sentence here."
    prompt = Prompt("p", "9", "a", "b", "c")
    ev = Evidence("p", "9", "u", "x", 20, 23, text[20:23])  # only the blank lines between passages
    data = SplitData("train", {"9": text}, [prompt], {"p": [ev]})
    with pytest.raises(DataError, match="'train' split yields no prompt with a positive passage"):
        build_split(data, DataConfig(max_words=4))  # two passages, the blank lines in neither


def test_majority_label_over_annotators(env: Path) -> None:
    data = load_split(env, "validation")
    pid = data.prompts[0].prompt_id
    ev = data.evidence[pid][0]
    other = Evidence(pid, ev.article_id, "u2", "significantly increased", ev.start, ev.end - 1, ev.text[:-1])
    third = Evidence(pid, ev.article_id, "u3", "significantly increased", ev.start + 1, ev.end, ev.text[1:])
    data.evidence[pid] = [ev, other, third]
    ps = build_split(data, DataConfig())
    ex = next(e for e in ps.examples if e.prompt.prompt_id == pid)
    assert ex.label == "significantly increased"
    assert len(ex.evidence_texts) == 3
    (span,) = next(iter(ex.rationales.values()))  # the three spans are merged into one rationale
    assert span[1] - span[0] == ev.end - ev.start


# ---------------------------------------------------------------------------------- cache
def test_cache_round_trip_equals_a_fresh_build(env: Path, train: ProcessedSplit, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    files = _cache_files()
    assert len(files) == 1
    assert files[0].name == f"train-{cache_key(env, 'train', DataConfig())}.json.gz"
    with gzip.open(files[0], "rb") as fh:
        assert json.loads(fh.read())["version"] == dataset_mod.CACHE_VERSION

    def no_build(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the cache was not used")

    with monkeypatch.context() as mp:
        mp.setattr(dataset_mod, "build_split", no_build)
        cached = load_processed("train", DataConfig(), env)
    fresh = load_processed("train", DataConfig(), env, use_cache=False)
    assert _comparable(cached) == _comparable(train)
    assert _comparable(fresh) == _comparable(cached)
    assert isinstance(cached.pos_tags[next(iter(cached.pos_tags))][0], tuple)
    assert _cache_files() == files  # use_cache=False writes nothing


def test_corrupt_cache_is_rebuilt(env: Path, train: ProcessedSplit) -> None:
    (path,) = _cache_files()
    path.write_bytes(b"not gzip at all")
    again = load_processed("train", DataConfig(), env)
    assert _comparable(again) == _comparable(train)
    with gzip.open(path, "rb") as fh:
        assert json.loads(fh.read())["name"] == "train"


def test_cache_key_follows_config_split_and_data(tmp_path: Path) -> None:
    root = write_synthetic_dataset(tmp_path / "ei")
    base = cache_key(root, "train", DataConfig())
    assert cache_key(root, "train", DataConfig()) == base
    assert cache_key(root, "validation", DataConfig()) != base
    variants = [
        DataConfig(passage_mode="windows"),
        DataConfig(max_words=32),
        DataConfig(window_words=40),
        DataConfig(overlap_words=5),
        DataConfig(min_positive_overlap=4),
        DataConfig(negatives_per_query=3),
        DataConfig(hybrid_pool=20),
        DataConfig(seed=1),
    ]
    keys = {cache_key(root, "train", c) for c in variants}
    assert len(keys) == len(variants) and base not in keys
    with (root / "annotations" / "prompts_merged.csv").open("a", encoding="utf-8") as fh:
        fh.write("99999,1000,x,y,z\n")
    assert cache_key(root, "train", DataConfig()) != base


# ------------------------------------------------------------------------------ selection
def test_a_selection_processes_only_its_prompts_and_articles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quick run reads only what it trains on: the selected prompts, their articles, nothing else."""
    root = write_synthetic_dataset(tmp_path / "ei", n_articles=6)  # train: 5 articles x 2 prompts
    monkeypatch.setenv("CERA_CACHE_DIR", str(tmp_path / "cache"))
    full = load_split(root, "train")
    built: list[int] = []
    real_build = dataset_mod.build_split

    def counting_build(data, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(len(data.articles))
        return real_build(data, *args, **kwargs)

    monkeypatch.setattr(dataset_mod, "build_split", counting_build)
    drawn = load_processed("train", DataConfig(), root, select=PromptSelection(n_prompts=3, seed=7))
    assert built == [len({ex.prompt.article_id for ex in drawn.examples})], "only the drawn prompts' articles"
    assert len(drawn.examples) == 3
    assert set(drawn.passages) == {ex.prompt.article_id for ex in drawn.examples}
    again = PromptSelection(n_prompts=3, seed=7).apply(full)
    assert [p.prompt_id for p in again.prompts] == [ex.prompt.prompt_id for ex in drawn.examples], "seeded"
    assert PromptSelection(n_prompts=3, seed=8).apply(full).prompts != again.prompts, "another seed, another draw"

    first = PromptSelection(n_prompts=3).apply(full)
    assert first.prompts == full.prompts[:3]
    whole = PromptSelection(n_prompts=3, whole_articles=True).apply(full)
    assert whole.prompts == full.prompts[:4], "every prompt of the first prompts' two articles"
    by_article = PromptSelection(n_articles=2).apply(full)
    assert set(by_article.articles) == {full.prompts[0].article_id, full.prompts[2].article_id}
    assert by_article.prompts == full.prompts[:4] and set(by_article.evidence) == {
        p.prompt_id for p in full.prompts[:4]
    }

    # Its own cache entry: the full split and the selection never overwrite each other.
    load_processed("train", DataConfig(), root)
    load_processed("train", DataConfig(), root, select=PromptSelection(n_prompts=3, seed=7))
    assert len(_cache_files()) == 2 and len(built) == 2, "the selection was read back from its cache"
    with pytest.raises(ValueError, match="exactly one"):
        PromptSelection(n_prompts=3, n_articles=2)


def test_data_config_rejects_bad_values() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        DataConfig(max_words=2)
    with pytest.raises(ValidationError):
        DataConfig(passage_mode="paragraphs")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        DataConfig(negatives_per_querry=3)  # type: ignore[call-arg]


# ---------------------------------------------------------------------------------- sampling, stats
def test_sample_training_triples(train: ProcessedSplit) -> None:
    a = sample_training_triples(train, "hybrid", 2, random.Random(3))
    b = sample_training_triples(train, "hybrid", 2, random.Random(3))
    assert [(ex.prompt.prompt_id, pos, negs) for ex, pos, negs in a] == [
        (ex.prompt.prompt_id, pos, negs) for ex, pos, negs in b
    ]
    assert len(a) == len(train.examples)
    for ex, pos, negs in a:
        assert pos in ex.positives
        assert negs == ex.negatives["hybrid"][:2]
    with pytest.raises(ValueError, match="Unknown negative strategy"):
        sample_training_triples(train, "easy", 2, random.Random(0))


def test_split_stats(train: ProcessedSplit) -> None:
    stats = split_stats(train)
    assert stats["articles"] == 3
    assert stats["prompts"] == 6
    assert stats["evidence_spans"] == 6
    assert stats["passages"] == 15
    assert stats["prompts_with_positive"] == 6
    assert stats["positives_per_prompt"] == 1.0
    assert "_build_seconds" not in stats["dropped"]
    assert set(stats["negatives"]) == set(NEGATIVE_STRATEGIES)
    assert stats["negatives"]["random"]["mean_per_query"] == 4.0
    assert stats["negatives"]["random"]["guard_removed_total"] == 6
    subj = stats["negatives"]
    assert subj["subjective"]["mean_subjectivity"] >= subj["random"]["mean_subjectivity"]
