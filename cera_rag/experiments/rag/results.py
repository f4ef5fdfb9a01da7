"""Resumable per-sample results (JSONL) and their summary: markdown table, JSON and a PNG plot.

``JsonlLog`` appends one JSON object per line, flushed and ``fsync``-ed before ``append`` returns,
so a crash or Ctrl-C loses at most the row being written. On opening, a torn last line (a write
cut short) is cut off the file; every complete row is kept and never recomputed.

``summarise`` gives, per system and metric, the mean of the rows where the metric could be
computed, its 95% percentile-bootstrap CI, and the share of rows where it could not (NaN or a
judge/parse failure), with the failures counted by reason.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cera_rag.atomic import write_json, write_text
from cera_rag.errors import ConfigError


class JsonlLog:
    """An append-only JSONL file of rows keyed by ``key_fields``.

    Args:
        path: The file (created with its folder when missing).
        key_fields: Fields whose values identify a row (e.g. ``("system", "question_id")``).
    """

    def __init__(self, path: str | os.PathLike[str], key_fields: Sequence[str] = ("system", "question_id")) -> None:
        self.path = Path(path)
        self.key_fields = tuple(key_fields)
        self.rows: dict[tuple[str, ...], dict[str, Any]] = {}
        self.dropped_tail = 0
        self._load()

    def key(self, row: Mapping[str, Any]) -> tuple[str, ...]:
        """The key of a row."""
        return tuple(str(row[f]) for f in self.key_fields)

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good_end = 0
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:  # a last line without newline: torn write
                break
            line = data[pos:nl].strip()
            if line:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                if isinstance(row, dict) and all(f in row for f in self.key_fields):
                    self.rows[self.key(row)] = row
                else:
                    self.dropped_tail += 1
            good_end = nl + 1
            pos = nl + 1
        if good_end < len(data):
            self.dropped_tail += 1
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())

    def __contains__(self, key: tuple[str, ...]) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, key: tuple[str, ...]) -> dict[str, Any] | None:
        return self.rows.get(key)

    def append(self, row: Mapping[str, Any]) -> None:
        """Write one row durably (flush + fsync) and remember it."""
        key = self.key(row)
        line = json.dumps(_json_safe(dict(row)), ensure_ascii=False, allow_nan=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.rows[key] = dict(row)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and not hasattr(obj, "__len__"):  # numpy scalar
        return _json_safe(obj.item())
    return obj


def check_manifest(path: str | os.PathLike[str], settings: Mapping[str, Any], restart_hint: str) -> None:
    """Record ``settings`` next to the rows, or check that earlier rows were made with the same ones.

    Raises:
        ConfigError: If the folder holds rows made with other settings (a resume would mix them).
    """
    p = Path(path)
    current = _json_safe(dict(settings))
    if p.exists():
        try:
            previous = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
        if isinstance(previous, dict) and previous != current:
            diff = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            raise ConfigError(
                f"{p.parent} holds results made with other settings (differs: {', '.join(diff)}); resuming would "
                f"mix them. {restart_hint}"
            )
        if isinstance(previous, dict):
            return
    write_json(p, current, sort_keys=True)


# ------------------------------------------------------------------------------------- summary
def summarise(
    rows: Iterable[Mapping[str, Any]],
    systems: Sequence[str],
    metrics: Sequence[str],
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per system and metric: mean, 95% bootstrap CI, rows scored, and NaN/failure rate by reason.

    Returns:
        ``{system: {"n": rows, "metrics": {metric: {"mean", "ci95", "n_valid", "nan_rate", "failures"}}}}``.
    """
    from cera_rag.evaluation.stats import bootstrap_ci

    by_system: dict[str, list[Mapping[str, Any]]] = {s: [] for s in systems}
    for row in rows:
        if row.get("system") in by_system:
            by_system[str(row["system"])].append(row)
    out: dict[str, Any] = {}
    for system, rs in by_system.items():
        entry: dict[str, Any] = {"n": len(rs), "metrics": {}}
        for metric in metrics:
            values = [(r.get("scores") or {}).get(metric) for r in rs]
            valid = [float(v) for v in values if v is not None and math.isfinite(float(v))]
            failures = Counter(
                str((r.get("errors") or {}).get(metric, "nan")) for r, v in zip(rs, values, strict=True) if v is None
            )
            mean, lo, hi = bootstrap_ci(valid, n_resamples=n_resamples, seed=seed) if valid else (math.nan,) * 3
            entry["metrics"][metric] = {
                "mean": mean,
                "ci95": [lo, hi],
                "n_valid": len(valid),
                "nan_rate": (len(rs) - len(valid)) / len(rs) if rs else math.nan,
                "failures": dict(sorted(failures.items())),
            }
        out[system] = entry
    return out


