"""A newcomer's first contact (issue 23): the offline path in one command (--model random:SIZE,
--skip-unavailable), fast and exact errors about data and the hub, progress bars that count what
users count, a --list-tasks table, and make-random-model naming the shape it wrote."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from conftest import DATA, REPO, TOKENIZER_DIR
from gpt2eval.api.data import DataSource
from gpt2eval.cli.main import main
from gpt2eval.errors import UserError

OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1"}
LAMBADA = "lambada/lambada_test.jsonl"


def strict_json(path):
    """json.loads that refuses NaN and Infinity (which Python's json accepts by default)."""
    def refuse(constant):
        raise ValueError(f"{path}: {constant} is not JSON")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def closed_port() -> int:
    """A local TCP port nobody listens on: connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- 1. the offline path in one command ------------------------------------------------------------

@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """The issue's command: every paper task on a random tiny GPT-2, offline, 2 examples each."""
    root = tmp_path_factory.mktemp("paper")
    env = {**OFFLINE, "GPT2EVAL_CACHE_DIR": str(root / "downloads")}  # no enwik8/text8/1bw downloaded before
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(REPO / "run_eval.py"), "--model", "random:tiny", "--tokenizer",
                           str(TOKENIZER_DIR), "--tasks", "paper", "--skip-unavailable", "--data-dir", str(DATA),
                           "--limit", "2", "--output", str(root / "run"), "--no-progress"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    return root / "run", proc, time.monotonic() - t0


def test_the_offline_paper_run_of_a_random_model_completes(paper_run):
    out, proc, seconds = paper_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = strict_json(out / "results.json")
    assert len(results["tasks"]) >= 12, sorted(results["tasks"])
    assert {"enwik8", "text8", "1bw"} <= set(results["skipped"])
    assert all(isinstance(why, str) and why and "\n" not in why for why in results["skipped"].values())
    assert "enwik8/enwik8.zip" in results["skipped"]["enwik8"]
    assert not set(results["skipped"]) & set(results["tasks"])
    model = results["model"]
    assert model["id"] == "random:tiny" and model["random"]["shape"] == "tiny" and model["random"]["seed"] == 1234
    assert "meaningless" in model["random"]["note"] and model["n_layer"] == 2 and model["n_embd"] == 64
    # the console: the model named random and meaningless, and the skipped tasks in the summary
    summary = proc.stdout.split("random:tiny: results in")[1]
    assert "random:tiny: randomly initialised weights: its numbers are meaningless" in summary
    assert all(f"skipped {task}:" in summary for task in ("enwik8", "text8", "1bw"))
    # nothing but outputs: no model folder anywhere, only the run's files and the result cache
    assert sorted(p.name for p in out.parent.iterdir()) == [".cache", "run"]  # nothing downloaded either


def test_the_report_labels_a_random_model(paper_run, tmp_path):
    out, proc, _ = paper_run
    assert main(["compare", str(out), "--out", str(tmp_path / "report")]) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "random:tiny (random weights)" in markdown and "its numbers are meaningless" in markdown
    assert "Skipped tasks" in markdown and "enwik8" in markdown


def test_a_random_models_weights_and_fingerprint_follow_seed_shape_and_tokenizer(tokenizer):
    from gpt2eval.models.random import load_random, tokenizer_digest
    state = torch.random.get_rng_state()
    a = load_random("random:tiny", tokenizer=str(TOKENIZER_DIR), device="cpu", seed=7, log=lambda m: None)
    assert torch.equal(torch.random.get_rng_state(), state)  # the run's own random state is untouched
    b = load_random("random:tiny", tokenizer=str(TOKENIZER_DIR), device="cpu", seed=7, log=lambda m: None)
    c = load_random("random:tiny", tokenizer=str(TOKENIZER_DIR), device="cpu", seed=8, log=lambda m: None)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert not torch.equal(a.model.transformer.wte.weight, c.model.transformer.wte.weight)
    # the tokenizer counts by content, wherever it is read from
    other = type(tokenizer).from_pretrained(str(TOKENIZER_DIR))
    assert tokenizer_digest(other) == a.random["tokenizer_sha256"]
    other.add_tokens(["<extra>"])
    assert tokenizer_digest(other) != a.random["tokenizer_sha256"]


@pytest.mark.parametrize("argv, expected", [
    (["--model", "random:huge"], "--model random:huge: no such random shape; choose random:tiny, random:small"),
    (["--model", "random:tiny", "--tokenizer", "EMPTY"], "cannot load the tokenizer"),
    (["--model", "random:tiny", "--tokenizer", "/nonexistent/tok"], "--tokenizer /nonexistent/tok: no such folder"),
])
def test_random_model_mistakes_are_one_line(capsys, tmp_path, argv, expected):
    (tmp_path / "empty").mkdir()  # a folder without tokenizer files
    argv = [str(tmp_path / "empty") if a == "EMPTY" else a for a in argv]
    assert main(argv + ["--tasks", "lambada", "--data-dir", str(DATA), "--limit", "1", "--no-cache",
                        "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "o").exists()


def test_without_skip_unavailable_the_error_names_the_flag(capsys, tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("GPT2EVAL_CACHE_DIR", str(tmp_path / "downloads"))
    assert main(["--model", str(tiny_model_dir), "--tasks", "lambada,enwik8",
                 "--data-dir", str(DATA), "--limit", "1", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "enwik8/enwik8.zip" in err and "--skip-unavailable" in err, err
    assert not (tmp_path / "o").exists()


def test_with_no_readable_data_at_all_nothing_runs(capsys, tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("GPT2EVAL_CACHE_DIR", str(tmp_path / "downloads"))
    assert main(["--model", str(tiny_model_dir), "--tasks", "enwik8,text8",
                 "--skip-unavailable", "--data-dir", str(DATA), "--output", str(tmp_path / "o")]) == 2
    assert "the data of no task can be read" in capsys.readouterr().err


# ---- 2. fast, exact errors about data and the hub ----------------------------------------------------

def test_a_missing_data_file_is_named_in_seconds_when_the_hub_is_unreachable(tmp_path):
    """HF_HUB_OFFLINE unset, the hub unreachable (its endpoint a closed local port, so that the test
    does not depend on this machine's network), a --data-dir without LAMBADA: one line naming the
    exact path, no retries, in seconds (main: 48 s and 22 "Retrying" lines)."""
    from gpt2eval import hub
    (tmp_path / "data" / "ptb").mkdir(parents=True)
    env = {k: v for k, v in OFFLINE.items() if k not in hub.OFFLINE_VARIABLES}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HOME=str(tmp_path / "hf-home"))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(REPO / "run_eval.py"), "--sizes", "small,medium", "--tasks",
                           "lambada,ptb", "--data-dir", str(tmp_path / "data"), "--output", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    seconds = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert str(tmp_path / "data" / LAMBADA) in lines[0] and "does not exist (--data-dir)" in lines[0]
    assert "the hub cannot be reached" in lines[0] and "refused" in lines[0]
    assert "Retrying" not in proc.stderr and "HF_HUB_OFFLINE" not in proc.stderr
    assert seconds < 20, f"{seconds:.1f} s"
    assert not (tmp_path / "o").exists()


def test_the_hub_fallback_from_a_data_dir_is_said_in_one_line(tmp_path, monkeypatch):
    import datasets

    from gpt2eval import hub
    monkeypatch.setattr(hub, "unreachable", lambda variables=(): None)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: [{"text": "a b c"}])
    said = []
    data = DataSource(tmp_path, log=said.append)
    with data.loading("lambada"):
        assert data.find(LAMBADA) is None
        assert data.hub("EleutherAI/lambada_openai", "default", "test") == [{"text": "a b c"}]
        data.hub("EleutherAI/lambada_openai", "default", "validation")  # the same task: said once
    assert len(said) == 1 and str(tmp_path / LAMBADA) in said[0] and "from the Hugging Face hub instead" in said[0]


def test_a_variable_already_set_is_never_asked_for(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["--model", "gpt2eval-tests/no-such-model", "--tasks", "lambada", "--data-dir", str(DATA),
                 "--limit", "1", "--no-cache", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "the hub cannot be reached (HF_HUB_OFFLINE" in err, err
    assert "set HF_HUB_OFFLINE" not in err and "not in the local hub cache" in err  # main: "set HF_HUB_OFFLINE=1"


def test_the_hub_probe_answers_quickly_and_once(monkeypatch):
    import http.server
    import threading

    from gpt2eval import hub

    class Answers(http.server.BaseHTTPRequestHandler):
        status = 200

        def do_HEAD(self):
            self.send_response(self.status)
            self.end_headers()

        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert hub.probe(url) is None
        Answers.status = 404  # any answer below 500 is the server answering
        assert hub.probe(url) is None
        Answers.status = 503
        assert hub.probe(url) == f"127.0.0.1:{server.server_address[1]} answered HTTP 503"
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        assert "no answer within 0.5 s" in hub.probe(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
    t0 = time.monotonic()
    assert "refused" in hub.probe(f"http://127.0.0.1:{closed_port()}")
    assert "127.0.0.1" in hub.probe(f"http://127.0.0.1:{closed_port()}")
    assert "no-such-host.invalid" in hub.probe("https://no-such-host.invalid", timeout=2)
    assert time.monotonic() - t0 < 10
    for name in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(hub, "probe", lambda url: calls.append(url) or "down")
    monkeypatch.setattr(hub, "go_offline", lambda: None)
    monkeypatch.setattr(hub, "_answer", {})
    assert hub.unreachable() == hub.unreachable() == "down" and len(calls) == 1  # once per process
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert hub.unreachable(hub.DATASETS) == "HF_DATASETS_OFFLINE is set" and len(calls) == 1  # no probe needed
    assert hub.unreachable(hub.MODELS) == "down"  # datasets' own variable leaves models to the probe


# ---- 6. progress and listing ---------------------------------------------------------------------------

def test_scoring_progress_counts_requests_not_tokens(engine_factory, capsys):
    from gpt2eval.api.requests import Loglikelihood
    passages = [json.loads(line)["text"] for line in (DATA / LAMBADA).open()][:5]
    engine_factory(progress=True).run([Loglikelihood(*p.rsplit(" ", 1)) for p in passages], desc="lambada")
    bar = capsys.readouterr().err
    assert "lambada:" in bar and "0/5 [" in bar and "?seq/s" in bar  # drawn at once; later updates are timed
    assert "tok" not in bar  # main: "0.00/9.00 [... ?tok/s]" for 5 passages


LONG = textwrap.dedent('''
    from gpt2eval.api.data import Dataset
    from gpt2eval.api.task import Metric, Option, Task

    class Long(Task):
        name = "a_task_with_a_much_longer_name_than_sixteen_characters"
        description = "a plugin with a long name"
        metrics = {"acc": Metric("lambada/acc", "argmax")}
        options = {"n": Option(3, "how many"), "case": Option("lower", "case", choices=("lower", "upper"))}

        def load(self, data):
            data.find("long/long.jsonl")
            return data.hub("nobody/long", None, "test")
''')


def test_list_tasks_is_an_aligned_table_with_paper_rows_data_files_and_options(tmp_path, capsys):
    (tmp_path / "long.py").write_text(LONG)
    assert main(["--list-tasks", "--include-path", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    assert header.split()[:2] == ["task", "paper"] and "data under --data-dir" in header and "options" in header
    columns = [header.index(h) for h in ("paper rows", "data under --data-dir", "options (default)", "description")]
    row = next(i for i, line in enumerate(lines) if line.startswith("a_task_with_a_much_longer_name"))
    lambada = next(i for i, line in enumerate(lines) if line.startswith("lambada (paper) "))
    for i in (row, lambada):  # every column starts where its header does, however long the name
        assert all(lines[i][c - 1] == " " and lines[i][c] != " " for c in columns[:2]), lines[i]
    assert lines[row][columns[0]:].startswith("lambada/acc") and "long/long.jsonl" in lines[row]
    assert "n=3" in lines[row] and "case=lower (lower|upper)" in lines[row + 1]
    assert LAMBADA in lines[lambada] and "lambada/ppl," in lines[lambada]
    assert "acc_without_stopword_filter, acc" in lines[lambada + 1]  # a long cell wraps below, in its column


def test_make_random_model_names_the_shape_it_wrote(tmp_path, capsys):
    assert main(["make-random-model", str(tmp_path / "m"), "--tokenizer", str(TOKENIZER_DIR), "--n-layer", "2",
                 "--n-embd", "64"]) == 0
    out = capsys.readouterr().out
    assert "2 layers, 64 wide, 1 head" in out and "small" not in out


def test_loading_a_random_model_that_cannot_get_its_tokenizer_is_one_line(monkeypatch):
    from gpt2eval import hub
    from gpt2eval.models.random import load_random
    monkeypatch.setattr(hub, "unreachable", lambda variables=(): "huggingface.co: name or service not known")
    monkeypatch.setattr(hub, "in_hub_cache", lambda *a: False)
    with pytest.raises(UserError, match="openai-community/gpt2 is not in the local hub cache .* pass --tokenizer"):
        load_random("random:tiny", device="cpu", log=lambda m: None)
