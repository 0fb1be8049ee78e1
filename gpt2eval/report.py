"""Reports over finished runs (`python run_eval.py compare RUN_DIR...`): the results.json of every
run given (a run folder, or a folder of them such as a multi-size output) merged into one grid of
task x metric x size, written as a terminal table, a tidy CSV, the paper's Table 3 / Table 4
layouts, scaling plots, Markdown and a self-contained HTML page. Where two runs cover one task at one
size, the later (by "created") wins and the report says so."""
from __future__ import annotations

import base64
import html as htmllib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from . import __version__
from .compare import (OURS, TIDY_COLUMNS, diffs, grid, load_references, table3_rows, table4_rows, tidy_rows,
                      write_rows)
from .errors import UserError
from .io import write_atomic
from .sizes import SIZES
from .plots import render, write_plots

DEFAULT_NAMES = {"csv": "comparison_tidy.csv", "table3_csv": "table3.csv", "table4_csv": "table4.csv",
                 "markdown": "report.md", "html": "report.html", "plot": "plots"}


# ---- reading runs --------------------------------------------------------------------------------

def find_results(paths: list[str | Path]) -> list[Path]:
    """results.json files: PATH itself, PATH/results.json, else PATH/*/results.json."""
    found = []
    for p in map(Path, paths):
        if p.is_file() and p.name == "results.json":
            found.append(p)
        elif (p / "results.json").is_file():
            found.append(p / "results.json")
        elif p.is_dir() and sorted(p.glob("*/results.json")):
            found += sorted(p.glob("*/results.json"))
        else:
            raise UserError(f"{p}: no results.json in it or in its subfolders; give a run folder or a folder of runs")
    return list(dict.fromkeys(found))


def load_runs(paths: list[str | Path]) -> list[dict]:
    runs = []
    for f in find_results(paths):
        try:
            run = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{f}: not a valid results.json ({e}); re-run or remove it") from None
        if not isinstance(run, dict) or "model" not in run or "tasks" not in run:
            raise UserError(f"{f}: not a gpt2eval results.json (no model/tasks)")
        runs.append({**run, "_dir": str(f.parent)})
    return runs


def column_of(model: dict) -> str:
    """The size a run is compared as; a model matching no size gets a column of its own name."""
    return model.get("size") or Path(str(model.get("id", "?"))).name


def collect(runs: list[dict]) -> tuple[list[dict], dict[tuple[str, str], dict], list[str]]:
    """(our value records, (size, task) -> the run it comes from, notes). A later run replaces an
    earlier one per (size, task)."""
    winner: dict[tuple[str, str], dict] = {}
    notes = []
    for run in sorted(runs, key=lambda r: r.get("created") or ""):
        col = column_of(run["model"])
        for task in run["tasks"]:
            prev = winner.get((col, task))
            if prev:
                other = f" (another model: {prev['model']['id']})" if prev["model"]["id"] != run["model"]["id"] else ""
                notes.append(f"{task} at {col}: {run['_dir']} (created {run.get('created')}) replaces "
                             f"{prev['_dir']} (created {prev.get('created')}){other}")
            winner[(col, task)] = run
    records = []
    for (col, task), run in winner.items():
        t, model = run["tasks"][task], run["model"]
        for metric, value in t["metrics"].items():
            info = t.get("metric_info", {}).get(metric, {})
            records.append({"task": task, "metric": metric, "size": col, "value": value,
                            "variant": info.get("variant", ""), "reference": info.get("reference"),
                            "higher_is_better": info.get("higher_is_better", True),
                            "n_examples": t.get("n_examples"), "n_full": t.get("n_full"),
                            "subset": bool(t.get("subset")), "model": model.get("id"),
                            "n_params": model.get("n_params"), "run": run["_dir"]})
    return records, winner, notes


# ---- the merged table -------------------------------------------------------------------------

