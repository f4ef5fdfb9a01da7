"""Bad inputs: each is refused with an error that names the problem, or has a documented, tested behaviour.

See docs/RELIABILITY.md for the list of guarantees these tests back.
"""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import write_synthetic_dataset
from rel_support import FakeHTTPServer, free_port, json_reply, openai_models_reply
from typer.testing import CliRunner

from cera_rag import store
from cera_rag.data.reader import load_split
from cera_rag.errors import CheckpointError, DataError
from cera_rag.model import CERAEncoder, TruncationWarning
from cera_rag.spans import check_spans, parse_spans
from cera_rag.store import CollectionMismatchError, StoreError

QUERY = "Does aspirin lower pain compared with placebo?"
RECORDS = [
    ("p1", "Pain score was significantly lower with aspirin than placebo.", {"article_id": "a1"}),
    ("p2", "Headache duration was reduced in the aspirin group.", {"article_id": "a1"}),
    ("p3", "No difference in blood pressure was seen.", {"article_id": "a2"}),
    ("p4", "Mortality risk was higher in the control group.", {"article_id": "a2"}),
]
#: Mixed scripts: CJK, Arabic (right-to-left), emoji with skin tone and ZWJ sequences, combining marks.
UNICODE_PASSAGES = [
    "阿司匹林组的疼痛评分显著降低 (p < 0.001)。",
    "انخفضت درجة الألم بشكل ملحوظ مع الأسبرين مقارنة بالدواء الوهمي",
    "Pain 😀👍🏽 was lower 👨‍👩‍👧 with aspirin 🎉 than placebo.",
    "Mixed 中文 and العربية and ελληνικά with aspirin: pain score 2.1 vs 4.3 ✅",
    "Café naïve résumé: İstanbul ﬁnal ß straße e\u0301 a\u0308",
    "\u200bzero\u200dwidth\u2060joiners and\u00a0no-break\u3000spaces\ttabs\r\nnewlines",
]


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir: Path) -> CERAEncoder:
    return store.load_encoder(tiny_bert_dir)


@pytest.fixture()
def coll(encoder: CERAEncoder, tmp_path: Path) -> Any:
    c = store.open_for_encoder(encoder, path=tmp_path / "chroma", name="rel-bad-inputs")
    store.index_passages(encoder, c, RECORDS)
    return c


def _cli(*args: str) -> Any:
    from cera_rag.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=True)


# ------------------------------------------------------------------------------------ queries
@pytest.mark.parametrize("bad", ["", "   ", "\n\t \u3000"], ids=["empty", "spaces", "whitespace-mix"])
def test_empty_or_whitespace_query_is_refused_everywhere(encoder: CERAEncoder, coll: Any, bad: str) -> None:
    from langchain_cera import CERARetriever as LCRetriever
    from llama_index.retrievers.cera import CERARetriever as LIRetriever

    with pytest.raises(ValueError, match="empty or whitespace"):
        encoder.encode_queries([bad])
    with pytest.raises(ValueError, match="empty or whitespace"):
        store.query(encoder, coll, bad)
    with pytest.raises(ValueError, match="empty or whitespace"):
        LIRetriever(encoder, coll).retrieve(bad)
    with pytest.raises(ValueError, match="empty or whitespace"):
        LCRetriever(encoder=encoder, collection=coll).invoke(bad)


def test_100k_character_query_is_truncated_with_a_warning(encoder: CERAEncoder, coll: Any) -> None:
    long_query = ("Does aspirin lower pain compared with placebo? " * 2200)[:100_000]
    assert len(long_query) == 100_000
    with pytest.warns(TruncationWarning, match=r"exceed 64 tokens and are truncated"):
        vec = encoder.encode_queries([long_query])
    assert vec.shape == (1, encoder.dim) and np.isfinite(vec).all()
    # only the first max_query_length tokens count: the same vector as the query cut to its prefix
    ids = encoder.tokenizer([long_query], truncation=True, max_length=64)["input_ids"][0]
    prefix = encoder.tokenizer.decode(ids, skip_special_tokens=True)
    np.testing.assert_allclose(vec, encoder.encode_queries([prefix]), atol=1e-5)
    with pytest.warns(TruncationWarning):
        hits = store.query(encoder, coll, long_query, k=2)
    assert len(hits) == 2 and all(np.isfinite(h.score) for h in hits)


