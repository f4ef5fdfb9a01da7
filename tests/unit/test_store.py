"""cera_rag.store: Chroma clients and collections, encoder records, idempotent indexing, queries with spans."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cera_rag import store
from cera_rag.data.passages import Passage
from cera_rag.errors import ConfigError
from cera_rag.store import CollectionMismatchError, StoreError

QUERY = "Does aspirin lower pain compared with placebo?"
RECORDS = [
    ("p1", "Pain score was significantly lower with aspirin than placebo.", {"article_id": "a1", "year": 2019}),
    ("p2", "Headache duration was reduced in the aspirin group.", {"article_id": "a1", "year": 2019}),
    ("p3", "No difference in blood pressure was seen.", {"article_id": "a2", "year": 2021}),
    ("p4", "Mortality risk was higher in the control group.", {"article_id": "a2", "year": 2021}),
    ("p5", "Insulin dose was increased daily for two weeks.", {"article_id": "a3", "year": 2023}),
]


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> Any:
    return store.load_encoder(tiny_bert_dir)


@pytest.fixture()
def coll(encoder: Any, tmp_path: Path) -> Any:
    return store.open_for_encoder(encoder, path=tmp_path / "chroma", name="unit-test")


class FailingEncoder:
    """Wraps an encoder and fails on the n-th ``encode_passages`` call (an interrupted indexing run)."""

    def __init__(self, encoder: Any, fail_on_call: int) -> None:
        self._encoder, self.calls, self.fail_on_call = encoder, 0, fail_on_call
        self.name, self.dim, self.config = encoder.name, encoder.dim, encoder.config

    def encode_passages(self, texts: Any, **kw: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        return self._encoder.encode_passages(texts, **kw)


# ------------------------------------------------------------------------------------ clients
def test_get_client_embedded_and_argument_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = store.get_client(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    assert client.heartbeat() > 0
    with pytest.raises(StoreError, match="not both"):
        store.get_client(tmp_path, host="127.0.0.1")
    monkeypatch.setenv("CERA_CHROMA_DIR", str(tmp_path / "env"))
    assert store.default_store_path() == tmp_path / "env"


def test_unreachable_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}"):
        store.get_client(host="127.0.0.1", port=port)


# ------------------------------------------------------------------------------------ collections
def test_open_collection_records_encoder_and_ip_space(encoder: Any, coll: Any) -> None:
    info = store.collection_encoder(coll)
    assert info == {
        "encoder": str(Path(encoder.name).resolve()),
        "weights": store.weights_digest(encoder.name),
        "dim": 32,
        "pooling": "mean",
        "normalize": True,
        "space": "ip",
    }
    assert coll.metadata[store.META_DIM] == encoder.dim


def test_reopen_same_encoder_and_relative_path(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tiny_bert_dir.parent)
    rel = store.load_encoder(tiny_bert_dir.name)  # a relative path to the same folder
    first = store.open_for_encoder(rel, path=tmp_path / "c", name="rel-test")
    monkeypatch.chdir(tmp_path)
    again = store.open_for_encoder(store.load_encoder(tiny_bert_dir), path=tmp_path / "c", name="rel-test")
    assert again.id == first.id
    assert store.canonical_encoder_name("facebook/contriever") == "facebook/contriever"


def test_the_same_weights_in_a_moved_folder_match_and_retrained_weights_do_not(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """A new virtual environment or checkout moves the model folder; the index must stay usable."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    first = store.open_for_encoder(store.load_encoder(tiny_bert_dir), path=tmp_path / "c", name="moved")
    assert first.metadata[store.META_WEIGHTS] is not None
    moved = shutil.copytree(tiny_bert_dir, tmp_path / "elsewhere" / "model")
    again = store.open_for_encoder(store.load_encoder(moved), path=tmp_path / "c", name="moved")
    assert again.id == first.id

    retrained = shutil.copytree(tiny_bert_dir, tmp_path / "retrained")
    weights = next(retrained.glob("*.safetensors"))
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + torch.ones_like(tensors[name])
    save_file(tensors, weights)
    with pytest.raises(CollectionMismatchError, match="encoder"):
        store.open_for_encoder(store.load_encoder(retrained), path=tmp_path / "c", name="moved")


