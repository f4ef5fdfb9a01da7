"""RAG on top of CERA: a local OpenAI-compatible LLM, LlamaIndex/LangChain pipelines, RAGAS scoring.

Modules (each imports LlamaIndex, LangChain, RAGAS or llama-cpp lazily, inside functions):

* ``local_llm``: ``LocalLLMServer`` runs llama-cpp-python's OpenAI-compatible server (SmolLM2-135M).
* ``llm``: ``LLMEndpoint`` and the frameworks' OpenAI clients (``OpenAILike``, ``ChatOpenAI``).
* ``pipelines``: the fixed prompt, the LlamaIndex query engine and the LangChain LCEL chain.
* ``labels``: the direction (increased / decreased / no difference) an answer states.
* ``scoring``: RAGAS faithfulness and ID-based context precision/recall per sample.
* ``results``: resumable JSONL rows and the summary (markdown, JSON, PNG).
* ``ragas_eval``: the CERA-vs-Contriever comparison behind ``evals/run_ragas.py``.
"""

from cera_rag.experiments.rag.errors import EndpointError, LocalLLMError

__all__ = ["EndpointError", "LocalLLMError"]
