"""The paper's layouts over several runs and reference sources: the tidy grid (one row per task, metric,
size and source), Table 3 (language modelling), Table 4 (CNN/Daily Mail ROUGE) and the other
experiments (Winograd, CoQA, translation, Natural Questions), each with our 95% intervals beside
the paper's values. `compare` (reporting/report.py) writes them as CSV, Markdown and HTML.
"""
from __future__ import annotations

from pathlib import Path

from ..models.sizes import PAPER_PARAMS, SIZES
from .compare import BOUNDS, INTERVAL, PAPER_SOURCE_PREFIX, diffs, in_interval, paper_value
from .order import task_order

TIDY_COLUMNS = ["task", "metric", "variant", "reference", "size", "paper_params", "source", "value", "ours",
                "stderr", "ci_low", "ci_high", "diff", "rel_diff_pct", "in_ci", "n_examples", "n_full", "subset",
                "model", "n_params", "citation", "note"]
# The paper's Table 3, left to right: (column heading, reference key).
TABLE3 = [("LAMBADA (PPL)", "lambada/ppl"), ("LAMBADA (ACC)", "lambada/acc"), ("CBT-CN (ACC)", "cbt_cn/acc"),
          ("CBT-NE (ACC)", "cbt_ne/acc"), ("WikiText2 (PPL)", "wikitext2/ppl"), ("PTB (PPL)", "ptb/ppl"),
          ("enwik8 (BPB)", "enwik8/bits_per_byte"), ("text8 (BPC)", "text8/bits_per_char"),
          ("WikiText103 (PPL)", "wikitext103/ppl"), ("1BW (PPL)", "1bw/ppl")]
# Table 4 (CNN/Daily Mail): cnn_dailymail metrics are named <setting>_<rouge>.
TABLE4_SETTINGS = {"lead3": "Lede-3", "tldr": "GPT-2 TL;DR:", "random3": "Random-3", "no_hint": "GPT-2 no hint"}
TABLE4_ROUGE = {"rouge1": "R-1", "rouge2": "R-2", "rougeL": "R-L", "rouge_avg": "R-AVG"}
OURS = "gpt2eval"


def source_name(ref: dict) -> str:
    """The column a reference row shows in: "paper" for the paper's rows, else its file's name."""
    return "paper" if (ref.get("source") or "").startswith(PAPER_SOURCE_PREFIX) else Path(ref["file"]).stem


def reference_values(refs: list[dict], task: str, metric: str, reference: str | None, size: str) -> dict:
    """Source name -> the reference row our task's metric is compared with at this size (paper first).
    The paper's row is found through the metric's reference key, any other source's by our metric's name."""
    found = {}
    for r in refs:
        name = source_name(r)
        key = reference if name == "paper" else f"{task}/{metric}"
        if r["value"] is not None and r["size"] == size and key == f"{r['task']}/{r['metric']}":
            found.setdefault(name, r)
    return dict(sorted(found.items(), key=lambda kv: kv[0] != "paper"))


def size_columns(records: list[dict]) -> list[str]:
    """The four paper sizes, then any model that was compared with none of them."""
    return list(SIZES) + list(dict.fromkeys(r["size"] for r in records if r["size"] not in SIZES))


def grid(records: list[dict], refs: list[dict]) -> list[dict]:
    """One cell per (task, metric) and size column: our record (or None) and every reference row.
    `records` are our values: dicts with task, metric, size, value, variant, reference, ... . Tasks
    in the paper's order (gpt2eval.reporting.order), a task's metrics in the order it reports them."""
    metrics: dict[tuple, dict] = {}
    references: dict[str, set] = {}
    for r in records:
        metrics.setdefault((r["task"], r["metric"]), r)
        references.setdefault(r["task"], set()).add(r["reference"])
    rank = {task: i for i, task in enumerate(task_order(references))}
    metrics = dict(sorted(metrics.items(), key=lambda kv: rank[kv[0][0]]))  # stable: metrics keep their order
    ours = {(r["task"], r["metric"], r["size"]): r for r in records}
    return [{"task": task, "metric": metric, "size": size, "variant": info.get("variant", ""),
             "reference": info.get("reference"), "higher_is_better": info.get("higher_is_better", True),
             "ours": ours.get((task, metric, size)),
             "refs": reference_values(refs, task, metric, info.get("reference"), size)}
            for (task, metric), info in metrics.items() for size in size_columns(records)]


