"""What `reco evaluate --report DIR` writes: metrics.json, summary.md (tables) and PNG plots.

Plots are drawn with matplotlib's Agg backend (no display needed): the metrics per model, and for
prequential runs NDCG@10 per window per strategy over event time.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np

MAIN_STRATEGIES = ("stale", "incremental", "retrain", "popular")


def _fmt(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def clean(value: object) -> object:
    """JSON-safe: NaN and infinities become null, NumPy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def table_columns(result: dict) -> list[str]:
    """The metric columns shown for a result, in reading order."""
    ks = result.get("ks", [10])
    if result["protocol"] == "served":
        return [f"{g}ndcg@10{e}" for g in ("", "warm_", "cold_") for e in ("", "_se")] + [
            "users",
            "warm_users",
        ]
    if result["protocol"] == "prequential":
        cols = [f"{m}@{k}" for k in ks for m in ("ndcg", "hr")]
        return [*cols, f"warm_ndcg@{ks[0]}", f"cold_ndcg@{ks[0]}", "users", "seconds"]
    cols = [f"{m}@{k}" for k in ks for m in ("ndcg", "hr", "recall")]
    return [*cols, "mrr", *[f"coverage@{k}" for k in ks]]


def table_rows(result: dict) -> list[list[str]]:
    columns = table_columns(result)
    rows = []
    for name, values in result["models"].items():
        cells = [_fmt(values.get(c), 2 if c == "seconds" else 4) for c in columns]
        rows.append([name, *cells])
    return rows


def write_report(result: dict, folder: Path) -> list[Path]:
    """metrics.json, summary.md and the plots; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    path = folder / "metrics.json"
    path.write_text(json.dumps(clean(result), indent=1, default=str, allow_nan=False) + "\n")
    written.append(path)
    plots = [plot_models(result, folder / "metrics.png")]
    if result["protocol"] == "prequential":
        plots.append(plot_windows(result, folder / "ndcg_per_window.png"))
    written += plots
    path = folder / "summary.md"
    path.write_text(summary_markdown(result, [p.name for p in plots]))
    written.append(path)
    return written


def _tried(info: dict, shown: int = 5) -> str:
    """The best few blend settings tried by validation NDCG@10, as one line of text (metrics.json
    holds them all)."""
    tried = info["validation_ndcg@10"]
    best = sorted(tried.items(), key=lambda pair_q: -(pair_q[1] or 0.0))[:shown]
    return f"best {len(best)} of {len(tried)}: " + ", ".join(f"{pair} {_fmt(q)}" for pair, q in best)


def ratios_line(ratios: dict[str, float | None]) -> str:
    return "Ratios (NDCG@10): " + ", ".join(f"{k} {_fmt(v, 3)}" for k, v in ratios.items())


def summary_markdown(result: dict, plots: list[str]) -> str:
    columns = table_columns(result)
    lines = [f"# reco evaluate — {result['protocol']} on {result['dataset']}", ""]
    data = result.get("data", {})
    if data:
        lines.append("Data: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in data.items()) + ".")
        lines.append("")
    lines += ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(result)]
    lines.append("")
    if result.get("ratios"):
        lines += [ratios_line(result["ratios"]), ""]
    lines += {"loo": _loo_lines, "served": _served_lines}.get(result["protocol"], _prequential_lines)(result)
    for name, values in result.get("model_settings", {}).items():
        lines.append(f"{name} trained with " + ", ".join(f"{k} = {v}" for k, v in values.items()) + ".")
        lines.append("")
    seconds = result.get("seconds", {})
    if seconds:
        lines.append("Seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items()) + ".")
        lines.append("")
    lines += [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def _loo_lines(result: dict) -> list[str]:
    lines = []
    ratings = result.get("ratings")
    if ratings:
        lines.append(
            f"Rating prediction ({ratings['model']}) on {ratings['predicted']} of "
            f"{ratings['heldout_ratings']} held-out ratings: RMSE {_fmt(ratings['rmse'])}, "
            f"MAE {_fmt(ratings['mae'])}. The ranking models do not predict ratings."
        )
        lines.append("")
    if result.get("als_params"):
        lines.append(f"ALS grid point chosen on the validation item: {result['als_params']}.")
        lines.append("")
    for name, info in result.get("blend", {}).items():
        tried = _tried(info)
        chosen = f"half-life {info['half_life_days']:g} days, age weight {info['age_weight']:g}"
        if info.get("weight") is None:
            lines.append(
                f"{name}: the ranker's popularity at each user's time alone, {chosen}, chosen on the "
                f"validation item (NDCG@10 by half-life/weight/age weight: {tried})."
            )
        else:
            lines.append(
                f"{name}: ranked by the ranker with its popularity at each user's time ({chosen}, "
                f"weight {info['weight']:g}; {name}-noblend is the model alone), chosen on the "
                f"validation item (NDCG@10 by half-life/weight/age weight: {tried})."
            )
        lines.append("")
    return lines


def _served_lines(result: dict) -> list[str]:
    """Each window's choice of the served version."""
    lines = [
        "| window | start | users | warm users | ranker half-life | weight | age weight "
        "| chosen on NDCG@10 | unknown users: half-life | age weight | chosen on NDCG@10 |",
        "|---" * 11 + "|",
    ]
    for w in result["windows"]:
        r = w["ranker"]
        lines.append(
            f"| {w['window']} | {w['start']} | {w['users']} | {w['warm_users']} | "
            f"{r['half_life']} | {r['weight']} | {r.get('age_weight') or 0:g} | {_fmt(r['on'])} | "
            f"{r.get('cold_half_life') or '-'} | {r.get('cold_age_weight') or 0:g} | "
            f"{_fmt(r.get('cold_on'))} |"
        )
    return [*lines, ""]


