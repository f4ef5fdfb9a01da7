"""The three layers of docs/ARCHITECTURE.md, checked on the import graph of ``cera_rag/``.

model (encoders, reader, spans, data, losses, the trainers and the metrics they validate with) <-
store (Chroma) <- integrations (LlamaIndex, LangChain adapters) <- experiments (``cera_rag.experiments``:
the evaluation runner, RAG pipelines and RAGAS, demo, baselines; and the CLI on top). An import may
only point to its own layer or one below; the only import cycle is the documented lazy one
between the model and its optional ONNX backend.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Top-level modules of cera_rag (first component after ``cera_rag.``) per layer.
EXPERIMENTS = {"experiments", "cli"}
STORE = {"store", "chroma_embedding"}
LEVEL = {"model": 0, "store": 1, "integrations": 2, "experiments": 3}
#: The one cycle docs/ARCHITECTURE.md names (a lazy import of an optional backend).
ALLOWED_CYCLES = {frozenset({"cera_rag.model", "cera_rag.onnx_backend"})}


def layer(module: str) -> str | None:
    if module.startswith(("llama_index.", "langchain_cera")) and (
        ".cera" in module or module.startswith("langchain_cera")
    ):
        return "integrations"
    parts = module.split(".")
    if parts[0] != "cera_rag":
        return None
    top = parts[1] if len(parts) > 1 else ""
    if top in EXPERIMENTS:
        return "experiments"
    if top in STORE:
        return "store"
    return "model"


def imports() -> dict[str, set[str]]:
    """Module -> the modules it imports (module level, in functions, under TYPE_CHECKING alike)."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "cera_rag").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[module] = found
    return graph


def test_imports_only_point_down() -> None:
    upward = []
    for module, targets in imports().items():
        here = layer(module)
        assert here is not None
        for target in targets:
            there = layer(target)
            if there is not None and LEVEL[there] > LEVEL[here]:
                upward.append(f"{module} ({here}) imports {target} ({there})")
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles_but_the_documented_one() -> None:
    graph = {m: {t for t in ts if t.startswith("cera_rag") and t != m} for m, ts in imports().items()}
    cycles: set[frozenset[str]] = set()

    def walk(node: str, stack: list[str]) -> None:
        for nxt in graph.get(node, ()):
            if nxt in stack:
                cycles.add(frozenset(stack[stack.index(nxt) :]))
            elif len(stack) < 8:
                walk(nxt, [*stack, nxt])

    for module in graph:
        walk(module, [module])
    assert cycles <= ALLOWED_CYCLES, f"import cycles: {sorted(sorted(c) for c in cycles - ALLOWED_CYCLES)}"


def test_the_core_never_imports_a_framework() -> None:
    frameworks = ("llama_index", "langchain", "langchain_core", "langchain_cera", "ragas")
    offenders = sorted(
        f"{m} imports {t}"
        for m, ts in imports().items()
        if layer(m) != "experiments"
        for t in ts
        if t.split(".")[0] in frameworks
    )
    assert not offenders, offenders