def test_mismatches_raise(encoder: Any, coll: Any, tmp_path: Path) -> None:
    path = tmp_path / "chroma"
    with pytest.raises(CollectionMismatchError, match="dimension 32 \\(you gave 64\\)"):
        store.open_collection(encoder.name, 64, path=path, name="unit-test")
    with pytest.raises(CollectionMismatchError, match="encoder"):
        store.open_collection("other/model", 32, path=path, name="unit-test")
    with pytest.raises(CollectionMismatchError, match="pooling 'mean' \\(you gave 'cls'\\)"):
        store.open_collection(encoder.name, 32, path=path, name="unit-test", pooling="cls")
    with pytest.raises(CollectionMismatchError, match="normalize"):
        store.open_collection(encoder.name, 32, path=path, name="unit-test", normalize=False)
    # pooling/normalisation unknown on either side: not compared
    store.open_collection(encoder.name, 32, path=path, name="unit-test")
    assert issubclass(CollectionMismatchError, ConfigError)


def test_an_empty_plain_chroma_collection_is_adopted_and_a_filled_one_refused(
    encoder: Any, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    client = store.get_client(tmp_path)
    mine = client.get_or_create_collection("mine", metadata={"owner": "me"})  # plain Chroma: l2, default EF
    adopted = store.open_for_encoder(encoder, client=client, name="mine")
    assert adopted.id == mine.id
    assert adopted.metadata["owner"] == "me" and adopted.metadata[store.META_ENCODER] == encoder.name
    assert store.collection._space(adopted) == "l2"
    store.index_passages(encoder, adopted, [("a", "Pain was lower with aspirin."), ("b", "The weather is nice.")])
    ip = store.open_for_encoder(encoder, client=client, name="cera-made")
    store.index_passages(encoder, ip, [("a", "Pain was lower with aspirin."), ("b", "The weather is nice.")])
    got = store.query(encoder, adopted, "aspirin pain", k=2, rationales=False)
    want = store.query(encoder, ip, "aspirin pain", k=2, rationales=False)
    assert [h.id for h in got] == [h.id for h in want], "l2 on unit vectors ranks like the dot product"
    assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4), "and scores the same"

    filled = client.create_collection("plain-filled", embedding_function=None)
    filled.add(ids=["x"], embeddings=[[0.0] * encoder.dim], documents=["someone else's vectors"])
    with pytest.raises(CollectionMismatchError, match="does not record a CERA encoder"):
        store.open_for_encoder(encoder, client=client, name="plain-filled")

    contriever_style = store.load_encoder(tiny_bert_dir, contriever=True)
    client.create_collection("plain-l2", embedding_function=None)
    with pytest.raises(CollectionMismatchError, match="'l2'.*normalised"):
        store.open_for_encoder(contriever_style, client=client, name="plain-l2")
    assert store.collection_encoder(client.get_collection("plain-l2"))["encoder"] is None, "nothing written"
    meta = {store.META_ENCODER: encoder.name, store.META_DIM: 32}
    client.create_collection("l2-coll", embedding_function=None, configuration={"hnsw": {"space": "l2"}}, metadata=meta)
    with pytest.raises(CollectionMismatchError, match="'l2'"):
        store.open_collection(encoder.name, 32, client=client, name="l2-coll", normalize=False)


