"""Fixtures for the LlamaIndex integration: tiny random BERT encoders (no download) and a small corpus.

The repository's ``tests/conftest.py`` is not visible here, so the tiny BERT is built the same way.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from cera_rag.testing import write_tiny_bert  # noqa: E402 - after the offline switches

#: ``(id, text, metadata)`` records indexed by the tests.
CORPUS: list[tuple[str, str, dict[str, Any]]] = [
    ("a1:0-40", "Pain score was significantly lower with aspirin than placebo.", {"article_id": "a1", "year": 2019}),
    ("a1:41-90", "Headache duration was reduced in the aspirin group.", {"article_id": "a1", "year": 2019}),
    ("a2:0-35", "No difference in blood pressure was seen with metformin.", {"article_id": "a2", "year": 2021}),
    ("a2:36-80", "Mortality risk was higher in the control group.", {"article_id": "a2", "year": 2021}),
    ("a3:0-50", "Insulin dose was increased daily for two weeks.", {"article_id": "a3", "year": 2023}),
    ("a3:51-99", "Vitamin treatment improved the outcome. Pain was not reduced.", {"article_id": "a3", "year": 2023}),
]


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT used as the CERA encoder."""
    return write_tiny_bert(tmp_path_factory.mktemp("li-tiny-bert"), seed=0)


@pytest.fixture(scope="session")
def other_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny BERT (other weights), used as the Contriever-style baseline."""
    return write_tiny_bert(tmp_path_factory.mktemp("li-other-bert"), seed=1)


@pytest.fixture(scope="session")
def encoder(tiny_bert_dir: Path) -> Any:
    from cera_rag import store

    return store.load_encoder(tiny_bert_dir)


@pytest.fixture(scope="session")
def contriever_encoder(other_bert_dir: Path) -> Any:
    from cera_rag import store

    return store.load_encoder(other_bert_dir, contriever=True)


@pytest.fixture(scope="session")
def corpus() -> list[tuple[str, str, dict[str, Any]]]:
    return [(i, t, dict(m)) for i, t, m in CORPUS]


@pytest.fixture()
def collection(encoder: Any, tmp_path: Path, corpus: list[tuple[str, str, dict[str, Any]]]) -> Any:
    """An embedded Chroma collection in a temp dir, holding ``CORPUS`` embedded by ``encoder``."""
    from cera_rag import store

    coll = store.open_for_encoder(encoder, path=tmp_path / "chroma", name="li-test")
    store.index_passages(encoder, coll, corpus)
    return coll


# ---------------------------------------------------------------------------------------- conftest name
# pytest imports every conftest.py outside a package as the module ``conftest``, so the last one
# loaded (this one, when the integrations' tests are collected with the repository's) is what
# ``from conftest import ...`` in the repository's own tests gets. Names this file lacks are
# therefore looked up in the repository's tests/conftest.py (helpers only, never its fixtures).
_REPO_CONFTEST = Path(__file__).resolve().parents[3] / "tests" / "conftest.py"
_repo_conftest: ModuleType | None = None


def __getattr__(name: str) -> Any:
    global _repo_conftest
    if name.startswith("__") or not _REPO_CONFTEST.is_file():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _repo_conftest is None:
        spec = importlib.util.spec_from_file_location("_cera_repo_conftest", _REPO_CONFTEST)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _repo_conftest = module
    value = getattr(_repo_conftest, name, None)
    if value is None or hasattr(value, "_fixture_function_marker"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return value
