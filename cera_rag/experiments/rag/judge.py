"""A faithfulness judge that always answers: RAGAS' collections ``Faithfulness`` on a bounded JSON grammar.

RAGAS' faithfulness asks the judge twice: split the answer into statements
(``StatementGeneratorOutput``), then give a 0/1 verdict per statement against the contexts
(``NLIStatementOutput``). A small local judge asked for free-form JSON loops inside an unbounded
list or string until ``max_tokens`` and the sample is lost ("truncated"). llama-cpp-python's
OpenAI-compatible server compiles ``response_format={"type": "json_object", "schema": ...}`` into a
grammar, so ``BoundedSchemaJudge`` sends each response model's JSON schema with bounds added
(``bounded_schema``): at most ``max_statements`` statements of at most ``max_chars`` characters,
exactly one verdict per statement whose ``statement`` is one of the statements given and whose
``verdict`` is 0 or 1. Every completion then ends, as valid JSON, well inside ``max_tokens``.

``FaithfulnessMetric`` is ``ragas.metrics.collections.Faithfulness`` with the verdict step told how
many statements there are; its score is RAGAS' (supported statements / statements).
``judge_llm`` picks the client: the bounded adapter for llama-cpp-style servers (``json_mode``),
RAGAS' own ``llm_factory`` (instructor) for any other OpenAI-compatible judge.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any, TypeVar

from pydantic import BaseModel

from cera_rag.experiments.rag.llm import LLMEndpoint

ModelT = TypeVar("ModelT", bound=BaseModel)

#: Bounds of the local judge's answers (a statement of an answer of two sentences fits in 300 chars).
MAX_STATEMENTS = 8
MAX_CHARS = 300
MAX_REASON_CHARS = 200


class JudgeOutputError(ValueError):
    """The judge's completion is not the JSON the response model asks for."""