def num(v, signed: bool = False) -> str:
    if v is None:
        return ""
    if abs(v) >= 1e5:
        return f"{v:+.4g}" if signed else f"{v:.4g}"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def merged_table(cells: list[dict], sizes: list[str]) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """Header as (size, column) pairs and rows of strings: per size ours, paper, diff, relative diff,
    any other source, and n evaluated / n full ("*" marks a subset). A size nobody ran gets just its
    (empty) ours and the paper's value."""
    extra = list(dict.fromkeys(n for c in cells for n in c["refs"] if n != "paper"))
    ran = {c["size"] for c in cells if c["ours"]}
    header = [("", "task"), ("", "metric")]
    for size in sizes:
        more = [(size, "Δ"), (size, "Δ%")] + [(size, n) for n in extra] + [(size, "n")] if size in ran else []
        header += [(size, "ours"), (size, "paper")] + more
    header.append(("", "variant"))
    at = {(c["task"], c["metric"], c["size"]): c for c in cells}
    variants = {(c["task"], c["metric"]): c["variant"] for c in cells}
    rows = []
    for (task, metric), variant in variants.items():
        row = [task, metric]
        for size in sizes:
            c = at[(task, metric, size)]
            o, paper = c["ours"] or {}, (c["refs"].get("paper") or {}).get("value")
            diff, rel = diffs(o.get("value"), paper)
            row += [num(o.get("value")), num(paper)]
            if size in ran:
                row += [num(diff, True), "" if rel is None else f"{rel:+.1f}%"]
                row += [num((c["refs"].get(n) or {}).get("value")) for n in extra]
                row.append(f"{o['n_examples']}/{o['n_full']}{'*' if o['subset'] else ''}" if o else "")
        rows.append(row + [variant])
    return header, rows


def text_table(header: list[tuple[str, str]], rows: list[list[str]]) -> str:
    """Two header lines (size, then column), aligned columns, "-" for an empty cell."""
    cells = [[h[1] for h in header]] + [[x or "-" for x in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    top = [h[0] if h[0] and (i == 0 or header[i - 1][0] != h[0]) else "" for i, h in enumerate(header)]
    line = lambda cs: "  ".join(c.ljust(w) for c, w in zip(cs, widths)).rstrip()  # noqa: E731
    return "\n".join([line(top), line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


# ---- the document: a list of blocks, rendered as Markdown or HTML ---------------------------------

def blocks(winner: dict, cells: list[dict], refs: list[dict], notes: list[str], pngs: dict) -> list:
    """The report as ("h1" | "h2" | "p", text), ("list", items), ("table", header, rows), ("img", title, key)."""
    runs = list({id(r): r for r in winner.values()}.values())
    header, rows = merged_table(cells, list(dict.fromkeys(c["size"] for c in cells)))
    out = [("h1", "GPT-2 zero-shot results beside the paper"),
           ("p", f"gpt2eval {__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, from {len(runs)} run(s).")]
    if any(c["ours"] and c["ours"]["subset"] for c in cells):
        out.append(("p", "Warning: values marked * were computed on a subset (--limit) and are not comparable "
                         "with the paper's full-set numbers."))
    out += [("h2", "Models"), ("table", ["size", "model", "parameters", "compared as", "dtype", "device",
                                         "created", "commit", "run"], [_model_row(r) for r in runs])]
    out += [("h2", "Comparison"), ("table", [f"{s} {n}".strip() for s, n in header], rows),
            ("p", "Δ = ours − paper; Δ% relative to the paper. n = examples evaluated / full set; * = subset. "
                  "Accuracies in percent; for ppl, bits and loss lower is better.")]
    t3 = table3_rows(cells, refs)
    out += [("h2", "Table 3 layout"), ("table", list(t3[0]), [list(map(_cell, r.values())) for r in t3])]
    t4 = table4_rows(cells, refs)
    if any(r["source"] == OURS for r in t4):
        out += [("h2", "Table 4 layout (CNN/Daily Mail)"),
                ("table", list(t4[0]), [list(map(_cell, r.values())) for r in t4])]
    out += [("h2", "Scaling plots")] + [("img", f"{task} · {metric}", (task, metric)) for task, metric in pngs]
    if not pngs:
        out.append(("p", "(give --plot DIR to draw the scaling plots and link them here)"))
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
    return [column_of(m), str(m.get("id")), f"{n / 1e6:.1f}M" if isinstance(n, (int, float)) else "-",
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
    out = []
    for kind, *rest in doc:
        if kind in ("h1", "h2"):
            out.append(("# " if kind == "h1" else "## ") + rest[0])
        elif kind == "p":
            out.append(esc(rest[0]))
        elif kind == "list":
            out.append("\n".join(f"- {esc(x)}" for x in rest[0]))
        elif kind == "table":
            head, rows = rest
            out.append("\n".join(["| " + " | ".join(map(esc, head)) + " |", "|" + "---|" * len(head)] +
                                 ["| " + " | ".join(map(esc, r)) + " |" for r in rows]))
        elif kind == "img" and rest[1] in image_paths:
            out.append(f"![{rest[0]}]({Path(os.path.relpath(image_paths[rest[1]], base)).as_posix()})")
    return "\n\n".join(out) + "\n"


def to_html(doc: list, pngs: dict) -> str:
    e = htmllib.escape
    body = []
    for kind, *rest in doc:
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{e(rest[0])}</{kind}>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in rest[0]) + "</ul>")
        elif kind == "table":
            head, rows = rest
            body.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>" +
                        "".join("<tr>" + "".join(f"<td>{e(x)}</td>" for x in r) + "</tr>" for r in rows) + "</table>")
        elif kind == "img":
            data = base64.b64encode(pngs[rest[1]]).decode("ascii")
            body.append(f'<figure><img alt="{e(rest[0])}" src="data:image/png;base64,{data}"></figure>')
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}figure{display:inline-block;margin:4px}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>gpt2eval report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ---- writing everything -----------------------------------------------------------------------

def select_metrics(records: list[dict], wanted: str | None) -> list[dict]:
    """Keep the records named by `wanted` ("ppl,lambada/acc": a metric, or task/metric)."""
    if not wanted:
        return records
    names = [w.strip() for w in wanted.split(",") if w.strip()]
    known = {r["metric"] for r in records} | {f"{r['task']}/{r['metric']}" for r in records}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown metric(s) {', '.join(unknown)} in these runs; available: "
                        + ", ".join(sorted(n for n in known if "/" in n)))
    return [r for r in records if r["metric"] in names or f"{r['task']}/{r['metric']}" in names]


