"""The CLI end to end on the tiny random model, and third-party task plugins."""
import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import DATA, REPO
from gpt2eval.cli.main import main
from gpt2eval.api.plugins import discover

LM_TASKS = ["lambada", "ptb", "wikitext103", "wikitext2"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_end_to_end_language_modelling_tasks(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["--model", str(tiny_model_dir), "--tasks", ",".join(LM_TASKS), "--data-dir", str(DATA),
                 "--limit", "50", "--output", str(out), "--reference-size", "small", "--no-progress",
                 "--batch-size", "4"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["size"] == "small" and results["model"]["size_from"] == "--reference-size"
    assert results["model"]["dtype"] == "float32" and results["versions"]["torch"]
    for name in LM_TASKS:
        t = results["tasks"][name]
        assert t["n_examples"] == 50 and t["subset"] is True and t["data"]["verified"] is True
        assert t["protocol"] and t["wall_s"] > 0 and t["tokens_per_s"] > 0
        samples = (out / "samples" / f"{name}.jsonl").read_text().splitlines()
        assert len(samples) == 50 and json.loads(samples[0])["subset"] is True
    assert results["tasks"]["ptb"]["n_full"] == 3761 and results["tasks"]["lambada"]["n_full"] == 5153
    rows = read_csv(out / "comparison.csv")
    assert {"task", "metric", "size", "model", "ours", "paper", "delta", "n_examples", "n_full",
            "protocol"} <= set(rows[0])
    paper = {(r["task"], r["metric"]): r["paper"] for r in rows}
    assert paper[("lambada", "ppl")] == "35.13" and paper[("ptb", "ppl")] == "65.85"
    assert paper[("wikitext103", "ppl")] == "37.5" and paper[("wikitext2", "ppl")] == "29.41"
    # Table 3's ACC row is the stop-word-filtered accuracy; the unfiltered ones have a paper value at xl only
    assert paper[("lambada", "acc_stopword_filter")] == paper[("lambada", "acc_stopword_filter_bflm")] == "45.99"
    assert paper[("lambada", "acc_last_token")] == paper[("lambada", "acc")] == ""
    assert paper[("ptb", "token_ppl")] == ""  # no paper number for per-GPT-2-token perplexity
    for r in rows:
        if r["paper"]:
            assert float(r["delta"]) == pytest.approx(float(r["ours"]) - float(r["paper"]))
    printed = capsys.readouterr().out
    assert "lambada" in printed and "(subset)" in printed and "35.13" in printed


def test_model_without_matching_size_has_no_paper_column(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["--model", str(tiny_model_dir), "--tasks", "lambada", "--data-dir", str(DATA), "--limit", "3",
                 "--output", str(out), "--no-progress"]) == 0
    rows = read_csv(out / "comparison.csv")
    assert all(r["paper"] == "" and r["size"] == "" for r in rows)


def test_size_detection_from_architecture():
    from transformers import GPT2Config

    from gpt2eval.models.load import size_of
    assert size_of(GPT2Config(n_layer=12, n_embd=768)) == "small"
    assert size_of(GPT2Config(n_layer=48, n_embd=1600)) == "xl"
    assert size_of(GPT2Config(n_layer=2, n_embd=64)) is None


PLUGIN = textwrap.dedent('''
    """A third-party plugin: does the model prefer "Paris" after "The capital of France is"?"""
    from gpt2eval.api.data import Dataset
    from gpt2eval.api.requests import Loglikelihood
    from gpt2eval.api.task import Metric, Scored, Task


    class Capitals(Task):
        name = "capitals"
        description = "toy plugin"
        metrics = {"acc": Metric(None, "argmax over candidates")}
        protocol = {"prompt": "The capital of {country} is"}

        def load(self, data):
            return Dataset([("France", " Paris", " Rome"), ("Italy", " Rome", " Paris")], n_full=2,
                           source={"kind": "inline"})

        def requests(self, examples):  # per country: the right city, then the wrong one
            return {"cities": [[Loglikelihood(f"The capital of {c} is", city) for city in cities]
                               for c, *cities in examples]}

        def score(self, examples, answers):
            right = [capital.logprob > other.logprob for capital, other in answers["cities"]]
            return Scored({"acc": 100 * sum(right) / len(right)}, [{"right": r} for r in right])
''')


def test_plugin_from_include_path(tmp_path, tiny_model_dir):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "capitals.py").write_text(PLUGIN)
    assert "capitals" in discover([str(plugins)]) and "capitals" not in discover()
    out = tmp_path / "run"
    assert main(["--model", str(tiny_model_dir), "--tasks", "capitals,lambada", "--include-path", str(plugins),
                 "--data-dir", str(DATA), "--limit", "2", "--output", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"]["capitals"]["metrics"]["acc"] in (0.0, 50.0, 100.0)
    assert results["tasks"]["capitals"]["subset"] is False  # 2 of 2
    assert len((out / "samples" / "capitals.jsonl").read_text().splitlines()) == 2


def test_plugin_from_entry_point(tmp_path, monkeypatch):
    (tmp_path / "capitals_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "capitals_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: capitals-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[gpt2eval.tasks]\ncapitals = capitals_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert discover()["capitals"].__name__ == "Capitals"


def test_list_tasks_and_unknown_task(capsys):
    assert main(["--list-tasks"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in LM_TASKS)
    assert main(["--tasks", "lambada,nope", "--model", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown task(s) nope" in err[0] and "lambada" in err[0]


def test_run_eval_script_and_broken_model_folder(tmp_path):
    (tmp_path / "empty-model").mkdir()
    proc = subprocess.run([sys.executable, str(REPO / "run_eval.py"), "--model", str(tmp_path / "empty-model"),
                           "--tasks", "lambada", "--data-dir", str(DATA), "--output", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "error: cannot load" in proc.stderr
    assert not (tmp_path / "o" / "results.json").exists()


# ---- output mistakes: one line, before any data or model is loaded --------------------------------

def _output_mistake(tmp_path):
    (tmp_path / "a-file").write_text("keep me\n")
    (tmp_path / "run-with-file").mkdir()
    (tmp_path / "run-with-file" / "samples").write_text("not a folder\n")
    (tmp_path / "run-with-dir" / "results.json").mkdir(parents=True)
    # The messages are gpt2eval.io.check_output's, which `compare` and `score` give too (issue 23).
    return {
        "existing file": (tmp_path / "a-file", "a-file is a file, where a folder goes"),
        "below a file": (tmp_path / "a-file" / "run", "a-file is a file, so no folder can be made below it"),
        "samples is a file": (tmp_path / "run-with-file", "samples is a file, where a folder goes"),
        "results.json is a folder": (tmp_path / "run-with-dir", "results.json is a folder, where a file goes"),
        "unwritable": (Path("/sys/gpt2eval-run"), "no file can be created in /sys"),  # not writable, even by root
    }


@pytest.mark.parametrize("case", ["existing file", "below a file", "samples is a file", "results.json is a folder",
                                  "unwritable"])
def test_output_mistakes_are_caught_before_any_model_loads(tmp_path, capsys, monkeypatch, case):
    monkeypatch.setattr("gpt2eval.runner.load", lambda *a, **kw: pytest.fail("a model was loaded"))
    monkeypatch.setattr("gpt2eval.runner.DataSource", lambda *a, **kw: pytest.fail("data was loaded"))
    output, expected = _output_mistake(tmp_path)[case]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["--model", "gpt2", "--tasks", "lambada", "--data-dir", str(DATA), "--output", str(output),
                 "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --output {output}") and len(err.splitlines()) == 1 and expected in err, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing made or left
    assert (tmp_path / "a-file").read_text() == "keep me\n"


def test_several_sizes_check_each_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("gpt2eval.runner.load", lambda *a, **kw: pytest.fail("a model was loaded"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "medium").write_text("x")
    assert main(["--sizes", "small,medium", "--tasks", "lambada", "--data-dir", str(DATA),
                 "--output", str(tmp_path / "out"), "--no-cache"]) == 2
    assert "medium is a file, where a folder goes" in capsys.readouterr().err
