"""A training run's checkpoints against the paper: every metric against training step.

Runs whose results.json records a `step` (a nanoGPT iter_num, an llm.c model_%08d.bin, or
gpt2eval.evaluate(step=...)) are drawn as one PNG per task, a panel per metric: our values with
their 95% interval as a band, and the paper's four GPT-2 sizes as horizontal lines (117M drawn
strongest: "has my 124M reached GPT-2 yet?"). A training run is a series: the folder holding its
checkpoints (an in-memory model: its name), so two runs compared together are two lines. The same
points go to one CSV, with the paper's values beside each. Where two results hold one task at one
step of one series, the later (by "created") wins.
Matplotlib's object API on the Agg canvas, as plots.py: no global backend, no window.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

from ..models.sizes import SIZES
from .compare import paper_value, rows_csv

COLUMNS = ["series", "task", "metric", "step", "value", "ci_low", "ci_high"] + [f"paper_{p}" for _, p, _ in SIZES.values()] + \
          ["reference", "variant", "higher_is_better", "n_examples", "subset", "model", "format", "run"]
PAPER_STYLE = {"small": dict(color="crimson", linewidth=2.2, alpha=0.95)}  # 117M highlighted
OTHER_STYLE = dict(color="gray", linewidth=1.0, alpha=0.6, linestyle="--")
SERIES_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:olive"]


def series_of(model: dict) -> str:
    """Which training run a result belongs to: its checkpoint's folder, else its model's name."""
    model_id = str(model.get("id", "?"))
    return str(Path(model_id).parent) if model.get("format") in ("nanogpt", "llmc") else model_id


def step_records(runs: list[dict], refs: list[dict]) -> list[dict]:
    """One row per (task, metric, step) of the runs that have a step, sorted by task, metric, step."""
    latest: dict[tuple[str, str, int], dict] = {}
    for run in sorted((r for r in runs if r["model"].get("step") is not None), key=lambda r: r.get("created") or ""):
        for task in run["tasks"]:
            latest[(series_of(run["model"]), task, run["model"]["step"])] = run
    rows = []
    for (series, task, step), run in latest.items():
        t, model = run["tasks"][task], run["model"]
        for metric, value in t["metrics"].items():
            info = t.get("metric_info", {}).get(metric, {})
            iv = (t.get("intervals") or {}).get(metric) or {}
            rows.append({"series": series, "task": task, "metric": metric, "step": step, "value": value,
                         "ci_low": iv.get("ci_low"), "ci_high": iv.get("ci_high"),
                         **{f"paper_{p}": paper_value(refs, info.get("reference"), size)
                            for size, (_, p, _) in SIZES.items()},
                         "reference": info.get("reference") or "", "variant": info.get("variant", ""),
                         "higher_is_better": info.get("higher_is_better", True), "n_examples": t.get("n_examples"),
                         "subset": bool(t.get("subset")), "model": model.get("id"), "format": model.get("format"),
                         "run": run.get("_dir")})
    return sorted(rows, key=lambda r: (r["task"], r["metric"], r["series"], r["step"]))


def task_png(task: str, rows: list[dict]) -> bytes:
    """One task's panels (a metric each) as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    cols = min(3, len(metrics))
    nrows = -(-len(metrics) // cols)
    fig = Figure(figsize=(4.6 * cols, 3.4 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(nrows, cols, i + 1)
        mine = [r for r in rows if r["metric"] == metric]
        all_series = list(dict.fromkeys(r["series"] for r in mine))
        for j, series in enumerate(all_series):
            points = [r for r in mine if r["series"] == series]
            color = SERIES_COLORS[j % len(SERIES_COLORS)]
            banded = [r for r in points if r["ci_low"] is not None and r["ci_high"] is not None]
            if banded:
                ax.fill_between([r["step"] for r in banded], [r["ci_low"] for r in banded],
                                [r["ci_high"] for r in banded], color=color, alpha=0.2, linewidth=0)
            name = (Path(series).name or series) if len(all_series) > 1 else "ours"
            subset = " [subset]" if any(r["subset"] for r in points) else ""
            ax.plot([r["step"] for r in points], [r["value"] for r in points], "o-", color=color,
                    label=f"{name}{subset} (band: 95% interval)")
        others = False
        for size, (_, paper, _) in SIZES.items():
            y = mine[0][f"paper_{paper}"]
            if y is None:
                continue
            style = PAPER_STYLE.get(size, OTHER_STYLE)
            label = f"paper GPT-2 {paper}" if size in PAPER_STYLE else None if others else "paper, larger GPT-2s"
            others = others or size not in PAPER_STYLE
            ax.axhline(y, **style, label=label)
            ax.text(0.995, y, paper, transform=ax.get_yaxis_transform(), ha="right", va="bottom", fontsize=6,
                    color=style["color"])  # each line says which size it is
        ys = [r[k] for r in mine for k in ("value", "ci_low", "ci_high") if r[k] is not None]
        if ys and min(ys) > 0 and max(ys) / min(ys) > 20:  # perplexities early in training span decades
            ax.set_yscale("log")
        better = "higher" if mine[0]["higher_is_better"] else "lower"
        ax.set_title(f"{task} · {metric}\n{mine[0]['variant'][:60]}", fontsize=8)
        ax.set_xlabel("training step", fontsize=8)
        ax.set_ylabel(f"{metric} ({better} is better)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def step_files(runs: list[dict], refs: list[dict], folder: str | Path) -> dict[Path, bytes | str]:
    """FOLDER/steps__<task>.png per task and FOLDER/steps.csv, when any run has a step (else nothing):
    path -> content, for the report to write with its other files."""
    rows = step_records(runs, refs)
    if not rows:
        return {}
    folder = Path(folder)
    files: dict[Path, bytes | str] = {
        folder / re.sub(r"[^A-Za-z0-9_.-]", "_", f"steps__{task}.png"): task_png(task, [r for r in rows if r["task"] == task])
        for task in dict.fromkeys(r["task"] for r in rows)}
    files[folder / "steps.csv"] = rows_csv(rows, COLUMNS)
    return files