def test_truncation_warning_is_exact_for_dense_scripts(encoder: CERAEncoder) -> None:
    """Texts with about one token per character (CJK, digits and punctuation) are warned about too."""
    limit = encoder.config.max_passage_length
    for text in ["1." * 300, "疼痛评分" * 100]:
        assert len(text) < 3 * limit  # short in characters, long in tokens
        assert len(encoder.tokenizer([text])["input_ids"][0]) > limit
        with pytest.warns(TruncationWarning, match="truncated"):
            encoder.encode_passages([text])
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        encoder.encode_passages(["pain score " * 50])  # 100 tokens: no warning
        encoder.encode_queries(["does aspirin lower pain"])


@pytest.mark.parametrize("bad", [None, 3, 4.5, b"bytes", ["nested"], {"q": 1}])
def test_non_string_query_is_a_type_error(encoder: CERAEncoder, coll: Any, bad: Any) -> None:
    with pytest.raises(TypeError, match=r"queries\[0\] is .*, not str"):
        encoder.encode_queries([bad])
    with pytest.raises(TypeError, match="not str"):
        store.query(encoder, coll, bad)
    with pytest.raises(TypeError, match="query must be a str"):
        encoder.rationale_spans_batch(bad, ["text"])


def test_one_string_instead_of_a_list_is_a_type_error(encoder: CERAEncoder) -> None:
    with pytest.raises(TypeError, match="list of strings, not one string"):
        encoder.encode_queries("Does aspirin lower pain?")
    with pytest.raises(TypeError, match="list of strings, not one string"):
        encoder.encode_passages("Pain was lower.")


def test_empty_lists_give_empty_results(encoder: CERAEncoder, coll: Any) -> None:
    assert encoder.encode_queries([]).shape == (0, encoder.dim)
    assert encoder.encode_passages([]).shape == (0, encoder.dim)
    vectors, spans = encoder.encode_passages([], return_rationales=True)
    assert vectors.shape == (0, encoder.dim) and spans == []
    assert encoder.rationale_spans_batch(QUERY, []) == []
    assert encoder.score(QUERY, []).shape == (0,)
    before = coll.count()
    report = store.index_passages(encoder, coll, [])
    assert (report.added, report.skipped, report.duplicates) == (0, 0, 0)
    assert coll.count() == before


def test_empty_passages_embed_and_have_no_spans(encoder: CERAEncoder) -> None:
    vectors, spans = encoder.encode_passages(["", "   "], return_rationales=True)
    assert np.isfinite(vectors).all() and spans == [[], []]