def write_report(paths: list, *, csv=None, table3_csv=None, table4_csv=None, markdown=None, html=None,
                 plot=None, reference_dir=None, metrics=None, log=print) -> list[dict]:
    """Merge the runs under `paths`, print the table, write what was asked for; returns the cells."""
    refs = load_references(reference_dir)
    records, winner, notes = collect(load_runs(paths))
    records = select_metrics(records, metrics)
    cells = grid(records, refs)
    sizes = [s for s in dict.fromkeys(c["size"] for c in cells) if any(c["ours"] for c in cells if c["size"] == s)]
    log(text_table(*merged_table(cells, sizes)))
    if set(SIZES) - set(sizes):
        log(f"\nno run for: {', '.join(s for s in SIZES if s not in sizes)} (paper values: CSV / Markdown / HTML)")
    for n in notes:
        log("note: " + n)
    if csv:
        write_rows(csv, tidy_rows(cells), TIDY_COLUMNS)
    if table3_csv:
        write_rows(table3_csv, table3_rows(cells, refs))
    if table4_csv:
        write_rows(table4_csv, table4_rows(cells, refs), ["setting", "size", "source", "R-1", "R-2", "R-L", "R-AVG"])
    pngs = render(cells) if (plot or markdown or html) else {}
    png_paths = write_plots(pngs, plot) if plot else {}
    if markdown:
        doc = blocks(winner, cells, refs, notes, png_paths)
        write_atomic(markdown, to_markdown(doc, png_paths, Path(markdown).resolve().parent))
    if html:
        write_atomic(html, to_html(blocks(winner, cells, refs, notes, pngs), pngs))
    if any((csv, table3_csv, table4_csv, markdown, html, plot)):
        log("wrote " + ", ".join(str(p) for p in (csv, table3_csv, table4_csv, markdown, html, plot) if p))
    return cells


def write_report_folder(folder: str | Path, log=print) -> list[dict]:
    """Everything, with the default names, into a run's output folder (the end of a multi-size run)."""
    return write_report([folder], log=log, **{k: Path(folder) / v for k, v in DEFAULT_NAMES.items()})


# ---- the `compare` subcommand -----------------------------------------------------------------

def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="a run folder (with results.json) or a folder of them")
    p.add_argument("--csv", metavar="FILE", help="tidy CSV: one row per task, metric, size and source")
    p.add_argument("--table3-csv", metavar="FILE", help="wide CSV laid out like the paper's Table 3")
    p.add_argument("--table4-csv", metavar="FILE", help="wide CSV laid out like the paper's Table 4 (CNN/DM)")
    p.add_argument("--markdown", metavar="FILE", help="Markdown summary (links the plots when --plot is given)")
    p.add_argument("--html", metavar="FILE", help="self-contained HTML page, plots embedded")
    p.add_argument("--plot", metavar="DIR", help="one PNG per task and metric, against parameter count")
    p.add_argument("--out", metavar="DIR", help="all of the above into DIR: " + ", ".join(DEFAULT_NAMES.values()))
    p.add_argument("--reference-dir", metavar="DIR", help="reference CSVs (default results/reference)")
    p.add_argument("--metrics", metavar="LIST", help="only these metrics: names or task/metric, comma-separated")


def run(args) -> int:
    chosen = {k: getattr(args, k) for k in DEFAULT_NAMES}
    if args.out:
        chosen = {k: v or Path(args.out) / DEFAULT_NAMES[k] for k, v in chosen.items()}
    write_report(args.runs, reference_dir=args.reference_dir, metrics=args.metrics, **chosen)
    return 0
