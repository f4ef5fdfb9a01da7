"""The experiments layer: everything that runs the library end to end to measure it.

Only this layer (and the CLI above it) imports the framework integrations, LlamaIndex, LangChain
and RAGAS; the ``rag`` extra installs them. Modules:

* ``runner``: one evaluation run (``EvalConfig``, ``run_evaluation``); ``report``: JSON, markdown, PNGs;
* ``rag``: a local OpenAI-compatible LLM, the LlamaIndex/LangChain RAG pipelines, RAGAS scoring and the
  CERA-vs-Contriever comparison behind ``evals/run_ragas.py``;
* ``demo``: ``cera-rag demo`` (index a few articles, answer three questions, write demo.html);
* ``baselines``: the plain sentence-transformers fine-tune (the README's row 2).

The Contriever-style baseline is not here: it is a named encoder configuration
(``cera_rag.encoders.ENCODER_CONFIGS``), usable wherever an encoder is.
"""
