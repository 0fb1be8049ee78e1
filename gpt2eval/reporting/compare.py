"""Our numbers beside the paper's: reference tables in, comparison rows out.

A reference table is any CSV in results/reference/ with the columns task, metric, size, value,
source (note optional). A task's metric names the paper row it is compared with ("lambada/acc"),
so several protocol variants can each be compared with the one paper number. Rows of any other
source (not "Radford et al. 2019 ...") are keyed by our own metric name instead: such a file says
which of our definitions its numbers use, and shows as a column named after the file.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..errors import UserError
from ..paths import reference_dir
from ..api.uncertainty import format_ci

COLUMNS = ["task", "metric", "size", "model", "ours", "stderr", "ci_low", "ci_high", "paper", "delta", "paper_in_ci",
           "n_examples", "n_full", "subset", "reference", "variant", "protocol"]
INTERVAL = ["stderr", "ci_low", "ci_high"]  # our value's standard error and 95% interval (gpt2eval.api.uncertainty)
BOUNDS = ["ci_low", "ci_high"]  # the wide tables' companion columns: "<column> ci_low", "<column> ci_high"
PAPER_SOURCE_PREFIX = "Radford et al. 2019"
REFERENCE_COLUMNS = ["task", "metric", "size", "value", "source"]


def load_references(folder: str | Path | None = None) -> list[dict]:
    """Every row of every reference CSV, with the file it came from."""
    rows = []
    for path in sorted(Path(folder or reference_dir()).glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REFERENCE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"reference file {path} lacks the column(s) {', '.join(missing)}; a reference CSV "
                                f"has the columns {', '.join(REFERENCE_COLUMNS)} (note optional)")
            for n, row in enumerate(reader, 2):
                value = (row.get("value") or "").strip()
                try:
                    rows.append({**row, "value": float(value) if value else None, "file": path.name})
                except ValueError:
                    raise UserError(f"reference file {path}, line {n}: value {value!r} is not a number") from None
    return rows


def paper_value(refs: list[dict], reference: str | None, size: str | None) -> float | None:
    if not reference or not size:
        return None
    task, metric = reference.split("/", 1)
    for r in refs:
        if (r["task"], r["metric"], r["size"]) == (task, metric, size) and r["source"].startswith(PAPER_SOURCE_PREFIX):
            return r["value"]
    return None


def in_interval(value: float | None, iv: dict | None) -> bool | None:
    """Whether a reference value lies inside our interval (None: no value or no interval)."""
    if value is None or not iv or iv.get("ci_low") is None:
        return None
    return iv["ci_low"] <= value <= iv["ci_high"]


def comparison_rows(results: dict, refs: list[dict]) -> list[dict]:
    """One row per (task, metric) of one run's results.json."""
    model = results["model"]
    rows = []
    for task, t in results["tasks"].items():
        protocol = "; ".join(f"{k}: {v}" for k, v in t.get("protocol", {}).items())
        for metric, value in t["metrics"].items():
            info = t.get("metric_info", {}).get(metric, {})
            paper = paper_value(refs, info.get("reference"), model.get("size"))
            iv = t.get("intervals", {}).get(metric) or {}
            rows.append({"task": task, "metric": metric, "size": model.get("size") or "", "model": model["id"],
                         "ours": value, **{k: iv.get(k) for k in INTERVAL}, "paper": paper,
                         "delta": None if paper is None or value is None else value - paper,
                         "paper_in_ci": in_interval(paper, iv),
                         "n_examples": t["n_examples"], "n_full": t["n_full"], "subset": t["subset"],
                         "reference": info.get("reference") or "", "variant": info.get("variant", ""),
                         "protocol": protocol})
    return rows


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """A run's comparison.csv, with the fixed COLUMNS."""
    write_rows(path, rows, COLUMNS)


def _fmt(v) -> str:
    if v is None or v == "":
        return "-"
    return f"{v:+.2f}" if isinstance(v, float) and v < 0 else (f"{v:.2f}" if isinstance(v, float) else str(v))


def format_table(rows: list[dict]) -> str:
    """A plain-text table for the terminal; subset rows say so."""
    head = ["task", "metric", "size", "ours", "95% CI", "paper", "delta", "n", "variant"]
    body = [[r["task"], r["metric"], r["size"] or "-", _fmt(r["ours"]), format_ci(r) or "-", _fmt(r["paper"]),
             "-" if r["delta"] is None else f"{r['delta']:+.2f}" + (" (outside CI)" if r["paper_in_ci"] is False
                                                                     else ""),
             f"{r['n_examples']}/{r['n_full']}" + (" (subset)" if r["subset"] else ""), r["variant"]]
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def diffs(ours: float | None, theirs: float | None) -> tuple[float | None, float | None]:
    """(ours - theirs, the same in percent of theirs)."""
    if ours is None or theirs is None:
        return None, None
    return ours - theirs, (ours - theirs) / theirs * 100 if theirs else None


def rows_csv(rows: list[dict], columns: list[str] | None = None) -> str:
    """Any list of dicts as CSV text (columns: the given ones, else the first row's keys)."""
    import io as _io
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns or list(rows[0] if rows else []), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_rows(path: str | Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Any list of dicts as a CSV file, written atomically."""
    from ..io import write_atomic
    write_atomic(path, rows_csv(rows, columns))
