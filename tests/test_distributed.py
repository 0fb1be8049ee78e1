"""Data parallelism under torchrun (gloo, CPU): two workers give what one process gives, bit for bit;
a killed worker makes the run fail with one line naming its rank, and the rerun resumes to the same
numbers; the work is shared, never done twice.

The process tests run the real CLI under `python -m torch.distributed.run` on the tiny random model:
a log-likelihood task (lambada, with its stop-word decode), a rolling one (ptb) and a sampled
generation task (cnn_dailymail, top-k 2), 6 examples each, in batches of 2 (so that each worker
has several batches of each kind).
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, REPO
from gpt2eval.distributed import workers as distributed
from gpt2eval.cache.store import ResultCache
from gpt2eval.distributed.workers import Share, WorkerFailed, Workers

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
ENV.pop(distributed.KILL_ENV, None)
TASKS = "lambada,ptb,cnn_dailymail"


def run(model_dir, folder: Path, workers: int, kill: str | None = None) -> subprocess.CompletedProcess:
    """The CLI on `workers` processes (1: a plain process, not torchrun), output in folder/out,
    cache in folder/cache.sqlite."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={workers}",
                "--monitor-interval=0.1"] if workers > 1 else [sys.executable]
    cmd = [*launcher, str(REPO / "run_eval.py"), "--model", str(model_dir), "--reference-size", "small",
           "--tasks", TASKS, "--limit", "6", "--batch-size", "2", "--data-dir", str(DATA), "--no-progress",
           "--output", str(folder / "out"), "--cache", str(folder / "cache.sqlite")]
    env = {**ENV, distributed.KILL_ENV: kill} if kill else ENV
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


def outputs(folder: Path) -> dict[str, bytes]:
    """Every file a run writes except results.json (it holds timings): comparison, samples, predictions."""
    out = folder / "out"
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "results.json"}


def results(folder: Path) -> dict:
    return json.loads((folder / "out" / "results.json").read_text())


def cache_rows(folder: Path) -> dict:
    with sqlite3.connect(folder / "cache.sqlite") as conn:
        return dict(conn.execute("SELECT key, value FROM results"))


