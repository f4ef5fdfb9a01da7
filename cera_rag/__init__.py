"""cera-rag: evidential, explainable dense retrieval (CERA) for RAG pipelines.

The core library never imports a RAG framework; the LlamaIndex and LangChain adapters live in
``integrations/``. Heavy modules are imported lazily so ``import cera_rag`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["CERAEncoder", "CERAReader", "RationaleSpan", "__version__"]

if TYPE_CHECKING:
    from cera_rag.model import CERAEncoder, RationaleSpan
    from cera_rag.reader import CERAReader


def __getattr__(name: str) -> Any:
    if name in ("CERAEncoder", "RationaleSpan"):
        from cera_rag import model

        return getattr(model, name)
    if name == "CERAReader":
        from cera_rag.reader import CERAReader

        return CERAReader
    raise AttributeError(f"module 'cera_rag' has no attribute {name!r}")
