"""Train and evaluate the README's experiment rows (configs/*.yaml) on the validation split.

    python evals/run_experiments.py                       # every row, every seed (resumes)
    python evals/run_experiments.py --rows 2,7 --max-seeds 1

Each (row, seed) trains once into ``checkpoints/rows/<config>-s<seed>`` (skipped when the folder
holds a finished checkpoint) and is evaluated within-article on validation with the paper's query
template and with held-out natural phrasings. Results are appended to
``results/validation_retrieval.json`` after every entry (atomic write), so an interrupted run
resumes where it stopped; ``results/validation_retrieval.md`` holds the table, with seed means and
a paired bootstrap / randomisation test of row 7 against row 2 on per-query MRR@10.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cera_rag.atomic import write_json  # noqa: E402
from cera_rag.data.dataset import DataConfig, load_processed  # noqa: E402
from cera_rag.evaluation.retrieval import (  # noqa: E402
    DEFAULT_METRICS,
    build_qrels,
    dense_run_from_vectors,
    eval_examples,
    evaluate_run,
    query_text,
    vectors_by_article,
)
from cera_rag.experiments.runner import resolve_backend  # noqa: E402
from cera_rag.model import CERAEncoder  # noqa: E402
from cera_rag.run_state import checkpoint_finished  # noqa: E402

STYLES = ("paper", "heldout")
# corpus-pool results live under "corpus/<style>" (entries written before the corpus pool was added lack them)
CORPUS = "corpus/paper"
TABLE_METRICS = ("mrr@10", "hit_rate@1", "recall@1", "recall@5", "ndcg@10")


def atomic_json(path: Path, obj: Any) -> None:
    write_json(path, obj)


def record_entry(path: Path, key: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Add one entry to the results file as it is *now* and return the merged results.

    Two runners (e.g. ``--rows 7k`` and ``--rows 7l`` side by side) each read the file when they start;
    writing back that start-time copy would drop the entries the other wrote meanwhile.
    """
    results = json.loads(path.read_text()) if path.is_file() else {"entries": {}}
    results["entries"][key] = entry
    atomic_json(path, results)
    return results


def train_entry(spec: dict[str, Any], seed: int, out_dir: Path, data_dir: str | None) -> float:
    """Train one (row, seed) unless its checkpoint is finished (see ``checkpoint_finished``); returns seconds."""
    if checkpoint_finished(out_dir):
        return 0.0
    if spec["kind"] == "st":
        from cera_rag.experiments.baselines import STBaselineConfig, train_st_baseline

        t0 = time.time()
        train_st_baseline(
            STBaselineConfig(**{**spec.get("train", {}), "seed": seed, "output_dir": str(out_dir)}), data_dir
        )
        return time.time() - t0
    if spec["kind"] == "cera":
        from cera_rag.config import load_config
        from cera_rag.train import train_unless_finished

        train = dict(spec.get("train", {}))
        overrides = {**train, "seed": seed, "output_dir": str(out_dir)}
        if int(train.get("epochs", 1)) == 1:
            overrides["eval_split"] = ""  # one epoch: nothing to select; evaluated below
        return train_unless_finished(load_config(None, None, overrides), data_dir)
    return 0.0


def evaluate_entry(model: str, pooling: str | None, val: Any) -> dict[str, Any]:
    """Within-article and whole-corpus metrics for both query styles, from one encoding of the corpus."""
    # ONNX Runtime where installed: the same vectors as PyTorch (to ~1e-6), about 1.4x faster on CPU.
    backend = resolve_backend("auto")
    enc = CERAEncoder.from_pretrained(model, pooling=pooling, max_passage_length=128, backend=backend)
    exs = eval_examples(val)
    articles = sorted(val.passages)
    vectors = np.asarray(enc.encode_passages([p.text for a in articles for p in val.passages[a]]))
    article_vectors = vectors_by_article(val, articles, vectors)
    qrels = build_qrels(val)
    out: dict[str, Any] = {}
    for style in STYLES:
        qv = np.asarray(enc.encode_queries([query_text(ex, style) for ex in exs]))
        # article pool under the style's name (the table's columns); the corpus pool (one collection over
        # every validation article, what a RAG user searches) under "corpus/<style>"
        for key, pool in ((style, "article"), (f"corpus/{style}", "corpus")):
            run = dense_run_from_vectors(val, exs, qv, article_vectors, pool=pool)
            res = evaluate_run(qrels, run, DEFAULT_METRICS, per_query=True)
            out[key] = {
                "metrics": {m: res[m] for m in DEFAULT_METRICS},
                "per_query_mrr@10": res["per_query"]["mrr@10"],
            }
    return out


