"""Table 3 as the report shows it (Markdown and HTML): the paper's layout, a row per size and source
and a column per dataset, cut at dataset boundaries into tables of at most MAX_COLUMNS value columns,
so that in a 1,400-px window no heading or number has to break inside a word. Where several of our
metrics share one paper column (LAMBADA's stop-word filters, lambada:preprocess=openai), each
column's heading carries a short mark ([1], [2], ...) that a legend below the tables explains;
values computed on a subset carry "*". The full-width CSV (with intervals) is tables.table3_rows."""
from __future__ import annotations

from itertools import groupby

from ..models.sizes import SIZES
from .summary import num
from .tables import NO_FILTER, OURS, column_header, table3_columns, table3_rows

MAX_COLUMNS = 10  # the paper's own Table 3 has ten value columns
SHORT_LABELS = {NO_FILTER[0]: "LAMBADA (ACC, no filter)"}  # no hyphen: a heading may wrap at spaces only
TABLE3_CLASS = "whole table3"  # the HTML tables' class: no break inside a word (document.STYLE)


def _value(v, subset: bool) -> str:
    if v is None:
        return ""
    return (num(float(v)) if isinstance(v, (int, float)) else str(v)) + ("*" if subset else "")


def table3_blocks(cells: list[dict], refs: list[dict]) -> list:
    """The Table 3 layout as report blocks: ("table", header, rows, class) per group of columns, then
    a note and the legend of marked columns."""
    columns = table3_columns(cells)
    rows = table3_rows(cells, refs)
    at = {(c["task"], c["metric"], c["size"]): c for c in cells}
    shown, legend = [], []
    for label, ref, tm, name in columns:
        heading = SHORT_LABELS.get(label, label)
        if name:
            variant = next((c["variant"] for c in cells if (c["task"], c["metric"]) == tm and c["variant"]), "")
            legend.append(f"[{len(legend) + 1}] {'/'.join(tm)}" + (f": {variant}" if variant else ""))
            heading += f" [{len(legend)}]"
        shown.append((column_header(label, name), heading, label, tm))
    groups, current = [], []
    for _, same_dataset in groupby(shown, key=lambda s: s[2]):
        same_dataset = list(same_dataset)
        if current and len(current) + len(same_dataset) > MAX_COLUMNS:
            groups.append(current)
            current = []
        current += same_dataset
    groups += [current] if current else []
    out = []
    for group in groups:
        body = []
        for row in rows:
            ours = row["source"] == OURS
            values = [_value(row.get(key), ours and tm is not None and bool(
                ((at.get((*tm, row["size"])) or {}).get("ours") or {}).get("subset"))) for key, _, _, tm in group]
            if (row["source"] in (OURS, "paper") and row["size"] in SIZES) or any(values):
                body.append([row["size"], str(row["paper_params"] or ""), row["source"], *values])
        out.append(("table", ["size", "params", "source"] + [heading for _, heading, _, _ in group], body,
                    TABLE3_CLASS))
    out.append(("p", "Values only; their intervals are in the tidy CSV and in the tables above. "
                     "* = computed on a subset (--limit)." + (" Marked columns:" if legend else "")))
    if legend:
        out.append(("list", legend, "legend"))
    return out
