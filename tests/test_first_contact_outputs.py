"""Issue 23, continued: numbers that cannot be represented are reported, not crashed on, and every
JSON file is strict JSON; every output path of `run` and `score` is checked before any work (a full
disk included), and an output folder never mixes two runs; a plugin that replaces a built-in says
so; the result cache names a full disk, gives pruned space back, and a resumed run says what it
reused."""
from __future__ import annotations

import errno
import json
import math
import sqlite3
import textwrap

import numpy as np
import pytest
import torch

import gpt2eval.io
from conftest import DATA, REPO, TOKENIZER_DIR
from gpt2eval.api import uncertainty
from gpt2eval.cache.store import ResultCache
from gpt2eval.cli.main import main
from gpt2eval.errors import UserError
from test_first_contact import strict_json



@pytest.fixture()
def tiny(tiny_model_dir) -> list[str]:
    """The run options of these tests: the tiny random GPT-2 folder (conftest), the shared data."""
    return ["--model", str(tiny_model_dir), "--data-dir", str(DATA), "--no-progress"]


def files_under(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def one_error_line(capsys) -> str:
    """The one error line, last on stderr (a model loaded before it may have drawn its progress bar)."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.strip().endswith(errors[0]) and "Traceback" not in err, err
    return errors[0]


# ---- 3. numbers that cannot be represented ---------------------------------------------------------

@pytest.fixture(scope="module")
def extreme_model_dir(tmp_path_factory):
    """A tiny GPT-2 with finite but extreme weights (its embedding times 1,000): the mean NLL of
    its targets is far beyond 709, where exp overflows."""
    from transformers import AutoModelForCausalLM

    from gpt2eval.models.load import make_random_model
    path = make_random_model(tmp_path_factory.mktemp("extreme"), TOKENIZER_DIR, n_layer=2, n_embd=64, n_head=4)
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.transformer.wte.weight.mul_(1000)
    model.save_pretrained(path)
    return path


def test_an_overflowing_perplexity_is_inf_on_screen_and_null_with_its_reason_in_results(extreme_model_dir, tmp_path,
                                                                                         capsys):
    out = tmp_path / "run"
    assert main(["--model", str(extreme_model_dir), "--tasks", "lambada,wikitext2", "--data-dir", str(DATA),
                 "--limit", "3", "--no-progress", "--no-cache", "--output", str(out)]) == 0  # main: OverflowError
    printed = capsys.readouterr().out
    assert "lambada: 3/5153" in printed and "ppl=inf" in printed
    results = strict_json(out / "results.json")
    for task in ("lambada", "wikitext2"):
        t = results["tasks"][task]
        assert t["metrics"]["ppl"] is None and t["non_finite"]["ppl"].startswith("inf: beyond the largest float")
        assert t["intervals"]["ppl"]["ci_low"] is None and "not a finite number" in t["intervals"]["ppl"]["note"]
    assert results["tasks"]["lambada"]["metrics"]["acc"] == 0.0  # the other metrics are kept
    for f in (out / "samples").iterdir():
        [json.loads(line, parse_constant=pytest.fail) for line in f.read_text().splitlines()]
    csv_rows = (out / "comparison.csv").read_text().splitlines()
    assert any(row.startswith("lambada,ppl,") and ",inf," in row for row in csv_rows)
    # the report over it: no crash on the nulls, and the reason among its notes
    assert main(["compare", str(out), "--out", str(tmp_path / "report")]) == 0
    assert "lambada ppl at " in (tmp_path / "report" / "report.md").read_text()


NAN_PLUGIN = textwrap.dedent('''
    from gpt2eval.api.data import Dataset
    from gpt2eval.api.requests import Loglikelihood
    from gpt2eval.api.task import Metric, Scored, Task
    from gpt2eval.api.uncertainty import mean


    class Broken(Task):
        name = "broken"
        description = "returns NaN, as a plugin with a bug would"
        metrics = {"score": Metric(None, "a NaN"), "fine": Metric(None, "a number")}

        def load(self, data):
            return Dataset(["a", "b", "c"], n_full=3, source={"kind": "inline"})

        def requests(self, examples):
            return {"word": [Loglikelihood("The word is", " " + w) for w in examples]}

        def score(self, examples, answers):
            nan = float("nan")
            return Scored({"score": nan, "fine": 1.0}, [{"value": nan} for _ in examples],
                          spread={"score": mean([nan] * len(examples)), "fine": mean([1.0, 1.0, 1.0])})
''')


def test_a_nan_from_a_plugin_is_named_as_its_bug_and_results_stay_json(tiny, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text(NAN_PLUGIN)
    out = tmp_path / "run"
    assert main(tiny + ["--tasks", "broken", "--include-path", str(plugins), "--no-cache",
                        "--output", str(out)]) == 0  # main: a 47-line IndexError from numpy's percentile
    printed = capsys.readouterr().out
    warnings = [line for line in printed.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "metric score is NaN: a bug in the task plugin" in warnings[0]
    assert str(plugins / "broken.py") in warnings[0]
    t = strict_json(out / "results.json")["tasks"]["broken"]
    assert t["metrics"] == {"score": None, "fine": 1.0} and "NaN: a bug in the task plugin" in t["non_finite"]["score"]
    assert t["intervals"]["score"]["ci_low"] is None and t["intervals"]["fine"]["ci_low"] == 1.0
    assert [json.loads(line)["value"] for line in (out / "samples" / "broken.jsonl").read_text().splitlines()] \
        == [None, None, None]


def test_intervals_and_json_of_values_that_are_not_finite():
    assert uncertainty.safe_exp(1000.0) == math.inf and uncertainty.safe_exp(1.0) == math.e
    huge = uncertainty.ratio([1e5, 2e5], [1, 1], math.exp)  # main: OverflowError in the bootstrap
    assert huge.value() == math.inf
    iv = uncertainty.interval(huge, math.inf)
    assert (iv["stderr"], iv["ci_low"], iv["ci_high"]) == (None, None, None) and iv["n"] == 2
    iv = uncertainty.interval(uncertainty.mean([float("nan")] * 4), float("nan"))  # main: IndexError
    assert iv["ci_low"] is None
    iv = uncertainty.interval(uncertainty.binomial([1, 0, float("nan")]), 50.0)
    assert iv["ci_low"] is None and "not a finite number" in iv["note"]
    d = uncertainty.paired(huge, uncertainty.ratio([1.0, 2.0], [1, 1], math.exp), math.inf, 4.5)
    assert d["diff"] is None and d["ci_low"] is None


def test_every_json_file_is_strict(tmp_path):
    path = gpt2eval.io.write_json(tmp_path / "r.json", {"a": float("nan"), "b": [float("inf"), 1.5],
                                                        "c": np.float32("-inf"), "d": np.float64(2.0),
                                                        "e": torch.tensor(float("nan"))})
    assert strict_json(path) == {"a": None, "b": [None, 1.5], "c": None, "d": 2.0, "e": None}
    path = gpt2eval.io.write_jsonl(tmp_path / "r.jsonl", [{"x": float("inf")}, {"x": np.float32(0.5)}])
    assert [json.loads(line, parse_constant=pytest.fail) for line in path.read_text().splitlines()] == \
        [{"x": None}, {"x": 0.5}]


# ---- 4. every output path checked before any work -----------------------------------------------

@pytest.mark.parametrize("where, expected", [
    ("/proc/gpt2eval-none", "no file can be created in /proc"),
    ("a-file", "a-file is a file, where a folder goes"),
    ("a-file/below", "a-file is a file, so no folder can be made below it"),
    ("results-json-is-a-folder", "results.json is a folder, where a file goes"),
])
def test_score_checks_its_output_before_scoring(tmp_path, capsys, where, expected):
    (tmp_path / "a-file").write_text("keep me")
    (tmp_path / "results-json-is-a-folder" / "results.json").mkdir(parents=True)
    gold, preds = tmp_path / "gold.txt", tmp_path / "preds.txt"
    gold.write_text("the cat sat on the mat\n")
    preds.write_text("the cat sat on a mat\n")
    output = where if where.startswith("/") else str(tmp_path / where)
    before = files_under(tmp_path)
    assert main(["score", "--task", "wmt14_fr_en", "--gold", str(gold), "--predictions", str(preds),
                 "--output", output]) == 2  # main: the score printed, then a traceback
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and f"--output {output}" in err and expected in err, err
    assert files_under(tmp_path) == before and (tmp_path / "a-file").read_text() == "keep me"


def test_a_full_disk_under_output_is_refused_before_any_work(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("gpt2eval.runner.load", lambda *a, **kw: pytest.fail("a model was loaded"))
    monkeypatch.setattr(gpt2eval.io, "free_bytes", lambda folder: 4096)
    assert main(tiny + ["--tasks", "lambada", "--output", str(tmp_path / "o"), "--no-cache"]) == 2
    line = one_error_line(capsys)
    assert f"--output {tmp_path / 'o'}" in line and "is full (4,096 bytes free)" in line
    assert not (tmp_path / "o").exists()


def test_a_disk_that_fills_up_during_a_run_is_one_line(tiny, tmp_path, capsys, monkeypatch):
    real = gpt2eval.io._write_synced

    def full_at_results(f, data: bytes):  # the disk fills up when results.json is written
        if data.startswith(b'{\n  "schema": 1,'):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, data)
    monkeypatch.setattr(gpt2eval.io, "_write_synced", full_at_results)
    assert main(tiny + ["--tasks", "lambada", "--limit", "2", "--output", str(tmp_path / "o"), "--no-cache"]) == 2
    line = one_error_line(capsys)  # main: a traceback (OSError: [Errno 28])
    assert f"cannot write {tmp_path / 'o' / 'results.json'}: no space left on device" in line
    assert not list((tmp_path / "o").glob(".results.json.*"))  # no temporary file left


def test_a_reused_output_folder_never_mixes_two_runs(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(tiny + ["--tasks", "lambada", "--limit", "2", "--output", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    # another run into the same folder: refused, one line, nothing touched
    assert main(tiny + ["--tasks", "ptb", "--limit", "2", "--output", str(out)]) == 2
    line = one_error_line(capsys)
    assert f"holds another run's results (model {tiny[1]}, tasks lambada, --limit 2" in line and "--overwrite" in line
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # --overwrite: the earlier run's files go (main: samples/lambada.jsonl stayed beside a ptb-only results.json)
    assert main(tiny + ["--tasks", "ptb", "--limit", "2", "--output", str(out), "--overwrite"]) == 0
    results = strict_json(out / "results.json")
    assert list(results["tasks"]) == ["ptb"]
    assert files_under(out) == {"results.json", "comparison.csv", "samples", "samples/ptb.jsonl"}


FILES_PLUGIN = textwrap.dedent('''
    from gpt2eval.api.data import Dataset
    from gpt2eval.api.requests import Loglikelihood
    from gpt2eval.api.task import Metric, Scored, Task


    class Writes(Task):
        name = "writes"
        metrics = {"acc": Metric(None, "toy")}

        def load(self, data):
            return Dataset(["x"], n_full=1, source={"kind": "inline"})

        def requests(self, examples):
            return {"w": [Loglikelihood("The word is", " x")]}

        def score(self, examples, answers):
            return Scored({"acc": 100.0}, [{"ok": True}], files={"extra/deep/out.txt": "x\\n"})
''')


def test_a_plugins_own_files_are_listed_and_go_with_its_run(tiny, tmp_path, capsys):
    plugins, out = tmp_path / "plugins", tmp_path / "o"
    plugins.mkdir()
    (plugins / "writes.py").write_text(FILES_PLUGIN)
    (out / "extra").mkdir(parents=True)
    (out / "extra" / "mine.txt").write_text("not gpt2eval's")
    assert main(tiny + ["--tasks", "writes", "--include-path", str(plugins), "--output", str(out), "--no-cache"]) == 0
    assert strict_json(out / "results.json")["tasks"]["writes"]["files"] == ["samples/writes.jsonl",
                                                                             "extra/deep/out.txt"]
    assert main(tiny + ["--tasks", "ptb", "--limit", "1", "--output", str(out), "--no-cache", "--overwrite"]) == 0
    assert files_under(out) == {"results.json", "comparison.csv", "samples", "samples/ptb.jsonl", "extra",
                                "extra/mine.txt"}  # the plugin's file and its emptied folder went, nothing else


def test_the_same_command_again_resumes_and_says_what_the_cache_gave(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    argv = tiny + ["--tasks", "lambada", "--limit", "3", "--output", str(out)]
    assert main(argv) == 0
    first = strict_json(out / "results.json")["tasks"]["lambada"]
    capsys.readouterr()
    (out / "samples" / "leftover.jsonl").write_text("{}\n")  # e.g. a task this run no longer has
    assert main(argv + ["--batch-size", "2"]) == 0  # the same run (batching is not part of its identity)
    printed = capsys.readouterr().out
    again = strict_json(out / "results.json")["tasks"]["lambada"]
    assert again["metrics"] == first["metrics"] and again["answers_from_cache"] == 9 == again["items_cached"]
    assert "lambada: 3/5153 examples (SUBSET), 9 requests" in printed and "9 answers from the result cache" in printed
    assert f"result cache {tmp_path / '.cache' / 'gpt2eval-cache.sqlite'}: 9 answers read" in printed
    assert not (out / "samples" / "leftover.jsonl").exists()  # the folder holds this run's files only


def test_an_unfinished_run_without_results_json_is_not_mixed_in(tiny, tmp_path, capsys):
    (tmp_path / "o" / "samples").mkdir(parents=True)
    (tmp_path / "o" / "samples" / "lambada.jsonl").write_text("{}\n")
    (tmp_path / "o" / "notes.txt").write_text("mine")
    assert main(tiny + ["--tasks", "ptb", "--limit", "1", "--output", str(tmp_path / "o"), "--no-cache"]) == 2
    assert "holds samples of an earlier run whose settings are unknown" in one_error_line(capsys)
    assert main(tiny + ["--tasks", "ptb", "--limit", "1", "--output", str(tmp_path / "o"), "--no-cache",
                        "--overwrite"]) == 0
    assert files_under(tmp_path / "o") == {"notes.txt", "results.json", "comparison.csv", "samples",
                                           "samples/ptb.jsonl"}  # only a run's own names are removed


# ---- 5. plugins and the cache ---------------------------------------------------------------------

SHADOW = textwrap.dedent('''
    from gpt2eval.api.data import Dataset
    from gpt2eval.api.requests import Loglikelihood
    from gpt2eval.api.task import Metric, Scored, Task


    class MyLambada(Task):
        name = "lambada"
        description = "not the built-in"
        metrics = {"acc": Metric(None, "toy")}

        def load(self, data):
            return Dataset(["x"], n_full=1, source={"kind": "inline"})

        def requests(self, examples):
            return {"w": [Loglikelihood("The word is", " x")]}

        def score(self, examples, answers):
            return Scored({"acc": 100.0}, [{"ok": True}])
''')


def test_a_plugin_that_replaces_a_built_in_says_so_and_is_recorded(tiny, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "lambada.py").write_text(SHADOW)
    out = tmp_path / "o"
    assert main(tiny + ["--tasks", "lambada", "--include-path", str(plugins), "--no-cache", "--output", str(out)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "replaces" in line]
    assert notes == [f"note: task lambada from {plugins / 'lambada.py'} replaces the one from "
                     f"{REPO / 'tasks' / 'lambada.py'}"]
    plugin = strict_json(out / "results.json")["tasks"]["lambada"]["plugin"]
    assert plugin == {"source": str(plugins / "lambada.py"), "replaces": str(REPO / "tasks" / "lambada.py")}


def full_disk_sqlite(monkeypatch, pages: int):
    """SQLite as on a full disk: the file cannot grow beyond `pages` pages (SQLITE_FULL, "database
    or disk is full", the error a full disk gives)."""
    real = sqlite3.connect

    def connect(*a, **kw):
        conn = real(*a, **kw)
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn
    monkeypatch.setattr("gpt2eval.cache.store.sqlite3.connect", connect)


def test_a_cache_on_a_full_disk_is_named_as_such_and_leaves_no_empty_file(tmp_path, monkeypatch):
    full_disk_sqlite(monkeypatch, 1)
    path = tmp_path / "cache.sqlite"
    with pytest.raises(UserError) as e:  # main: "the result cache ... is damaged", and a 0-byte file
        ResultCache(path)
    assert "the disk holding it is full" in str(e.value) and "damaged" not in str(e.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_a_cache_that_fills_the_disk_during_a_run_is_named_as_such(tmp_path, monkeypatch):
    path = tmp_path / "cache.sqlite"
    ResultCache(path).close()
    full_disk_sqlite(monkeypatch, 8)
    with ResultCache(path) as cache:
        view = cache.for_model("fp", label="m")
        with pytest.raises(UserError, match="writing the result cache .* failed: the disk holding it is full"):
            view.put_many({f"k{i}": "x" * 1000 for i in range(100)})


def test_cache_prune_gives_the_space_back_and_says_how_much(tmp_path, capsys):
    path = tmp_path / "cache.sqlite"
    with ResultCache(path) as cache:
        cache.for_model("fp", label="m").put_many({f"k{i}": "x" * 1000 for i in range(2000)})
    size = path.stat().st_size
    assert size > 2_000_000
    assert main(["cache", "prune", "--all", "--cache", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("removed 2000 entries") and "the file shrank by" in out  # main: the file kept its size
    assert path.stat().st_size < size / 10
