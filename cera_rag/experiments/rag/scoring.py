"""RAGAS 0.4 scoring of one (question, answer, contexts) sample.

* ``faithfulness``: ``ragas.metrics.collections.Faithfulness`` (``cera_rag.experiments.rag.judge``) with the
  judge LLM: share of the answer's statements the contexts support. A llama-cpp-style judge
  (``json_mode``) answers through bounded JSON schemas the server compiles into a grammar, so it
  always returns a complete verdict; any other judge goes through RAGAS' ``llm_factory``.
* ``context_precision`` / ``context_recall``: the legacy ``IDBasedContextPrecision`` /
  ``IDBasedContextRecall`` (``ragas.metrics.collections`` has no ID-based metrics) of the
  retrieved passage ids against the passages holding the annotated evidence, per sample through
  ``single_turn_ascore`` (what ``ragas.evaluate()`` runs for each row).
* ``label_accuracy``: whether the direction the answer states (``cera_rag.experiments.rag.labels``) is the
  annotated label; ``None`` when the answer states none.

A score that could not be computed is ``None`` with the reason in ``errors``: ``parse_failure``
(the judge's output was not the JSON RAGAS asks for), ``truncated`` (the judge hit
``max_tokens``), ``timeout``, ``no_statements``, ``no_answer``, ``no_contexts``, ``error: ...``. An unreachable
or misbehaving judge raises ``EndpointError`` instead, so the row is not recorded and a rerun
scores it again.
"""

from __future__ import annotations

import asyncio
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cera_rag.experiments.rag.errors import EndpointError
from cera_rag.experiments.rag.labels import label_correct, parse_label
from cera_rag.experiments.rag.llm import LLMEndpoint, endpoint_errors, endpoint_exception_types

#: Metrics every row carries, in report order.
METRICS = ("faithfulness", "context_precision", "context_recall", "label_accuracy")


@dataclass
class ScoreInput:
    """What one sample is scored on."""

    question: str
    answer: str
    contexts: list[str]
    context_ids: list[str]
    reference_ids: list[str]
    reference: str
    reference_label: str


@dataclass
class SampleScores:
    """Scores of one sample (``None``: not computed, reason in ``errors``)."""

    scores: dict[str, float | None]
    errors: dict[str, str] = field(default_factory=dict)
    predicted_label: str | None = None


class Scorer(Protocol):
    """Anything that scores a sample (the RAGAS scorer, or a fake in tests)."""

    def score(self, sample: ScoreInput) -> SampleScores: ...


def _finite(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _legacy_metrics() -> tuple[Any, Any, Any]:
    """The legacy ID-based RAGAS classes (their deprecation warnings silenced: collections has none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.dataset_schema import SingleTurnSample
        from ragas.metrics import IDBasedContextPrecision, IDBasedContextRecall
    return SingleTurnSample, IDBasedContextPrecision, IDBasedContextRecall


def _run(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside an event loop (a notebook): run in a private loop on a worker thread.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class RagasScorer:
    """Faithfulness (judge LLM) plus ID-based context precision/recall and label accuracy.

    Args:
        judge: The judge endpoint; ``None`` skips faithfulness (recorded as ``skipped``).
        timeout: Seconds for one sample's faithfulness (all its judge calls); ``None``: no limit
            beyond the endpoint's own per-request timeout.
    """

    def __init__(self, judge: LLMEndpoint | None, timeout: float | None = None) -> None:
        single, precision, recall = _legacy_metrics()
        self._sample_cls = single
        self.judge = judge
        self.timeout = timeout
        self._precision = precision()
        self._recall = recall()
        self._faithfulness: Any = None
        if judge is not None:
            from cera_rag.experiments.rag.judge import FaithfulnessMetric, judge_llm

            self._faithfulness = FaithfulnessMetric(llm=judge_llm(judge))

    def _sample(self, s: ScoreInput) -> Any:
        return self._sample_cls(
            user_input=s.question,
            response=s.answer,
            retrieved_contexts=list(s.contexts),
            retrieved_context_ids=list(s.context_ids),
            reference_context_ids=list(s.reference_ids),
            reference=s.reference,
        )

    def _faithfulness_score(self, sample: Any, s: ScoreInput) -> tuple[float | None, str | None]:
        import openai
        from pydantic import ValidationError
        from ragas.exceptions import LLMDidNotFinishException, RagasOutputParserException

        from cera_rag.experiments.rag.judge import JudgeOutputError, JudgeTruncatedError

        if self._faithfulness is None:
            return None, "skipped"
        if not s.answer.strip():
            return None, "no_answer"
        if not s.contexts:
            return None, "no_contexts"
        assert self.judge is not None
        try:
            with endpoint_errors(self.judge, "judge"):
                try:
                    result = _run(asyncio.wait_for(self._faithfulness.ascore(
                        user_input=s.question, response=s.answer, retrieved_contexts=list(s.contexts)
                    ), timeout=self.timeout))  # fmt: skip
                    value = getattr(result, "value", result)
                except (LLMDidNotFinishException, openai.LengthFinishReasonError, JudgeTruncatedError):
                    return None, "truncated"
                except (RagasOutputParserException, JudgeOutputError, ValidationError):
                    return None, "parse_failure"
                except (asyncio.TimeoutError, TimeoutError, openai.APITimeoutError):
                    return None, "timeout"
        except EndpointError:
            raise
        except endpoint_exception_types():  # pragma: no cover - endpoint_errors translates these
            raise
        except Exception as exc:  # noqa: BLE001 - a judge answer RAGAS cannot use must not stop the run
            if type(exc).__name__ == "InstructorRetryException":  # instructor gave up on invalid JSON
                return None, "parse_failure"
            return None, f"error: {type(exc).__name__}: {str(exc)[:200]}"
        score = _finite(value)
        return (score, None) if score is not None else (None, "no_statements")

    def _id_score(self, metric: Any, sample: Any, s: ScoreInput) -> tuple[float | None, str | None]:
        if not s.context_ids:
            return None, "no_contexts"
        if not s.reference_ids:
            return None, "no_reference"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = _run(metric.single_turn_ascore(sample))
        score = _finite(value)
        return (score, None) if score is not None else (None, "nan")

    def score(self, s: ScoreInput) -> SampleScores:
        """Score one sample (see the module docstring for what each metric means)."""
        sample = self._sample(s)
        out = SampleScores(scores={}, predicted_label=parse_label(s.answer))
        results = {
            "faithfulness": self._faithfulness_score(sample, s),
            "context_precision": self._id_score(self._precision, sample, s),
            "context_recall": self._id_score(self._recall, sample, s),
        }
        correct = label_correct(s.answer, s.reference_label)
        results["label_accuracy"] = (correct, None if correct is not None else "no_direction")
        for name, (value, err) in results.items():
            out.scores[name] = value
            if err is not None:
                out.errors[name] = err
        return out


def reference_text(evidence_texts: Sequence[str], label: str) -> str:
    """The reference answer: the annotated evidence sentences and the label."""
    evidence = " ".join(" ".join(t.split()) for t in evidence_texts if t.strip())
    return f"{label}. Evidence: {evidence}" if evidence else label