# ------------------------------------------------------------------------------------ documents
def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def test_directory_with_empty_and_binary_documents(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    docs = tmp_path / "docs"
    _write(docs / "good.txt", "Pain score was significantly lower with aspirin than placebo.\n")
    _write(docs / "empty.txt", "")
    _write(docs / "blank.txt", "  \n\n\t \n")
    _write(docs / "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    _write(docs / "latin1.txt", "Caf\xe9 au lait reduced pain.".encode("latin-1"))
    with caplog.at_level("WARNING", logger="cera_rag.store"):
        passages = store.passages_from_directory(docs)
    by_article: dict[str, list[str]] = {}
    for p in passages:
        by_article.setdefault(p.article_id, []).append(p.text)
    # empty and whitespace-only files give no passages; a binary file is skipped with a warning
    assert set(by_article) == {"good", "latin1"}
    assert any("image.txt" in r.getMessage() and "binary" in r.getMessage() for r in caplog.records)
    # non-UTF-8 text is read with U+FFFD replacement characters (documented), never an exception
    assert by_article["latin1"] == ["Caf\ufffd au lait reduced pain."]


def test_directory_of_nothing_indexable(tmp_path: Path, tiny_bert_dir: Path) -> None:
    with pytest.raises(StoreError, match="is not a folder"):
        store.passages_from_directory(tmp_path / "missing")
    (tmp_path / "none").mkdir()
    _write(tmp_path / "none" / "notes.md", "not a txt file")
    with pytest.raises(StoreError, match=r"No \*\.txt files under"):
        store.passages_from_directory(tmp_path / "none")
    only_empty = tmp_path / "only-empty"
    _write(only_empty / "a.txt", "")
    _write(only_empty / "b.txt", b"\x00\x01\x02binary")
    assert store.passages_from_directory(only_empty) == []
    common = ["--model", str(tiny_bert_dir), "--store", str(tmp_path / "chroma"), "-c", "rel-empty"]
    result = _cli("index", str(only_empty), *common)
    assert result.exit_code == 0, result.output
    assert "0 passages added, 0 already indexed" in result.output
    missing = _cli("index", str(tmp_path / "missing"), *common)
    assert isinstance(missing.exception, StoreError) and "is not a folder" in str(missing.exception)


def test_document_longer_than_the_model_is_split_into_passages(encoder: CERAEncoder, tmp_path: Path) -> None:
    sentence = "Pain score was significantly lower with aspirin than placebo at six weeks. "
    text = sentence * 2000  # ~24,000 words
    _write(tmp_path / "long" / "big.txt", text)
    for mode, budget in [("sentences", 64), ("windows", 50)]:
        passages = store.passages_from_directory(tmp_path / "long", mode=mode)
        assert len(passages) > 100
        assert all(len(p.text.split()) <= budget for p in passages)
        assert all(text[p.start : p.end] == p.text for p in passages)
        with warnings.catch_warnings():
            warnings.simplefilter("error", TruncationWarning)  # every passage fits the encoder
            encoder.encode_passages([p.text for p in passages[:64]])


def test_passage_longer_than_the_model_is_truncated_and_said_so(
    encoder: CERAEncoder, tmp_path: Path, tiny_bert_dir: Path
) -> None:
    long_passage = "Pain score was significantly lower with aspirin than placebo. " * 200
    coll = store.open_for_encoder(encoder, path=tmp_path / "chroma", name="rel-long")
    with pytest.warns(TruncationWarning, match="split long documents into passages first"):
        store.index_passages(encoder, coll, [("long", long_passage, {})])
    assert coll.count() == 1
    hits = store.query(encoder, coll, QUERY, k=1)  # spans stored at indexing: no second encode, no warning
    with pytest.warns(TruncationWarning):
        fresh = store.query(encoder, coll, QUERY, k=1, stored_spans=False)
    # the spans come from the embedded prefix and are valid offsets into the whole passage
    for hit in (hits[0], fresh[0]):
        check_spans(long_passage, hit.spans)
        assert all(s["end"] <= len(long_passage) for s in hit.spans)
    assert [(s["start"], s["end"]) for s in hits[0].spans] == [(s["start"], s["end"]) for s in fresh[0].spans]
    # one enormous "word" (no whitespace) cannot be split: it is one passage, truncated with a warning
    _write(tmp_path / "blob" / "blob.txt", "pain,score;" * 10_000)
    blob = store.passages_from_directory(tmp_path / "blob")
    assert len(blob) == 1 and len(blob[0].text) == 110_000
    with pytest.warns(TruncationWarning):
        store.index_passages(encoder, coll, blob)


@pytest.mark.parametrize("text", UNICODE_PASSAGES, ids=["cjk", "arabic", "emoji", "mixed", "accents", "spaces"])
def test_unicode_and_mixed_scripts_give_valid_span_offsets(encoder: CERAEncoder, text: str) -> None:
    for top_fraction in (0.2, 1.0):
        spans = encoder.rationale_spans(QUERY, text, top_fraction=top_fraction)
        assert spans, "every passage with words has at least one span"
        for s in spans:
            assert 0 <= s.start < s.end <= len(text)
            assert text[s.start : s.end] == s.text and np.isfinite(s.weight)
        assert [s.start for s in spans] == sorted(s.start for s in spans)
    vec = encoder.encode_queries([text])
    assert np.isfinite(vec).all()


def test_unicode_passages_through_store_and_retrievers(encoder: CERAEncoder, tmp_path: Path) -> None:
    from langchain_cera import CERARetriever as LCRetriever
    from llama_index.retrievers.cera import CERARetriever as LIRetriever

    coll = store.open_for_encoder(encoder, path=tmp_path / "chroma", name="rel-unicode")
    records = [(f"u{i}", t, {"lang": "mixed"}) for i, t in enumerate(UNICODE_PASSAGES)]
    store.index_passages(encoder, coll, records)
    got = coll.get(ids=[r[0] for r in records], include=["documents"])
    assert dict(zip(got["ids"], got["documents"], strict=True)) == {r[0]: r[1] for r in records}
    for query in ["阿司匹林 疼痛", "الألم", "😀 pain", QUERY]:
        hits = store.query(encoder, coll, query, k=len(records))
        assert {h.id for h in hits} == {r[0] for r in records}
        for h in hits:
            check_spans(h.text, h.spans)
        for n in LIRetriever(encoder, coll, similarity_top_k=3).retrieve(query):
            check_spans(n.node.get_content(), parse_spans(n.node.metadata))
        for d in LCRetriever(encoder=encoder, collection=coll, k=3).invoke(query):
            check_spans(d.page_content, parse_spans(d.metadata))


# ------------------------------------------------------------------------------------ checkpoints
def test_missing_model_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"does not exist.*cera-rag train"):
        CERAEncoder.from_pretrained(tmp_path / "no-such-model")
    with pytest.raises(CheckpointError, match="does not exist"):
        store.load_encoder(str(tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        CERAEncoder.from_pretrained(tmp_path / "empty")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "missing"])
def test_corrupt_or_missing_safetensors(tiny_bert_copy: Path, damage: str) -> None:
    weights = tiny_bert_copy / "model.safetensors"
    data = weights.read_bytes()
    if damage == "garbage":
        weights.write_bytes(b"this is not a safetensors file at all")
    elif damage == "truncated":  # an interrupted download
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        weights.write_bytes(b"")
    else:
        weights.unlink()
    match = "no \\*\\.safetensors" if damage == "missing" else "Could not load the model"
    with pytest.raises(CheckpointError, match=match):
        CERAEncoder.from_pretrained(tiny_bert_copy)


def test_pickle_only_checkpoint_is_refused(tiny_bert_copy: Path) -> None:
    (tiny_bert_copy / "model.safetensors").unlink()
    (tiny_bert_copy / "pytorch_model.bin").write_bytes(b"\x80\x04\x95pickle payload")
    with pytest.raises(CheckpointError, match="pickle weights only; cera-rag loads safetensors only"):
        CERAEncoder.from_pretrained(tiny_bert_copy)


def test_corrupt_cera_config(tiny_bert_copy: Path) -> None:
    (tiny_bert_copy / "cera_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        CERAEncoder.from_pretrained(tiny_bert_copy)
    (tiny_bert_copy / "cera_config.json").write_text(json.dumps({"pooling": "max"}), encoding="utf-8")
    with pytest.raises(CheckpointError, match="Invalid encoder settings"):
        CERAEncoder.from_pretrained(tiny_bert_copy)


# ------------------------------------------------------------------------------------ collections
def _bert_with_hidden(src: Path, dst: Path, hidden: int) -> Path:
    """A copy of the tiny BERT's tokenizer with a random model of another width."""
    import torch
    from transformers import BertConfig, BertModel

    shutil.copytree(src, dst)
    (dst / "model.safetensors").unlink()
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=sum(1 for _ in (src / "vocab.txt").open(encoding="utf-8")),
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=256,
    )
    BertModel(config).save_pretrained(dst, safe_serialization=True)
    return dst


def test_collection_built_with_another_encoder_or_dimension(
    encoder: CERAEncoder, coll: Any, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from langchain_cera import CERARetriever as LCRetriever
    from llama_index.retrievers.cera import CERARetriever as LIRetriever

    wider = store.load_encoder(_bert_with_hidden(tiny_bert_dir, tmp_path / "wide", 48))
    same_dim = store.load_encoder(_bert_with_hidden(tiny_bert_dir, tmp_path / "other", 32))
    path = tmp_path / "chroma"
    with pytest.raises(CollectionMismatchError, match=r"dimension 32 \(you gave 48\)"):
        store.open_for_encoder(wider, path=path, name="rel-bad-inputs")
    with pytest.raises(CollectionMismatchError, match=r"encoder .* \(you gave .*other"):
        store.open_for_encoder(same_dim, path=path, name="rel-bad-inputs")
    contriever_style = store.load_encoder(tiny_bert_dir, contriever=True)
    with pytest.raises(CollectionMismatchError, match="normalize"):
        store.open_for_encoder(contriever_style, path=path, name="rel-bad-inputs")
    for bad in (wider, same_dim):
        with pytest.raises(CollectionMismatchError):
            LIRetriever(bad, coll)
        with pytest.raises(CollectionMismatchError):
            LCRetriever(encoder=bad, collection=coll)
        before = coll.count()
        with pytest.raises(CollectionMismatchError, match="not comparable"):
            store.index_passages(bad, coll, [("x", "Pain was lower.", {})])
        assert coll.count() == before  # nothing written
    cli = _cli("query", QUERY, "--model", str(tmp_path / "wide"), "--store", str(path), "-c", "rel-bad-inputs")
    assert isinstance(cli.exception, CollectionMismatchError)


# ------------------------------------------------------------------------------------ data
def _rewrite_csv(path: Path, drop: str) -> None:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = [f for f in rows[0] if f != drop]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def test_missing_data_directory_files_and_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"Data folder .* does not exist"):
        load_split(tmp_path / "nowhere", "train")
    root = write_synthetic_dataset(tmp_path / "ei")
    assert load_split(root, "train").prompts  # the intact copy loads
    with pytest.raises(DataError, match="Unknown split 'dev'"):
        load_split(root, "dev")
    with pytest.raises(DataError, match="Missing split file"):
        load_split(root, "test")
    _rewrite_csv(root / "annotations" / "prompts_merged.csv", drop="Outcome")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['Outcome'\]"):
        load_split(root, "train")
    (root / "annotations" / "prompts_merged.csv").unlink()
    with pytest.raises(DataError, match=r"Missing file .*prompts_merged\.csv"):
        load_split(root, "train")


def test_bad_rows_in_data_files(tmp_path: Path) -> None:
    root = write_synthetic_dataset(tmp_path / "ei")
    ann = root / "annotations" / "v2_annotations.csv"
    ann.write_text(ann.read_text(encoding="utf-8").replace(",0,UNK,", ",0,UNK,abc", 1), encoding="utf-8")
    with pytest.raises(DataError, match="not an integer offset"):
        load_split(root, "train")
    root2 = write_synthetic_dataset(tmp_path / "ei2")
    (root2 / "annotations" / "txt_files" / "PMC1000.txt").write_bytes(b"\xff\xfe not utf-8 \x80")
    with pytest.raises(DataError, match="not valid UTF-8"):
        load_split(root2, "train")
    root3 = write_synthetic_dataset(tmp_path / "ei3")
    (root3 / "annotations" / "txt_files" / "PMC1001.txt").unlink()
    with pytest.raises(DataError, match="Missing article text"):
        load_split(root3, "train")
    (root3 / "annotations" / "splits" / "ev2_train_article_ids.txt").write_text("\n\n")
    with pytest.raises(DataError, match="is empty"):
        load_split(root3, "train")


# ------------------------------------------------------------------------------------ LLM endpoints
def _endpoint(base_url: str) -> Any:
    from cera_rag.experiments.rag.llm import LLMEndpoint

    return LLMEndpoint(base_url=base_url, model="fake-model", timeout=5.0, max_retries=0, max_tokens=16)


def test_unreachable_llm_endpoint() -> None:
    pytest.importorskip("openai")
    from cera_rag.experiments.rag.errors import EndpointError
    from cera_rag.experiments.rag.llm import check_endpoint, endpoint_errors, langchain_llm, llamaindex_llm

    endpoint = _endpoint(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(EndpointError, match=r"not reachable.*Start the server"):
        check_endpoint(endpoint)
    with pytest.raises(EndpointError, match="not reachable"), endpoint_errors(endpoint, "generator"):
        llamaindex_llm(endpoint).complete("Does aspirin lower pain?")
    with pytest.raises(EndpointError, match="judge LLM endpoint .* not reachable"), endpoint_errors(endpoint, "judge"):
        langchain_llm(endpoint).invoke("Does aspirin lower pain?")


@pytest.mark.parametrize(
    "body",
    [
        (200, "application/json", b'{"choices": [{"message": {"content": "trunc'),
        (200, "text/html", b"<html><body>502 Bad Gateway</body></html>"),
        (200, "application/json", b'{"unexpected": "shape"}'),
        (200, "application/json", b"[1, 2, 3]"),
    ],
    ids=["torn-json", "html", "wrong-object", "json-list"],
)
def test_llm_endpoint_answering_garbage(body: tuple[int, str, bytes]) -> None:
    pytest.importorskip("openai")
    from cera_rag.experiments.rag.errors import EndpointError
    from cera_rag.experiments.rag.llm import check_endpoint, endpoint_errors, langchain_llm, llamaindex_llm

    with FakeHTTPServer({"/models": body, "/chat/completions": body}) as server:
        endpoint = _endpoint(server.base_url)
        with pytest.raises(EndpointError, match=r"LLM endpoint .*fake-model @ http://127\.0\.0\.1"):
            check_endpoint(endpoint)
        with pytest.raises(EndpointError, match="generator LLM endpoint"), endpoint_errors(endpoint, "generator"):
            llamaindex_llm(endpoint).complete("Does aspirin lower pain?")
        with pytest.raises(EndpointError, match="judge LLM endpoint"), endpoint_errors(endpoint, "judge"):
            langchain_llm(endpoint).invoke("Does aspirin lower pain?")


@pytest.mark.parametrize("status,match", [(500, "HTTP 500"), (401, "refused the API key"), (404, "answered 404")])
def test_llm_endpoint_http_errors(status: int, match: str) -> None:
    pytest.importorskip("openai")
    from cera_rag.experiments.rag.errors import EndpointError
    from cera_rag.experiments.rag.llm import check_endpoint, endpoint_errors, langchain_llm

    reply = json_reply({"error": {"message": "boom", "type": "server_error"}}, status=status)
    with FakeHTTPServer({"/models": reply, "/chat/completions": reply}) as server:
        endpoint = _endpoint(server.base_url)
        with pytest.raises(EndpointError, match=match):
            check_endpoint(endpoint)
        with pytest.raises(EndpointError, match=match), endpoint_errors(endpoint):
            langchain_llm(endpoint).invoke("q")


def test_model_list_without_the_model_is_only_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("openai")
    from cera_rag.experiments.rag.llm import check_endpoint

    with FakeHTTPServer({"/models": openai_models_reply("another-model")}) as server:
        with caplog.at_level("WARNING"):
            assert check_endpoint(_endpoint(server.base_url)) == ["another-model"]
    assert "does not list model 'fake-model'" in caplog.text
