from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cera_rag.errors import CheckpointError
from cera_rag.model import (
    CERAEncoder,
    EncoderConfig,
    length_sorted_batches,
    pool,
    spans_from_attention,
    token_lengths,
)

PASSAGES = [
    "Pain score was significantly lower with aspirin than placebo (mean 2.1 vs 4.3, p < 0.001).",
    "We believe aspirin may be an important treatment.",
    "No difference in blood pressure was seen (p = 0.41).",
    "headache",
]


@pytest.fixture()
def encoder(tiny_bert_dir: Path) -> CERAEncoder:
    return CERAEncoder.from_pretrained(tiny_bert_dir)


def test_tokenizer_fixture_knows_words(encoder: CERAEncoder) -> None:
    ids = encoder.tokenizer("aspirin placebo")["input_ids"]
    assert encoder.tokenizer.unk_token_id not in ids


def test_encode_shapes_dtype_and_norm(encoder: CERAEncoder) -> None:
    q = encoder.encode_queries(["does aspirin reduce pain?", "blood pressure"])
    p = encoder.encode_passages(PASSAGES, batch_size=2)
    assert q.shape == (2, 32) and p.shape == (4, 32)
    assert q.dtype == np.float32 and p.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)


def test_length_sorted_batches_match_one_by_one(encoder: CERAEncoder) -> None:
    batched = encoder.encode_passages(PASSAGES, batch_size=3)
    single = np.stack([encoder.encode_passages([t])[0] for t in PASSAGES])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_batches_group_texts_by_tokens_not_characters(encoder: CERAEncoder) -> None:
    # a short string of digits and symbols takes more wordpieces than a longer run of words
    dense = "1.2±0.3 9/4 7.5% 3·8"
    words = ["aspirin placebo pain score " * 2] * 3 + ["pain"] * 3 + [dense]
    lengths = token_lengths(encoder.tokenizer, words, 64)
    assert len(dense) < len(words[0]) and lengths[-1] > lengths[0]
    batches = list(encoder._batches(words, 64, batch_size=3))
    assert batches[0][0] == len(words) - 1  # the densest text leads, though it has few characters
    assert sorted(i for b in batches for i in b) == list(range(len(words)))
    assert list(length_sorted_batches([], 4)) == [] and list(encoder._batches([], 64, 4)) == []


def test_pooling_functions() -> None:
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    m = torch.tensor([[1, 1, 0]])
    assert pool(h, m, "cls").tolist() == [[1.0, 2.0]]
    assert pool(h, m, "mean").tolist() == [[2.0, 3.0]]


def test_unnormalised_contriever_style(tiny_bert_dir: Path) -> None:
    enc = CERAEncoder.from_pretrained(tiny_bert_dir, pooling="mean", normalize=False)
    p = enc.encode_passages(PASSAGES)
    assert not np.allclose(np.linalg.norm(p, axis=1), 1.0)


def test_save_load_round_trip_identical(encoder: CERAEncoder, tmp_path: Path) -> None:
    encoder.config.pooling = "cls"
    encoder.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    assert not list((tmp_path / "ckpt").glob("*.bin"))
    cfg = json.loads((tmp_path / "ckpt" / "cera_config.json").read_text())
    assert cfg["pooling"] == "cls"
    again = CERAEncoder.from_pretrained(tmp_path / "ckpt")
    assert again.config.pooling == "cls"
    np.testing.assert_array_equal(encoder.encode_passages(PASSAGES), again.encode_passages(PASSAGES))
    # saving over an existing checkpoint replaces it and leaves no temp folders behind
    encoder.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_fast_cls_attention_equals_eager(tiny_bert_dir: Path) -> None:
    from transformers import AutoModel

    enc = CERAEncoder.from_pretrained(tiny_bert_dir)
    eager = AutoModel.from_pretrained(tiny_bert_dir, attn_implementation="eager").eval()
    batch = enc.tokenize(PASSAGES, 64)
    with torch.no_grad():
        _, fast = enc(batch["input_ids"], batch["attention_mask"], return_attention=True)
        ref = eager(**batch, output_attentions=True).attentions[-1][:, :, 0].mean(1)
    assert fast is not None
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast.sum(-1), torch.ones(len(PASSAGES)))


def test_spans_are_valid_offsets(encoder: CERAEncoder) -> None:
    for passage in PASSAGES:
        spans = encoder.rationale_spans("does aspirin reduce pain?", passage, top_fraction=0.3)
        assert spans, passage
        assert all(passage[s.start : s.end] == s.text for s in spans)
        assert [s.start for s in spans] == sorted(s.start for s in spans)
        assert all(a.end < b.start for a, b in zip(spans, spans[1:], strict=False))
        assert 0 < sum(s.weight for s in spans) <= 1 + 1e-6


