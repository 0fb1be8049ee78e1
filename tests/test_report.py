"""Reports over several runs: the merged grid, tidy and Table 3/4 CSVs, reference sources, plots,
Markdown and HTML. Run folders are written directly as results.json files shaped like the runner's."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from gpt2eval.cli.main import main
from gpt2eval.reporting.compare import load_references
from gpt2eval.reporting.tables import TIDY_COLUMNS, grid
from gpt2eval.paths import reference_dir
from gpt2eval.reporting.report import collect, load_runs

from conftest import DATA

LAMBADA_INFO = {
    "ppl": {"reference": "lambada/ppl", "variant": "exp(mean NLL of the target word)", "higher_is_better": False},
    "acc": {"reference": "lambada/acc", "variant": "whole word greedy", "higher_is_better": True},
    "acc_stopword_filter": {"reference": "lambada/acc", "variant": "stop words filtered", "higher_is_better": True},
}
PTB_INFO = {"ppl": {"reference": "ptb/ppl", "variant": "per original token", "higher_is_better": False},
            "bits_per_byte": {"reference": None, "variant": "per byte", "higher_is_better": False}}
# Our (made-up, plausible) values per size.
LAMBADA = {"small": {"ppl": 40.0, "acc": 32.5, "acc_stopword_filter": 44.0},
           "medium": {"ppl": 18.0, "acc": 43.0, "acc_stopword_filter": 54.0},
           "xl": {"ppl": 10.5, "acc": 51.0, "acc_stopword_filter": 62.0}}
PTB = {"small": {"ppl": 65.0, "bits_per_byte": 1.2}, "xl": {"ppl": 36.0, "bits_per_byte": 0.95}}


def interval(value: float, half: float) -> dict:
    return {"stderr": half / 1.96, "ci_low": value - half, "ci_high": value + half, "level": 0.95,
            "method": "binomial", "n": 100, "unit": "passage"}


def task_block(metrics: dict, info: dict, n: int, n_full: int, path: str) -> dict:
    # made-up intervals: 1.5 either side (so the paper's 8.63 lies outside xl's ppl 10.5 ± 1.5)
    return {"metrics": metrics, "intervals": {m: interval(v, 1.5) for m, v in metrics.items()},
            "metric_info": {m: info[m] for m in metrics}, "n_examples": n, "n_full": n_full,
            "subset": n < n_full, "protocol": {"windows": "disjoint 1024"},
            "data": {"kind": "file", "path": f"/data/{path}", "sha256": "ab" * 32, "verified": True},
            "extra": {}, "wall_s": 1.0, "tokens_per_s": 100.0}


def write_run(folder: Path, size: str | None, created: str, tasks: dict, model_id: str | None = None) -> Path:
    hub = {"small": "openai-community/gpt2", "medium": "openai-community/gpt2-medium",
           "xl": "openai-community/gpt2-xl"}
    results = {"schema": 1, "created": created, "git_commit": "0" * 40, "versions": {},
               "model": {"id": model_id or hub.get(size, "custom"), "size": size, "paper_size": None,
                         "n_params": 124_439_808, "dtype": "float32", "device": "cpu", "size_from": "--sizes"},
               "settings": {}, "tasks": tasks}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def write_runs(tmp_path: Path) -> Path:
    """A multi-size output (small, medium, xl; no large; no ptb at medium) plus a later rerun of
    small's lambada in a folder of its own."""
    out = tmp_path / "multi"
    for size, lam in LAMBADA.items():
        tasks = {"lambada": task_block(lam, LAMBADA_INFO, 5153, 5153, "lambada_test.jsonl")}
        if size in PTB:
            tasks["ptb"] = task_block(PTB[size], PTB_INFO, 3761, 3761, "ptb.test.txt")
        write_run(out / size, size, f"2025-01-0{1 + list(LAMBADA).index(size)}T00:00:00+00:00", tasks)
    rerun = {**LAMBADA["small"], "acc": 33.0}
    write_run(tmp_path / "rerun", "small", "2025-02-01T00:00:00+00:00",
              {"lambada": task_block(rerun, LAMBADA_INFO, 100, 5153, "lambada_test.jsonl")})
    return tmp_path


@pytest.fixture()
def runs(tmp_path) -> Path:
    return write_runs(tmp_path)


def cell(cells, task, metric, size):
    return next(c for c in cells if (c["task"], c["metric"], c["size"]) == (task, metric, size))