def paired_test(a: dict[str, float], b: dict[str, float], n_boot: int = 10000, seed: int = 0) -> dict[str, float]:
    """Mean of a - b over shared queries, its 95% paired-bootstrap CI and a randomisation p-value."""
    keys = sorted(set(a) & set(b))
    d = np.array([a[k] - b[k] for k in keys])
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(1)
    signs = rng.choice([-1.0, 1.0], size=(n_boot, len(d)))
    perm = np.abs((signs * d).mean(1))
    return {
        "mean_diff": float(d.mean()),
        "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
        "p_randomisation": float((np.sum(perm >= abs(d.mean()) - 1e-12) + 1) / (n_boot + 1)),
        "n_queries": len(keys),
    }


def summarise(results: dict[str, Any], specs: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], str]:
    rows: dict[str, dict[str, Any]] = {}
    for _key, entry in results["entries"].items():
        rows.setdefault(entry["config"], {"entries": []})["entries"].append(entry)
    summary: dict[str, Any] = {}
    lines = [
        "| row | system | seeds | "
        + " | ".join(f"{m} (paper q)" if m == "mrr@10" else m for m in TABLE_METRICS)
        + " | MRR@10 held-out phrasings | MRR@10 corpus pool | nDCG@10 corpus pool | train min |",
        "|---|---|---|" + "---|" * len(TABLE_METRICS) + "---|---|---|---|",
    ]
    for stem in sorted(rows):
        spec, entries = specs.get(stem, {}), rows[stem]["entries"]
        agg: dict[str, Any] = {}
        for style in (*STYLES, CORPUS):
            # the corpus pool over the seeds that have it (a row's older seeds may predate it)
            measured = [e for e in entries if style in e["eval"]]
            if not measured:
                continue
            for m in DEFAULT_METRICS:
                vals = [e["eval"][style]["metrics"][m] for e in measured]
                # sample standard deviation over seeds (ddof=1), as evaluation/stats.py reports it
                std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
                agg[f"{style}/{m}"] = {"mean": float(np.mean(vals)), "std": std, "n": len(vals)}
        summary[stem] = {"row": spec.get("row"), "name": spec.get("name"), "metrics": agg}

        def cell(style: str, m: str, agg: dict[str, Any] = agg, total: int = len(entries)) -> str:
            if f"{style}/{m}" not in agg:
                return "—"
            v = agg[f"{style}/{m}"]
            seeds = f" ({v['n']} of {total} seeds)" if v["n"] < total else ""
            return f"{v['mean']:.3f}" + (f" ± {v['std']:.3f}" if v["n"] > 1 else "") + seeds

        minutes = np.mean([e.get("train_seconds", 0.0) for e in entries]) / 60
        lines.append(
            f"| {spec.get('row', '')} | {spec.get('name', stem)} | {len(entries)} | "
            + " | ".join(cell("paper", m) for m in TABLE_METRICS)
            + f" | {cell('heldout', 'mrr@10')} | {cell(CORPUS, 'mrr@10')} | {cell(CORPUS, 'ndcg@10')} | {minutes:.1f} |"
        )
    tests: dict[str, Any] = {}
    by_row = {specs[s].get("row"): s for s in rows if s in specs}
    for a, b in (
        ("7", "2"),
        ("6", "2"),
        ("6", "5"),
        ("5", "4"),
        ("4", "3"),
        ("7", "3"),
        ("7", "4"),
        ("7", "7b"),
        ("7c", "7"),
        ("7c", "2"),
        ("7c", "7d"),
        ("7c", "6"),
        ("2b", "2"),
        ("7c", "2b"),
        ("7e", "2b"),
        ("7e", "7c"),
        ("7f", "7c"),
        ("7f", "2b"),
        ("7f", "2c"),
        ("2c", "2b"),
        ("7g", "7f"),
        ("7g", "2c"),
        ("7h", "7f"),
        ("7h", "2c"),
        ("7i", "7h"),
        ("7i", "7f"),
        ("7i", "2c"),
        ("7j", "7i"),
        ("7k", "7i"),
        ("7k", "2c"),
        ("7l", "7i"),
        ("7m", "7k"),
        ("7m", "7i"),
        ("7n", "7k"),
        ("7o", "7k"),
        ("7p", "7k"),
        ("7p", "2c"),
    ):
        if a in by_row and b in by_row:
            for style in (*STYLES, CORPUS):
                runs_a, runs_b = (
                    _pool_runs(rows[by_row[a]]["entries"], style),
                    _pool_runs(rows[by_row[b]]["entries"], style),
                )
                if not runs_a or not runs_b:
                    continue
                mean_a, mean_b = _mean_per_query(runs_a), _mean_per_query(runs_b)
                tests[f"row{a}-row{b}/{style}/mrr@10"] = paired_test(mean_a, mean_b)
    if tests:
        lines += [
            "",
            "Paired tests on per-query MRR@10 (seed-averaged over the seeds measured in that pool), "
            "10,000 bootstrap / randomisation draws:",
            "",
        ]
        lines += ["| comparison | query | mean diff | 95% CI | p |", "|---|---|---|---|---|"]
        for name, t in tests.items():
            cmp_, style = name.split("/")[0], "/".join(name.split("/")[1:-1])
            lines.append(
                f"| {cmp_} | {style} | {t['mean_diff']:+.3f} | [{t['ci95'][0]:+.3f}, {t['ci95'][1]:+.3f}] "
                f"| {t['p_randomisation']:.4f} |"
            )
    return {"rows": summary, "paired_tests": tests}, "\n".join(lines) + "\n"