def format_number(x: Any, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals, or ``n/a`` when it is missing or not finite."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not math.isfinite(v) else f"{v:.{digits}f}"


def markdown_table(summary: Mapping[str, Any], metrics: Sequence[str]) -> str:
    """One row per system: ``mean [low, high]`` per metric, then the NaN/failure rate of each."""
    head = ["system", "n", *metrics, *(f"{m} NaN" for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for system, entry in summary.items():
        cells = [system, str(entry["n"])]
        for m in metrics:
            s = entry["metrics"][m]
            cells.append(f"{format_number(s['mean'])} [{format_number(s['ci95'][0])}, {format_number(s['ci95'][1])}]")
        for m in metrics:
            s = entry["metrics"][m]
            rate = "n/a" if not entry["n"] else f"{100 * s['nan_rate']:.0f}%"
            reasons = ", ".join(f"{k} {v}" for k, v in s["failures"].items())
            cells.append(rate + (f" ({reasons})" if reasons else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_summary(summary: Mapping[str, Any], metrics: Sequence[str], path: str | os.PathLike[str], title: str) -> Path:
    """Grouped bars (one group per metric, one bar per system) with 95% CI error bars; n/a bars are absent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems = list(summary)
    x = np.arange(len(metrics))
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(metrics) + 2), 4.2))
    for i, system in enumerate(systems):
        ms = summary[system]["metrics"]
        means = np.array([ms[m]["mean"] for m in metrics], dtype=float)
        lo = np.array([ms[m]["ci95"][0] for m in metrics], dtype=float)
        hi = np.array([ms[m]["ci95"][1] for m in metrics], dtype=float)
        ok = np.isfinite(means)
        err = np.vstack([np.clip(np.nan_to_num(means - lo), 0, None), np.clip(np.nan_to_num(hi - means), 0, None)])
        pos = x + (i - (len(systems) - 1) / 2) * width
        ax.bar(pos[ok], means[ok], width, yerr=err[:, ok], capsize=2, label=system)
        for p in pos[~ok]:
            ax.text(p, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x, list(metrics))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean (95% bootstrap CI)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper right")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_summary(
    out_dir: str | os.PathLike[str],
    summary: Mapping[str, Any],
    metrics: Sequence[str],
    meta: Mapping[str, Any],
    name: str = "ragas",
    extra: Sequence[str] = (),
) -> list[Path]:
    """Write ``{name}_summary.md``, ``{name}_summary.json`` and ``{name}_summary.png`` into ``out_dir``.

    ``extra``: markdown lines placed between the table and the plot.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / f"{name}_summary.md"
    js = folder / f"{name}_summary.json"
    png = folder / f"{name}_summary.png"
    title = f"RAGAS on {meta.get('split', '?')} ({meta.get('n_questions', '?')} questions)"
    text = [
        f"# {title}",
        "",
        f"Generator: {meta.get('generator', '?')}. Judge: {meta.get('judge', '?')}. Top-k: {meta.get('top_k', '?')}.",
        "Means over the rows where a metric could be computed, with 95% percentile-bootstrap CIs; the NaN columns "
        "give the share of rows where it could not (and why).",
        "",
        markdown_table(summary, metrics),
        "",
        *extra,
        "",
        f"![scores]({png.name})",
        "",
    ]
    for p, content in (
        (md, "\n".join(text)),
        (js, json.dumps(_json_safe({"meta": meta, "systems": summary}), indent=1)),
    ):
        write_text(p, content)
    plot_summary(summary, metrics, png, title)
    return [md, js, png]
