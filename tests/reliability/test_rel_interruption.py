"""Interruption: an indexing run, a RAGAS run and a training run killed half-way resume without loss or duplicates.

The subprocess tests (marked slow) run the real entry points (``cera-rag index``, ``cera-rag train``,
``evals/run_ragas.py``) in a child process, wait until it has done part of the work, send SIGINT or
SIGKILL, then rerun the same command and compare with an uninterrupted run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import write_synthetic_dataset
from rel_support import (
    PYTHON,
    ROOT,
    FakeHTTPServer,
    openai_chat_reply,
    openai_models_reply,
    subprocess_env,
    wait_for,
)

from cera_rag import store

SENTENCES = [
    "Pain score was significantly lower with aspirin than placebo.",
    "Headache duration was reduced in the aspirin group.",
    "No difference in blood pressure was seen.",
    "Mortality risk was higher in the control group.",
    "Insulin dose was increased daily for two weeks.",
]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _start(code: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Run ``python -c code args...`` with stdout and stderr going to ``log``."""
    fh = log.open("wb")
    try:
        return subprocess.Popen(
            [PYTHON, "-c", textwrap.dedent(code), *args], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    finally:
        fh.close()


def _stop(proc: subprocess.Popen, sig: int, timeout: float = 120) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the process did not stop within {timeout} s of signal {sig}") from None


# ------------------------------------------------------------------------------------ indexing
#: ``cera-rag index`` through its real entry point, each embedding step slowed and reported on stdout.
SLOW_INDEX = """
import sys, time
from cera_rag.model import CERAEncoder
original = CERAEncoder.encode_passages
def slow(self, texts, *args, **kwargs):
    out = original(self, texts, *args, **kwargs)
    print("EMBEDDED", len(texts), flush=True)
    time.sleep(0.25)
    return out
CERAEncoder.encode_passages = slow
from cera_rag.cli import main
sys.argv = ["cera-rag", "index", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_killed_index_run_resumes_with_every_document_once(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from typer.testing import CliRunner

    from cera_rag.cli import app

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(48):
        text = "\n".join(f"{s} Trial {i}, finding {j}." for j, s in enumerate(SENTENCES))
        (docs / f"trial{i:02d}.txt").write_text(text + "\n", encoding="utf-8")
    expected = {p.passage_id: p.text for p in store.passages_from_directory(docs)}
    n = len(expected)
    assert n >= 48
    args = [str(docs), "--model", str(tiny_bert_dir), "--store", str(tmp_path / "chroma"), "-c", "rel-kill"]
    args += ["--batch-size", "4"]
    out = tmp_path / "index.log"
    proc = _start(SLOW_INDEX, args, subprocess_env(tmp_path / "cache"), out)
    half = n // 4 // 2  # batches of 4: kill after about half of them
    wait_for(lambda: sum("EMBEDDED" in x for x in _lines(out)) >= half, 300, "half of the batches", proc)
    assert _stop(proc, signal.SIGKILL) == -signal.SIGKILL
    done_before = sum("EMBEDDED" in x for x in _lines(out))
    assert done_before < (n + 3) // 4, "the run must be killed before it finished"

    rerun = CliRunner().invoke(app, ["index", *args])
    assert rerun.exit_code == 0, rerun.output
    added = int(rerun.output.split(" passages added")[0].rsplit(" ", 1)[-1])
    skipped = int(rerun.output.split(" already indexed")[0].rsplit(" ", 1)[-1])
    assert added + skipped == n and skipped >= 4 * (done_before - 1)
    coll = store.get_client(tmp_path / "chroma").get_collection("rel-kill", embedding_function=None)
    assert coll.count() == n
    got = coll.get(ids=list(expected), include=["documents"])
    assert sorted(got["ids"]) == sorted(expected)
    assert all(expected[i] == d for i, d in zip(got["ids"], got["documents"], strict=True))
    again = CliRunner().invoke(app, ["index", *args])
    assert f"0 passages added, {n} already indexed" in again.output


# ------------------------------------------------------------------------------------ RAGAS
RAGAS_SCRIPT = ROOT / "evals" / "run_ragas.py"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_killed_ragas_run_resumes_with_every_row_once(tmp_path: Path, tiny_bert_dir: Path, sig: int) -> None:
    if not RAGAS_SCRIPT.is_file():
        pytest.skip("evals/run_ragas.py is not written yet")
    pytest.importorskip("ragas", reason="the RAGAS comparison needs the [rag] extra")
    pytest.importorskip("llama_index.llms.openai_like", reason="needs llama-index-llms-openai-like")
    pytest.importorskip("langchain_openai", reason="needs langchain-openai")
    data = write_synthetic_dataset(tmp_path / "ei", n_articles=4)  # train: 3 articles, 6 prompts
    out = tmp_path / "ragas"
    answer = "Pain score was significantly decreased with the drug compared with placebo."
    routes = {"/models": openai_models_reply(), "/chat/completions": openai_chat_reply(answer)}
    with FakeHTTPServer(routes, delay=0.6) as llm:
        args = [str(RAGAS_SCRIPT), "--split", "train", "--limit", "6", "--data-dir", str(data)]
        args += ["--cera-model", str(tiny_bert_dir), "--systems", "cera,bm25", "--skip-faithfulness"]
        args += ["--llm-base-url", llm.base_url, "--llm-model", "fake-model", "--out", str(out)]
        args += ["--store-dir", str(tmp_path / "stores"), "--top-k", "2"]
        env = subprocess_env(tmp_path / "cache")
        log = tmp_path / "ragas-1.log"
        with log.open("wb") as fh:
            proc = subprocess.Popen([PYTHON, *args], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        rows_file = out / "ragas_rows.jsonl"
        wait_for(lambda: len(_lines(rows_file)) >= 3, 600, "three scored rows", proc)
        rc = _stop(proc, sig)
        if sig == signal.SIGKILL:
            assert rc == -signal.SIGKILL
        else:  # Ctrl-C, or `kill PID` on a run in the background: a clean stop, the partial summary written
            assert rc == (130 if sig == signal.SIGINT else 143), log.read_text()[-2000:]
            assert "rerun the same command to resume" in log.read_text()
            assert (out / "ragas_summary.json").is_file()
        before = len(_lines(rows_file))
        assert before < 12, "the run must be killed before it finished"

        llm.delay = 0.0
        done = subprocess.run([PYTHON, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(x) for x in _lines(rows_file)]
    keys = [(r["system"], r["question_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 12, "every (system, question) row exactly once"
    assert {k[0] for k in keys} == {"cera", "bm25"}
    gens = [json.loads(x) for x in _lines(out / "ragas_generations.jsonl")]
    gen_keys = [(g["system"], g["question_id"]) for g in gens]
    assert len(gen_keys) == len(set(gen_keys)) == 12, "no answer generated twice"
    assert f"{before} rows done" in done.stderr
    assert (out / "ragas_summary.json").is_file()


# ------------------------------------------------------------------------------------ training
#: ``cera-rag train`` through its real entry point, with each checkpoint write delayed, so a SIGKILL
#: lands between a step's log line and its checkpoint (the worst moment).
SLOW_TRAIN = """
import sys, time
from cera_rag.train import Trainer
original = Trainer._save_state
def slow(self, *args, **kwargs):
    time.sleep(0.3)
    return original(self, *args, **kwargs)
Trainer._save_state = slow
from cera_rag.cli import main
sys.argv = ["cera-rag", "train", *sys.argv[1:]]
main()
"""
TRAIN_CONFIG: dict[str, Any] = {
    "negatives": "bm25",
    "n_negatives": 2,
    "batch_size": 2,
    "lr": 1e-3,
    "warmup_ratio": 0.0,
    "epochs": 3,
    "max_passage_length": 64,
    "max_query_length": 32,
    "alignment_weight": 0.1,
    "checkpoint_every": 1,
    "eval_split": "",
}


def _write_config(path: Path, base_model: Path, output_dir: Path) -> Path:
    path.write_text(yaml.safe_dump({**TRAIN_CONFIG, "base_model": str(base_model), "output_dir": str(output_dir)}))
    return path


def _step_losses(output_dir: Path) -> list[tuple[int, float]]:
    log = output_dir.with_name(output_dir.name + ".log.jsonl")
    return [(r["step"], r["loss"]) for r in map(json.loads, _lines(log)) if "loss" in r]


def _cli_train(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = str(Path(PYTHON).with_name("cera-rag"))
    return subprocess.run([exe, "train", *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def train_setup(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> dict[str, Any]:
    """A synthetic dataset (7 train articles: 7 steps an epoch) and the losses of an uninterrupted CLI run."""
    root = tmp_path_factory.mktemp("rel-train")
    data = write_synthetic_dataset(root / "ei", n_articles=8)
    env = subprocess_env(root / "cache")
    cfg = _write_config(root / "straight.yaml", tiny_bert_dir, root / "straight" / "ckpt")
    done = _cli_train(["--config", str(cfg), "--data-dir", str(data), "--quiet"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    reference = _step_losses(root / "straight" / "ckpt")
    assert [s for s, _ in reference] == list(range(1, 22))
    return {"data": data, "env": env, "reference": reference}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_training_resumes_on_the_same_loss_trajectory(
    tmp_path: Path, tiny_bert_dir: Path, train_setup: dict[str, Any], sig: int
) -> None:
    output_dir = tmp_path / "run" / "ckpt"
    cfg = _write_config(tmp_path / "cfg.yaml", tiny_bert_dir, output_dir)
    args = ["--config", str(cfg), "--data-dir", str(train_setup["data"]), "--quiet"]
    log = tmp_path / "train-1.log"
    proc = _start(SLOW_TRAIN, args, train_setup["env"], log)
    wait_for(lambda: len(_step_losses(output_dir)) >= 5, 600, "five training steps", proc)
    rc = _stop(proc, sig)
    if sig == signal.SIGINT:
        assert rc == 130, log.read_text()[-2000:]
        assert "resume with --resume" in log.read_text()
    else:
        assert rc == -signal.SIGKILL
    run_dir = output_dir.with_name("ckpt.run")
    stopped_at = json.loads((run_dir / "state.json").read_text())["step"]
    assert 1 <= stopped_at < 21, "interrupted after a checkpoint and before the end"

    resumed = _cli_train([*args, "--resume"], train_setup["env"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["steps"] == 21
    got = _step_losses(output_dir)
    reference = train_setup["reference"]
    assert [s for s, _ in got] == [s for s, _ in reference], "the log holds every step exactly once"
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in reference], rel=1e-3, abs=1e-4)
    from cera_rag.model import CERAEncoder

    assert CERAEncoder.from_pretrained(output_dir).encode_queries(["pain"]).shape == (1, 32)


def test_resume_after_a_crash_inside_the_checkpoint_swap(
    tmp_path: Path, tiny_bert_dir: Path, synthetic_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between moving the old state aside and moving the new one in still resumes (no lost run)."""
    from cera_rag.config import TrainConfig
    from cera_rag.train import Trainer

    cfg = TrainConfig(base_model=str(tiny_bert_dir), output_dir=str(tmp_path / "out" / "ckpt"), **TRAIN_CONFIG)
    straight = Trainer(cfg.model_copy(update={"output_dir": str(tmp_path / "ref" / "ckpt")}), synthetic_data_dir)
    straight.train(show_progress=False)
    reference = _step_losses(tmp_path / "ref" / "ckpt")

    trainer = Trainer(cfg, synthetic_data_dir)
    original_rename = Path.rename
    calls = {"saves": 0}
    original_save = trainer._save_state

    def crash_in_swap(*args: Any, **kwargs: Any) -> None:
        calls["saves"] += 1
        if calls["saves"] < 4:
            return original_save(*args, **kwargs)

        def rename(self: Path, target: Any) -> Any:
            if self.name == "ckpt.run.tmp":  # the new state is complete; the process dies before moving it in
                raise SystemExit("killed")
            return original_rename(self, target)

        monkeypatch.setattr(Path, "rename", rename)
        try:
            original_save(*args, **kwargs)
        finally:
            monkeypatch.setattr(Path, "rename", original_rename)

    trainer._save_state = crash_in_swap  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        trainer.train(show_progress=False)
    run_dir = tmp_path / "out" / "ckpt.run"
    assert not run_dir.exists() and (tmp_path / "out" / "ckpt.run.old").is_dir()
    Trainer(cfg, synthetic_data_dir).train(resume=True, show_progress=False)
    got = _step_losses(tmp_path / "out" / "ckpt")
    assert [s for s, _ in got] == [s for s, _ in reference]
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in reference], rel=1e-3, abs=1e-4)
    assert not (tmp_path / "out" / "ckpt.run.old").exists() and not (tmp_path / "out" / "ckpt.run.tmp").exists()


