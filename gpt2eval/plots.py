"""Scaling plots in the manner of the paper's Figure 1: one PNG per task and metric, the metric
against parameter count (log scale), our values beside the paper's and any other reference source.

The x axis uses the paper's parameter counts (117M, 345M, 762M, 1542M; the released checkpoints have
124M, 355M, 774M, 1558M), so that our points sit on top of the paper's. A run compared with a size
through --reference-size sits at that size. Matplotlib's object API with the Agg canvas is used
directly, so no global backend is switched and no window can open.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

from .io import write_atomic
from .sizes import PAPER_PARAMS, SIZES

MARKERS = ["^", "s", "D", "v", "P"]  # other reference sources (points only: they are often sparse)


def _series(cells: list[dict], get) -> tuple[list[float], list[float]]:
    points = [(PAPER_PARAMS[c["size"]], get(c)) for c in cells if c["size"] in PAPER_PARAMS]
    points = [(x, y) for x, y in points if y is not None]
    return [x for x, _ in points], [y for _, y in points]


def _ours_label(cells: list[dict]) -> str:
    standard = {hub for hub, _, _ in SIZES.values()}
    models = list(dict.fromkeys(c["ours"]["model"] for c in cells if c["ours"]))
    if all(m in standard for m in models):
        return "gpt2eval (ours)"
    names = [Path(m).name or m for m in models]
    return "gpt2eval: " + (", ".join(names) if len(names) <= 2 else f"{names[0]} … {names[-1]}")


def panel_png(cells: list[dict]) -> bytes | None:
    """One task/metric's cells (one per size) as PNG bytes; None when we have no value at a paper size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    first = cells[0]
    xs, ys = _series(cells, lambda c: c["ours"]["value"] if c["ours"] else None)
    if not xs:
        return None
    fig = Figure(figsize=(4.8, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    subset = any(c["ours"] and c["ours"]["subset"] for c in cells)
    ax.plot(xs, ys, "o-", color="tab:blue", label=_ours_label(cells) + (" [subset]" if subset else ""),
            markerfacecolor="white" if subset else "tab:blue", zorder=3)
    all_y = list(ys)
    sources = list(dict.fromkeys(name for c in cells for name in c["refs"]))
    for i, name in enumerate(sources):
        rx, ry = _series(cells, lambda c: (c["refs"].get(name) or {}).get("value"))
        if name == "paper":
            ax.plot(rx, ry, "o--", color="black", alpha=0.8, label="paper (Radford et al. 2019)")
        else:
            ax.plot(rx, ry, MARKERS[i % len(MARKERS)], markersize=9, alpha=0.7, label=name)
        all_y += ry
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(list(PAPER_PARAMS.values()), [f"{p / 1e6:.0f}M\n{s}" for s, p in PAPER_PARAMS.items()])
    ax.set_xlim(min(PAPER_PARAMS.values()) / 1.4, max(PAPER_PARAMS.values()) * 1.4)
    if min(all_y) > 0 and max(all_y) / min(all_y) > 50:
        ax.set_yscale("log")
    ax.set_xlabel("parameters (the paper's counts)", fontsize=8)
    better = "higher" if first["higher_is_better"] else "lower"
    ax.set_ylabel(f"{first['metric']} ({better} is better)", fontsize=8)
    ax.set_title(f"{first['task']} · {first['metric']}\n{first['variant'][:70]}", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def by_metric(cells: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["task"], c["metric"]), []).append(c)
    return groups


def render(cells: list[dict]) -> dict[tuple[str, str], bytes]:
    """(task, metric) -> PNG bytes, for every metric we have a value for at a paper size."""
    out = {}
    for key, group in by_metric(cells).items():
        png = panel_png(group)
        if png:
            out[key] = png
    return out


def write_plots(pngs: dict[tuple[str, str], bytes], folder: str | Path) -> dict[tuple[str, str], Path]:
    """Write each panel as FOLDER/<task>__<metric>.png; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for (task, metric), png in pngs.items():
        path = folder / re.sub(r"[^A-Za-z0-9_.-]", "_", f"{task}__{metric}.png")
        write_atomic(path, png)
        paths[(task, metric)] = path
    return paths
