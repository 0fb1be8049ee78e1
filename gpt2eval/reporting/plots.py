"""Scaling plots in the manner of the paper's Figure 1: one PNG per task and metric, the metric
against parameter count (log scale), our values beside the paper's and any other reference source.

The x axis uses the paper's parameter counts (117M, 345M, 762M, 1542M; the released checkpoints have
124M, 355M, 774M, 1558M), so that our points sit on top of the paper's. A run compared with a size
through --reference-size sits at that size; a model that matches no size sits at its own parameter
count (a star). Our values carry their 95% intervals (gpt2eval.api.uncertainty) as error bars.
Matplotlib's object API with the Agg canvas is used directly, so no global backend is switched and
no window can open.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

from .tables import TABLE4_ROUGE
from ..io import write_atomic
from ..models.sizes import PAPER_PARAMS, SIZES

MARKERS = ["^", "s", "D", "v", "P"]  # other reference sources (points only: they are often sparse)
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]  # our metrics


def _x(c: dict) -> float | None:
    """Where a cell sits: its paper size's parameter count, else (a model matching no size) its own."""
    if c["size"] in PAPER_PARAMS:
        return PAPER_PARAMS[c["size"]]
    return (c["ours"] or {}).get("n_params")


def _series(cells: list[dict], get) -> tuple[list[float], list[float]]:
    points = [(PAPER_PARAMS[c["size"]], get(c)) for c in cells if c["size"] in PAPER_PARAMS]
    points = [(x, y) for x, y in points if y is not None]
    return [x for x, _ in points], [y for _, y in points]


def _ours_label(cells: list[dict]) -> str:
    standard = {hub for hub, _, _ in SIZES.values()}
    models = list(dict.fromkeys(c["ours"]["model"] for c in cells if c["ours"] and c["size"] in PAPER_PARAMS))
    if all(m in standard for m in models):
        return "gpt2eval (ours)"
    names = [Path(m).name or m for m in models]
    return "gpt2eval: " + (", ".join(names) if len(names) <= 2 else f"{names[0]} … {names[-1]}")


def _errorbar(ax, cells: list[dict], fmt: str, color: str, label: str, filled: bool) -> list[float]:
    """Our values with their 95% intervals as error bars; returns the y values drawn (bars included)."""
    xs, ys, lo, hi = [], [], [], []
    for c in cells:
        iv = c["ours"].get("interval") or {}
        xs.append(_x(c))
        ys.append(c["ours"]["value"])
        lo.append(c["ours"]["value"] - iv["ci_low"] if "ci_low" in iv else 0.0)
        hi.append(iv["ci_high"] - c["ours"]["value"] if "ci_high" in iv else 0.0)
    if xs:
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt=fmt, color=color, ecolor=color, elinewidth=1, capsize=3, label=label,
                    markerfacecolor=color if filled else "white", zorder=3)
    return ys + [y - d for y, d in zip(ys, lo)] + [y + d for y, d in zip(ys, hi)]