def tidy_rows(cells: list[dict]) -> list[dict]:
    """Long format: one row per task, metric, size and source ("gpt2eval" for ours)."""
    rows = []
    for c in cells:
        o = c["ours"] or {}
        base = {k: c[k] for k in ("task", "metric", "variant", "size")}
        base.update(reference=c["reference"] or "", paper_params=int(PAPER_PARAMS[c["size"]]) if c["size"] in
                    PAPER_PARAMS else None, ours=o.get("value"), n_examples=o.get("n_examples"),
                    n_full=o.get("n_full"), subset=o.get("subset"), model=o.get("model"),
                    **{k: (o.get("interval") or {}).get(k) for k in INTERVAL})
        if o:
            rows.append({**base, "source": OURS, "value": o["value"], "n_params": o.get("n_params")})
        for name, r in c["refs"].items():
            diff, rel = diffs(o.get("value"), r["value"])
            rows.append({**base, "source": name, "value": r["value"], "diff": diff, "rel_diff_pct": rel,
                         "in_ci": in_interval(r["value"], o.get("interval")),
                         "citation": r["source"], "note": r.get("note") or ""})
    return rows


def _bounds(header: str, ours: dict | None) -> dict:
    """A wide table's companion cells for one of our values: its 95% interval, empty without one."""
    iv = (ours or {}).get("interval") or {}
    return {f"{header} {k}": iv.get(k) for k in BOUNDS}


NO_FILTER = ("LAMBADA (ACC, no stop-word filter)", "lambada/acc_without_stopword_filter")


def column_header(label: str, name: str | None) -> str:
    """A Table 3 CSV column: the paper's heading, then "[name]" where several of ours share it."""
    return f"{label} [{name}]" if name else label


def table3_columns(cells: list[dict]) -> list[tuple[str, str, tuple[str, str] | None, str | None]]:
    """Table 3's columns over these cells, left to right: (the paper's heading, its reference key,
    our (task, metric) shown in it or None, and the name that tells apart several of ours in one
    paper column: the metric, or "task/metric" for another task than the paper row's; None when
    the column holds a single metric of the paper row's own name)."""
    layout = []
    for label, ref in TABLE3:
        layout.append((label, ref, True))
        if ref == "lambada/acc":
            layout.append((*NO_FILTER, False))
    columns = []
    for label, ref, always in layout:
        ours = list(dict.fromkeys((c["task"], c["metric"]) for c in cells if c["reference"] == ref))
        if not ours and not always:
            continue
        for tm in ours or [None]:
            plain = tm is None or (len(ours) == 1 and "/".join(tm) == ref)
            columns.append((label, ref, tm, None if plain else (tm[1] if tm[0] == ref.split("/")[0] else "/".join(tm))))
    return columns


def table3_rows(cells: list[dict], refs: list[dict], intervals: bool = False) -> list[dict]:
    """The paper's Table 3 layout: rows size x source, a column per task. Where several of our
    metrics share one paper column (LAMBADA ACC: two stop-word filters, and the preprocessed
    LAMBADA task), each gets its own column, "[metric]" appended ("[task/metric]" for another task
    than the paper row's). LAMBADA's unfiltered accuracies are compared with the paper's 52.66
    without the filter (Section 3.3, xl only), not with Table 3's filtered ACC row: when present,
    they follow it as "LAMBADA (ACC, no stop-word filter)" columns. `intervals`: every column is
    followed by "<column> ci_low" and "<column> ci_high", our value's 95% interval (empty in the
    other sources' rows)."""
    at = {(c["task"], c["metric"], c["size"]): c for c in cells}
    columns = [(column_header(label, name), ref, tm) for label, ref, tm, name in table3_columns(cells)]
    extra = sorted({n for c in cells for n in c["refs"] if n != "paper" and any(c["reference"] == r for _, r, _ in
                                                                               columns)})
    rows = []
    for size in size_columns([c["ours"] for c in cells if c["ours"]]):
        for source in [OURS, "paper"] + extra:
            row = {"size": size, "paper_params": SIZES[size][1] if size in SIZES else "", "source": source}
            subsets = {}
            for header, ref, tm in columns:
                c = at.get((*tm, size)) if tm else None
                if source == OURS:
                    row[header] = c["ours"]["value"] if c and c["ours"] else None
                    if c and c["ours"] and c["ours"]["subset"]:
                        subsets[c["task"]] = f"{c['task']} {c['ours']['n_examples']}/{c['ours']['n_full']}"
                elif c:
                    row[header] = (c["refs"].get(source) or {}).get("value")
                else:
                    row[header] = paper_value(refs, ref, size) if source == "paper" else None
                if intervals:
                    row.update(_bounds(header, c["ours"] if c and source == OURS else None))
            row["subset"] = "; ".join(subsets.values())
            values = [row[h] for h, _, _ in columns]
            if (source in (OURS, "paper") and size in SIZES) or any(v is not None for v in values):
                rows.append(row)
    return rows


