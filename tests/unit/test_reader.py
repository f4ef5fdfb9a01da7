"""CERAReader: query-aware spans after training, offsets, save/load, ONNX, bad inputs; the reader trainer."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cera_rag.errors import CERAError, CheckpointError
from cera_rag.model import CERAEncoder, TruncationWarning
from cera_rag.reader import CERAReader
from cera_rag.reader_train import token_labels

PASSAGE = "Pain score was lower with aspirin. Blood pressure was higher with aspirin."
PAIN_Q = "what happened to pain score"
BLOOD_Q = "what happened to blood pressure"


@pytest.fixture()
def reader(tiny_bert_dir: Path) -> CERAReader:
    torch.manual_seed(0)
    return CERAReader.from_base(str(tiny_bert_dir))


def _train_token_head(reader: CERAReader, steps: int = 150) -> list[float]:
    """A synthetic task that needs the question: the evidence is the sentence the question names."""
    first, second = (0, PASSAGE.index(".") + 1), (PASSAGE.index("Blood"), len(PASSAGE))
    opt = torch.optim.AdamW(reader.parameters(), lr=1e-3)
    losses = []
    reader.train()
    for _ in range(steps):
        batch = reader.tokenize_pairs([PAIN_Q, BLOOD_Q], [PASSAGE, PASSAGE])
        _, logits = reader(**batch.inputs)
        labels = np.stack([token_labels(batch.offsets[0], [first]), token_labels(batch.offsets[1], [second])])
        mask = torch.from_numpy(batch.passage_mask)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], torch.from_numpy(labels)[mask])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    reader.eval()
    return losses


def test_token_head_learns_and_spans_depend_on_the_question(reader: CERAReader) -> None:
    before = reader.evidence_spans(PAIN_Q, [PASSAGE])[0], reader.evidence_spans(BLOOD_Q, [PASSAGE])[0]
    losses = _train_token_head(reader)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    pain = reader.evidence_spans(PAIN_Q, [PASSAGE], top_fraction=0.3)[0]
    blood = reader.evidence_spans(BLOOD_Q, [PASSAGE], top_fraction=0.3)[0]
    assert [(s.start, s.end) for s in pain] != [(s.start, s.end) for s in blood]
    cut = PASSAGE.index("Blood")
    assert all(s.end <= cut for s in pain), pain  # the pain question marks the first sentence only
    assert all(s.start >= cut for s in blood), blood
    assert before != (pain, blood)
    # a threshold keeps the probable words only, and may keep none
    top = float(reader.read(PAIN_Q, [PASSAGE]).probabilities[0].max())
    assert reader.evidence_spans(PAIN_Q, [PASSAGE], threshold=top)[0] == []
    strong = reader.evidence_spans(PAIN_Q, [PASSAGE], threshold=0.5)[0]
    assert strong and all(s.end <= cut for s in strong)


@pytest.mark.parametrize(
    "text",
    [
        "Pain fell: 3·2 vs 5·0 (p < 0·001) — naïve café patients, 疼痛评分 降低 😀👍🏽 done.",
        "ﬁnal\u00a0score\u200bwas lower with aspirin e\u0301 here",
        "   leading and trailing whitespace   ",
    ],
)
def test_offsets_are_valid_on_unicode(reader: CERAReader, text: str) -> None:
    for top_fraction in (0.2, 1.0):
        for spans in reader.evidence_spans("pain score", [text], top_fraction=top_fraction):
            for s in spans:
                assert 0 <= s.start < s.end <= len(text) and text[s.start : s.end] == s.text
            assert sum(s.weight for s in spans) <= 1.0 + 1e-9


def test_scores_are_float32_and_batch_independent(reader: CERAReader) -> None:
    passages = [PASSAGE, "No difference was seen.", "Blood pressure was higher."]
    scores = reader.score(PAIN_Q, passages)
    assert scores.dtype == np.float32 and scores.shape == (3,)
    one_by_one = np.array([reader.score(PAIN_Q, [p])[0] for p in passages])
    np.testing.assert_allclose(scores, one_by_one, rtol=1e-4, atol=1e-5)
    ranked = reader.rerank(PAIN_Q, ["", *passages])
    assert [r.score for r in ranked][:3] == sorted([r.score for r in ranked][:3], reverse=True)
    assert ranked[-1].index == 0 and ranked[-1].score == float("-inf") and ranked[-1].spans == []


def test_save_load_round_trip(reader: CERAReader, tmp_path: Path) -> None:
    _train_token_head(reader, steps=5)
    reader.save_pretrained(tmp_path / "r")
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"model.safetensors", "reader_heads.safetensors", "cera_reader_config.json", "config.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    loaded = CERAReader.from_pretrained(tmp_path / "r")
    np.testing.assert_allclose(loaded.score(PAIN_Q, [PASSAGE]), reader.score(PAIN_Q, [PASSAGE]), rtol=1e-5, atol=1e-6)
    assert loaded.evidence_spans(PAIN_Q, [PASSAGE]) == reader.evidence_spans(PAIN_Q, [PASSAGE])
    reader.save_pretrained(tmp_path / "r")  # replacing a reader checkpoint is allowed
    assert not list(tmp_path.glob(".r.*"))  # nothing half-written left behind


def test_shallower_reader_keeps_its_layers(tiny_bert_dir: Path, tmp_path: Path) -> None:
    shallow = CERAReader.from_base(str(tiny_bert_dir), layers=1)
    assert len(shallow.model.encoder.layer) == 1
    shallow.save_pretrained(tmp_path / "s")
    assert len(CERAReader.from_pretrained(tmp_path / "s").model.encoder.layer) == 1
    with pytest.raises(CERAError, match="layers=5"):
        CERAReader.from_base(str(tiny_bert_dir), layers=5)


def test_bad_inputs_are_clear_errors(reader: CERAReader) -> None:
    for bad in ("", "   ", "\t\n"):
        with pytest.raises(ValueError, match="empty or whitespace"):
            reader.score(bad, [PASSAGE])
    with pytest.raises(TypeError, match="must be a str"):
        reader.score(None, [PASSAGE])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not one string"):
        reader.score(PAIN_Q, PASSAGE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_fraction"):
        reader.evidence_spans(PAIN_Q, [PASSAGE], top_fraction=0)
    assert reader.score(PAIN_Q, []).shape == (0,)
    assert reader.evidence_spans(PAIN_Q, []) == []
    assert reader.evidence_spans(PAIN_Q, [""]) == [[]]


def test_long_passage_is_truncated_with_a_warning(reader: CERAReader) -> None:
    long = " ".join(["pain score was lower"] * 200)
    with pytest.warns(TruncationWarning, match="do not fit"):
        spans = reader.evidence_spans("pain " * 500, [long])[0]
    assert spans and all(long[s.start : s.end] == s.text for s in spans)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reader.score(PAIN_Q, [PASSAGE])  # a passage that fits: no warning


def test_checkpoints_of_other_classes_are_refused(reader: CERAReader, tiny_bert_dir: Path, tmp_path: Path) -> None:
    encoder = CERAEncoder.from_pretrained(tiny_bert_dir)
    encoder.save_pretrained(tmp_path / "enc")
    with pytest.raises(CheckpointError, match="CERAEncoder .*not a reader"):
        CERAReader.from_pretrained(tmp_path / "enc")
    with pytest.raises(CheckpointError, match="not a CERAReader checkpoint"):
        CERAReader.from_pretrained(tiny_bert_dir)
    reader.save_pretrained(tmp_path / "r")
    with pytest.raises(CheckpointError, match="is a CERAReader checkpoint"):
        CERAEncoder.from_pretrained(tmp_path / "r")
    with pytest.raises(CheckpointError, match="does not exist"):
        CERAReader.from_pretrained(tmp_path / "missing")
    (tmp_path / "r" / "reader_heads.safetensors").write_bytes(b"torn")
    with pytest.raises(CheckpointError, match="reader heads"):
        CERAReader.from_pretrained(tmp_path / "r")
    reader.save_pretrained(tmp_path / "r2")
    (tmp_path / "r2" / "cera_reader_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a valid reader config"):
        CERAReader.from_pretrained(tmp_path / "r2")


def test_onnx_backend_matches_torch(reader: CERAReader, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    passages = [PASSAGE, "No difference was seen in this trial.", ""]
    fast = reader.to_onnx(folder=tmp_path / "onnx")
    assert fast.backend == "onnx"
    assert reader.model.config._attn_implementation == "sdpa"  # exported eager, switched back
    np.testing.assert_allclose(fast.score(PAIN_Q, passages), reader.score(PAIN_Q, passages), rtol=1e-4, atol=1e-5)
    got, want = fast.evidence_spans(PAIN_Q, passages), reader.evidence_spans(PAIN_Q, passages)
    assert [[(s.start, s.end) for s in row] for row in got] == [[(s.start, s.end) for s in row] for row in want]
    int8 = reader.to_onnx(int8=True, folder=tmp_path / "onnx")
    assert int8.backend == "onnx-int8"
    np.testing.assert_allclose(int8.score(PAIN_Q, passages), reader.score(PAIN_Q, passages), atol=0.1)
    with pytest.raises(RuntimeError, match="inference only"):
        with torch.enable_grad():
            batch = fast.tokenize_pairs(PAIN_Q, [PASSAGE])
            fast(**batch.inputs)


def test_reader_trainer_lowers_loss_and_resumes(tiny_bert_dir: Path, synthetic_data_dir: Path, tmp_path: Path) -> None:
    import json

    from cera_rag.reader_train import ReaderTrainConfig, ReaderTrainer, epoch_groups

    cfg = ReaderTrainConfig(
        base_model=str(tiny_bert_dir), output_dir=str(tmp_path / "reader"), epochs=6, batch_size=2,
        lr=2e-3, eval_split="validation", checkpoint_every=2, n_negatives=1, n_other_evidence=1,
    )  # fmt: skip
    result = ReaderTrainer(cfg, synthetic_data_dir).train(show_progress=False)
    log = [json.loads(line) for line in (tmp_path / "reader.log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "step" in r and "loss" in r]
    assert len(steps) == result.steps and [r["step"] for r in steps] == list(range(1, result.steps + 1))
    assert np.mean([r["loss"] for r in steps[-3:]]) < np.mean([r["loss"] for r in steps[:3]])
    evals = [r["eval"] for r in log if "eval" in r]
    assert len(evals) == 6 and all("mrr@10" in e and "evidence_lift@20%" in e for e in evals)
    loaded = CERAReader.from_pretrained(tmp_path / "reader")
    assert loaded.score("pain score", ["Pain score was lower."]).shape == (1,)
    # every group starts with a positive, and holds other prompts' evidence as negatives
    from cera_rag.data.dataset import load_processed

    split = load_processed("train", cfg.data, synthetic_data_dir)
    for batch in epoch_groups(split, cfg, 0):
        for g in batch:
            assert g.passages[0] in g.example.positives
            assert not set(g.passages[1:]) & set(g.example.positives)

    # an interrupted run continues where it stopped, with every step logged once
    cfg2 = cfg.model_copy(update={"output_dir": str(tmp_path / "r2"), "max_steps": 4, "epochs": 2})
    ReaderTrainer(cfg2, synthetic_data_dir).train(show_progress=False)
    resumed = ReaderTrainer(cfg2.model_copy(update={"max_steps": 6}), synthetic_data_dir).train(
        resume=True, show_progress=False
    )
    assert resumed.steps == 6
    lines = [json.loads(x) for x in (tmp_path / "r2.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_micro_batches_give_the_same_loss(tiny_bert_dir: Path, synthetic_data_dir: Path) -> None:
    from cera_rag.data.dataset import load_processed
    from cera_rag.reader_train import ReaderTrainConfig, epoch_groups, reader_loss

    cfg = ReaderTrainConfig(base_model=str(tiny_bert_dir), batch_size=3, n_negatives=2)
    split = load_processed("train", cfg.data, synthetic_data_dir)
    batch = epoch_groups(split, cfg, 0)[0]
    reader = CERAReader.from_base(str(tiny_bert_dir)).eval()  # no dropout: both paths see the same weights
    whole, terms = reader_loss(reader, split, batch, 1.0, micro_batch=1000)
    parts, _ = reader_loss(reader, split, batch, 1.0, micro_batch=2)
    assert float(parts.detach()) == pytest.approx(float(whole.detach()), rel=1e-4)
    assert terms["relevance"] > 0 and terms["token"] > 0