def panel_png(cells: list[dict], groups: dict[str, list[dict]] | None = None, title: str | None = None,
              ylabel: str | None = None) -> bytes | None:
    """One panel as PNG bytes: a task/metric's cells (one per size), or several metrics that share
    one paper row (`groups`: metric -> its cells) drawn together. Our values carry their 95%
    interval as error bars; a model that matches no paper size sits at its own parameter count.
    None when we have no value at all."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    groups = groups or {cells[0]["metric"]: cells}
    first = cells[0]
    if not any(c["ours"] and _x(c) for g in groups.values() for c in g):
        return None
    fig = Figure(figsize=(4.8, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    all_y, all_x = [], list(PAPER_PARAMS.values())
    off_size = {}
    for i, (metric, group) in enumerate(groups.items()):
        color = COLORS[i % len(COLORS)]
        on = sorted((c for c in group if c["ours"] and c["size"] in PAPER_PARAMS), key=_x)
        off = [c for c in group if c["ours"] and c["size"] not in PAPER_PARAMS and _x(c)]
        subset = any(c["ours"]["subset"] for c in on)
        name = _ours_label(group) if len(groups) == 1 else metric
        all_y += _errorbar(ax, on, "o-", color, name + (" [subset]" if subset else ""), not subset)
        models = ", ".join(dict.fromkeys(Path(str(c["ours"]["model"])).name + (" [subset]" if c["ours"]["subset"]
                                                                                else "") for c in off))
        all_y += _errorbar(ax, off, "*", color, (f"{metric}: " if len(groups) > 1 else "") + models, True)
        for c in off:
            off_size[_x(c)] = c["size"]
    all_x += list(off_size)
    own_paper = len({g[0]["reference"] for g in groups.values()}) > 1  # settings with a paper row each
    for i, (metric, group) in enumerate(groups.items() if own_paper else []):
        rx, ry = _series(group, lambda c: (c["refs"].get("paper") or {}).get("value"))
        ax.plot(rx, ry, "x--", color=COLORS[i % len(COLORS)], alpha=0.7, label=f"paper: {metric}")
        all_y += ry
    sources = list(dict.fromkeys(name for c in cells for name in c["refs"] if not (own_paper and name == "paper")))
    for i, name in enumerate(sources):
        rx, ry = _series(cells, lambda c: (c["refs"].get(name) or {}).get("value"))
        if name == "paper":
            ax.plot(rx, ry, "o--", color="black", alpha=0.8, label="paper (Radford et al. 2019)")
        else:
            ax.plot(rx, ry, MARKERS[i % len(MARKERS)], markersize=9, alpha=0.7, color="gray", label=name)
        all_y += ry
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ticks = {**{p: f"{p / 1e6:.0f}M\n{s}" for s, p in PAPER_PARAMS.items()},
             **{x: f"{x / 1e6:.3g}M\n{n[:12]}" for x, n in off_size.items()}}
    ax.set_xticks(list(ticks), list(ticks.values()))
    ax.set_xlim(min(all_x) / 1.4, max(all_x) * 1.4)
    all_y = [y for y in all_y if y is not None]
    if all_y and min(all_y) > 0 and max(all_y) / min(all_y) > 50:
        ax.set_yscale("log")
    ax.set_xlabel("parameters (the paper's counts; ★ a model's own)", fontsize=8)
    better = "higher" if first["higher_is_better"] else "lower"
    ax.set_ylabel(f"{ylabel or first['metric']} ({better} is better)", fontsize=8)
    subtitle = first["variant"][:70] if len(groups) == 1 else "protocol variants, 95% intervals"
    ax.set_title(title or f"{first['task']} · {first['metric']}\n{subtitle}", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7 if len(groups) < 3 else 5.5)
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
    """(task, metric) -> PNG bytes, for every metric we have a value for."""
    out = {}
    for key, group in by_metric(cells).items():
        png = panel_png(group)
        if png:
            out[key] = png
    return out


def panel_key(metric: str, reference: str) -> str:
    """Which report panel a metric is drawn in: its paper row (protocol variants of one number go
    together), except that Table 4's settings share a panel per ROUGE score (tldr_rouge1, lead3_rouge1)."""
    suffix = next((r for r in TABLE4_ROUGE if metric.endswith("_" + r)), None)
    return f"{reference.split('/')[0]}/{suffix}" if suffix else reference


def render_task(cells: list[dict]) -> list[tuple[str, bytes]]:
    """One task's panels for the report: one per paper row, its protocol variants drawn together,
    or (a task without paper rows) one for its first metric. [(title, PNG bytes)]"""
    by_ref: dict[str, dict[str, list[dict]]] = {}
    for (task, metric), group in by_metric(cells).items():
        if group[0]["reference"] and any(c["refs"].get("paper") for c in group):
            by_ref.setdefault(panel_key(metric, group[0]["reference"]), {})[metric] = group
    if not by_ref and cells:
        first = next(iter(by_metric(cells).values()))
        by_ref[first[0]["metric"]] = {first[0]["metric"]: first}
    out = []
    for ref, groups in by_ref.items():
        first = next(iter(groups.values()))
        name = ref.split("/")[-1]
        png = panel_png(first, groups, title=f"{first[0]['task']} · {name}"
                        + ("" if len(groups) == 1 else f" ({len(groups)} variants)"), ylabel=name)
        if png:
            out.append((ref, png))
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
