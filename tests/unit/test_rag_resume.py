"""``run_ragas_eval`` resumes: finished rows are never recomputed or lost (fake pipelines and scorer, no models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_rag_endpoint import FakeOpenAI

from cera_rag.data.dataset import PromptExample
from cera_rag.data.passages import Passage
from cera_rag.data.reader import Prompt
from cera_rag.errors import ConfigError
from cera_rag.experiments.rag.errors import EndpointError
from cera_rag.experiments.rag.pipelines import RAGAnswer
from cera_rag.experiments.rag.ragas_eval import ROWS_FILE, RagasEvalConfig, run_ragas_eval, select_questions
from cera_rag.experiments.rag.scoring import SampleScores, ScoreInput


class FakeSplit:
    """Three prompts over two articles, two passages each; the first passage holds the evidence."""

    def __init__(self) -> None:
        self.passages = {
            aid: [Passage(aid, 0, 0, 20, "Pain was lower (p<.01)"), Passage(aid, 1, 21, 40, "Background text here")]
            for aid in ("A1", "A2")
        }
        self.examples = [
            PromptExample(
                prompt=Prompt(str(100 + i), aid, "aspirin", "placebo", f"pain at week {i}"),
                label="significantly decreased",
                positives=[0],
                rationales={0: [(0, 10)]},
                negatives={},
                guard_removed={},
                evidence_texts=["Pain was lower"],
            )
            for i, aid in enumerate(("A1", "A1", "A2"))
        ]


class Calls:
    def __init__(self) -> None:
        self.generated: list[tuple[str, str]] = []
        self.scored: list[str] = []


def factories(calls: Calls, fail_at: int | None = None):
    def pipelines_factory(systems, questions, generator, cfg, cera_model, reader_model):
        def make(system: str):
            def answer(q: str) -> RAGAnswer:
                calls.generated.append((system, q))
                ids = ["A1:0-20", "A2:0-20"] if "cera" in system else ["A1:21-40", "A2:21-40"]
                texts = ["Pain was lower (p<.01)", "Background text here"]
                checks = {"frameworks": ["llamaindex", "langchain"], "same_request": True, "same_contexts": True,
                          "same_answer": True}  # fmt: skip
                return RAGAnswer("Pain was significantly lower.", contexts=texts, context_ids=ids, checks=checks)

            return answer

        return {s: make(s) for s in systems}

    class Scorer:
        def score(self, s: ScoreInput) -> SampleScores:
            calls.scored.append(s.question)
            if fail_at is not None and len(calls.scored) == fail_at:
                raise EndpointError("The judge LLM endpoint fake is not reachable.")
            hits = len(set(s.context_ids) & set(s.reference_ids))
            return SampleScores(
                scores={
                    "faithfulness": 1.0,
                    "context_precision": hits / 2,
                    "context_recall": float(hits > 0),
                    "label_accuracy": 1.0,
                },  # fmt: skip
                predicted_label="significantly decreased",
            )

    return pipelines_factory, (lambda judge: Scorer())


@pytest.fixture()
def fake_openai():
    with FakeOpenAI() as server:
        yield server


def _cfg(tmp_path: Path, endpoint: Any, **kw: Any) -> RagasEvalConfig:
    return RagasEvalConfig(
        limit=3,
        cera_model=str(tmp_path),
        out_dir=tmp_path / "out",
        generator=endpoint,
        n_resamples=200,
        systems=("cera", "minilm", "contriever-config", "bm25"),
        **kw,
    )


def _run(cfg: RagasEvalConfig, calls: Calls, fail_at: int | None = None) -> dict[str, Any]:
    pf, sf = factories(calls, fail_at)
    return run_ragas_eval(
        cfg, scorer_factory=sf, pipelines_factory=pf, load_split=lambda c: FakeSplit(), echo=lambda s: None
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_select_questions_takes_the_first_prompts_with_references() -> None:
    qs = select_questions(FakeSplit(), 2)
    assert [q.question_id for q in qs] == ["100", "101"]
    assert qs[0].reference_ids == ["A1:0-20"]
    # held-out phrasings, in turn: never the wording CERA was trained on
    assert qs[0].question == "Does aspirin improve or worsen pain at week 0 relative to placebo?"
    assert qs[1].question == "What happened to pain at week 1 in patients given aspirin rather than placebo?"
    assert qs[0].evidence == {"A1:0-20": [(0, 10)]}


def test_rerun_skips_every_finished_row(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    cfg = _cfg(tmp_path, fake_openai.endpoint())
    first = Calls()
    summary = _run(cfg, first)
    rows_path = tmp_path / "out" / ROWS_FILE
    rows = _lines(rows_path)
    assert len(rows) == 12 and len(first.scored) == 12 and len(first.generated) == 12
    assert {(r["system"], r["question_id"]) for r in rows} == {
        (s, q) for s in cfg.systems for q in ("100", "101", "102")
    }
    assert summary["systems"]["cera"]["metrics"]["context_recall"]["mean"] == 1.0
    assert summary["systems"]["minilm"]["metrics"]["context_recall"]["mean"] == 0.0
    # the LLM-free evidence recall: the cera rows hold the evidence passage, the others do not
    assert summary["systems"]["cera"]["metrics"]["evidence_recall"]["mean"] == 1.0
    assert summary["systems"]["bm25"]["metrics"]["evidence_recall"]["mean"] == 0.0
    assert summary["meta"]["framework_check"]["same_request"] == 12
    before = rows_path.read_bytes()

    second = Calls()
    _run(cfg, second)
    assert second.scored == [] and second.generated == []
    assert rows_path.read_bytes() == before
    for name in ("ragas_summary.md", "ragas_summary.json", "ragas_summary.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    md = (tmp_path / "out" / "ragas_summary.md").read_text()
    assert f"| {tmp_path.name} | 3 |" in md  # the cera system is named for its checkpoint
    assert "sent identical requests" in md and "12 of 12 answers" in md


def test_endpoint_failure_keeps_finished_rows_and_resume_finishes_the_rest(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    cfg = _cfg(tmp_path, fake_openai.endpoint())
    first = Calls()
    with pytest.raises(EndpointError, match="not reachable"):
        _run(cfg, first, fail_at=5)
    rows_path = tmp_path / "out" / ROWS_FILE
    assert len(_lines(rows_path)) == 4
    assert json.loads((tmp_path / "out" / "ragas_summary.json").read_text())["meta"]["n_rows"] == 4
    failed_key = first.generated[4]

    second = Calls()
    _run(cfg, second)
    rows = _lines(rows_path)
    assert len(rows) == 12 and len({(r["system"], r["question_id"]) for r in rows}) == 12
    assert len(second.scored) == 8
    # the 5th answer was saved before its scoring failed: it is scored again, not generated again
    assert len(second.generated) == 7 and failed_key not in second.generated


def test_torn_last_line_is_dropped_and_recomputed(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    cfg = _cfg(tmp_path, fake_openai.endpoint())
    _run(cfg, Calls())
    rows_path = tmp_path / "out" / ROWS_FILE
    data = rows_path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    rows_path.write_bytes(data[: last_start + 25])  # a write cut short
    again = Calls()
    _run(cfg, again)
    assert len(again.scored) == 1
    assert len(_lines(rows_path)) == 12


def test_other_settings_refuse_to_resume_and_restart_discards(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    _run(_cfg(tmp_path, fake_openai.endpoint()), Calls())
    with pytest.raises(ConfigError, match="other settings.*top_k"):
        _run(_cfg(tmp_path, fake_openai.endpoint(), top_k=3), Calls())
    again = Calls()
    _run(_cfg(tmp_path, fake_openai.endpoint(), top_k=3, restart=True), again)
    assert len(again.scored) == 12


def test_a_checkpoint_retrained_at_the_same_path_does_not_resume(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """Rows name the exact weights: new weights under the old folder name start a fresh run."""
    model = tmp_path / "ckpt"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"first weights")
    cfg = _cfg(tmp_path, fake_openai.endpoint())
    cfg.cera_model = str(model)
    _run(cfg, Calls())
    _run(cfg, resumed := Calls())
    assert resumed.scored == [], "the same weights resume"
    (model / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(ConfigError, match="other settings.*cera_weights"):
        _run(cfg, Calls())


def test_missing_checkpoint_says_how_to_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cera_rag.experiments.rag.ragas_eval import resolve_cera_model

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="cera-rag train --preset quick"):
        resolve_cera_model(None)
    (tmp_path / "checkpoints" / "cera-quick").mkdir(parents=True)
    (tmp_path / "checkpoints" / "cera-quick" / "config.json").write_text("{}")
    assert resolve_cera_model(None) == "checkpoints/cera-quick"


def test_unknown_system_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cera\\+reader"):
        RagasEvalConfig(systems=("contriever",))