def test_merged_grid_values_missing_cells_and_later_run_wins(runs):
    records, winner, notes = collect(load_runs([runs / "multi", runs / "rerun"]))
    cells = grid(records, load_references())
    c = cell(cells, "lambada", "acc", "small")
    assert c["ours"]["value"] == 33.0 and c["ours"]["subset"] and c["ours"]["n_examples"] == 100  # the rerun
    assert c["refs"]["paper"]["value"] == 45.99 and c["refs"]["lm_eval_harness"]["value"] == 32.56
    assert len(notes) == 1 and "lambada at small" in notes[0] and "rerun" in notes[0]
    assert winner[("small", "ptb")]["_dir"].endswith("small")  # the rerun has no ptb: the first run's stays
    assert cell(cells, "lambada", "acc", "large")["ours"] is None                  # a size nobody ran
    assert cell(cells, "lambada", "acc", "large")["refs"]["paper"]["value"] == 60.12
    assert cell(cells, "ptb", "ppl", "medium")["ours"] is None                      # a task missing at a size
    assert cell(cells, "ptb", "bits_per_byte", "small")["refs"] == {}               # no reference at all
    assert cell(cells, "lambada", "acc_stopword_filter", "xl")["refs"].keys() == {"paper"}


def test_compare_prints_table_and_writes_tidy_and_wide_csvs(runs, tmp_path, capsys):
    tidy, t3, t4 = tmp_path / "tidy.csv", tmp_path / "t3.csv", tmp_path / "t4.csv"
    assert main(["compare", str(runs / "multi"), "--csv", str(tidy), "--table3-csv", str(t3),
                 "--table4-csv", str(t4)]) == 0
    out = capsys.readouterr().out
    assert "lm_eval_harness" in out and "no run for: large" in out and "45.99" in out
    df = pd.read_csv(tidy)
    assert list(df.columns) == TIDY_COLUMNS
    paper = df[(df.task == "lambada") & (df.metric == "acc") & (df["size"] == "medium") & (df.source == "paper")]
    assert len(paper) == 1 and paper.value.item() == 55.48 and paper.ours.item() == 43.0
    assert paper["diff"].item() == pytest.approx(43.0 - 55.48)
    assert paper.rel_diff_pct.item() == pytest.approx((43.0 - 55.48) / 55.48 * 100)
    assert paper.paper_params.item() == 345_000_000
    assert (paper.ci_low.item(), paper.ci_high.item()) == (41.5, 44.5) and paper.stderr.item() == pytest.approx(1.5 / 1.96)
    assert not paper.in_ci.item()                                  # 55.48 lies outside 43.0 ± 1.5
    inside = df[(df.task == "ptb") & (df.metric == "ppl") & (df["size"] == "xl") & (df.source == "paper")]
    assert inside.in_ci.item() and inside.ci_high.item() == 37.5   # 35.76 within 36.0 ± 1.5
    # large has the paper's row but none of ours; ptb at medium likewise
    assert set(df[df["size"] == "large"].source) == {"paper"}
    assert df[(df.task == "ptb") & (df["size"] == "medium")].source.tolist() == ["paper"]
    harness = df[df.source == "lm_eval_harness"]
    assert set(zip(harness.task, harness.metric, harness["size"])) == {
        ("lambada", "ppl", "small"), ("lambada", "acc", "small"), ("lambada", "ppl", "xl"), ("lambada", "acc", "xl")}
    n_ours = sum(len(v) for v in LAMBADA.values()) + sum(len(v) for v in PTB.values())
    assert (df.source == "gpt2eval").sum() == n_ours

    wide = pd.read_csv(t3)
    assert list(wide.columns[:3]) == ["size", "paper_params", "source"]
    assert "LAMBADA (ACC) [acc]" in wide.columns and "LAMBADA (ACC) [acc_stopword_filter]" in wide.columns
    assert "PTB (PPL)" in wide.columns and "1BW (PPL)" in wide.columns and "WikiText103 (PPL)" in wide.columns
    keys = list(zip(wide["size"], wide.source))
    assert keys == [("small", "gpt2eval"), ("small", "paper"), ("small", "lm_eval_harness"),
                    ("medium", "gpt2eval"), ("medium", "paper"), ("large", "gpt2eval"), ("large", "paper"),
                    ("xl", "gpt2eval"), ("xl", "paper"), ("xl", "lm_eval_harness")]
    row = wide.set_index(["size", "source"])
    assert row.loc[("xl", "gpt2eval"), "LAMBADA (ACC) [acc_stopword_filter]"] == 62.0
    assert row.loc[("xl", "paper"), "LAMBADA (ACC) [acc_stopword_filter]"] == 63.24
    assert row.loc[("xl", "lm_eval_harness"), "LAMBADA (ACC) [acc]"] == 51.21
    assert pd.isna(row.loc[("xl", "lm_eval_harness"), "LAMBADA (ACC) [acc_stopword_filter]"])
    assert pd.isna(row.loc[("large", "gpt2eval"), "LAMBADA (PPL)"])
    assert row.loc[("small", "paper"), "CBT-CN (ACC)"] == 87.65  # a task nobody ran keeps the paper's column
    assert pd.isna(row.loc[("medium", "gpt2eval"), "PTB (PPL)"])
    # our values' 95% intervals, in companion columns right after each column; empty in the paper's rows
    at = list(wide.columns).index("PTB (PPL)")
    assert list(wide.columns[at:at + 3]) == ["PTB (PPL)", "PTB (PPL) ci_low", "PTB (PPL) ci_high"]
    assert (row.loc[("xl", "gpt2eval"), "PTB (PPL) ci_low"], row.loc[("xl", "gpt2eval"), "PTB (PPL) ci_high"]) == (
        34.5, 37.5)
    assert row.loc[("xl", "gpt2eval"), "LAMBADA (ACC) [acc_stopword_filter] ci_low"] == 60.5
    assert pd.isna(row.loc[("xl", "paper"), "PTB (PPL) ci_low"]) and pd.isna(row.loc[("large", "gpt2eval"),
                                                                                 "LAMBADA (PPL) ci_high"])
    assert all(f"{c} ci_low" in wide.columns and f"{c} ci_high" in wide.columns for c in wide.columns[3:]
               if not c.endswith((" ci_low", " ci_high", "subset")))

    table4 = pd.read_csv(t4)
    assert list(table4.columns) == ["setting", "size", "source"] + [f"{r}{k}" for r in ("R-1", "R-2", "R-L", "R-AVG")
                                                                     for k in ("", " ci_low", " ci_high")]
    assert table4.set_index("setting").loc["GPT-2 TL;DR:", "R-1"] == 29.34