def test_plain_chroma_queries_a_cera_collection_with_query_texts(encoder: Any, coll: Any, tmp_path: Path) -> None:
    """The collection's configuration names the CERA embedding function; Chroma's own query path uses it."""
    store.index_passages(encoder, coll, [("a", "Pain was lower with aspirin."), ("b", "The weather is nice.")])
    config = coll.configuration_json["embedding_function"]
    assert config["name"] == "cera" and config["config"]["model"] == store.canonical_encoder_name(encoder.name)
    plain = store.get_client(tmp_path / "chroma").get_collection("unit-test")  # no embedding function passed
    result = plain.query(query_texts=["aspirin pain"], n_results=2, include=["distances"])
    hits = store.query(encoder, coll, "aspirin pain", k=2, rationales=False)
    assert result["ids"][0] == [h.id for h in hits]
    assert [1 - d for d in result["distances"][0]] == pytest.approx([h.score for h in hits], abs=1e-5)

    from cera_rag.chroma_embedding import CERAEmbeddingFunction

    rebuilt = CERAEmbeddingFunction.build_from_config(config["config"])
    assert rebuilt.encoder is encoder, "the process's encoder is reused, not loaded again"
    assert rebuilt.embed_query(["aspirin pain"])[0] == pytest.approx(encoder.encode_queries(["aspirin pain"])[0])
    assert rebuilt(["Pain was lower."])[0] == pytest.approx(encoder.encode_passages(["Pain was lower."])[0])
    with pytest.raises(ValueError, match="cannot change"):
        rebuilt.validate_config_update(config["config"], {**config["config"], "model": "other/model"})
    assert rebuilt.supported_spaces() == ["ip"]


def test_missing_collection_without_create(encoder: Any, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="No collection"):
        store.open_for_encoder(encoder, path=tmp_path, name="absent", create=False)


# ------------------------------------------------------------------------------------ indexing
def test_index_is_idempotent_and_counts_duplicates(encoder: Any, coll: Any) -> None:
    report = store.index_passages(encoder, coll, [*RECORDS, RECORDS[0]], batch_size=2)
    assert (report.added, report.skipped, report.duplicates) == (5, 0, 1)
    assert report.ids == [r[0] for r in RECORDS]
    again = store.index_passages(encoder, coll, RECORDS)
    assert (again.added, again.skipped) == (0, 5)
    assert coll.count() == 5
    stored = coll.get(ids=["p1"], include=["documents", "metadatas", "embeddings"])
    assert stored["documents"] == [RECORDS[0][1]]
    meta = {k: v for k, v in stored["metadatas"][0].items() if not k.startswith("cera_rationale_")}
    assert meta == RECORDS[0][2]
    np.testing.assert_allclose(stored["embeddings"][0], encoder.encode_passages([RECORDS[0][1]])[0], atol=1e-6)


