"""Reports over finished runs (`python run_eval.py compare RUN_DIR...`): the results.json of every
run given (a run folder, or a folder of them such as a multi-size output) merged into one grid of
task x metric x size, written as a terminal table, a tidy CSV, the paper's Table 3 / Table 4
layouts, scaling plots, Markdown and a self-contained HTML page (laid out by gpt2eval.reporting.document).
Where two runs cover one task at one size, the later (by "created") wins and the report says so.
Every output path is checked before anything is read or printed, and the outputs are written all
at once at the end (gpt2eval.io.write_all): a bad path or a full disk is one line, no traceback,
and no output is left half-written."""
from __future__ import annotations

import json
from pathlib import Path

from .compare import diffs, in_interval, load_references, rows_csv
from .tables import OTHER_COLUMNS, TIDY_COLUMNS, grid, other_rows, table3_rows, table4_columns, table4_rows, tidy_rows
from .document import blocks, column_of, to_html, to_markdown
from ..errors import UserError
from ..io import check_output, write_all
from .order import size_key, task_key
from .plots import panel_caption, plot_paths, render, render_task
from .steps import step_files
from ..models.sizes import SIZES
from .summary import num
from ..api.uncertainty import format_ci

DEFAULT_NAMES = {"csv": "comparison_tidy.csv", "table3_csv": "table3.csv", "table4_csv": "table4.csv",
                 "other_csv": "other_experiments.csv", "markdown": "report.md", "html": "report.html", "plot": "plots"}


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


def collect(runs: list[dict]) -> tuple[list[dict], dict[tuple[str, str], dict], list[str]]:
    """(our value records, (size, task) -> the run it comes from, notes). A later run replaces an
    earlier one per (size, task). Tasks in the paper's order (gpt2eval.reporting.order), then sizes."""
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
    references = {task: sorted(i.get("reference") or "" for i in (run["tasks"][task].get("metric_info") or {}).values())
                  for (_, task), run in winner.items()}
    winner = dict(sorted(winner.items(), key=lambda kv: (task_key(kv[0][1], references[kv[0][1]]), size_key(kv[0][0]))))
    records = []
    for (col, task), run in winner.items():
        t, model = run["tasks"][task], run["model"]
        for metric, value in t["metrics"].items():
            info = t.get("metric_info", {}).get(metric, {})
            if value is None:  # not a finite number (null in results.json): no cell, a note that says why
                why = (t.get("non_finite") or {}).get(metric, "null in results.json")
                notes.append(f"{task} {metric} at {col}: no value: {why}")
                continue
            records.append({"task": task, "metric": metric, "size": col, "value": value,
                            "variant": info.get("variant", ""), "reference": info.get("reference"),
                            "higher_is_better": info.get("higher_is_better", True),
                            "n_examples": t.get("n_examples"), "n_full": t.get("n_full"),
                            "subset": bool(t.get("subset")), "model": model.get("id"),
                            "n_params": model.get("n_params"), "run": run["_dir"],
                            "interval": (t.get("intervals") or {}).get(metric)})
    return records, winner, notes


# ---- the merged table -------------------------------------------------------------------------

def merged_table(cells: list[dict], sizes: list[str]) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """Header as (size, column) pairs and rows of strings: per size ours, paper, diff, relative diff,
    any other source, and n evaluated / n full ("*" marks a subset). A size nobody ran gets just its
    (empty) ours and the paper's value."""
    extra = list(dict.fromkeys(n for c in cells for n in c["refs"] if n != "paper"))
    ran = {c["size"] for c in cells if c["ours"]}
    header = [("", "task"), ("", "metric")]
    for size in sizes:
        more = [(size, "Δ"), (size, "Δ%")] + [(size, n) for n in extra] + [(size, "n")] if size in ran else []
        header += [(size, "ours"), (size, "95% CI"), (size, "paper")] + more
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
            row += [num(o.get("value")), format_ci(o.get("interval")), num(paper)]
            if size in ran:
                outside = " !" if in_interval(paper, o.get("interval")) is False else ""  # paper outside our CI
                row += [num(diff, True) + outside, "" if rel is None else f"{rel:+.1f}%"]
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


OPTIONS = {"csv": "--csv", "table3_csv": "--table3-csv", "table4_csv": "--table4-csv", "other_csv": "--other-csv",
           "markdown": "--markdown", "html": "--html", "plot": "--plot"}


def check_outputs(outputs: dict[str, str | Path | None], options: dict[str, str] | None = None) -> None:
    """Refuse any output path that cannot be written (gpt2eval.io.check_output; --plot is a folder,
    the others files), and two outputs that name one path. `options`: the option each output
    came from, where not its own (--out)."""
    options = {**OPTIONS, **(options or {})}
    seen: dict[Path, str] = {}
    for key, path in outputs.items():
        if not path:
            continue
        check_output(path, options[key], folder=key == "plot")
        first = seen.setdefault(Path(path).expanduser().resolve(), key)
        if first != key:
            raise UserError(f"{options[first]} and {options[key]} both name {path}; give each output its own path")


def skipped_tasks(runs: list[dict], winner: dict) -> list[list[str]]:
    """[task, sizes, reason] for each task a run left out (results.json "skipped": {task: reason},
    --skip-unavailable) that no run supplies at that size; absent or empty: none."""
    found: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        skipped = run.get("skipped") or {}
        if isinstance(skipped, list):  # names without reasons: tolerated
            skipped = dict.fromkeys(skipped, "")
        col = column_of(run["model"])
        for task, reason in (skipped.items() if isinstance(skipped, dict) else []):
            sizes = found.setdefault((str(task), str(reason or "-")), [])
            if (col, task) not in winner and col not in sizes:
                sizes.append(col)
    return [[task, ", ".join(sorted(sizes, key=size_key)), why]
            for (task, why), sizes in sorted(found.items(), key=lambda kv: task_key(kv[0][0])) if sizes]


