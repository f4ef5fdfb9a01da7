from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cera_rag.config import PRESETS, TrainConfig, load_config
from cera_rag.errors import CheckpointError, ConfigError
from cera_rag.model import CERAEncoder
from cera_rag.run_state import RunState, checkpoint_finished
from cera_rag.train import Trainer, epoch_batches, train_unless_finished

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, base: Path, **kw: object) -> TrainConfig:
    values: dict[str, object] = {
        "base_model": str(base),
        "output_dir": str(tmp_path / "out" / "ckpt"),
        "negatives": "bm25",
        "n_negatives": 2,
        "batch_size": 2,
        "lr": 1e-3,
        "warmup_ratio": 0.0,
        "epochs": 10,
        "max_passage_length": 64,
        "max_query_length": 32,
        "checkpoint_every": 2,
        "eval_split": "",
    }
    values.update(kw)
    return TrainConfig(**values)  # type: ignore[arg-type]


def _losses(cfg: TrainConfig) -> list[dict]:
    path = Path(cfg.output_dir).with_name(Path(cfg.output_dir).name + ".log.jsonl")
    return [r for r in map(json.loads, path.read_text().splitlines()) if "step" in r and "loss" in r]


@pytest.mark.parametrize("loss,support", [("infonce", "full"), ("triplet", "rationale")])
def test_twenty_steps_lower_the_loss(tmp_path, tiny_bert_dir, synthetic_data_dir, loss, support) -> None:
    cfg = _config(tmp_path, tiny_bert_dir, loss=loss, alignment_support=support, alignment_weight=0.5, max_steps=20)
    result = Trainer(cfg, synthetic_data_dir).train(show_progress=False)
    assert result.steps == 20
    rows = _losses(cfg)
    assert len(rows) == 20 and all("alignment" in r for r in rows)
    first = sum(r["loss"] for r in rows[:4]) / 4
    last = sum(r["loss"] for r in rows[-4:]) / 4
    assert last < first
    enc = CERAEncoder.from_pretrained(cfg.output_dir)
    assert enc.encode_queries(["pain"]).shape == (1, 32)
    assert (Path(cfg.output_dir) / "train_config.yaml").is_file()


def test_alignment_weight_zero_skips_attention(tmp_path, tiny_bert_dir, synthetic_data_dir) -> None:
    cfg = _config(tmp_path, tiny_bert_dir, alignment_weight=0.0, max_steps=2)
    Trainer(cfg, synthetic_data_dir).train(show_progress=False)
    assert all("alignment" not in r for r in _losses(cfg))


def test_interrupted_run_resumes_on_the_same_trajectory(tmp_path, tiny_bert_dir, synthetic_data_dir) -> None:
    straight = _config(tmp_path / "a", tiny_bert_dir, epochs=3, alignment_weight=0.1)
    Trainer(straight, synthetic_data_dir).train(show_progress=False)
    reference = [r["loss"] for r in _losses(straight)]

    cfg = _config(tmp_path / "b", tiny_bert_dir, epochs=3, alignment_weight=0.1)
    trainer = Trainer(cfg, synthetic_data_dir)
    original = trainer.step_loss
    calls = {"n": 0}

    def interrupt_after_four(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            trainer._interrupted = True  # what the SIGINT handler does
        return original(*args, **kwargs)

    trainer.step_loss = interrupt_after_four  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt, match="--resume"):
        trainer.train(show_progress=False)
    assert (trainer.run_dir / "state.json").is_file()
    assert json.loads((trainer.run_dir / "state.json").read_text())["step"] == 4
    Trainer(cfg, synthetic_data_dir).train(resume=True, show_progress=False)
    resumed = [r["loss"] for r in _losses(cfg)]
    assert len(resumed) == len(reference)
    assert resumed == pytest.approx(reference, rel=1e-3, abs=1e-4)


