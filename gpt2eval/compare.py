"""Our numbers beside the paper's: reference tables in, comparison rows out.

A reference table is any CSV in results/reference/ with the columns task, metric, size, value,
source (note optional). A task's metric names the reference row it is compared with
("lambada/acc"), so several protocol variants can each be compared with the one paper number.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .paths import reference_dir

COLUMNS = ["task", "metric", "size", "model", "ours", "paper", "delta", "n_examples", "n_full", "subset",
           "reference", "variant", "protocol"]
PAPER_SOURCE_PREFIX = "Radford et al. 2019"


def load_references(folder: str | Path | None = None) -> list[dict]:
    """Every row of every reference CSV, with the file it came from."""
    rows = []
    for path in sorted(Path(folder or reference_dir()).glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                value = (row.get("value") or "").strip()
                rows.append({**row, "value": float(value) if value else None, "file": path.name})
    return rows


def paper_value(refs: list[dict], reference: str | None, size: str | None) -> float | None:
    if not reference or not size:
        return None
    task, metric = reference.split("/", 1)
    for r in refs:
        if (r["task"], r["metric"], r["size"]) == (task, metric, size) and r["source"].startswith(PAPER_SOURCE_PREFIX):
            return r["value"]
    return None


def comparison_rows(results: dict, refs: list[dict]) -> list[dict]:
    """One row per (task, metric) of one run's results.json."""
    model = results["model"]
    rows = []
    for task, t in results["tasks"].items():
        protocol = "; ".join(f"{k}: {v}" for k, v in t.get("protocol", {}).items())
        for metric, value in t["metrics"].items():
            info = t.get("metric_info", {}).get(metric, {})
            paper = paper_value(refs, info.get("reference"), model.get("size"))
            rows.append({"task": task, "metric": metric, "size": model.get("size") or "", "model": model["id"],
                         "ours": value, "paper": paper,
                         "delta": None if paper is None or value is None else value - paper,
                         "n_examples": t["n_examples"], "n_full": t["n_full"], "subset": t["subset"],
                         "reference": info.get("reference") or "", "variant": info.get("variant", ""),
                         "protocol": protocol})
    return rows


def write_csv(path: str | Path, rows: list[dict]) -> None:
    import io as _io

    from .io import write_atomic
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue())


def _fmt(v) -> str:
    if v is None or v == "":
        return "-"
    return f"{v:+.2f}" if isinstance(v, float) and v < 0 else (f"{v:.2f}" if isinstance(v, float) else str(v))


def format_table(rows: list[dict]) -> str:
    """A plain-text table for the terminal; subset rows say so."""
    head = ["task", "metric", "size", "ours", "paper", "delta", "n", "variant"]
    body = [[r["task"], r["metric"], r["size"] or "-", _fmt(r["ours"]), _fmt(r["paper"]),
             "-" if r["delta"] is None else f"{r['delta']:+.2f}",
             f"{r['n_examples']}/{r['n_full']}" + (" (subset)" if r["subset"] else ""), r["variant"]]
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])
