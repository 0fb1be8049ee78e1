"""The `compare` report as a document: a list of blocks (headings, paragraphs, tables, images, and
per-task blocks that put a task's scaling plots, each captioned with the metrics it shows and the
paper row they are compared with, beside its tables), rendered as Markdown or as one self-contained
HTML page. The headline comes first (one row per task and paper number), then the tasks a run
skipped, one section per task in the paper's order, the Table 3/4 layouts, models, protocol, data
provenance and reference sources."""
from __future__ import annotations

import base64
import html as htmllib
import os
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from . import summary
from .order import size_key
from .summary import num
from .table3_view import table3_blocks
from .tables import OTHER_COLUMNS, OURS, other_rows, table4_rows


def column_of(model: dict) -> str:
    """The size a run is compared as; a model matching no size gets a column of its own name."""
    return model.get("size") or Path(str(model.get("id", "?"))).name


def blocks(winner: dict, cells: list[dict], refs: list[dict], notes: list[str], pngs: dict,
           captions: dict | None = None, skipped: list[list[str]] = ()) -> list:
    """The report as ("h1" | "h2" | "p", text), ("list", items[, HTML class]), ("table", header, rows[, HTML class]),
    ("img", title, key) and ("task", name, [(image key, caption)], [sub-blocks]): a task's plots
    beside its tables. `captions`: image key -> what the image shows; `skipped`: [task, sizes, reason]."""
    captions = captions or {}
    runs = sorted({id(r): r for r in winner.values()}.values(), key=lambda r: size_key(column_of(r["model"])))
    out = [("h1", "GPT-2 zero-shot results beside the paper"),
           ("p", f"gpt2eval {__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, from {len(runs)} run(s). "
                 "Every value of ours carries its 95% confidence interval over the test set's examples; "
                 "'paper within CI: no' flags a paper number outside it.")]
    if any(c["ours"] and c["ours"]["subset"] for c in cells):
        out.append(("p", "Warning: values marked * were computed on a subset (--limit) and are not comparable "
                         "with the paper's full-set numbers."))
    if random := [str(r["model"].get("id")) for r in runs if r["model"].get("random")]:  # --model random:SIZE
        out.append(("p", f"Warning: {', '.join(random)} has randomly initialised weights: its numbers are "
                         "meaningless (a test of the pipeline, not of GPT-2)."))
    out += [("h2", "Headline: the paper's numbers"), ("table", summary.HEADLINE, summary.headline(cells), "whole"),
            ("p", "One row per task and paper number we have a value for, in the paper's order. Where several "
                  "protocol variants of a task are compared with one paper number, the closest is shown and named. "
                  "Δ = ours − paper.")]
    if skipped:
        out += [("h2", "Skipped tasks"), ("table", ["task", "size", "reason"], skipped),
                ("p", "These runs left the tasks out (--skip-unavailable): they have no values in this report.")]
    for task in dict.fromkeys(c["task"] for c in cells):
        mine = [c for c in cells if c["task"] == task]
        keys = [k for k in pngs if k[0] == "panel" and k[1] == task] or [k for k in pngs if k[:1] == (task,)]
        figures = [(k, captions.get(k, f"{task}: {k[-1]}")) for k in keys]
        parts = [("table", summary.TASK_TABLE, summary.task_rows(mine))]
        paired = summary.paired_rows(winner, task)
        if paired:
            parts += [("p", "Protocol variants on the same examples (paired):"), ("table", summary.PAIRED, paired)]
        draws = summary.draw_rows(winner, task)
        if draws:
            parts += [("p", "Spread of the corpus score across independent draws (--samples):"),
                      ("table", summary.DRAWS, draws)]
        parts.append(("list", summary.variants(mine)))
        out.append(("task", task, figures, parts))
    out.append(("p", "n = examples evaluated / full set; * = subset. Accuracies in percent; for ppl, bits and "
                     "loss lower is better. How each interval is computed: README, 'Confidence intervals'. "
                     "The full grid is in the tidy CSV (--csv)."))
    out += [("h2", "Table 3 layout"), *table3_blocks(cells, refs)]
    t4 = table4_rows(cells, refs)
    if any(r["source"] == OURS for r in t4):
        out += [("h2", "Table 4 layout (CNN/Daily Mail)"),
                ("table", list(t4[0]), [list(map(_cell, r.values())) for r in t4])]
    other = other_rows(cells, refs)
    out += [("h2", "The other experiments (Winograd, CoQA, CNN/DM, WMT-14, Natural Questions)"),
            ("table", OTHER_COLUMNS, [[_cell(r[k]) for k in OTHER_COLUMNS] for r in other]),
            ("p", "The paper gives these numbers for its largest model (1542M) only.")]
    out += [("h2", "Models"), ("table", ["size", "model", "parameters", "compared as", "dtype", "device",
                                         "created", "commit", "run"], [_model_row(r) for r in runs])]
    out += [("h2", "Protocol"), ("list", _protocol(winner))]
    out += [("h2", "Data provenance"), ("table", ["task", "size", "data", "sha256 / fingerprint", "verified"],
                                        _provenance(winner))]
    sources = {}
    for c in cells:
        for name, r in c["refs"].items():
            sources.setdefault(name, {}).setdefault(r["source"], r["file"])
    out += [("h2", "Reference sources"), ("table", ["column", "source", "file"],
                                          [[n, s, f] for n, d in sources.items() for s, f in d.items()])]
    if notes:
        out += [("h2", "Notes"), ("list", notes)]
    return out