def test_an_interrupted_run_with_a_saved_best_epoch_is_resumed_not_taken_as_done(
    tmp_path, tiny_bert_dir, synthetic_data_dir
) -> None:
    from cera_rag.data.dataset import load_processed

    cfg = _config(tmp_path, tiny_bert_dir, epochs=2)
    steps_per_epoch = len(epoch_batches(load_processed("train", cfg.data, synthetic_data_dir), cfg, 0))
    trainer = Trainer(cfg, synthetic_data_dir)
    original = trainer.step_loss
    calls = {"n": 0}

    def interrupt_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == steps_per_epoch + 1:
            trainer._interrupted = True
        return original(*args, **kwargs)

    trainer.step_loss = interrupt_in_epoch_two  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        trainer.train(show_progress=False)
    output_dir = Path(cfg.output_dir)
    assert (output_dir / "config.json").is_file()  # epoch 1, saved as the best so far
    assert not checkpoint_finished(output_dir)

    assert train_unless_finished(cfg, synthetic_data_dir) > 0
    state = json.loads((trainer.run_dir / "state.json").read_text())
    assert state["step"] == state["total"] == 2 * steps_per_epoch
    assert checkpoint_finished(output_dir)
    assert train_unless_finished(cfg, synthetic_data_dir) == 0.0
    assert len(_losses(cfg)) == 2 * steps_per_epoch


def test_a_state_saved_before_total_was_recorded_is_judged_by_its_epochs(tmp_path) -> None:
    run = RunState(tmp_path / "ckpt.run")
    run.run_dir.mkdir()
    (run.run_dir / "train_config.yaml").write_text(yaml.safe_dump({"epochs": 3, "max_steps": None}))
    for epoch, unfinished in ((1, True), (3, False)):
        (run.run_dir / "state.json").write_text(json.dumps({"step": 123 * epoch, "epoch": epoch}))
        assert run.unfinished is unfinished
    (run.run_dir / "train_config.yaml").write_text(yaml.safe_dump({"epochs": 3, "max_steps": 200}))
    (run.run_dir / "state.json").write_text(json.dumps({"step": 200, "epoch": 1}))
    assert not run.unfinished
    (run.run_dir / "state.json").write_text('{"step": 20')  # torn by a crash outside RunState.save
    with pytest.raises(CheckpointError, match="Delete that folder"):
        run.unfinished  # noqa: B018


def test_resume_without_state_is_clear(tmp_path, tiny_bert_dir, synthetic_data_dir) -> None:
    with pytest.raises(ConfigError, match="no resumable run"):
        Trainer(_config(tmp_path, tiny_bert_dir), synthetic_data_dir).train(resume=True)


def test_epoch_batches_are_deterministic(tmp_path, tiny_bert_dir, synthetic_data_dir) -> None:
    from cera_rag.data.dataset import load_processed

    cfg = _config(tmp_path, tiny_bert_dir)
    split = load_processed("train", cfg.data, synthetic_data_dir)
    a, b = epoch_batches(split, cfg, 1), epoch_batches(split, cfg, 1)
    assert [x.queries for x in a] == [x.queries for x in b]
    assert [x.queries for x in a] != [x.queries for x in epoch_batches(split, cfg, 2)] or len(a) == 1
    for batch in a:
        for ex, negs in zip(batch.examples, batch.negatives, strict=True):
            assert not set(negs) & {(ex.prompt.article_id, i) for i in ex.positives}


def test_corpus_negatives_come_from_other_articles(tmp_path, tiny_bert_dir, synthetic_data_dir) -> None:
    """Cross-article negatives: from another article, after the in-article ones, deterministic."""
    from cera_rag.data.dataset import load_processed

    cfg = _config(tmp_path, tiny_bert_dir).model_copy(update={"corpus_negatives": 2})
    split = load_processed("train", cfg.data, synthetic_data_dir)
    assert len(split.passages) > 1
    batches = epoch_batches(split, cfg, 0)
    assert [b.negatives for b in batches] == [b.negatives for b in epoch_batches(split, cfg, 0)]
    n_other = 0
    for batch in batches:
        for ex, negs in zip(batch.examples, batch.negatives, strict=True):
            own = [n for n in negs if n[0] == ex.prompt.article_id]
            other = [n for n in negs if n[0] != ex.prompt.article_id]
            assert negs == own + other and len(own) <= cfg.n_negatives and len(other) <= 2
            assert all(0 <= i < len(split.passages[a]) for a, i in other)
            n_other += len(other)
    assert n_other > 0