def _key(spans: list) -> list:
    return [(s.start, s.end, s.text, round(s.weight, 5)) for s in spans]


def test_batched_spans_equal_single(encoder: CERAEncoder) -> None:
    batch = encoder.rationale_spans_batch("q", PASSAGES)
    assert [_key(s) for s in batch] == [_key(encoder.rationale_spans("q", p)) for p in PASSAGES]
    emb, spans = encoder.encode_passages(PASSAGES, return_rationales=True)
    np.testing.assert_allclose(emb, encoder.encode_passages(PASSAGES), atol=1e-6)
    assert [_key(s) for s in spans] == [_key(s) for s in batch]


def test_spans_from_attention_merges_pieces_and_phrases() -> None:
    text = "pain 2.1 vs 4.3"
    offsets = np.array([[0, 0], [0, 4], [5, 6], [6, 7], [7, 8], [9, 11], [12, 15], [0, 0]])
    att = np.array([0.0, 0.1, 0.3, 0.05, 0.25, 0.05, 0.25, 0.0])
    spans = spans_from_attention(text, offsets, att, top_fraction=0.5)
    # words: pain(.1) 2.1(.6) vs(.05) 4.3(.25); top 2 = "2.1" and "4.3", not adjacent
    assert [(s.text, round(s.weight, 3)) for s in spans] == [("2.1", 0.6), ("4.3", 0.25)]
    spans = spans_from_attention(text, offsets, att, top_fraction=0.75)
    assert [s.text for s in spans] == ["pain 2.1", "4.3"]


def test_bad_inputs(encoder: CERAEncoder) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        encoder.encode_queries("one string")
    with pytest.raises(TypeError, match="not str"):
        encoder.encode_passages(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="top_fraction"):
        encoder.rationale_spans("q", "text", top_fraction=0)
    assert encoder.encode_passages([]).shape == (0, 32)


def test_missing_checkpoint_is_clear(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        CERAEncoder.from_pretrained(tmp_path / "nope")


def test_corrupt_weights_are_clear(tiny_bert_copy: Path) -> None:
    (tiny_bert_copy / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="Could not load"):
        CERAEncoder.from_pretrained(tiny_bert_copy)


def test_pickle_only_checkpoint_refused(tiny_bert_copy: Path) -> None:
    (tiny_bert_copy / "model.safetensors").unlink()
    (tiny_bert_copy / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(CheckpointError, match="pickle"):
        CERAEncoder.from_pretrained(tiny_bert_copy)


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        CERAEncoder.from_pretrained(tmp_path / "x")


def test_sentence_transformers_folder_settings(tiny_bert_copy: Path) -> None:
    (tiny_bert_copy / "1_Pooling").mkdir()
    (tiny_bert_copy / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (tiny_bert_copy / "modules.json").write_text(json.dumps(modules))
    enc = CERAEncoder.from_pretrained(tiny_bert_copy)
    assert enc.config.pooling == "cls" and enc.config.normalize is False
    shutil.rmtree(tiny_bert_copy / "1_Pooling")


def test_encoder_config_defaults() -> None:
    cfg = EncoderConfig()
    assert cfg.pooling == "mean" and cfg.normalize and cfg.rationale_layer == -1


def test_int8_copy_is_close_and_leaves_original(encoder: CERAEncoder) -> None:
    fp32 = encoder.encode_passages(PASSAGES)
    q8 = encoder.quantized()
    out = q8.encode_passages(PASSAGES)
    assert out.shape == fp32.shape
    assert float(np.min(np.sum(out * fp32, axis=1))) > 0.9
    np.testing.assert_array_equal(encoder.encode_passages(PASSAGES), fp32)
    spans = q8.rationale_spans("q", PASSAGES[0])
    assert all(PASSAGES[0][s.start : s.end] == s.text for s in spans)


def test_empty_and_long_queries(encoder: CERAEncoder) -> None:
    from cera_rag.model import TruncationWarning

    with pytest.raises(ValueError, match="empty or whitespace"):
        encoder.encode_queries(["ok", "   \n"])
    with pytest.warns(TruncationWarning, match="truncated"):
        out = encoder.encode_queries(["pain " * 20_000])
    assert out.shape == (1, 32) and np.isfinite(out).all()
    # empty passages are allowed (an empty chunk embeds as [CLS][SEP]) and yield no spans
    assert encoder.rationale_spans("q", "") == []