def write_report(paths: list, *, csv=None, table3_csv=None, table4_csv=None, other_csv=None, markdown=None, html=None,
                 plot=None, reference_dir=None, metrics=None, log=print, options=None) -> list[dict]:
    """Merge the runs under `paths`, print the table, write what was asked for; returns the cells.
    `options`: output -> the option it came from, for the messages (default: its own)."""
    outputs = {"csv": csv, "table3_csv": table3_csv, "table4_csv": table4_csv, "other_csv": other_csv,
               "markdown": markdown, "html": html, "plot": plot}
    check_outputs(outputs, options)  # before anything is read or printed
    refs = load_references(reference_dir)
    runs = load_runs(paths)
    records, winner, notes = collect(runs)
    records = select_metrics(records, metrics)
    cells = grid(records, refs)
    skipped = skipped_tasks(runs, winner)
    sizes = [s for s in dict.fromkeys(c["size"] for c in cells) if any(c["ours"] for c in cells if c["size"] == s)]
    log(text_table(*merged_table(cells, sizes)))
    if set(SIZES) - set(sizes):
        log(f"\nno run for: {', '.join(s for s in SIZES if s not in sizes)} (paper values: CSV / Markdown / HTML)")
    for n in notes:
        log("note: " + n)
    for task, at, reason in skipped:
        log(f"skipped: {task} ({at}): {reason}")
    files: dict[Path, str | bytes] = {}
    if csv:
        files[Path(csv)] = rows_csv(tidy_rows(cells), TIDY_COLUMNS)
    if table3_csv:
        files[Path(table3_csv)] = rows_csv(table3_rows(cells, refs, intervals=True))
    if table4_csv:
        files[Path(table4_csv)] = rows_csv(table4_rows(cells, refs, intervals=True), table4_columns(intervals=True))
    if other_csv:
        files[Path(other_csv)] = rows_csv(other_rows(cells, refs), OTHER_COLUMNS)
    pngs = render(cells) if plot else {}
    png_paths = plot_paths(pngs, plot) if plot else {}
    files.update({png_paths[k]: png for k, png in pngs.items()})
    if plot:  # a training run's checkpoints (runs with a step): each metric against step, and steps.csv
        steps = step_files(runs, refs, plot)
        files.update(steps)
        if steps:
            log(f"training steps: {len(steps) - 1} plot(s) against step and steps.csv, in {plot}")
    if markdown:
        captions = {key: panel_caption({key[1]: [c for c in cells if (c["task"], c["metric"]) == key]})
                    for key in png_paths}
        doc = blocks(winner, cells, refs, notes, png_paths, captions, skipped)
        files[Path(markdown)] = to_markdown(doc, png_paths, Path(markdown).resolve().parent)
    if html:  # one panel per task and paper row, its protocol variants drawn together
        panels, captions = {}, {}
        for task in dict.fromkeys(c["task"] for c in cells):
            for ref, caption, png in render_task([c for c in cells if c["task"] == task]):
                panels[("panel", task, ref)], captions[("panel", task, ref)] = png, caption
        files[Path(html)] = to_html(blocks(winner, cells, refs, notes, panels, captions, skipped), panels)
    write_all(files)
    if plot:  # the folder asked for, even when there was nothing to draw
        Path(plot).mkdir(parents=True, exist_ok=True)
    if any(outputs.values()):
        log("wrote " + ", ".join(str(p) for p in outputs.values() if p))
    return cells


def write_report_folder(folder: str | Path, log=print) -> list[dict]:
    """Everything, with the default names, into a run's output folder (the end of a multi-size run)."""
    return write_report([folder], log=log, options=dict.fromkeys(DEFAULT_NAMES, "--output"),
                        **{k: Path(folder) / v for k, v in DEFAULT_NAMES.items()})


# ---- the `compare` subcommand -----------------------------------------------------------------

def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="a run folder (with results.json) or a folder of them")
    p.add_argument("--csv", metavar="FILE", help="tidy CSV: one row per task, metric, size and source")
    p.add_argument("--table3-csv", metavar="FILE", help="wide CSV laid out like the paper's Table 3")
    p.add_argument("--table4-csv", metavar="FILE", help="wide CSV laid out like the paper's Table 4 (CNN/DM)")
    p.add_argument("--other-csv", metavar="FILE", help="CSV of the other experiments: Winograd, CoQA, CNN/DM, "
                   "WMT-14, Natural Questions, ours beside the paper's")
    p.add_argument("--markdown", metavar="FILE", help="Markdown summary (links the plots when --plot is given)")
    p.add_argument("--html", metavar="FILE", help="self-contained HTML page, plots embedded")
    p.add_argument("--plot", metavar="DIR", help="one PNG per task and metric, against parameter count")
    p.add_argument("--out", metavar="DIR", help="all of the above into DIR: " + ", ".join(DEFAULT_NAMES.values()))
    p.add_argument("--reference-dir", metavar="DIR", help="reference CSVs (default results/reference)")
    p.add_argument("--metrics", metavar="LIST", help="only these metrics: names or task/metric, comma-separated")


def run(args) -> int:
    chosen = {k: getattr(args, k) for k in DEFAULT_NAMES}
    options = {}
    if args.out:
        check_output(args.out, "--out", folder=True)
        options = {k: "--out" for k, v in chosen.items() if not v}
        chosen = {k: v or Path(args.out) / DEFAULT_NAMES[k] for k, v in chosen.items()}
    write_report(args.runs, reference_dir=args.reference_dir, metrics=args.metrics, options=options, **chosen)
    return 0
