"""LangChain's standard test suites (``langchain_tests``) for CERAEmbeddings and CERARetriever.

The vector-store suite runs on the native stack a LangChain user builds: ``langchain_chroma.Chroma``
with ``CERAEmbeddings`` as its embedding function, over a collection cera-rag created (encoder
identity recorded, ``ip`` space), searched with real (tiny BERT) vectors instead of the suite's fakes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_cera import CERAEmbeddings, CERARetriever
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    EmbeddingsIntegrationTests,
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)
from langchain_tests.unit_tests import EmbeddingsUnitTests

from cera_rag import store

# The suites' async tests carry no marker (LangChain runs them in asyncio "auto" mode); this repo
# uses "strict" mode, so the module is marked (pytest-asyncio warns about the marked sync tests).
pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:The test <Function .* with '@pytest.mark.asyncio':pytest.PytestWarning"),
]


class _TinyModel:
    """Points the suite's class-level properties at the session's tiny BERT."""

    model_dir: Path

    @pytest.fixture(autouse=True)
    def _tiny_model(self, tiny_bert_dir: Path) -> None:
        type(self).model_dir = tiny_bert_dir


class TestCERAEmbeddingsUnit(_TinyModel, EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[CERAEmbeddings]:
        return CERAEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model_name": str(self.model_dir)}


class TestCERAEmbeddingsIntegration(_TinyModel, EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[CERAEmbeddings]:
        return CERAEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model_name": str(self.model_dir), "batch_size": 2}


class TestCERARetrieverIntegration(RetrieversIntegrationTests):
    store_dir: Path
    model_dir: Path

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _indexed_store(cls, tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory, corpus: list) -> None:
        cls.model_dir = tiny_bert_dir
        cls.store_dir = tmp_path_factory.mktemp("lc-standard-store")
        encoder = store.load_encoder(tiny_bert_dir)
        coll = store.open_for_encoder(encoder, path=cls.store_dir, name="lc-standard")
        store.index_passages(encoder, coll, corpus)

    @property
    def retriever_constructor(self) -> type[CERARetriever]:
        return CERARetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {
            "model_name": str(self.model_dir),
            "persist_directory": str(self.store_dir),
            "collection_name": "lc-standard",
            "create": False,
        }

    @property
    def retriever_query_example(self) -> str:
        return "Does aspirin lower pain compared with placebo?"


class TestChromaWithCERAEmbeddings(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, encoder: Any, tmp_path: Path) -> Iterator[VectorStore]:
        from langchain_chroma import Chroma

        client = store.get_client(tmp_path / "chroma")
        vs = Chroma(
            client=client, collection_name="lc-vectorstore-suite", embedding_function=CERAEmbeddings(encoder=encoder)
        )
        try:
            yield vs
        finally:
            vs.delete_collection()
