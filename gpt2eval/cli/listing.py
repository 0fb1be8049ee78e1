"""`--list-tasks`: every task as one row of a plain-text table, whatever the length of its name:
the paper rows its metrics are compared with, the files it reads under --data-dir, its options
with their defaults (and allowed values), and its description. A cell that holds several items
takes several lines, so the columns stay aligned.

The data files are found by asking each plugin: its `load` runs against a stand-in for the data
source that records every file looked for under --data-dir and stops the plugin at its first other
access (the hub, a download, reading a file), so listing reads no data and reaches no network;
files of a published archive (`Remote`, downloaded when missing) are read from the class.
"""
from __future__ import annotations

import textwrap

from ..api.plugins import PAPER_TASKS, split_spec
from ..protocols.download import Remote

HEADER = ("task", "paper rows", "data under --data-dir", "options (default)", "description")
DESCRIPTION_WIDTH = 56
COLUMN_WIDTH = 40  # paper rows wrap at this width


class _Stop(Exception):
    """Raised at a plugin's first data access other than `find`."""


class _Probe:
    """Stands in for api.data.DataSource while a plugin's load() runs for the listing."""

    def __init__(self):
        self.looked: list[str] = []

    def find(self, relpath: str):
        self.looked.append(relpath)
        return None

    def __getattr__(self, name):  # data_dir, hub, file_source, ...: no further
        raise _Stop


def data_files(cls) -> list[str]:
    """The files a task looks for under --data-dir (in the order it looks), and its archives."""
    probe = _Probe()
    try:
        cls().load(probe)
    except Exception:  # noqa: BLE001 - _Stop, or a plugin that cannot load without data: what it asked for
        pass
    archives = [v.relpath for k in dir(cls) if not k.startswith("__")
                for v in [getattr(cls, k, None)] if isinstance(v, Remote)]
    return list(dict.fromkeys(probe.looked + archives))


def paper_rows(cls) -> list[str]:
    """The reference rows its metrics are compared with, "table_task/metric, metric, ..." per table
    task, wrapped."""
    by_task: dict[str, list[str]] = {}
    for ref in dict.fromkeys(m.reference for m in cls.metrics.values() if m.reference):
        task, _, metric = ref.partition("/")
        by_task.setdefault(task, []).append(metric)
    return [line for task, metrics in by_task.items()
            for line in textwrap.wrap(f"{task}/" + ", ".join(metrics), COLUMN_WIDTH, subsequent_indent="  ")]


def option_lines(cls) -> list[str]:
    return [f"{k}={opt.default}" + (f" ({'|'.join(map(str, opt.choices))})" if opt.choices else "")
            for k, opt in cls.options.items()]


def task_table(tasks: dict) -> str:
    """The table, tasks in name order; `paper` marks the tasks of --tasks paper."""
    in_paper = {split_spec(spec)[0] for spec in PAPER_TASKS}
    cells = []
    for name, cls in sorted(tasks.items()):
        cells.append([[name + (" (paper)" if name in in_paper else "")], paper_rows(cls) or ["-"],
                      data_files(cls) or ["-"], option_lines(cls) or ["-"],
                      textwrap.wrap(cls.description or "-", DESCRIPTION_WIDTH) or ["-"]])
    widths = [max([len(HEADER[i])] + [len(line) for row in cells for line in row[i]]) for i in range(len(HEADER))]
    out = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths)).rstrip(),
           "  ".join("-" * w for w in widths)]
    for row in cells:
        for j in range(max(len(c) for c in row)):
            out.append("  ".join((c[j] if j < len(c) else "").ljust(w) for c, w in zip(row, widths)).rstrip())
    out.append(f"{len(cells)} tasks; (paper): run by --tasks paper; options: --tasks name:key=value,... "
               "(docs/tasks.md)")
    return "\n".join(out)