def test_table4_places_our_cnn_dailymail_rouge(tmp_path):
    info = {m: {"reference": f"cnn_dailymail/{m}", "variant": "", "higher_is_better": True}
            for m in ["tldr_rouge1", "tldr_rouge2", "tldr_rougeL", "tldr_rouge_avg"]}
    metrics = {"tldr_rouge1": 25.0, "tldr_rouge2": 7.0, "tldr_rougeL": 23.0, "tldr_rouge_avg": 18.3}
    write_run(tmp_path / "xl", "xl", "2025-01-01T00:00:00+00:00",
              {"cnn_dailymail": task_block(metrics, info, 250, 11490, "frank.jsonl")})
    t4 = tmp_path / "t4.csv"
    assert main(["compare", str(tmp_path / "xl"), "--table4-csv", str(t4)]) == 0
    df = pd.read_csv(t4).set_index(["setting", "size", "source"])
    assert df.loc[("GPT-2 TL;DR:", "xl", "gpt2eval"), "R-2"] == 7.0
    ours = df.loc[("GPT-2 TL;DR:", "xl", "gpt2eval")]  # with its 95% interval beside each value
    assert (ours["R-2 ci_low"], ours["R-2 ci_high"], ours["R-AVG ci_low"]) == (5.5, 8.5, pytest.approx(16.8))
    assert pd.isna(df.loc[("GPT-2 TL;DR:", "xl", "paper"), "R-2 ci_low"])
    assert df.loc[("GPT-2 TL;DR:", "xl", "paper"), "R-2"] == 8.27
    assert df.loc[("Lede-3", "xl", "paper"), "R-AVG"] == 31.55


def test_a_dropped_in_reference_csv_becomes_a_column(runs, tmp_path, capsys):
    refdir = tmp_path / "refs"
    shutil.copytree(reference_dir(), refdir)
    (refdir / "my_repro.csv").write_text("task,metric,size,value,source,note\n"
                                         "ptb,ppl,small,66.5,my reproduction,\nptb,ppl,large,41.0,my reproduction,\n")
    tidy = tmp_path / "tidy.csv"
    assert main(["compare", str(runs / "multi"), "--csv", str(tidy), "--reference-dir", str(refdir)]) == 0
    assert "my_repro" in capsys.readouterr().out
    df = pd.read_csv(tidy)
    mine = df[df.source == "my_repro"]
    assert list(zip(mine.metric, mine["size"], mine.value)) == [("ppl", "small", 66.5), ("ppl", "large", 41.0)]
    assert mine.citation.tolist() == ["my reproduction"] * 2 and mine["diff"].iloc[0] == pytest.approx(65.0 - 66.5)
    (refdir / "broken.csv").write_text("task,metric,value\nptb,ppl,1\n")
    assert main(["compare", str(runs / "multi"), "--reference-dir", str(refdir)]) == 2
    assert "broken.csv" in capsys.readouterr().err
    (refdir / "broken.csv").write_text("task,metric,size,value,source\nptb,ppl,small,n/a,x\n")
    assert main(["compare", str(runs / "multi"), "--reference-dir", str(refdir)]) == 2
    assert "line 2: value 'n/a' is not a number" in capsys.readouterr().err


