"""Write an evaluation run: ``<name>.json``, ``<name>.per_query.json``, ``<name>.md`` and PNG plots.

Plots (matplotlib, Agg backend, no display needed):

* ``<name>-retrieval-<pool>-<style>.png``: metric bars per system with bootstrap 95% CI error bars;
* ``<name>-aopc.png``: ERASER comprehensiveness and sufficiency curves over k% per system and ranking;
* ``<name>-attention-mass.png``: histogram of the share of attention on human evidence words.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cera_rag.atomic import write_text

#: Short column names of the markdown table.
SHORT = {
    "hit_rate@1": "Hit@1",
    "hit_rate@5": "Hit@5",
    "recall@1": "R@1",
    "recall@3": "R@3",
    "recall@5": "R@5",
    "recall@10": "R@10",
    "precision@1": "P@1",
    "precision@5": "P@5",
    "mrr@10": "MRR@10",
    "ndcg@10": "nDCG@10",
    "map@10": "MAP@10",
    "map": "MAP",
}
COMPARE_IN_TABLE = ("mrr@10", "ndcg@10", "recall@1", "recall@5")


def _atomic_text(path: Path, text: str) -> None:
    write_text(path, text)


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN and infinities become ``null``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _comparison_cell(c: dict[str, float]) -> str:
    return f"{c['diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] p={_p(c['p_value'])}"


def markdown(results: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """The run as markdown tables: retrieval, paired comparisons, plausibility, faithfulness."""
    cfg = results["config"]
    data = results["data"]
    lines = [
        f"# Evaluation: {results.get('name', '')}",
        "",
        f"Split `{data['split']}`: {data['n_queries']} queries over {data['n_articles_queried']} articles "
        f"({data['n_articles']} articles, {data['n_passages']} passages in the split); created {results['created']}; "
        f"cera-rag {results['versions'].get('cera-rag')}, torch {results['versions'].get('torch')}, "
        f"transformers {results['versions'].get('transformers')}.",
        "",
    ]
    for key, entry in results["retrieval"].items():
        pool, style = key.split("/")
        metrics = cfg["metrics"]
        lines += [
            f"## Retrieval: pool `{pool}`, query style `{style}` ({entry['n_queries']} queries)",
            "",
            "| System | " + " | ".join(SHORT.get(m, m) for m in metrics) + " |",
            "|---|" + "---:|" * len(metrics),
        ]
        for label, s in entry["systems"].items():
            cells = []
            for m in metrics:
                cell = _fmt(s["metrics"][m])
                if s.get("n_seeds", 1) > 1:
                    cell += f" ± {_fmt(s['std'][m])}"
                cells.append(cell)
            seeds = f" ({s['n_seeds']} seeds)" if s.get("n_seeds", 1) > 1 else ""
            lines.append(f"| {label}{seeds} | " + " | ".join(cells) + " |")
        if entry.get("comparisons"):
            lines += [
                "",
                f"Paired comparison with `{results['baseline']}` (difference of means, paired bootstrap 95% CI, "
                "randomisation-test p):",
                "",
                "| System | " + " | ".join(SHORT.get(m, m) for m in COMPARE_IN_TABLE if m in metrics) + " |",
                "|---|" + "---:|" * len([m for m in COMPARE_IN_TABLE if m in metrics]),
            ]
            for label, comp in entry["comparisons"].items():
                cells = [_comparison_cell(comp[m]) for m in COMPARE_IN_TABLE if m in metrics]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    if results.get("plausibility"):
        lines += [
            "## Plausibility (ERASER; CLS attention vs human evidence words in positive passages)",
            "",
            "| System | pairs | AUPRC | AUPRC random | token F1 @rationale | IOU F1 @rationale | token F1 @20% "
            "| IOU F1 @20% | attention mass on evidence | evidence share of words |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, p in results["plausibility"].items():
            a, r = p["attention"], p["random"]
            lines.append(
                f"| {label} | {p['n_pairs']} | {_fmt(a.get('auprc'))} | {_fmt(r.get('auprc'))} | "
                f"{_fmt(a.get('token_f1@rationale'))} | {_fmt(a.get('iou_f1@rationale'))} | "
                f"{_fmt(a.get('token_f1@20%'))} | {_fmt(a.get('iou_f1@20%'))} | {_fmt(a.get('attention_mass'))} | "
                f"{_fmt(a.get('evidence_fraction'))} |"
            )
        lines.append("")
    if results.get("faithfulness"):
        lines += [
            "## Faithfulness (score = cos(q, d); words deleted from the text and re-encoded)",
            "",
            "ERASER comprehensiveness AOPC (higher = faithful) and sufficiency AOPC (lower = faithful) over "
            "k in {1,5,10,20,50}%; paper: top max(5, 20%) words, comprehensiveness = cos drop when removed, "
            "sufficiency = cos of those words alone.",
            "",
            "| System | ranking | pairs | ERASER comp. AOPC | ERASER suff. AOPC | paper comp. | paper suff. (cos) |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for label, f in results["faithfulness"].items():
            for method, s in f["summary"].items():
                lines.append(
                    f"| {label} | {method} | {f['n_pairs']} | {_fmt(s['eraser_comprehensiveness_aopc'])} | "
                    f"{_fmt(s['eraser_sufficiency_aopc'])} | {_fmt(s['paper_comprehensiveness'])} | "
                    f"{_fmt(s['paper_sufficiency'])} |"
                )
        lines.append("")
    if results.get("explanations"):
        lines += [
            "## Explanations: do the marked words land on this question's evidence? (k = 20% of the words)",
            "",
            "Precision of the marked words on the prompt's evidence, the evidence share of the words (what random "
            "marking gets), lift = precision / share, AUPRC - share; on all positive pairs and on those whose "
            "evidence covers < 50% of the words. Evidence hit@1 / sentence top-1: the highest-weight span of the "
            "top passage of the article (ranked by the system named) overlaps the evidence / its sentence does.",
            "",
            "| Marker | ranked by | pairs | precision | share | lift | AUPRC - share | pairs < 50% | precision | "
            "share | lift | AUPRC - share | evidence hit@1 | sentence top-1 |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, row in results["explanations"].items():
            a, b, t = row["pairs"]["all"], row["pairs"]["evidence_lt50"], row["top1"]
            cells = [label, row["ranker"], str(a.get("n", 0)), _fmt(a.get("precision")), _fmt(a.get("share")),
                     _fmt(a.get("lift"), 2), _fmt(a.get("auprc_minus_share")), str(b.get("n", 0)),
                     _fmt(b.get("precision")), _fmt(b.get("share")), _fmt(b.get("lift"), 2),
                     _fmt(b.get("auprc_minus_share")), _fmt(t.get("evidence_hit@1")),
                     _fmt(t.get("sentence_top1"))]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    timings = results.get("timings_s", {})
    if timings:
        lines += ["Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())]
        for system in results.get("systems", []):
            for member in system.get("members", []):
                if member.get("timings_s"):
                    stages = ", ".join(f"{k} {v:.1f}" for k, v in member["timings_s"].items())
                    encoded = member.get("cache", {}).get("encoded_now")
                    lines.append(f"; {member['spec']}: {stages} ({encoded} passages encoded, the rest cached)")
        lines.append("")
    return "\n".join(lines)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_retrieval(entry: dict[str, Any], metrics: Sequence[str], title: str, path: Path) -> Path:
    """Grouped bars: one group per metric, one bar per system, bootstrap 95% CI error bars."""
    import numpy as np

    plt = _plt()
    systems = list(entry["systems"])
    x = np.arange(len(metrics))
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(metrics) + 2), 4.0))
    for i, label in enumerate(systems):
        s = entry["systems"][label]
        means = np.array([s["metrics"][m] for m in metrics])
        lo = np.array([s["ci95"][m][0] for m in metrics])
        hi = np.array([s["ci95"][m][1] for m in metrics])
        err = np.vstack([np.clip(means - lo, 0, None), np.clip(hi - means, 0, None)])
        ax.bar(x + (i - (len(systems) - 1) / 2) * width, means, width, yerr=err, capsize=2, label=label)
    ax.set_xticks(x, [SHORT.get(m, m) for m in metrics], rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (95% bootstrap CI)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_aopc(faithfulness: dict[str, Any], path: Path) -> Path:
    """ERASER comprehensiveness and sufficiency against k% for every system and ranking."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, f in faithfulness.items():
        ks = [100 * k for k in f["fractions"]]
        for method, s in f["summary"].items():
            style = {"attention": "-", "gradient_x_input": "--", "random": ":"}.get(method, "-.")
            for ax, what in zip(axes, ("comprehensiveness", "sufficiency"), strict=True):
                ys = [s[f"eraser_{what}@{k:g}%"] for k in ks]
                ax.plot(ks, ys, style, marker="o", label=f"{label} / {method}")
    for ax, what, better in zip(axes, ("comprehensiveness", "sufficiency"), ("higher", "lower"), strict=True):
        ax.set_xscale("log")
        ticks = sorted({100 * k for f in faithfulness.values() for k in f["fractions"]})
        ax.set_xticks(ticks, [f"{t:g}%" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("top-k% words removed / kept (log scale)")
        ax.set_ylabel(f"cos drop ({better} = faithful)")
        ax.set_title(f"ERASER {what}")
        ax.axhline(0, color="grey", lw=0.5)
    axes[0].legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_attention_mass(plausibility: dict[str, Any], path: Path) -> Path:
    """Histogram of the share of attention on evidence words, per system; dashed: mean evidence share."""
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 21)
    for label, p in plausibility.items():
        ax.hist(p["attention_mass"], bins=bins, alpha=0.5, label=f"{label} (mean {np.mean(p['attention_mass']):.2f})")
    fractions = [x for p in plausibility.values() for x in p["evidence_fraction"]]
    if fractions:
        ax.axvline(float(np.mean(fractions)), color="k", ls="--", label="uniform attention (evidence share)")
    ax.set_xlabel("attention mass on human evidence words")
    ax.set_ylabel("positive pairs")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_explanations(explanations: dict[str, Any], path: Path) -> Path:
    """Lift on the pairs with evidence < 50% of the words, and evidence hit@1, per marker."""
    plt = _plt()
    labels = list(explanations)
    lift = [explanations[k]["pairs"]["evidence_lt50"].get("lift", float("nan")) for k in labels]
    hit = [explanations[k]["top1"].get("evidence_hit@1", float("nan")) for k in labels]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.55 * len(labels) + 1.8))
    axes[0].barh(labels, lift, color="#4c72b0")
    axes[0].axvline(1.0, color="grey", linestyle="--", linewidth=1)
    axes[0].set_xlabel("lift (precision / evidence share), pairs with evidence < 50%")
    axes[1].barh(labels, hit, color="#55a868")
    axes[1].set_xlim(0, 1)
    axes[1].set_xlabel("evidence hit@1 (top span of the top passage)")
    axes[1].set_yticks([])
    for ax in axes:
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results: dict[str, Any], per_query: dict[str, Any], out_dir: str | Path, name: str) -> list[Path]:
    """Write the run's files under ``out_dir``; returns their paths (JSON first).

    Args:
        results: from ``runner.run_evaluation``.
        per_query: the per-query values from ``runner.run_evaluation``.
        out_dir: folder (created).
        name: file stem.

    Returns:
        ``[<name>.json, <name>.per_query.json, <name>.md, *pngs]``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {"name": name, **results}
    plots: list[Path] = []
    for key, entry in results["retrieval"].items():
        pool, style = key.split("/")
        plots.append(
            plot_retrieval(
                entry,
                results["config"]["metrics"],
                f"{results['data']['split']}: pool {pool}, query {style} ({entry['n_queries']} queries)",
                out / f"{name}-retrieval-{pool}-{style}.png",
            )
        )
    if results.get("faithfulness"):
        plots.append(plot_aopc(results["faithfulness"], out / f"{name}-aopc.png"))
    if results.get("plausibility"):
        plots.append(plot_attention_mass(results["plausibility"], out / f"{name}-attention-mass.png"))
    if results.get("explanations"):
        plots.append(plot_explanations(results["explanations"], out / f"{name}-explanations.png"))
    results["files"] = {
        "per_query": f"{name}.per_query.json",
        "markdown": f"{name}.md",
        "plots": [p.name for p in plots],
    }
    json_path, pq_path, md_path = out / f"{name}.json", out / f"{name}.per_query.json", out / f"{name}.md"
    _atomic_text(json_path, json.dumps(_clean(results), indent=1))
    _atomic_text(pq_path, json.dumps(_clean(per_query)))
    _atomic_text(md_path, markdown(results, [str(p) for p in plots]))
    return [json_path, pq_path, md_path, *plots]
