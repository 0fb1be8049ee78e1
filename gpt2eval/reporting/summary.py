"""The report's compact tables, read at a glance: the headline (one row per paper number we have a
value for, with the protocol variant closest to the paper marked), one small table per task (metric
variant x size: ours with its 95% interval, paper, delta, whether the paper's value lies inside
our interval, n), the paired differences between protocol variants, and CNN/DM's spread across
draws. Input: the comparison grid's cells (gpt2eval.reporting.tables.grid) and the winning runs; output:
(header, rows of strings) for the Markdown and HTML renderers."""
from __future__ import annotations

from .compare import diffs, in_interval
from .order import row_key, size_key

OUTSIDE, INSIDE = "no", "yes"   # "paper value within our 95% interval"


def num(v, signed: bool = False) -> str:
    if v is None:
        return ""
    if abs(v) >= 1e5:
        return f"{v:+.4g}" if signed else f"{v:.4g}"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def with_ci(record: dict | None) -> str:
    """"21.33 ± 6.58" for a symmetric interval, "74.11 [50.18, 114.91]" for another (bounds apart by a
    comma, so that a negative bound reads "[-36206.42, -1.20]"); the bare value without an interval."""
    if not record:
        return ""
    value, iv = record["value"], record.get("interval") or {}
    if value is None or iv.get("ci_low") is None:  # no interval, or a null one (a value that is not finite)
        return num(value)
    lo, hi = iv["ci_low"], iv["ci_high"]
    if abs((value - lo) - (hi - value)) <= 0.01 * max(hi - lo, 1e-12):
        return f"{num(value)} ± {num((hi - lo) / 2)}"
    return f"{num(value)} [{num(lo)}, {num(hi)}]"


def n_cell(record: dict | None) -> str:
    if not record:
        return ""
    return f"{record['n_examples']}/{record['n_full']}{'*' if record['subset'] else ''}"


def within(paper: float | None, record: dict | None) -> str:
    verdict = in_interval(paper, (record or {}).get("interval"))
    return "" if verdict is None else (INSIDE if verdict else OUTSIDE)


HEADLINE = ["task", "paper row", "size", "paper", "ours (95% CI)", "Δ", "paper within CI", "closest variant", "n"]


def headline(cells: list[dict]) -> list[list[str]]:
    """One row per task and paper number (reference row and size) that one of its metrics is compared
    with; where several variants of a task share it, the one closest to the paper is shown and named.
    A task's protocol variant (lambada:preprocess=openai) gets rows of its own: it is another
    experiment, not another candidate for the closest value. Rows in the paper's order: tasks as
    the cells list them (gpt2eval.reporting.order), then paper row, then size."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for c in cells:
        if c["ours"] and c["refs"].get("paper") and c["reference"]:
            groups.setdefault((c["task"], c["reference"], c["size"]), []).append(c)
    tasks = list(dict.fromkeys(c["task"] for c in cells))
    rows = []
    for (_, ref, size), group in sorted(groups.items(), key=lambda kv: (tasks.index(kv[0][0]), row_key(kv[0][1]),
                                                                         size_key(kv[0][2]))):
        paper = group[0]["refs"]["paper"]["value"]
        best = min(group, key=lambda c: abs(c["ours"]["value"] - paper))
        variant = best["metric"] + (f" (closest of {len(group)})" if len(group) > 1 else "")
        rows.append([best["task"], ref.split("/", 1)[1], size, num(paper), with_ci(best["ours"]),
                     num(diffs(best["ours"]["value"], paper)[0], True), within(paper, best["ours"]), variant,
                     n_cell(best["ours"])])
    return rows


TASK_TABLE = ["metric", "size", "ours (95% CI)", "paper", "Δ", "paper within CI", "n"]


def task_rows(cells: list[dict]) -> list[list[str]]:
    """One task's metric variants x sizes, where we have a value."""
    rows = []
    for c in cells:
        if c["ours"]:
            paper = (c["refs"].get("paper") or {}).get("value")
            rows.append([c["metric"], c["size"], with_ci(c["ours"]), num(paper),
                         num(diffs(c["ours"]["value"], paper)[0], True), within(paper, c["ours"]), n_cell(c["ours"])])
    return rows


def variants(cells: list[dict]) -> list[str]:
    """"metric: definition" once per metric of a task."""
    return list(dict.fromkeys(f"{c['metric']}: {c['variant']}" for c in cells if c["ours"] and c["variant"]))


PAIRED = ["a − b", "size", "difference (95% CI)", "variants differ (0 outside CI)", "method"]


def paired_rows(winner: dict, task: str) -> list[list[str]]:
    """A task's paired differences (results.json "paired"), per size."""
    rows = []
    for (col, t), run in winner.items():
        if t != task:
            continue
        for d in run["tasks"][t].get("paired") or []:
            record = {"value": d["diff"], "interval": d}
            differ = {INSIDE: "within noise", OUTSIDE: "differ", "": ""}[within(0.0, record)]
            rows.append([f"{d['a']} − {d['b']}", col, with_ci(record), differ, d["method"].split(" (")[0]])
    return rows


DRAWS = ["metric", "size", "draws", "mean", "sd across draws", "min", "max"]


def draw_rows(winner: dict, task: str) -> list[list[str]]:
    """The spread of a sampled task's corpus scores across its independent draws (--samples K)."""
    rows = []
    for (col, t), run in winner.items():
        across = (run["tasks"][t].get("extra") or {}).get("across_draws") if t == task else None
        for metric, d in (across or {}).items():
            rows.append([metric, col, str(len(d["values"])), num(d["mean"]), num(d["sd"]), num(min(d["values"])),
                         num(max(d["values"]))])
    return rows
