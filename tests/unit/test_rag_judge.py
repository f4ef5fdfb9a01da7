"""The bounded-schema faithfulness judge: exact scores from valid verdicts, counted failures from garbage."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("ragas")

from test_rag_endpoint import FakeOpenAI  # noqa: E402

from cera_rag.experiments.rag.judge import bounded_schema  # noqa: E402
from cera_rag.experiments.rag.llm import LLMEndpoint  # noqa: E402
from cera_rag.experiments.rag.results import summarise  # noqa: E402
from cera_rag.experiments.rag.scoring import RagasScorer, ScoreInput  # noqa: E402

STATEMENTS = ["Aspirin lowered pain.", "Aspirin cured cancer.", "The trial had 20 patients."]


def judge_reply(body: dict[str, Any]) -> str:
    """Statements for the first call, then verdicts: 2 of the 3 statements supported."""
    schema = body["response_format"]["schema"]
    item = schema["properties"]["statements"]["items"]
    if item.get("type") == "string":
        return json.dumps({"statements": STATEMENTS})
    verdicts = [1, 0, 1]
    return json.dumps(
        {
            "statements": [
                {"statement": s, "reason": "r", "verdict": v} for s, v in zip(STATEMENTS, verdicts, strict=True)
            ]
        }
    )


def sample() -> ScoreInput:
    return ScoreInput(
        question="Did aspirin lower pain?",
        answer="Aspirin lowered pain; it cured cancer. The trial had 20 patients.",
        contexts=["Aspirin lowered pain (p<0.01) in 20 patients."],
        context_ids=["A:0-40"],
        reference_ids=["A:0-40"],
        reference="significantly decreased",
        reference_label="significantly decreased",
    )


def test_valid_verdicts_give_the_exact_faithfulness_and_bounded_requests() -> None:
    with FakeOpenAI(answer=judge_reply) as server:
        judge = LLMEndpoint(base_url=server.base_url, model="fake-model", json_mode=True, local=True)
        result = RagasScorer(judge, timeout=60).score(sample())
        bodies = [r["body"] for r in server.requests if r["path"].endswith("/chat/completions")]
    assert result.scores["faithfulness"] == pytest.approx(2 / 3)
    assert "faithfulness" not in result.errors
    assert len(bodies) == 2
    statements_schema = bodies[0]["response_format"]["schema"]["properties"]["statements"]
    assert statements_schema["maxItems"] == 8 and statements_schema["items"]["maxLength"] == 300
    verdicts = bodies[1]["response_format"]["schema"]["properties"]["statements"]
    # exactly one verdict per statement, each naming one of the statements, verdicts 0 or 1
    assert verdicts["minItems"] == verdicts["maxItems"] == 3
    assert verdicts["items"]["properties"]["statement"]["enum"] == STATEMENTS
    assert verdicts["items"]["properties"]["verdict"]["enum"] == [0, 1]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [("I think the answer is faithful!", "parse_failure"), ('{"statements": [', "parse_failure")],
)
def test_a_judge_that_returns_garbage_is_counted_not_hidden(reply: str, reason: str) -> None:
    with FakeOpenAI(answer=reply) as server:
        judge = LLMEndpoint(base_url=server.base_url, model="fake-model", json_mode=True, local=True)
        scorer = RagasScorer(judge, timeout=60)
        rows = []
        for i in range(3):
            r = scorer.score(sample())
            rows.append({"system": "s", "question_id": str(i), "scores": r.scores, "errors": r.errors})
    assert all(r["scores"]["faithfulness"] is None and r["errors"]["faithfulness"] == reason for r in rows)
    # the LLM-free metrics still count
    assert all(r["scores"]["context_recall"] == 1.0 for r in rows)
    summary = summarise(rows, ["s"], ["faithfulness"], n_resamples=50)
    stats = summary["s"]["metrics"]["faithfulness"]
    assert stats["nan_rate"] == 1.0 and stats["failures"] == {reason: 3}


def test_bounded_schema_compiles_to_a_llama_cpp_grammar() -> None:
    """The server silently falls back to unbounded JSON when a schema does not compile: it must compile."""
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    from ragas.metrics.collections.faithfulness.util import NLIStatementOutput, StatementGeneratorOutput

    for schema in (
        bounded_schema(StatementGeneratorOutput),
        bounded_schema(NLIStatementOutput, n_items=2, choices={"statement": ['A "quoted" one.', "B."]}),
    ):
        assert "$defs" not in json.dumps(schema) and "$ref" not in json.dumps(schema)
        converter = llama_grammar.SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        converter.visit(converter.resolve_refs(schema, "stdin"), "")
        grammar = converter.format_grammar()
        assert "root ::=" in grammar and "statements" in grammar


def test_statements_reach_the_verdict_grammar_as_plain_one_line_text() -> None:
    """A statement with an escaped quote and a newline once crashed llama.cpp's grammar parser (SIGSEGV)."""
    awkward = ['The answer is \\"which works better\\".\nIt said so.', 'He said "no".', "Plain."]

    def reply(body: dict[str, Any]) -> str:
        item = body["response_format"]["schema"]["properties"]["statements"]["items"]
        if item.get("type") == "string":
            return json.dumps({"statements": awkward})
        names = item["properties"]["statement"]["enum"]
        return json.dumps({"statements": [{"statement": s, "reason": "r", "verdict": 1} for s in names]})

    with FakeOpenAI(answer=reply) as server:
        judge = LLMEndpoint(base_url=server.base_url, model="fake-model", json_mode=True, local=True)
        result = RagasScorer(judge, timeout=60).score(sample())
        bodies = [r["body"] for r in server.requests if r["path"].endswith("/chat/completions")]
    enum = bodies[1]["response_format"]["schema"]["properties"]["statements"]["items"]["properties"]["statement"][
        "enum"
    ]
    assert enum == ["The answer is 'which works better'. It said so.", "He said 'no'.", "Plain."]
    assert not any(c in s for s in enum for c in ('"', "\\", "\n"))
    assert result.scores["faithfulness"] == pytest.approx(1.0)