def _pool_runs(entries: list[dict[str, Any]], style: str) -> list[dict[str, float]]:
    """Per-query MRR@10 of the entries that measured ``style`` (older entries lack the corpus pool)."""
    return [e["eval"][style]["per_query_mrr@10"] for e in entries if style in e["eval"]]


def _mean_per_query(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = set.intersection(*(set(r) for r in runs))
    return {k: float(np.mean([r[k] for r in runs])) for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="configs", help="Folder of row configs (0*.yaml).")
    ap.add_argument("--rows", default=None, help="Comma-separated row ids to run (default: all).")
    ap.add_argument("--max-seeds", type=int, default=None, help="Run at most this many seeds per row.")
    ap.add_argument("--checkpoints", default="checkpoints/rows")
    ap.add_argument("--out", default="results/validation_retrieval.json")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()

    specs = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(Path(args.configs).glob("0*.yaml"))}
    wanted = set(args.rows.split(",")) if args.rows else None
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {"entries": {}}
    val = load_processed("validation", DataConfig(), args.data_dir, show_progress=True)
    for stem, spec in specs.items():
        if args.summary_only or (
            wanted and str(spec["row"]) not in wanted and str(spec["row"]).rstrip("ab") not in wanted
        ):
            continue
        seeds = spec.get("seeds", [None])[: args.max_seeds or None]
        for seed in seeds:
            key = f"{stem}-s{seed}" if seed is not None else stem
            if key in results["entries"]:
                continue
            seconds = 0.0
            if spec["kind"] == "offtheshelf":
                model, pooling = spec["model"], spec.get("pooling")
            else:
                ckpt = Path(args.checkpoints) / key
                seconds = train_entry(spec, seed, ckpt, args.data_dir)
                model, pooling = str(ckpt), None
            print(f"[{key}] evaluating {model}", flush=True)
            entry = {
                "config": stem,
                "seed": seed,
                "model": model,
                "spec": spec,
                "train_seconds": round(seconds, 1),
                "eval_backend": resolve_backend("auto"),
                "eval": evaluate_entry(model, pooling, val),
            }
            results = record_entry(out, key, entry)
            print(f"[{key}] {entry['eval']['paper']['metrics']}", flush=True)
    if out.is_file():  # what other runners wrote since this one started is summarised too
        results = json.loads(out.read_text())
    summary, table = summarise(results, specs)
    results["summary"] = summary
    import torch
    import transformers

    import cera_rag

    results["versions"] = {
        "cera_rag": cera_rag.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    atomic_json(out, results)
    out.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