def _prequential_lines(result: dict) -> list[str]:
    lines = []
    for kind, info in result.get("strategies", {}).get("blend", {}).items():
        tried = _tried(info)
        lines.append(
            f"{kind}: recency prior with half-life {info['half_life_days']:g} days, blend weight "
            f"{info['weight']:g}, chosen on the validation windows "
            f"(NDCG@10 by half-life/weight: {tried})."
        )
    return [*lines, ""]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_models(result: dict, path: Path) -> Path:
    """Grouped bars: each model (strategy) on the x axis, one bar per metric."""
    plt = _pyplot()
    ks = result.get("ks", [10])
    names = list(result["models"])
    if result["protocol"] == "served":
        metrics = ["ndcg@10", "warm_ndcg@10", "cold_ndcg@10"]
    elif result["protocol"] == "prequential":
        metrics = [f"{m}@{ks[0]}" for m in ("ndcg", "hr", "warm_ndcg", "cold_ndcg")]
    else:
        metrics = [f"{m}@{k}" for k in ks for m in ("ndcg", "hr")] + ["mrr"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) * max(1, len(metrics)) / 3), 4.2))
    width = 0.8 / max(len(metrics), 1)
    x = np.arange(len(names))
    for n, metric in enumerate(metrics):
        values = [result["models"][name].get(metric) or 0.0 for name in names]
        ax.bar(x + (n - (len(metrics) - 1) / 2) * width, values, width, label=metric)
    ax.set_xticks(x, names, rotation=20 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_ylabel("metric value")
    ax.set_title(f"{result['protocol']} on {result['dataset']}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_windows(result: dict, path: Path, k: int = 10, smooth: int = 6) -> Path:
    """NDCG@k per window per main strategy over event time: dots per window, a line for the mean
    over the last `smooth` windows weighted by users (windows can hold few users)."""
    plt = _pyplot()
    windows = [w for w in result["strategies"]["windows"] if w["users"]]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    names = [n for n in result["models"] if n.split(":")[-1] in MAIN_STRATEGIES]
    when = [datetime.fromisoformat(w["start"].replace("Z", "+00:00")) for w in windows]
    users = np.array([w["users"] for w in windows], dtype=float)
    for name in names:
        values = np.array([w["strategies"].get(name, {}).get(f"ndcg@{k}") or 0.0 for w in windows])
        line = ax.plot(when, values, ".", alpha=0.35)[0]
        kernel = np.ones(smooth)
        weighted = np.convolve(values * users, kernel)[: len(values)]
        total = np.convolve(users, kernel)[: len(values)]
        ax.plot(when, weighted / np.maximum(total, 1), "-", color=line.get_color(), label=name)
    ax.set_ylabel(f"NDCG@{k} (line: last {smooth} windows)")
    ax.set_xlabel("window start (event time)")
    ax.set_title(f"prequential on {result['dataset']}: NDCG@{k} per window")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