def _model_row(run: dict) -> list[str]:
    m = run["model"]
    n = m.get("n_params")
    model = str(m.get("id")) + (" (random weights)" if m.get("random") else "")  # --model random:SIZE
    return [column_of(m), model, f"{n / 1e6:.1f}M" if isinstance(n, (int, float)) else "-",
            f"{m.get('paper_size') or '-'} ({m.get('size_from', '')})", str(m.get("dtype")), str(m.get("device")),
            str(run.get("created")), (run.get("git_commit") or "-")[:10], run["_dir"]]


def _cell(v) -> str:
    return num(v) if isinstance(v, float) else ("" if v is None else str(v))


def _protocol(winner: dict) -> list[str]:
    """Each task's protocol choices once, or once per group of sizes where runs differ."""
    seen: dict[str, dict[str, list[str]]] = {}
    for (col, task), run in winner.items():
        text = "; ".join(f"{k}: {v}" for k, v in run["tasks"][task].get("protocol", {}).items()) or "-"
        seen.setdefault(task, {}).setdefault(text, []).append(col)
    return [task + (f" ({', '.join(cols)})" if len(versions) > 1 else "") + f": {text}"
            for task, versions in seen.items() for text, cols in versions.items()]


def _provenance(winner: dict) -> list[list[str]]:
    """task, sizes, file name or hub dataset, its sha256 (or hub fingerprint), verified."""
    rows: dict[tuple, list[str]] = {}
    for (col, task), run in winner.items():
        d = run["tasks"][task].get("data") or {}
        what = (Path(d["path"]).name if d.get("kind") == "file" and d.get("path") else
                " ".join(str(d[k]) for k in ("dataset", "config", "split") if d.get(k)) or "-")
        key = (task, what, d.get("sha256") or d.get("fingerprint") or "-", str(d.get("verified", "-")))
        rows.setdefault(key, []).append(col)
    return [[k[0], ", ".join(cols), *k[1:]] for k, cols in rows.items()]