def test_evidence_negatives_hold_another_prompts_evidence(tmp_path, tiny_bert_dir, synthetic_data_dir) -> None:
    """Evidence negatives: another prompt's positive in the same article, never one's own, and the rest unchanged."""
    from cera_rag.data.config import DataConfig
    from cera_rag.data.dataset import evidence_negative_pools, load_processed

    # short passages, so that the two prompts of an article have their evidence in different passages
    plain = _config(tmp_path, tiny_bert_dir, data=DataConfig(max_words=12))
    cfg = plain.model_copy(update={"evidence_negatives": 1})
    split = load_processed("train", cfg.data, synthetic_data_dir)
    pools = evidence_negative_pools(split)
    positives_of = {ex.prompt.prompt_id: set(ex.positives) for ex in split.examples}
    article_of = {ex.prompt.prompt_id: ex.prompt.article_id for ex in split.examples}
    for pid, pool in pools.items():
        others = set().union(*(positives_of[q] for q in positives_of if q != pid and article_of[q] == article_of[pid]))
        assert set(pool) <= others - positives_of[pid]
    assert any(pools.values()), "the synthetic data should have articles with several prompts"
    with_evidence, without = epoch_batches(split, cfg, 0), epoch_batches(split, plain, 0)
    assert [b.queries for b in with_evidence] == [b.queries for b in without]  # the old stream is untouched
    added = 0
    for batch, base in zip(with_evidence, without, strict=True):
        for ex, negs, old in zip(batch.examples, batch.negatives, base.negatives, strict=True):
            assert negs[: len(old)] == old
            extra = negs[len(old) :]
            assert len(extra) <= 1 and all(i in pools[ex.prompt.prompt_id] for _, i in extra)
            assert not {i for _, i in negs} & set(ex.positives)
            added += len(extra)
    assert added > 0
    assert [b.negatives for b in with_evidence] == [b.negatives for b in epoch_batches(split, cfg, 0)]


def test_sampled_negatives_vary_by_epoch_within_the_mined_pool(tmp_path, tiny_bert_dir, synthetic_data_dir) -> None:
    """negative_draw="sample": n of the mined negatives, drawn afresh per epoch; queries and positives unchanged."""
    from cera_rag.data.dataset import load_processed

    top = _config(tmp_path, tiny_bert_dir)
    cfg = top.model_copy(update={"negative_draw": "sample"})
    split = load_processed("train", cfg.data, synthetic_data_dir)
    mined = {ex.prompt.prompt_id: ex.negatives.get(cfg.negatives, []) for ex in split.examples}
    assert any(len(pool) > cfg.n_negatives for pool in mined.values()), "needs prompts with spare mined negatives"
    drawn: dict[str, set[tuple[int, ...]]] = {}
    for epoch in range(4):
        sampled, fixed = epoch_batches(split, cfg, epoch), epoch_batches(split, top, epoch)
        assert [b.queries for b in sampled] == [b.queries for b in fixed]
        assert [b.positives for b in sampled] == [b.positives for b in fixed]
        for batch, base in zip(sampled, fixed, strict=True):
            for ex, negs, old in zip(batch.examples, batch.negatives, base.negatives, strict=True):
                pool = mined[ex.prompt.prompt_id]
                assert old == [(ex.prompt.article_id, i) for i in pool[: cfg.n_negatives]]
                assert len(negs) == len(old) == len(set(negs))
                assert {i for _, i in negs} <= set(pool)
                drawn.setdefault(ex.prompt.prompt_id, set()).add(tuple(sorted(i for _, i in negs)))
        assert [b.negatives for b in sampled] == [b.negatives for b in epoch_batches(split, cfg, epoch)]
    assert any(len(sets) > 1 for sets in drawn.values()), "sampled negatives never changed between epochs"


def test_presets_and_config_files() -> None:
    for name in PRESETS:
        assert isinstance(load_config(name), TrainConfig)
    with pytest.raises(ConfigError, match="Unknown preset"):
        load_config("nope")
    with pytest.raises(ConfigError, match="Invalid training config"):
        load_config(None, None, {"lr": -1})
    best = yaml.safe_load((ROOT / "configs" / "07p_best_query128.yaml").read_text())["train"]
    preset = {k: v for k, v in PRESETS["best"].items() if k != "output_dir"}
    assert best == preset, "configs/07p_best_query128.yaml and PRESETS['best'] must hold the same settings"
    for path in sorted((ROOT / "configs").glob("0*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if spec["kind"] == "cera":
            load_config(None, None, spec["train"])


def test_bad_config_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(None, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, tmp_path / "missing.yaml")