def _rouge_setting(metric: str) -> tuple[str, str] | None:
    for rouge in TABLE4_ROUGE:
        if metric.endswith("_" + rouge):
            return metric[: -len(rouge) - 1], rouge
    return None


def table4_columns(intervals: bool = False) -> list[str]:
    """Table 4's CSV columns; with `intervals`, each ROUGE column followed by its ci_low and ci_high."""
    columns = ["setting", "size", "source"]
    for label in TABLE4_ROUGE.values():
        columns += [label, *(f"{label} {b}" for b in BOUNDS)] if intervals else [label]
    return columns


def table4_rows(cells: list[dict], refs: list[dict], intervals: bool = False) -> list[dict]:
    """The paper's Table 4 layout (CNN/Daily Mail): rows setting x size x source, ROUGE columns
    (`intervals`: each followed by our value's 95% interval, "<column> ci_low" and "ci_high")."""
    found: dict[tuple, dict] = {}

    def put(setting_metric: str, size: str, source: str, value: float | None, ours: dict | None = None) -> None:
        parts = _rouge_setting(setting_metric)
        if parts and value is not None:
            key, label = (parts[0], size, source), TABLE4_ROUGE[parts[1]]
            found.setdefault(key, {})[label] = value
            if intervals and ours:
                found[key].update(_bounds(label, ours))

    for c in cells:
        if c["task"] == "cnn_dailymail":
            if c["ours"]:
                put(c["metric"], c["size"], OURS, c["ours"]["value"], c["ours"])
            for name, r in c["refs"].items():
                put(c["metric"] if name != "paper" else r["metric"], c["size"], name, r["value"])
    for r in refs:
        if r["task"] == "cnn_dailymail" and source_name(r) == "paper":
            put(r["metric"], r["size"], "paper", r["value"])
    order = {k: i for i, k in enumerate([*TABLE4_SETTINGS, *SIZES, OURS, "paper"])}
    rows = []
    for setting, size, source in sorted(found, key=lambda k: [order.get(x, len(order)) for x in k] + list(k)):
        rows.append({"setting": TABLE4_SETTINGS.get(setting, setting), "size": size, "source": source,
                     **{k: found[(setting, size, source)].get(k) for k in table4_columns(intervals)[3:]}})
    return rows


# The paper's other experiments, one headline number each: (label, reference key).
OTHER_EXPERIMENTS = [("Winograd (ACC)", "winograd/acc"), ("CoQA (F1)", "coqa/f1"),
                     ("CNN/Daily Mail TL;DR (R-AVG)", "cnn_dailymail/tldr_rouge_avg"),
                     ("WMT-14 Fr-En (BLEU)", "wmt14_fr_en/bleu"), ("WMT-14 En-Fr (BLEU)", "wmt14_en_fr/bleu"),
                     ("Natural Questions (EM)", "natural_questions/exact_match")]
OTHER_COLUMNS = ["experiment", "task", "metric", "size", "ours", "paper", "diff", "n_examples", "n_full", "subset",
                 "variant"]


def other_rows(cells: list[dict], refs: list[dict]) -> list[dict]:
    """The experiments outside Table 3 (Winograd, CoQA, CNN/DM, WMT-14, Natural Questions): one row per
    experiment, our metric compared with its paper number, and size; every variant of ours gets its
    own row. A size appears where we have a value or the paper has one (the paper gives these
    for its largest model only), so an experiment nobody ran still shows the paper's number."""
    rows = []
    for label, ref in OTHER_EXPERIMENTS:
        ours = [c for c in cells if c["reference"] == ref]
        if not ours:
            task, metric = ref.split("/")
            ours = [{"task": task, "metric": metric, "size": size, "variant": "", "ours": None,
                     "refs": {"paper": {"value": paper_value(refs, ref, size)}}} for size in SIZES]
        for c in ours:
            o, paper = c["ours"] or {}, (c["refs"].get("paper") or {}).get("value")
            if not o and paper is None:
                continue
            rows.append({"experiment": label, "task": c["task"], "metric": c["metric"], "size": c["size"],
                         "ours": o.get("value"), "paper": paper, "diff": diffs(o.get("value"), paper)[0],
                         "n_examples": o.get("n_examples"), "n_full": o.get("n_full"), "subset": o.get("subset"),
                         "variant": c["variant"]})
    return rows