class JudgeTruncatedError(ValueError):
    """The judge stopped at ``max_tokens`` before its JSON was complete."""


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every local ``$ref`` replaced by its definition (no ``$defs`` left)."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(copy.deepcopy(defs[ref.split("/")[-1]]))
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def bounded_schema(
    model: type[BaseModel],
    max_items: int = MAX_STATEMENTS,
    max_chars: int = MAX_CHARS,
    n_items: int | None = None,
    choices: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """``model``'s JSON schema with bounds a grammar can enforce, so every completion terminates.

    Args:
        model: The pydantic response model.
        max_items: ``maxItems`` of every array (``minItems`` 1).
        max_chars: ``maxLength`` of every string (``MAX_REASON_CHARS`` for fields named ``reason``).
        n_items: If given, every array has exactly this many items.
        choices: Field name -> the only strings it may hold (an ``enum``).

    Integer fields named ``verdict`` may only be 0 or 1.
    """
    schema = _inline_refs(model.model_json_schema())
    choices = choices or {}

    def bound(node: Any, name: str | None = None) -> Any:
        if isinstance(node, list):
            return [bound(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: bound(v) for k, v in node.items() if k not in ("properties", "items")}
        if "properties" in node:
            out["properties"] = {k: bound(v, k) for k, v in node["properties"].items()}
        if "items" in node:
            out["items"] = bound(node["items"])
        kind = node.get("type")
        if kind == "array":
            out["minItems"] = n_items if n_items is not None else 1
            out["maxItems"] = n_items if n_items is not None else max_items
        elif kind == "string" and name in choices:
            out = {"type": "string", "enum": list(choices[name])}
        elif kind == "string":
            out["maxLength"] = MAX_REASON_CHARS if name == "reason" else max_chars
        elif kind == "integer" and name == "verdict":
            out = {"type": "integer", "enum": [0, 1]}
        return out

    return bound(schema)


def parse_completion(text: str | None, model: type[ModelT], finish_reason: str | None) -> ModelT:
    """The completion as ``model``; ``JudgeTruncatedError`` / ``JudgeOutputError`` when it is not one."""
    try:
        # strict=False: the grammar's string rule lets raw newlines into strings, which JSON forbids
        return model.model_validate(json.loads(text or "", strict=False))
    except ValueError as exc:
        if finish_reason == "length":
            raise JudgeTruncatedError(f"the judge hit max_tokens: {(text or '')[-80:]!r}") from exc
        raise JudgeOutputError(f"not a {model.__name__}: {(text or '')[:120]!r} ({exc.__class__.__name__})") from exc


def _base_llm_class() -> type:
    from ragas.llms.base import InstructorBaseRagasLLM

    return InstructorBaseRagasLLM


class BoundedSchemaJudge(_base_llm_class()):  # type: ignore[misc]
    """A RAGAS collections LLM for llama-cpp-style servers: one user message, a bounded JSON schema.

    Args:
        endpoint: The judge's OpenAI-compatible endpoint (``max_tokens``, ``temperature``, ``timeout``).
        max_statements: ``maxItems`` of the statements list.
        max_chars: ``maxLength`` of a statement.
    """

    def __init__(self, endpoint: LLMEndpoint, max_statements: int = MAX_STATEMENTS, max_chars: int = MAX_CHARS):
        import openai

        self.endpoint = endpoint
        self.max_statements = max_statements
        self.max_chars = max_chars
        self.client = openai.OpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            timeout=endpoint.timeout,
            max_retries=endpoint.max_retries,
        )

    def request(self, prompt: str, schema: dict[str, Any]) -> dict[str, Any]:
        """The body sent for ``prompt`` (tests check it)."""
        return {
            "model": self.endpoint.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.endpoint.max_tokens,
            "temperature": self.endpoint.temperature,
            "response_format": {"type": "json_object", "schema": schema},
        }

    def generate(
        self,
        prompt: str,
        response_model: type[ModelT],
        n_items: int | None = None,
        choices: dict[str, list[str]] | None = None,
    ) -> ModelT:
        schema = bounded_schema(response_model, self.max_statements, self.max_chars, n_items, choices)
        body = self.request(prompt, schema)
        # response_format carries a llama-cpp extension ("schema"), so it goes as an extra body field.
        response_format = body.pop("response_format")
        completion = self.client.chat.completions.create(**body, extra_body={"response_format": response_format})
        choice = completion.choices[0]
        return parse_completion(choice.message.content, response_model, choice.finish_reason)

    async def agenerate(
        self,
        prompt: str,
        response_model: type[ModelT],
        n_items: int | None = None,
        choices: dict[str, list[str]] | None = None,
    ) -> ModelT:
        return await asyncio.to_thread(self.generate, prompt, response_model, n_items, choices)

    def close(self) -> None:
        self.client.close()


def _faithfulness_class() -> type:
    from ragas.metrics.collections import Faithfulness

    return Faithfulness


class FaithfulnessMetric(_faithfulness_class()):  # type: ignore[misc]
    """RAGAS' collections ``Faithfulness``; with a ``BoundedSchemaJudge``, one verdict per statement is enforced."""

    async def _create_verdicts(self, statements: list[str], context: str) -> Any:
        from ragas.metrics.collections.faithfulness.util import NLIStatementInput, NLIStatementOutput

        if not isinstance(self.llm, BoundedSchemaJudge):
            return await super()._create_verdicts(statements, context)
        # The statements become grammar literals (an enum): llama.cpp's grammar parser crashes the server on
        # some escaped quotes and raw newlines, so they go in as plain one-line text (the score only counts verdicts).
        statements = [plain_statement(s) for s in statements]
        prompt = self.nli_statement_prompt.to_string(NLIStatementInput(context=context, statements=statements))
        return await self.llm.agenerate(
            prompt, NLIStatementOutput, n_items=len(statements), choices={"statement": list(dict.fromkeys(statements))}
        )


def plain_statement(text: str) -> str:
    """``text`` on one line, without backslashes, double quotes as single ones: safe as a grammar literal."""
    return " ".join(text.replace("\\", "").replace('"', "'").split()) or "-"


def judge_llm(endpoint: LLMEndpoint) -> Any:
    """The RAGAS collections LLM for ``endpoint``: bounded-schema JSON (``json_mode``) or instructor."""
    if endpoint.json_mode:
        return BoundedSchemaJudge(endpoint)
    import openai
    from ragas.llms import llm_factory

    client = openai.OpenAI(
        base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=endpoint.timeout, max_retries=endpoint.max_retries
    )
    return llm_factory(endpoint.model, client=client, max_tokens=endpoint.max_tokens, temperature=endpoint.temperature)