def test_interrupted_index_resumes(encoder: Any, coll: Any) -> None:
    failing = FailingEncoder(encoder, fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        store.index_passages(failing, coll, RECORDS, batch_size=2)
    assert coll.count() == 2  # the first batch was committed
    report = store.index_passages(encoder, coll, RECORDS, batch_size=2)
    assert (report.added, report.skipped) == (3, 2)
    assert sorted(coll.get(include=[])["ids"]) == sorted(r[0] for r in RECORDS)


def test_index_checks_the_encoder(encoder: Any, coll: Any, tiny_bert_dir: Path) -> None:
    contriever_style = store.load_encoder(tiny_bert_dir, contriever=True)
    with pytest.raises(CollectionMismatchError):
        store.index_passages(contriever_style, coll, RECORDS)
    with pytest.raises(ValueError, match="batch_size"):
        store.index_passages(encoder, coll, RECORDS, batch_size=0)


def test_index_passage_objects_with_deterministic_ids(encoder: Any, coll: Any, tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("Pain was lower with aspirin. Blood pressure did not change.\n")
    (tmp_path / "docs" / "sub" / "b.txt").write_text("Headache duration fell.\n\nMortality was higher.\n")
    passages = store.passages_from_directory(tmp_path / "docs")
    assert {p.article_id for p in passages} == {"a", "sub/b"}
    assert all(isinstance(p, Passage) for p in passages)
    report = store.index_passages(encoder, coll, passages)
    assert report.ids == [p.passage_id for p in passages]
    assert store.index_passages(encoder, coll, store.passages_from_directory(tmp_path / "docs")).added == 0
    got = coll.get(ids=[passages[0].passage_id], include=["metadatas"])["metadatas"][0]
    got = {k: v for k, v in got.items() if not k.startswith("cera_rationale_")}
    assert got == {"article_id": passages[0].article_id, "passage_index": 0, "start": passages[0].start,
                   "end": passages[0].end}  # fmt: skip
    with pytest.raises(StoreError, match="not a folder"):
        store.passages_from_directory(tmp_path / "missing")
    with pytest.raises(StoreError, match="No \\*.md files"):
        store.passages_from_directory(tmp_path / "docs", pattern="*.md")


def test_passages_from_split(synthetic_data_dir: Path) -> None:
    passages = store.passages_from_split("validation", data_dir=synthetic_data_dir)
    assert passages and {p.article_id for p in passages} == {"1003"}


def test_scalar_metadata_and_records() -> None:
    meta = store.indexing._scalar_metadata(
        {"a": 1, "b": None, "c": ["x", "y"], "d": {"k": 1}, "e": [], "f": [1, "x"], "g": np.float32(0.5), "h": True}
    )
    assert meta == {"a": 1, "c": ["x", "y"], "d": '{"k": 1}', "e": "[]", "f": '[1, "x"]', "g": 0.5, "h": True}
    assert store.as_record(("i", "t")) == ("i", "t", {})
    assert store.as_record((1, "t", {"k": "v"})) == ("1", "t", {"k": "v"})
    with pytest.raises(TypeError, match="Cannot index"):
        store.as_record("just text")


# ------------------------------------------------------------------------------------ queries
def test_query_scores_ranking_and_spans(encoder: Any, coll: Any) -> None:
    store.index_passages(encoder, coll, RECORDS)
    hits = store.query(encoder, coll, QUERY, k=3)
    q = encoder.encode_queries([QUERY])[0]
    dots = {i: float(encoder.encode_passages([t])[0] @ q) for i, t, _ in RECORDS}
    assert [h.id for h in hits] == sorted(dots, key=lambda i: -dots[i])[:3]
    for h in hits:
        assert h.score == pytest.approx(dots[h.id], abs=1e-4)
        expected = encoder.rationale_spans(QUERY, h.text)
        assert [(s["start"], s["end"], s["text"]) for s in h.spans] == [(s.start, s.end, s.text) for s in expected]
        meta = h.metadata_with_spans()
        assert meta["cera_id"] == h.id and store.SPANS_KEY in meta
    assert len(store.query(encoder, coll, QUERY, k=50)) == 5
    assert {h.id for h in store.query(encoder, coll, QUERY, k=5, where={"article_id": "a2"})} == {"p3", "p4"}
    assert [h.id for h in store.query(encoder, coll, QUERY, k=5, where_document={"$contains": "Insulin"})] == ["p5"]
    assert all(h.spans == [] for h in store.query(encoder, coll, QUERY, rationales=False))
    assert store.query(encoder, coll, QUERY, k=0) == []
    (everything,) = store.query(encoder, coll, QUERY, k=1, top_fraction=1.0)
    assert [s["text"] for s in everything.spans] == [everything.text]  # every word kept, merged into one span


def _same_spans(got: Any, want: Any) -> bool:
    """Same offsets and texts; weights equal up to float noise (batch padding differs)."""
    return [(d["start"], d["end"], d["text"]) for d in got] == [(d["start"], d["end"], d["text"]) for d in want] and (
        np.allclose([d["weight"] for d in got], [d["weight"] for d in want], atol=1e-5)
    )


def test_spans_are_stored_at_indexing_and_read_back(
    encoder: Any, coll: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Passage spans do not depend on the query (a bi-encoder), so they are stored with the vector.
    store.index_passages(encoder, coll, RECORDS)
    got = coll.get(ids=["p1"], include=["metadatas"])["metadatas"][0]
    assert got[store.SPANS_FRACTION_KEY] == pytest.approx(0.2) and got["year"] == 2019
    expected = {i: [s.to_dict() for s in encoder.rationale_spans(QUERY, t)] for i, t, _ in RECORDS}
    assert _same_spans(store.parse_spans(got[store.SPANS_KEY]), expected["p1"])

    calls: list[int] = []
    original = encoder.rationale_spans_batch

    def counting(query: str, passages: Any, top_fraction: float = 0.2) -> Any:
        calls.append(len(passages))
        return original(query, passages, top_fraction=top_fraction)

    monkeypatch.setattr(encoder, "rationale_spans_batch", counting)
    hits = store.query(encoder, coll, QUERY, k=5)
    assert calls == []  # read from metadata, no second forward pass
    for h in hits:
        assert _same_spans(h.spans, expected[h.id])
        assert store.SPANS_FRACTION_KEY not in h.metadata and store.SPANS_KEY not in h.metadata
        assert set(h.metadata) == {"article_id", "year"}
    # another top_fraction than the stored one: computed at query time, and equal to computing directly
    wide = store.query(encoder, coll, QUERY, k=5, top_fraction=0.5)
    assert calls == [5]
    for h in wide:
        assert _same_spans(h.spans, [s.to_dict() for s in original(QUERY, [h.text], top_fraction=0.5)[0]])

    fresh = store.query(encoder, coll, QUERY, k=5, stored_spans=False)
    assert calls == [5, 5] and all(_same_spans(h.spans, expected[h.id]) for h in fresh)
    assert all(store.SPANS_KEY not in h.metadata for h in store.query(encoder, coll, QUERY, rationales=False))

    # a collection indexed without spans (or by an older version) gets them computed, identically
    plain = store.open_for_encoder(encoder, path=tmp_path / "plain", name="plain")
    store.index_passages(encoder, plain, RECORDS, rationales=False)
    assert store.SPANS_KEY not in plain.get(ids=["p1"], include=["metadatas"])["metadatas"][0]
    calls.clear()
    assert all(_same_spans(h.spans, expected[h.id]) for h in store.query(encoder, plain, QUERY, k=5))
    assert calls == [5]
    with pytest.raises(ValueError, match="top_fraction"):
        store.index_passages(encoder, plain, RECORDS, top_fraction=0.0)


def test_corrupt_stored_spans_are_recomputed(encoder: Any, coll: Any) -> None:
    store.index_passages(encoder, coll, RECORDS)
    coll.update(ids=["p1"], metadatas=[{store.SPANS_KEY: "not json", store.SPANS_FRACTION_KEY: 0.2}])
    (hit,) = [h for h in store.query(encoder, coll, QUERY, k=5) if h.id == "p1"]
    assert _same_spans(hit.spans, [s.to_dict() for s in encoder.rationale_spans(QUERY, hit.text)])


def test_query_empty_collection(encoder: Any, coll: Any) -> None:
    assert store.query(encoder, coll, QUERY) == []


def test_contriever_style_scores_are_unnormalised_dot_products(tiny_bert_dir: Path, tmp_path: Path) -> None:
    enc = store.load_encoder(tiny_bert_dir, contriever=True)
    assert (enc.config.pooling, enc.config.normalize) == ("mean", False)
    c = store.open_for_encoder(enc, path=tmp_path, name="contriever-passages")
    store.index_passages(enc, c, RECORDS)
    q = enc.encode_queries([QUERY])[0]
    assert abs(float(np.linalg.norm(q)) - 1.0) > 1e-3
    for h in store.query(enc, c, QUERY, k=5):
        p = enc.encode_passages([h.text])[0]
        assert h.score == pytest.approx(float(p @ q), rel=1e-4, abs=1e-3)
    assert store.distance_to_score(-1.5) == 2.5


def test_load_encoder_arguments(tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Give a model"):
        store.load_encoder(None)
    enc = store.load_encoder(tiny_bert_dir, pooling="cls", normalize=False)
    assert (enc.config.pooling, enc.config.normalize) == ("cls", False)
    import huggingface_hub

    from cera_rag.paths import DEFAULT_BASE_MODEL

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    assert store.default_contriever_model() == DEFAULT_BASE_MODEL  # offline, not cached: the MiniLM stand-in
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: str(tmp_path / "config.json"))
    assert store.default_contriever_model() == store.CONTRIEVER_MODEL  # offline but cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert store.default_contriever_model() == store.CONTRIEVER_MODEL


def test_index_texts_gives_deterministic_ids_and_checks_lengths(encoder: Any, coll: Any) -> None:
    ids = store.index_texts(encoder, coll, ["Pain fell.", "BP rose."], [{"a": 1}, None], [None, "bp"])
    assert ids == [store.text_id("Pain fell."), "bp"]
    assert store.index_texts(encoder, coll, ["Pain fell."]) == ids[:1] and coll.count() == 2, "re-adding: a no-op"
    assert coll.get(ids=[ids[0]], include=["metadatas"])["metadatas"][0]["a"] == 1
    with pytest.raises(ValueError, match="same length"):
        store.index_texts(encoder, coll, ["a", "b"], ids=["x"])
    with pytest.raises(ValueError, match="same length"):
        store.index_texts(encoder, coll, ["a"], metadatas=[{}, {}])


def test_named_encoder_configurations(tiny_bert_dir: Path) -> None:
    from cera_rag.encoders import ENCODER_CONFIGS, is_contriever_style, parse_encoder_spec

    style = store.load_encoder(f"{tiny_bert_dir}@contriever")
    assert (style.config.pooling, style.config.normalize) == ("mean", False) and is_contriever_style(style)
    assert store.load_encoder(f"{tiny_bert_dir}@cls").config.pooling == "cls"
    flag = store.load_encoder(tiny_bert_dir, contriever=True)
    assert flag.config.model_dump() == style.config.model_dump(), "the function's flag is the same configuration"
    assert not is_contriever_style(store.load_encoder(tiny_bert_dir))
    assert parse_encoder_spec(str(tiny_bert_dir)) == (str(tiny_bert_dir), {})
    assert parse_encoder_spec("facebook/contriever@contriever") == (
        "facebook/contriever",
        ENCODER_CONFIGS["contriever"],
    )
    assert parse_encoder_spec("contriever")[1] == ENCODER_CONFIGS["contriever"]
    with pytest.raises(ConfigError, match="@contriever"):
        parse_encoder_spec("minilm@dot")
    with pytest.raises(ConfigError, match="names no model"):
        parse_encoder_spec("@cls")


def test_atomic_writes_get_the_mode_a_plain_write_would(tmp_path: Path) -> None:
    import os
    import stat

    from cera_rag.atomic import write_text

    plain = tmp_path / "plain.txt"
    plain.write_text("x", encoding="utf-8")
    atomic = write_text(tmp_path / "atomic.txt", "x")
    assert stat.S_IMODE(os.stat(atomic).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


class _FlakyCollection:
    """A collection whose first ``fails`` queries fail as Chroma 1.x does before a segment is on disk."""

    def __init__(self, fails: int, message: str = "Error creating hnsw segment reader: Nothing found on disk") -> None:
        self.fails, self.message, self.calls = fails, message, 0

    def query(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.fails:
            raise RuntimeError(f"Error executing plan: Internal error: {self.message}")
        return {"ids": [["a"]], "documents": [["text"]], "metadatas": [[{}]], "distances": [[0.25]]}


def test_a_query_before_the_segment_is_on_disk_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chroma fails a query while another client's first writes are compacted; the query waits and succeeds."""
    from cera_rag.store import search

    monkeypatch.setattr(search, "QUERY_RETRY_WAITS", (0.0,) * 3)
    flaky = _FlakyCollection(fails=2)
    assert search.query_collection(flaky, query_embeddings=[[0.0]], n_results=1)["ids"] == [["a"]]
    assert flaky.calls == 3
    always = _FlakyCollection(fails=10)
    with pytest.raises(RuntimeError, match="Nothing found on disk"):
        search.query_collection(always, query_embeddings=[[0.0]], n_results=1)
    assert always.calls == 4  # three retries, then the error
    other = _FlakyCollection(fails=1, message="collection does not exist")
    with pytest.raises(RuntimeError, match="does not exist"):
        search.query_collection(other, query_embeddings=[[0.0]], n_results=1)
    assert other.calls == 1  # any other error is not retried
