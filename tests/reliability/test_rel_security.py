"""Security: safetensors only, no remote code, paths stay inside their folders, rendered text is escaped."""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from rel_support import ROOT
from typer.testing import CliRunner

from cera_rag import store
from cera_rag.errors import CERAError, CheckpointError, DataError
from cera_rag.model import CERAEncoder
from cera_rag.store import StoreError

QUERY = "Does aspirin lower pain compared with placebo?"
#: Every package and script of the project whose code runs at import or on the command line.
SOURCE_DIRS = [
    ROOT / "cera_rag",
    ROOT / "evals",
    ROOT / "benchmarks",
    ROOT / "integrations" / "langchain-cera" / "langchain_cera",
    ROOT / "integrations" / "llama-index-cera" / "llama_index",
]
XSS = '<script>alert("x")</script><img src=x onerror="alert(1)">'


def _no_pickle(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("pickle-based loading was attempted (torch.load / pickle.load)")


@pytest.fixture()
def no_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every pickle entry point raise: anything that still loads used safetensors/JSON only."""
    import pickle

    import torch

    monkeypatch.setattr(torch, "load", _no_pickle)
    monkeypatch.setattr(pickle, "load", _no_pickle)
    monkeypatch.setattr(pickle, "loads", _no_pickle)


# ------------------------------------------------------------------------------------ weights
def test_weights_load_without_pickle(tiny_bert_dir: Path, tmp_path: Path, no_pickle: None) -> None:
    enc = CERAEncoder.from_pretrained(tiny_bert_dir)
    assert enc.encode_queries([QUERY]).shape == (1, enc.dim)
    enc.save_pretrained(tmp_path / "saved")
    again = CERAEncoder.from_pretrained(tmp_path / "saved")
    assert again.encode_passages(["Pain was lower."]).shape == (1, enc.dim)
    files = {p.name for p in (tmp_path / "saved").iterdir()}
    assert "model.safetensors" in files
    assert not {f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt", ".h5", ".msgpack"))}


@pytest.mark.parametrize("pickle_name", ["pytorch_model.bin", "tf_model.h5", "flax_model.msgpack"])
def test_pickle_only_folders_are_refused_before_anything_is_read(
    tiny_bert_copy: Path, pickle_name: str, no_pickle: None
) -> None:
    (tiny_bert_copy / "model.safetensors").unlink()
    (tiny_bert_copy / pickle_name).write_bytes(b"\x80\x04\x95 not to be unpickled")
    with pytest.raises(CheckpointError, match="pickle weights only"):
        CERAEncoder.from_pretrained(tiny_bert_copy)


def test_safetensors_wins_over_a_pickle_next_to_it(tiny_bert_copy: Path, no_pickle: None) -> None:
    (tiny_bert_copy / "pytorch_model.bin").write_bytes(b"\x80\x04\x95 a pickle that must never be opened")
    enc = CERAEncoder.from_pretrained(tiny_bert_copy)
    assert enc.encode_queries(["pain"]).shape == (1, enc.dim)


def test_training_state_is_saved_and_resumed_without_pickle(
    tmp_path: Path, tiny_bert_dir: Path, synthetic_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cera_rag.config import TrainConfig
    from cera_rag.train import Trainer

    cfg = TrainConfig(
        base_model=str(tiny_bert_dir),
        output_dir=str(tmp_path / "out" / "ckpt"),
        negatives="bm25",
        n_negatives=1,
        batch_size=2,
        epochs=2,
        max_passage_length=64,
        max_query_length=32,
        checkpoint_every=1,
        eval_split="",
    )
    trainer = Trainer(cfg, synthetic_data_dir)
    original = trainer.step_loss
    calls = {"n": 0}

    def stop_after_two(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            trainer._interrupted = True
        return original(*args, **kwargs)

    trainer.step_loss = stop_after_two  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        trainer.train(show_progress=False)
    saved = [p.name for p in trainer.run_dir.rglob("*") if p.is_file()]
    assert "optimizer.safetensors" in saved and "state.json" in saved
    assert not [n for n in saved if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], saved
    import pickle

    import torch

    monkeypatch.setattr(torch, "load", _no_pickle)
    monkeypatch.setattr(pickle, "load", _no_pickle)
    monkeypatch.setattr(pickle, "loads", _no_pickle)
    result = Trainer(cfg, synthetic_data_dir).train(resume=True, show_progress=False)
    assert result.steps > 2


def _python_files() -> list[Path]:
    files = [p for d in SOURCE_DIRS if d.is_dir() for p in sorted(d.rglob("*.py"))]
    files += sorted(ROOT.glob("*.py"))
    return [f for f in files if ".venv" not in f.parts and "__pycache__" not in f.parts]


def test_trust_remote_code_is_never_true() -> None:
    """Every ``trust_remote_code`` in the code is the literal ``False``; nothing passes True any other way."""
    files = _python_files()
    assert len(files) > 20
    uses: list[str] = []
    problems: list[str] = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                uses.append(where)
                if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                    problems.append(f"{where}: trust_remote_code={ast.unparse(node.value)}")
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "trust_remote_code":
                        uses.append(where)
                        if not (isinstance(value, ast.Constant) and value.value is False):
                            problems.append(f"{where}: {{'trust_remote_code': {ast.unparse(value)}}}")
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    name = t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", None)
                    if name == "trust_remote_code" and not (
                        isinstance(node.value, ast.Constant) and node.value.value is False
                    ):
                        problems.append(f"{where}: assignment of trust_remote_code")
    assert not problems, problems
    assert any("cera_rag/model.py" in u for u in uses), "the scan should see CERAEncoder.from_pretrained's uses"
    # configs, scripts and docs never turn it on either
    text_files = [*ROOT.glob("configs/*.yaml"), *ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), ROOT / "Makefile"]
    pattern = re.compile(r"trust[_-]remote[_-]code\s*[=:]\s*(true|True|1)")
    assert not [str(p) for p in text_files if p.is_file() and pattern.search(p.read_text(encoding="utf-8"))]


# ------------------------------------------------------------------------------------ paths
def test_symlink_out_of_the_indexed_folder_is_refused(tmp_path: Path, tiny_bert_dir: Path) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.txt").write_text("The secret password is hunter2.", encoding="utf-8")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.txt").write_text("Pain score was lower with aspirin.", encoding="utf-8")
    (docs / "leak.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(StoreError, match=r"leak\.txt points outside .*only files inside the folder"):
        store.passages_from_directory(docs)
    result = CliRunner().invoke(
        __import__("cera_rag.cli", fromlist=["app"]).app,
        ["index", str(docs), "--model", str(tiny_bert_dir), "--store", str(tmp_path / "chroma"), "-c", "rel-sec"],
    )
    assert isinstance(result.exception, StoreError)
    assert not (tmp_path / "chroma").exists() or "hunter2" not in _all_documents(tmp_path / "chroma")


def _all_documents(path: Path) -> str:
    client = store.get_client(path)
    return " ".join(d for c in client.list_collections() for d in (client.get_collection(c.name).get()["documents"]))


def test_symlinks_inside_the_folder_and_to_outside_folders(tmp_path: Path) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.txt").write_text("The secret password is hunter2.", encoding="utf-8")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "sub" / "real.txt").write_text("Pain score was lower with aspirin.", encoding="utf-8")
    (docs / "alias.txt").symlink_to(docs / "sub" / "real.txt")  # inside: allowed
    (docs / "linked-dir").symlink_to(outside, target_is_directory=True)  # a folder outside: not descended into
    passages = store.passages_from_directory(docs)
    assert sorted(p.article_id for p in passages) == ["alias", "sub/real"]
    assert all("hunter2" not in p.text for p in passages)


def test_sentence_transformers_module_paths_stay_inside_the_model(tiny_bert_copy: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    rel = os.path.relpath(evil, tiny_bert_copy)
    modules = [{"idx": 1, "name": "1", "path": rel, "type": "sentence_transformers.models.Pooling"}]
    (tiny_bert_copy / "modules.json").write_text(json.dumps(modules))
    enc = CERAEncoder.from_pretrained(tiny_bert_copy)
    assert enc.config.pooling == "mean", "a module path outside the model folder must not be read"
    modules[0]["path"] = str(evil)  # an absolute path
    (tiny_bert_copy / "modules.json").write_text(json.dumps(modules))
    assert CERAEncoder.from_pretrained(tiny_bert_copy).config.pooling == "mean"


def test_article_ids_cannot_leave_the_text_folder(tmp_path: Path) -> None:
    from conftest import write_synthetic_dataset

    from cera_rag.data.reader import load_split, read_article

    root = write_synthetic_dataset(tmp_path / "ei")
    (tmp_path / "ei" / "annotations" / "txt_files" / "PMCx").mkdir()
    (tmp_path / "ei" / "secret.txt").write_text("secret", encoding="utf-8")
    for bad in ["x/../../../secret", "x\\..\\..\\..\\secret", "1000\x00"]:
        with pytest.raises(DataError, match="not a valid article id"):
            read_article(root, bad)
    split_file = root / "annotations" / "splits" / "ev2_train_article_ids.txt"
    split_file.write_text("1000\nx/../../../secret\n", encoding="utf-8")
    with pytest.raises(DataError, match="not a valid article id"):
        load_split(root, "train")


def test_training_never_replaces_a_folder_that_is_not_a_checkpoint(
    tmp_path: Path, tiny_bert_dir: Path, synthetic_data_dir: Path
) -> None:
    from cera_rag.config import TrainConfig
    from cera_rag.train import Trainer

    precious = tmp_path / "my-data"
    precious.mkdir()
    (precious / "notes.txt").write_text("do not delete", encoding="utf-8")
    enc = CERAEncoder.from_pretrained(tiny_bert_dir)
    with pytest.raises(CheckpointError, match="not a model checkpoint"):
        enc.save_pretrained(precious)
    assert (precious / "notes.txt").read_text() == "do not delete"
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep")
    with pytest.raises(CheckpointError, match="not a folder"):
        enc.save_pretrained(a_file)
    assert a_file.read_text() == "keep"

    base = {"base_model": str(tiny_bert_dir), "negatives": "bm25", "batch_size": 2, "max_steps": 1, "eval_split": ""}
    with pytest.raises(CERAError, match="not a model checkpoint"):
        Trainer(TrainConfig(output_dir=str(precious), **base), synthetic_data_dir).train(show_progress=False)
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]
    for bad in [".", "..", "/"]:
        with pytest.raises(CERAError, match="output_dir"):
            Trainer(TrainConfig(output_dir=bad, **base), synthetic_data_dir)
    # an existing checkpoint (or an empty folder) is replaced as before
    (tmp_path / "empty").mkdir()
    enc.save_pretrained(tmp_path / "empty")
    enc.save_pretrained(tmp_path / "empty")
    assert (tmp_path / "empty" / "cera_config.json").is_file()
    assert not (tmp_path / ".empty.old").exists()


# ------------------------------------------------------------------------------------ rendering
def test_html_output_escapes_document_text() -> None:
    demo = pytest.importorskip(
        "cera_rag.experiments.demo", reason="cera_rag/experiments/demo.py (the HTML demo page) is not written yet"
    )
    if not hasattr(demo, "render_html"):
        pytest.skip("cera_rag.experiments.demo has no render_html yet")
    text = f"Pain was lower. {XSS} & 'quotes' \"double\""
    start = text.index("<script>")
    spans = [{"start": start, "end": start + len("<script>alert"), "text": text[start : start + 13], "weight": 0.9}]
    passage = demo.DemoPassage(id=f"doc-{XSS}:0-10", text=text, score=0.5, spans=spans)
    answer = demo.DemoAnswer(question=f"Q {XSS}?", answer=f"A {XSS}", passages=[passage], reference_label=XSS)
    page = demo.render_html([answer], model=f"model {XSS}", llm=f"llm {XSS}")
    assert "<script>" not in page and "onerror=" not in page.replace("onerror=&quot;", "")
    assert "<img" not in page
    assert page.count("&lt;script&gt;") >= 6  # question, answer, label, id, model, llm, passage
    assert page.count('<mark class="cera-span"') == 1
    # the highlighted span holds the escaped text of exactly its offsets
    assert "alert</mark>" in page and "&lt;script&gt;alert</mark>" in page
    assert demo.highlight_html("a < b", [{"start": 0, "end": 5, "text": "a < b", "weight": 1.0}]).endswith(
        "a &lt; b</mark>"
    )


def test_terminal_output_does_not_interpret_document_markup(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from cera_rag.cli import app

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "[red]evil[-].txt").write_text("[bold red]Pain[/bold red] [/] was lower <b>x</b>.", encoding="utf-8")
    common = ["--model", str(tiny_bert_dir), "--store", str(tmp_path / "chroma"), "-c", "rel-markup"]
    runner = CliRunner()
    assert runner.invoke(app, ["index", str(docs), *common]).exit_code == 0
    shown = runner.invoke(app, ["query", QUERY, "-k", "1", *common])
    assert shown.exit_code == 0, shown.output
    assert "[bold red]Pain[/bold red] [/] was lower <b>x</b>." in shown.output
    assert "[red]evil[-]" in shown.output


def test_demo_console_output_does_not_interpret_markup() -> None:
    demo = pytest.importorskip("cera_rag.experiments.demo", reason="cera_rag/experiments/demo.py is not written yet")
    if not hasattr(demo, "print_answers"):
        pytest.skip("cera_rag.experiments.demo has no print_answers yet")
    from rich.console import Console

    passage = demo.DemoPassage(id="[red]id[/red]", text="[bold]text[/bold] [/]", score=0.1, spans=[])
    answer = demo.DemoAnswer(
        question="Why [/] here?", answer="The LLM said [/bold] and [link=http://x]y[/link].", passages=[passage]
    )
    console = Console(record=True, width=200, color_system=None)
    demo.print_answers([answer], console=console)
    out = console.export_text()
    for literal in ["Why [/] here?", "The LLM said [/bold] and [link=http://x]y[/link].", "[red]id[/red]"]:
        assert literal in out


def test_no_shell_injection_through_paths() -> None:
    """No module builds a shell command line (``shell=True`` or ``os.system``): paths never reach a shell."""
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "shell":
                if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.value.lineno}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in ("system", "popen") and getattr(node.func.value, "id", "") == "os":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