def test_torn_training_log_line_is_dropped_on_resume(
    tmp_path: Path, tiny_bert_dir: Path, synthetic_data_dir: Path
) -> None:
    """A log line cut short by a kill (and lines past the checkpoint) do not survive into the resumed log."""
    from cera_rag.config import TrainConfig
    from cera_rag.train import Trainer

    cfg = TrainConfig(base_model=str(tiny_bert_dir), output_dir=str(tmp_path / "out" / "ckpt"), **TRAIN_CONFIG)
    ref = Trainer(cfg.model_copy(update={"output_dir": str(tmp_path / "ref" / "ckpt")}), synthetic_data_dir)
    ref.train(show_progress=False)
    reference = _step_losses(tmp_path / "ref" / "ckpt")

    trainer = Trainer(cfg, synthetic_data_dir)
    original = trainer.step_loss
    calls = {"n": 0}

    def stop_after_three(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            trainer._interrupted = True
        return original(*args, **kwargs)

    trainer.step_loss = stop_after_three  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        trainer.train(show_progress=False)
    log = tmp_path / "out" / "ckpt.log.jsonl"
    with log.open("a", encoding="utf-8") as fh:  # what a kill after step 4's log line, mid-write of step 5, leaves
        fh.write(json.dumps({"step": 4, "epoch": 0, "lr": 1e-3, "loss": 123.0}) + "\n")
        fh.write('{"step": 5, "epoch": 0, "lo')
    Trainer(cfg, synthetic_data_dir).train(resume=True, show_progress=False)
    got = _step_losses(tmp_path / "out" / "ckpt")
    assert [s for s, _ in got] == [s for s, _ in reference]
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in reference], rel=1e-3, abs=1e-4)
    assert all(json.loads(line) for line in _lines(log))
