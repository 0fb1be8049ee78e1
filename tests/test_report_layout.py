"""The report's layout as a reader meets it: tasks, headline rows and sections in the paper's order,
panels titled by the metrics they show and the paper row they are compared with, markers that
equal values would stack kept apart, interval bounds with one minus sign, and the tasks a run
skipped. Run folders are results.json files written directly, as in test_report.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt2eval.cli.main import main
from gpt2eval.reporting.compare import load_references
from gpt2eval.reporting.report import collect, load_runs
from gpt2eval.reporting.tables import grid

from test_report import LAMBADA_INFO, PTB, PTB_INFO, task_block, write_run, write_runs


@pytest.fixture()
def runs(tmp_path) -> Path:
    return write_runs(tmp_path)


# LAMBADA as the task reports it: the unfiltered accuracies are compared with the paper's 52.66
# (Section 3.3), the stop-word-filtered ones with Table 3's ACC row.
UNFILTERED = "lambada/acc_without_stopword_filter"
LAMBADA_TASK_INFO = {"ppl": LAMBADA_INFO["ppl"],
                     "acc": {"reference": UNFILTERED, "variant": "whole word greedy", "higher_is_better": True},
                     "acc_last_token": {"reference": UNFILTERED, "variant": "last token", "higher_is_better": True},
                     "acc_stopword_filter": LAMBADA_INFO["acc_stopword_filter"]}
RANDOM_LAMBADA = {"ppl": 287409.24, "acc": 0.0, "acc_last_token": 0.0, "acc_stopword_filter": 0.0}


def paper_order_runs(folder: Path) -> Path:
    """Random-model runs at the four sizes whose tasks come in no particular order: a task with no
    paper number, LAMBADA's preprocessed variant before LAMBADA, PTB's variant before PTB (task keys with
    options, as runs name them)."""
    ptb_digits = {m: {**i, "reference": "ptb/ppl" if m == "ppl" else None} for m, i in PTB_INFO.items()}
    for i, size in enumerate(("small", "medium", "large", "xl")):
        tasks = {"triviaqa": task_block({"exact_match": 0.0}, {"exact_match": {
                     "reference": "triviaqa/exact_match", "variant": "", "higher_is_better": True}}, 100, 11313, "tqa"),
                 "lambada:preprocess=openai": task_block(RANDOM_LAMBADA, LAMBADA_TASK_INFO, 100, 5153, "lambada"),
                 "ptb:digits=1": task_block(PTB["xl"], ptb_digits, 100, 3761, "ptb"),
                 "lambada": task_block(RANDOM_LAMBADA, LAMBADA_TASK_INFO, 100, 5153, "lambada"),
                 "ptb": task_block(PTB["xl"], PTB_INFO, 100, 3761, "ptb")}
        tasks["lambada"]["paired"] = [{"a": "ppl", "b": "acc", "diff": -9210.55, "stderr": 9000.0,
                                       "ci_low": -36206.42, "ci_high": -1.2, "method": "paired bootstrap", "n": 100}]
        write_run(folder / size, size, f"2025-01-0{i + 1}T00:00:00+00:00", tasks)
    return folder


def test_tasks_rows_and_sections_come_in_the_papers_order(tmp_path):
    from gpt2eval.reporting.order import task_order
    assert task_order({"triviaqa": {"triviaqa/exact_match"}, "lambada:preprocess=openai": {"lambada/acc"},
                       "coqa": {"coqa/f1"}, "wikitext2:streams=article": {None}, "ptb:digits=1": {"ptb/ppl"},
                       "1bw": {"1bw/ppl"}, "wikitext2": {"wikitext2/ppl"}, "ptb": {"ptb/ppl"}, "lambada": set()}) == [
        "lambada", "lambada:preprocess=openai", "wikitext2", "wikitext2:streams=article", "ptb", "ptb:digits=1", "1bw",
        "coqa", "triviaqa"]
    folder = paper_order_runs(tmp_path / "runs")
    assert main(["compare", str(folder), "--markdown", str(tmp_path / "r.md")]) == 0
    md = (tmp_path / "r.md").read_text()
    headline = md.split("## Headline")[1].split("\n\n")[1].splitlines()[2:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in headline]
    assert list(dict.fromkeys(r[0] for r in rows)) == ["lambada", "lambada:preprocess=openai", "ptb", "ptb:digits=1"]
    lambada = [(r[1], r[2]) for r in rows if r[0] == "lambada"]   # Table 3's PPL, its ACC, then the 52.66
    assert lambada == [("ppl", s) for s in ("small", "medium", "large", "xl")] + [
        ("acc", s) for s in ("small", "medium", "large", "xl")] + [("acc_without_stopword_filter", "xl")]
    sections = [line[3:] for line in md.split("## Table 3 layout")[0].splitlines() if line.startswith("## ")]
    assert sections[1:] == ["lambada", "lambada:preprocess=openai", "ptb", "ptb:digits=1", "triviaqa"]


def test_negative_interval_bounds_print_one_minus_sign(tmp_path):
    from gpt2eval.reporting.summary import with_ci
    assert with_ci({"value": -9210.55, "interval": {"ci_low": -36206.42, "ci_high": -1.2}}) == (
        "-9210.55 [-36206.42, -1.20]")
    assert with_ci({"value": 74.11, "interval": {"ci_low": 50.18, "ci_high": 114.91}}) == "74.11 [50.18, 114.91]"
    folder = paper_order_runs(tmp_path / "runs")
    assert main(["compare", str(folder), "--markdown", str(tmp_path / "r.md"), "--html", str(tmp_path / "r.html")]) == 0
    for text in ((tmp_path / "r.md").read_text(), (tmp_path / "r.html").read_text()):
        assert "-9210.55 [-36206.42, -1.20]" in text and "–-" not in text


def test_panels_are_titled_by_the_metrics_they_show_and_name_their_paper_row(tmp_path):
    from gpt2eval.reporting.plots import panel_figure, render_task
    folder = paper_order_runs(tmp_path / "runs")
    cells = [c for c in grid(collect(load_runs([folder]))[0], load_references()) if c["task"] == "lambada"]
    captions = {key: caption for key, caption, _ in render_task(cells)}
    assert captions == {
        "lambada/ppl": "lambada: ppl; compared with paper row lambada/ppl",
        UNFILTERED: f"lambada: acc, acc_last_token; compared with paper row {UNFILTERED}",
        "lambada/acc": "lambada: acc_stopword_filter; compared with paper row lambada/acc"}
    unfiltered = {m: [c for c in cells if c["metric"] == m] for m in ("acc", "acc_last_token")}
    title = panel_figure(unfiltered["acc"], unfiltered).axes[0].get_title()
    assert title.startswith("lambada · acc, acc_last_token\n") and UNFILTERED in title
    out = tmp_path / "report"
    assert main(["compare", str(folder), "--out", str(out)]) == 0
    assert f"<figcaption>lambada: acc, acc_last_token; compared with paper row {UNFILTERED}</figcaption>" in (
        out / "report.html").read_text()
    md = (out / "report.md").read_text()   # the per-metric plots say their paper row too
    assert f"![lambada · acc](plots/lambada__acc.png)\n\n*lambada: acc; compared with paper row {UNFILTERED}*" in md


def test_markers_with_equal_values_stay_apart(tmp_path):
    """Every accuracy of a random model is 0: each series' markers must sit apart from the others'."""
    from gpt2eval.reporting.plots import panel_figure
    folder = paper_order_runs(tmp_path / "runs")
    cells = grid(collect(load_runs([folder]))[0], load_references())
    groups = {m: [c for c in cells if (c["task"], c["metric"]) == ("lambada", m)] for m in ("acc", "acc_last_token")}
    ax = panel_figure(groups["acc"], groups).axes[0]
    series = [ax.transData.transform(line.get_xydata()) for line in ax.lines
              if line.get_marker() not in (None, "None", "") and len(line.get_xydata())]
    assert len(series) >= 3   # acc, acc_last_token and lm_eval_harness's points
    closest = min(abs(a - b).max() for i, s in enumerate(series) for t in series[i + 1:] for a in s for b in t)
    assert closest >= 5, f"two series' markers lie {closest:.1f} px apart"


def test_the_report_lists_the_tasks_a_run_skipped(runs, tmp_path, capsys):
    for size, skipped in (("small", {"cbt_cn": "data not found: cbt/cbtest_CN_test.txt", "ptb": "no data"}),
                          ("xl", {"cbt_cn": "data not found: cbt/cbtest_CN_test.txt"})):
        path = runs / "multi" / size / "results.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "skipped": skipped}))
    md = tmp_path / "r.md"
    assert main(["compare", str(runs / "multi"), "--markdown", str(md)]) == 0
    assert "skipped: cbt_cn (small, xl): data not found: cbt/cbtest_CN_test.txt" in capsys.readouterr().out
    section = md.read_text().split("## Skipped tasks\n\n")[1].split("\n\n")[0].splitlines()
    assert section[2:] == ["| cbt_cn | small, xl | data not found: cbt/cbtest_CN_test.txt |"]  # ptb ran at small
    assert main(["compare", str(runs / "rerun"), "--markdown", str(md)]) == 0   # no "skipped" in results.json
    assert "Skipped" not in md.read_text()
