"""Scaling plots in the manner of the paper's Figure 1: one PNG per task and metric (the report's
panels: per paper row), the metric against parameter count (log scale), our values beside the
paper's and any other reference source.

The x axis uses the paper's parameter counts (117M, 345M, 762M, 1542M; the released checkpoints have
124M, 355M, 774M, 1558M), so that our points sit on top of the paper's. A run compared with a size
through --reference-size sits at that size; a model that matches no size sits at its own parameter
count (a star). Our values carry their 95% intervals (gpt2eval.api.uncertainty) as error bars.
Several series in one panel (protocol variants, other sources) sit a little apart on the x axis,
each metric in a shape of its own, so that equal values stay visible; each panel is titled by the
metrics it shows and the paper row(s) they are compared with. Matplotlib's object API with the
Agg canvas is used directly, so no global backend is switched and no window can open.
"""
from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

from .tables import TABLE4_ROUGE
from ..models.sizes import PAPER_PARAMS, SIZES

MARKERS = ["^", "s", "D", "v", "P"]  # other reference sources (points only: they are often sparse)
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]  # our metrics
SHAPES = ["o", "s", "D", "^", "v", "P"]  # our metrics: a shape each as well as a colour
# Series that share a panel sit this far apart on the log x axis (in decades, about 7 px), so that
# markers with equal values (every accuracy of a random model is 0) do not hide one another.
DODGE = 0.045


def _x(c: dict) -> float | None:
    """Where a cell sits: its paper size's parameter count, else (a model matching no size) its own."""
    if c["size"] in PAPER_PARAMS:
        return PAPER_PARAMS[c["size"]]
    return (c["ours"] or {}).get("n_params")


def _dodge(xs: list[float], index: int, count: int) -> list[float]:
    """The x positions of the index-th of `count` series drawn side by side around the true ones."""
    factor = 10 ** ((index - (count - 1) / 2) * DODGE)
    return [x * factor for x in xs]


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


def _errorbar(ax, cells: list[dict], fmt: str, color: str, label: str, filled: bool, shift=None) -> list[float]:
    """Our values with their 95% intervals as error bars; returns the y values drawn (bars included)."""
    xs, ys, lo, hi = [], [], [], []
    for c in cells:
        iv = c["ours"].get("interval") or {}
        xs.append(_x(c))
        ys.append(c["ours"]["value"])
        lo.append(c["ours"]["value"] - iv["ci_low"] if "ci_low" in iv else 0.0)
        hi.append(iv["ci_high"] - c["ours"]["value"] if "ci_high" in iv else 0.0)
    if xs:
        ax.errorbar(shift(xs) if shift else xs, ys, yerr=[lo, hi], fmt=fmt, color=color, ecolor=color, elinewidth=1,
                    capsize=3, label=label, markerfacecolor=color if filled else "white", zorder=3)
    return ys + [y - d for y, d in zip(ys, lo)] + [y + d for y, d in zip(ys, hi)]


def _paper_rows(groups: dict[str, list[dict]]) -> list[str]:
    """The paper rows a panel's metrics are compared with (those the paper gives a number for)."""
    return list(dict.fromkeys(g[0]["reference"] for g in groups.values()
                              if g[0]["reference"] and any(c["refs"].get("paper") for c in g)))


def _described(groups: dict[str, list[dict]]) -> tuple[str, str, str]:
    """(task, the metrics drawn, the paper row(s) they are compared with), in words."""
    first = next(iter(groups.values()))[0]
    rows = _paper_rows(groups)
    if not rows:
        against = "no paper row to compare with"
    elif len(rows) == 1:
        against = f"compared with paper row {rows[0]}"
    elif all(g[0]["reference"] == f"{g[0]['task']}/{m}" for m, g in groups.items()):
        against = f"each compared with the {first['task']} paper row of its own name"
    else:
        against = "compared with paper rows " + ", ".join(rows)
    return first["task"], ", ".join(groups), against


def panel_caption(groups: dict[str, list[dict]]) -> str:
    """What a panel shows: its task, the metrics drawn and the paper row(s) they are compared with
    ("lambada: acc, acc_last_token; compared with paper row lambada/acc_without_stopword_filter")."""
    task, shown, against = _described(groups)
    return f"{task}: {shown}; {against}"


def _axis_name(metrics: list[str]) -> str:
    """The y axis of several metrics: the name parts they share (acc_stopword_filter,
    acc_stopword_filter_bflm -> acc_stopword_filter; tldr_rouge1, lead3_rouge1 -> rouge1)."""
    parts = [m.split("_") for m in metrics]
    head = [p[0] for p in zip(*parts) if len(set(p)) == 1] if len(metrics) > 1 else parts[0]
    common = "_".join(head[:next((i for i, p in enumerate(zip(*parts)) if len(set(p)) > 1), len(head))])
    if common:
        return common
    tail = [p[0] for p in zip(*(q[::-1] for q in parts)) if len(set(p)) == 1]
    return "_".join(reversed(tail)) or "value"