def to_markdown(doc: list, image_paths: dict, base: Path) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")  # noqa: E731
    flag = lambda x: "**no**" if x == summary.OUTSIDE else esc(x)  # noqa: E731
    out = []
    for kind, *rest in doc:
        if kind in ("h1", "h2", "h3"):
            out.append({"h1": "# ", "h2": "## ", "h3": "### "}[kind] + rest[0])
        elif kind == "p":
            out.append(esc(rest[0]))
        elif kind == "list":
            out.append("\n".join(f"- {esc(x)}" for x in rest[0]))
        elif kind == "table":
            head, rows = rest[:2]
            out.append("\n".join(["| " + " | ".join(map(esc, head)) + " |", "|" + "---|" * len(head)] +
                                 ["| " + " | ".join(map(flag, r)) + " |" for r in rows]))
        elif kind == "img" and rest[1] in image_paths:
            out.append(f"![{rest[0]}]({Path(os.path.relpath(image_paths[rest[1]], base)).as_posix()})")
        elif kind == "task":
            name, figures, parts = rest
            images = [block for key, caption in figures if key in image_paths
                      for block in (("img", " · ".join(key[-2:]), key), ("p", f"*{caption}*"))]
            out.append(to_markdown([("h2", name), *images, *parts], image_paths, base).rstrip("\n"))
    return "\n\n".join(out) + "\n"


STYLE = """
body{font-family:sans-serif;margin:1.5em;max-width:1360px;color:#222}
h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:.6em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;overflow-wrap:anywhere}
table.whole td,table.whole th{overflow-wrap:normal}
table.table3 td{white-space:nowrap}
table.table3 th{min-width:3.5em}
th{background:#f4f4f4;max-width:11em}
td:first-child,th:first-child{text-align:left}
td.out{background:#fde2e2;color:#a00;font-weight:bold}
td.in{color:#070}
.task{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.plots{display:flex;flex-direction:column;gap:6px;flex:0 0 auto}
.plots img{width:480px;height:auto;display:block}
.tables{flex:1 1 480px;min-width:0}
.tables ul{font-size:12px;color:#555;padding-left:1.2em}
.tables p{margin:.8em 0 0;font-size:13px}
figure{display:inline-block;margin:4px}
.plots figure{display:block;margin:0 0 6px}
ul.legend{font-size:12px;color:#444}
figcaption{font-size:11px;color:#555;width:480px}
"""


def _html_table(head: list, rows: list, css_class: str = "") -> str:
    e = htmllib.escape
    cell = lambda x: (f'<td class="out">{e(x)}</td>' if x == summary.OUTSIDE else  # noqa: E731
                      f'<td class="in">{e(x)}</td>' if x == summary.INSIDE else f"<td>{e(x)}</td>")
    opening = f'<table class="{e(css_class)}">' if css_class else "<table>"
    return (opening + "<tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>" +
            "".join("<tr>" + "".join(map(cell, r)) + "</tr>" for r in rows) + "</table>")


def _html_blocks(doc: list, pngs: dict) -> list[str]:
    e = htmllib.escape
    body = []
    for kind, *rest in doc:
        if kind in ("h1", "h2", "h3", "p"):
            body.append(f"<{kind}>{e(rest[0])}</{kind}>")
        elif kind == "list":  # ("list", items[, HTML class])
            opening = f'<ul class="{e(rest[1])}">' if len(rest) > 1 else "<ul>"
            body.append(opening + "".join(f"<li>{e(x)}</li>" for x in rest[0]) + "</ul>")
        elif kind == "table":
            body.append(_html_table(*rest))
        elif kind == "img":
            data = base64.b64encode(pngs[rest[1]]).decode("ascii")
            body.append(f'<figure><img alt="{e(rest[0])}" src="data:image/png;base64,{data}"></figure>')
        elif kind == "task":
            name, figures, parts = rest
            imgs = "".join(f'<figure><img alt="{e(caption)}" src="data:image/png;base64,'
                           f'{base64.b64encode(pngs[k]).decode("ascii")}"><figcaption>{e(caption)}</figcaption>'
                           "</figure>" for k, caption in figures)
            body.append(f'<h2 id="task-{e(name)}">{e(name)}</h2><div class="task"><div class="plots">{imgs}</div>'
                        f'<div class="tables">' + "".join(_html_blocks(parts, pngs)) + "</div></div>")
    return body


def to_html(doc: list, pngs: dict) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>gpt2eval report</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(_html_blocks(doc, pngs)) + "\n</body></html>\n")