def check_png(path: Path) -> None:
    import matplotlib.image
    assert path.stat().st_size > 10_000
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width >= 400 and height >= 300


def test_plots_markdown_and_html(runs, tmp_path):
    out = tmp_path / "report"
    assert main(["compare", str(runs / "multi"), str(runs / "rerun"), "--out", str(out)]) == 0
    pngs = sorted((out / "plots").glob("*.png"))
    assert [p.name for p in pngs] == sorted(["lambada__ppl.png", "lambada__acc.png", "lambada__acc_stopword_filter.png",
                                             "ptb__ppl.png", "ptb__bits_per_byte.png"])
    for p in pngs:
        check_png(p)
    md = (out / "report.md").read_text()
    assert "![lambada · acc](plots/lambada__acc.png)" in md
    assert "33.00" in md and "100/5153*" in md and "subset" in md          # the rerun wins, flagged as a subset
    assert "openai-community/gpt2-xl" in md and "lambada_test.jsonl" in md and "ab" * 32 in md
    assert "## Notes" in md and "replaces" in md
    assert "## Headline: the paper's numbers" in md and "33.00 ± 1.50" in md and "**no**" in md
    assert "acc_stopword_filter (closest of 2)" in md                 # 44.0 is closer to 45.99 than 33.0
    html = (out / "report.html").read_text()
    # one panel per task and paper row (lambada ppl, lambada acc with its two variants, ptb ppl)
    assert html.count("data:image/png;base64,") == 3 and 'src="plots/' not in html
    assert "Table 3 layout" in html and "lm-evaluation-harness issue 2159" in html
    assert {p.name for p in out.iterdir()} == {"plots", "report.md", "report.html", "comparison_tidy.csv",
                                              "table3.csv", "table4.csv", "other_experiments.csv"}


def test_compare_rejects_a_folder_without_runs(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_a_multi_model_run_writes_the_report(tiny_model_dir, tmp_path):
    from gpt2eval.runner import RunConfig, evaluate
    from gpt2eval.api.plugins import select
    second = tmp_path / "tiny-b"
    shutil.copytree(tiny_model_dir, second)
    out = tmp_path / "run"
    evaluate(RunConfig(models=[str(tiny_model_dir), str(second)], tasks=select(["lambada"]), output=out,
                       data_dir=str(DATA), limit=4, batch_size=4, device="cpu", progress=False,
                       reference_size="small"), log=lambda *a: None)
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    check_png(out / "plots" / "lambada__acc.png")
    tidy = pd.read_csv(out / "comparison_tidy.csv")
    assert set(tidy.source) == {"gpt2eval", "paper", "lm_eval_harness"}


def test_metrics_filter_and_unknown_metric(runs, tmp_path, capsys):
    tidy = tmp_path / "tidy.csv"
    assert main(["compare", str(runs / "multi"), "--metrics", "lambada/ppl", "--csv", str(tidy)]) == 0
    df = pd.read_csv(tidy)
    assert set(zip(df.task, df.metric)) == {("lambada", "ppl")}
    capsys.readouterr()
    assert main(["compare", str(runs / "multi"), "--metrics", "lambada/nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown metric(s) lambada/nope" in err[0] and "lambada/ppl" in err[0]


def test_a_model_matching_no_paper_size_is_plotted_at_its_parameter_count(runs, tmp_path):
    import matplotlib.image
    from gpt2eval.reporting.plots import panel_png, render
    custom = write_run(tmp_path / "custom", None, "2025-03-01T00:00:00+00:00",
                       {"lambada": task_block({"ppl": 80.0, "acc": 20.0, "acc_stopword_filter": 19.0}, LAMBADA_INFO,
                                              500, 5153, "lambada_test.jsonl")}, model_id="/m/tiny-model")
    alone = grid(collect(load_runs([custom]))[0], load_references())
    assert {c["size"] for c in alone if c["ours"]} == {"tiny-model"}
    assert ("lambada", "acc") in render(alone)                      # before: no point at a paper size, no plot
    both = grid(collect(load_runs([runs / "multi", custom]))[0], load_references())
    acc = [c for c in both if (c["task"], c["metric"]) == ("lambada", "acc")]
    with_custom, without = panel_png(acc), panel_png([c for c in acc if c["size"] != "tiny-model"])
    path = tmp_path / "p.png"
    path.write_bytes(with_custom)
    assert matplotlib.image.imread(path).shape[1] >= 400 and with_custom != without