def assert_same_answers(rows: dict, want: dict) -> None:
    """The same keys and answers, bit for bit, but a generation's token log-probabilities: a decode
    continued from a scoring forward's last logits (one process) or from a prefill of its prompt (a
    worker that did not score that prompt) gets them from another computation, equal to float tolerance."""
    assert rows.keys() == want.keys()
    for key, value in rows.items():
        got, ref = json.loads(value), json.loads(want[key])
        if isinstance(got, dict) and "token_logprobs" in got:
            assert got.pop("token_logprobs") == pytest.approx(ref.pop("token_logprobs"), abs=1e-5), key
        assert got == ref, key


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("one-process")
    done = run(tiny_model_dir, folder, 1)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def test_two_workers_give_what_one_process_gives_and_share_the_work(tiny_model_dir, one_process, tmp_path):
    done = run(tiny_model_dir, tmp_path, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "comparison.csv" in outputs(tmp_path)
    assert outputs(tmp_path) == outputs(one_process)  # comparison.csv, samples, predictions: bit for bit
    one, two = results(one_process), results(tmp_path)
    assert (one["workers"], two["workers"]) == (1, 2)
    for name in TASKS.split(","):
        by_worker = two["tasks"][name]["items_computed_by_worker"]
        assert len(by_worker) == 2
        assert sum(by_worker) == two["tasks"][name]["items_computed"] == one["tasks"][name]["items_computed"] > 0
        assert one["tasks"][name]["items_computed_by_worker"] == [one["tasks"][name]["items_computed"]]
    assert all(sum(two["tasks"][t]["items_computed_by_worker"][r] for t in two["tasks"]) > 0 for r in (0, 1))
    # Both workers' answers end up in the main cache, the same answers one process stored; the
    # exchange folder is gone.
    assert_same_answers(cache_rows(tmp_path), cache_rows(one_process))
    assert not (tmp_path / "cache.sqlite.workers").exists()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_killed_workers_fail_naming_their_rank_and_a_rerun_with_other_n_resumes(tiny_model_dir, one_process,
                                                                                  tmp_path):
    # Rank 0 is SIGKILLed after its first batch: rank 1 names it, and nobody merges the answers.
    failed = run(tiny_model_dir, tmp_path, 2, kill="0:1")
    assert failed.returncode != 0
    assert len(error_lines(failed.stderr)) == 1, failed.stderr[-3000:]
    assert "worker rank 0 died" in error_lines(failed.stderr)[0]
    assert len(list((tmp_path / "cache.sqlite.workers").iterdir())) == 1  # its exchange folder is left

    # The rerun keeps them; then rank 1 is SIGKILLed after its first batch, and rank 0 names it.
    failed = run(tiny_model_dir, tmp_path, 2, kill="1:1")
    assert failed.returncode != 0
    assert "of the interrupted run" in failed.stdout
    assert len(error_lines(failed.stderr)) == 1, failed.stderr[-3000:]
    assert "worker rank 1 died" in error_lines(failed.stderr)[0]
    assert "run the same command again" in error_lines(failed.stderr)[0]
    kept = len(cache_rows(tmp_path))
    assert 0 < kept < len(cache_rows(one_process))  # what the workers finished was kept, not everything
    assert not (tmp_path / "cache.sqlite.workers").exists()

    again = run(tiny_model_dir, tmp_path, 1)  # another number of workers: one plain process
    assert again.returncode == 0, again.stderr[-3000:]
    assert outputs(tmp_path) == outputs(one_process)
    tasks = results(tmp_path)["tasks"].values()
    assert sum(t["items_cached"] for t in tasks) > 0
    assert sum(t["items_computed"] for t in tasks) == len(cache_rows(one_process)) - kept
    assert_same_answers(cache_rows(tmp_path), cache_rows(one_process))


# ---- the pieces, in one process -------------------------------------------------------------
def workers(tmp_path: Path, rank: int, world: int) -> Workers:
    w = Workers(rank, world, rank, tmp_path, None)
    w.write_status()
    return w


def test_batches_go_to_the_least_loaded_worker_and_a_continued_prefix_stays_with_its_worker(tmp_path):
    #         kind       cost  continues
    deals = [("score", 100, False), ("score", 100, False), ("score", 90, False), ("score", 50, False),
             ("generate", 500, False), ("generate", 400, True), ("generate", 300, False), ("score", 10, False)]
    mine = {}
    for rank in range(3):
        share = Share(workers(tmp_path / str(rank), rank, 3), "model")
        mine[rank] = [share.mine(*d) for d in deals]
    assert all(sum(mine[r][b] for r in range(3)) == 1 for b in range(len(deals)))  # every batch exactly once
    owner = [next(r for r in range(3) if mine[r][b]) for b in range(len(deals))]
    # scores: 0, 1, 2, then the least loaded (rank 2: 90); generation has its own ledger; the
    # continued batch stays with rank 0; the last score goes to rank 0 or 1 (100 each): rank 0
    assert owner == [0, 1, 2, 2, 0, 0, 1, 0]


def test_rank_0_reads_the_others_answers_and_names_a_failed_worker(tmp_path):
    zero, one = workers(tmp_path, 0, 2), workers(tmp_path, 1, 2)
    own = ResultCache(tmp_path / "rank1.sqlite")
    own.for_model("model").put_many({"a": [1.5], "b": [2.5]})
    assert Share(zero, "model").collect(["a", "b"]) == {"a": [1.5], "b": [2.5]}
    with pytest.raises(distributed.ShareDone):
        Share(one, "model").collect(["a"])
    one.write_status(status="failed", error="out of memory on cuda:1 with a batch of one")
    with pytest.raises(WorkerFailed, match="worker rank 1 failed: out of memory on cuda:1"):
        zero.answers(["c"], "model")  # never written: rank 0 must not wait forever
    own.close()


def test_a_worker_whose_process_is_gone_is_named(tmp_path):
    zero, one = workers(tmp_path, 0, 2), workers(tmp_path, 1, 2)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    one.write_status(pid=int(dead.stdout))
    with pytest.raises(WorkerFailed, match=r"worker rank 1 \(pid \d+\) died"):
        zero.counts_by_worker("0/lambada", {"items_computed": 1, "tokens_forwarded": 1})


def test_plan_takes_the_number_of_workers(tmp_path, capsys):
    from conftest import TOKENIZER_DIR
    from gpt2eval.cli.main import main
    rows = {}
    for n in (1, 4):
        out = tmp_path / f"plan{n}.json"
        assert main(["plan", "--sizes", "small", "--tasks", "lambada", "--limit", "3", "--tokenizer",
                     str(TOKENIZER_DIR), "--data-dir", str(DATA), "--peak-tflops", "100", "--workers", str(n),
                     "--json", str(out)]) == 0
        rows[n] = json.loads(out.read_text())[0]
    assert "on each of 4 workers" in capsys.readouterr().out
    assert rows[4]["flops"] == rows[1]["flops"]  # the same work, shared
    assert rows[4]["seconds@100TFLOP/s"] == pytest.approx(rows[1]["seconds@100TFLOP/s"] / 4)
    assert main(["plan", "--workers", "0", "--tokenizer", str(TOKENIZER_DIR)]) == 2
    assert "--workers must be a positive integer" in capsys.readouterr().err