def panel_figure(cells: list[dict], groups: dict[str, list[dict]] | None = None):
    """One panel as a matplotlib Figure: a task/metric's cells (one per size), or several metrics
    (`groups`: metric -> its cells) drawn together, each in its own colour and shape and a little
    apart on the x axis. Titled by the metrics it shows and the paper row(s) they are compared
    with. Our values carry their 95% interval as error bars; a model that matches no paper size
    sits at its own parameter count. None when we have no value at all."""
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
    own_paper = len({g[0]["reference"] for g in groups.values()}) > 1  # settings with a paper row each
    sources = list(dict.fromkeys(name for c in cells for name in c["refs"] if not (own_paper and name == "paper")))
    others = [n for n in sources if n != "paper"]
    # The series drawn side by side: ours per metric (with its own paper row, where each has one),
    # then the other sources; the paper's line, where the metrics share it, stays on the sizes.
    count = len(groups) + len(others)
    for i, (metric, group) in enumerate(groups.items()):
        color, shape = COLORS[i % len(COLORS)], SHAPES[i % len(SHAPES)]
        shift = lambda xs, i=i: _dodge(xs, i, count)  # noqa: E731
        on = sorted((c for c in group if c["ours"] and c["size"] in PAPER_PARAMS), key=_x)
        off = [c for c in group if c["ours"] and c["size"] not in PAPER_PARAMS and _x(c)]
        subset = any(c["ours"]["subset"] for c in on)
        name = _ours_label(group) if len(groups) == 1 else metric
        all_y += _errorbar(ax, on, shape + "-", color, name + (" [subset]" if subset else ""), not subset, shift)
        models = ", ".join(dict.fromkeys(Path(str(c["ours"]["model"])).name + (" [subset]" if c["ours"]["subset"]
                                                                                else "") for c in off))
        all_y += _errorbar(ax, off, "*", color, (f"{metric}: " if len(groups) > 1 else "") + models, True, shift)
        for c in off:
            off_size[_x(c)] = c["size"]
    all_x += list(off_size)
    for i, (metric, group) in enumerate(groups.items() if own_paper else []):
        rx, ry = _series(group, lambda c: (c["refs"].get("paper") or {}).get("value"))
        ax.plot(_dodge(rx, i, count), ry, "x--", color=COLORS[i % len(COLORS)], alpha=0.7, label=f"paper: {metric}")
        all_y += ry
    for i, name in enumerate(sources):
        rx, ry = _series(cells, lambda c: (c["refs"].get(name) or {}).get("value"))
        if name == "paper":
            ax.plot(rx, ry, "o--", color="black", alpha=0.8, label="paper (Radford et al. 2019)")
        else:
            ax.plot(_dodge(rx, len(groups) + others.index(name), count), ry, MARKERS[i % len(MARKERS)],
                    markersize=9, alpha=0.7, color="gray", label=name)
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
    ax.set_ylabel(f"{_axis_name(list(groups))} ({better} is better)", fontsize=8)
    task, shown, against = _described(groups)
    lines = textwrap.wrap(f"{task} · {shown}", 62) + [against]
    if len(groups) == 1 and first["variant"]:
        lines.append(first["variant"][:70])
    ax.set_title("\n".join(lines), fontsize=8.5)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    # The legend goes below the axes, in a band the figure grows by: inside, it hid points.
    labels = ax.get_legend_handles_labels()[1]
    columns = 2 if max(map(len, labels)) <= 34 else 1  # two columns of long labels overflow the figure
    fig.set_figheight(3.6 + 0.16 * -(-len(labels) // columns))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=columns, frameon=False)
    fig.tight_layout()
    return fig


def panel_png(cells: list[dict], groups: dict[str, list[dict]] | None = None) -> bytes | None:
    """panel_figure as PNG bytes (None without a value of ours)."""
    fig = panel_figure(cells, groups)
    if fig is None:
        return None
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


def render_task(cells: list[dict]) -> list[tuple[str, str, bytes]]:
    """One task's panels for the report: one per paper row, its protocol variants drawn together,
    or (a task without paper rows) one for its first metric. [(panel key, caption, PNG bytes)]"""
    by_ref: dict[str, dict[str, list[dict]]] = {}
    for (task, metric), group in by_metric(cells).items():
        if group[0]["reference"] and any(c["refs"].get("paper") for c in group):
            by_ref.setdefault(panel_key(metric, group[0]["reference"]), {})[metric] = group
    if not by_ref and cells:
        first = next(iter(by_metric(cells).values()))
        by_ref[first[0]["metric"]] = {first[0]["metric"]: first}
    out = []
    for key, groups in by_ref.items():
        png = panel_png(next(iter(groups.values())), groups)
        if png:
            out.append((key, panel_caption(groups), png))
    return out


def plot_paths(pngs: dict[tuple[str, str], bytes], folder: str | Path) -> dict[tuple[str, str], Path]:
    """Where each panel goes: FOLDER/<task>__<metric>.png."""
    return {(task, metric): Path(folder) / re.sub(r"[^A-Za-z0-9_.-]", "_", f"{task}__{metric}.png")
            for task, metric in pngs}
