"""The two RAG pipelines compared: LlamaIndex and LangChain, with the same prompt, LLM and top-k.

* LlamaIndex: ``RetrieverQueryEngine(retriever, [HideMetadata], compact synthesizer)`` with
  ``RAG_PROMPT`` as its text-QA template. Node metadata is hidden from the LLM so the context is
  the passages alone, joined by a blank line (what ``compact`` does when the passages fit the
  context window, which top-5 passages of at most ~100 words always do).
* LangChain: the LCEL chain ``retriever | format_docs | prompt | llm | StrOutputParser()`` (kept
  as a ``RunnablePassthrough.assign`` so the retrieved documents come back with the answer).

Both send one user message, ``RAG_PROMPT`` filled with the same context and question (a unit
test checks the bytes on the wire). ``answer_llamaindex`` / ``answer_langchain`` return a
``RAGAnswer``: the answer, the retrieved passages, their ids, scores and rationale spans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cera_rag.spans import EVIDENCE_KEY, SPANS_KEY, SpanDict, parse_spans

#: The fixed prompt of both pipelines (LlamaIndex and LangChain both fill ``{context_str}`` and ``{query_str}``).
RAG_PROMPT = (
    "You answer questions about clinical trials using only the context passages below.\n"
    "---------------------\n"
    "{context_str}\n"
    "---------------------\n"
    "Question: {query_str}\n"
    "Answer in one or two sentences. Say whether the intervention significantly increased, significantly "
    "decreased, or made no significant difference to the outcome compared with the comparator, and quote "
    "the result from the context. If the context does not say, answer that it does not say.\n"
    "Answer:"
)

#: Separator between passages in the context (what LlamaIndex's ``compact`` mode uses).
CONTEXT_SEPARATOR = "\n\n"


@dataclass
class RAGAnswer:
    """One pipeline's answer to one question."""

    answer: str
    contexts: list[str]
    context_ids: list[str]
    scores: list[float | None] = field(default_factory=list)
    #: rationale spans per retrieved passage (offsets into ``contexts[i]``; empty when not computed)
    spans: list[list[SpanDict]] = field(default_factory=list)
    #: the reader's evidence spans per retrieved passage (empty without a reader)
    evidence: list[list[SpanDict]] = field(default_factory=list)
    #: cross-framework check of this answer (``ragas_eval.build_pipelines``): same request/passages/answer
    checks: dict[str, Any] = field(default_factory=dict)


def format_context(texts: Sequence[str]) -> str:
    """The context block both pipelines put in ``{context_str}``."""
    return CONTEXT_SEPARATOR.join(t.strip() for t in texts if t.strip())


# ------------------------------------------------------------------------------------ LlamaIndex
def _hide_metadata_postprocessor() -> Any:
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import NodeWithScore, QueryBundle

    class HideMetadataPostprocessor(BaseNodePostprocessor):
        """Copies nodes so the LLM sees their text only (no ``article_id: ...`` header lines)."""

        @classmethod
        def class_name(cls) -> str:
            return "HideMetadataPostprocessor"

        def _postprocess_nodes(
            self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
        ) -> list[NodeWithScore]:
            out = []
            for n in nodes:
                node = n.node.model_copy()
                node.excluded_llm_metadata_keys = list(node.metadata)
                out.append(NodeWithScore(node=node, score=n.score))
            return out

    return HideMetadataPostprocessor()


def build_llamaindex_engine(
    retriever: Any, llm: Any, prompt: str = RAG_PROMPT, postprocessors: Sequence[Any] = ()
) -> Any:
    """A ``RetrieverQueryEngine`` over ``retriever`` answering with ``llm`` and the fixed prompt.

    Args:
        retriever: A LlamaIndex retriever (``llama_index.retrievers.cera.CERARetriever``).
        llm: A LlamaIndex LLM (``cera_rag.experiments.rag.llm.llamaindex_llm``).
        prompt: Text-QA template with ``{context_str}`` and ``{query_str}``.
        postprocessors: Node post-processors run before the metadata is hidden (e.g.
            ``CERARationalePostprocessor``).
    """
    from llama_index.core import PromptTemplate, get_response_synthesizer
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.response_synthesizers import ResponseMode

    synthesizer = get_response_synthesizer(
        llm=llm, response_mode=ResponseMode.COMPACT, text_qa_template=PromptTemplate(prompt)
    )
    return RetrieverQueryEngine(
        retriever=retriever,
        response_synthesizer=synthesizer,
        node_postprocessors=[*postprocessors, _hide_metadata_postprocessor()],
    )


def _spans_of(metadata: Any, key: str = SPANS_KEY) -> list[SpanDict]:
    try:
        return parse_spans(metadata.get(key)) if metadata else []
    except ValueError:
        return []


def answer_llamaindex(engine: Any, question: str) -> RAGAnswer:
    """Ask a LlamaIndex query engine; the source nodes become the contexts."""
    response = engine.query(question)
    nodes = list(getattr(response, "source_nodes", []) or [])
    return RAGAnswer(
        answer=str(getattr(response, "response", None) or ""),
        contexts=[n.node.get_content() for n in nodes],
        context_ids=[str(n.node.metadata.get("cera_id") or n.node.node_id) for n in nodes],
        scores=[None if n.score is None else float(n.score) for n in nodes],
        spans=[_spans_of(n.node.metadata) for n in nodes],
        evidence=[_spans_of(n.node.metadata, EVIDENCE_KEY) for n in nodes],
    )


# ------------------------------------------------------------------------------------- LangChain
def format_docs(docs: Sequence[Any]) -> str:
    """LangChain ``Document`` list -> the context block (``format_context`` of the page contents)."""
    return format_context([d.page_content for d in docs])


def build_langchain_chain(retriever: Any, llm: Any, prompt: str = RAG_PROMPT) -> Any:
    """The LCEL chain ``retriever | format | prompt | llm | parser``, returning the documents too.

    ``chain.invoke(question)`` returns ``{"query_str", "docs", "context_str", "answer"}``.
    """
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

    template = ChatPromptTemplate.from_messages([("human", prompt)])
    retrieve = RunnableParallel(docs=retriever, query_str=RunnablePassthrough())
    fmt = RunnablePassthrough.assign(context_str=RunnableLambda(lambda x: format_docs(x["docs"])))
    generate = template | llm | StrOutputParser()
    return retrieve | fmt | RunnablePassthrough.assign(answer=generate)


def answer_langchain(chain: Any, question: str) -> RAGAnswer:
    """Run the LCEL chain; the retrieved documents become the contexts."""
    out = chain.invoke(question)
    docs = list(out.get("docs") or [])
    return RAGAnswer(
        answer=str(out.get("answer") or ""),
        contexts=[d.page_content for d in docs],
        context_ids=[str(d.metadata.get("cera_id") or d.id) for d in docs],
        scores=[d.metadata.get("cera_reader_score", d.metadata.get("cera_score")) for d in docs],
        spans=[_spans_of(d.metadata) for d in docs],
        evidence=[_spans_of(d.metadata, EVIDENCE_KEY) for d in docs],
    )
