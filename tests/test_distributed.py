"""Data parallelism under torchrun (gloo, CPU): workers give what one process gives, bit for bit, and
forward the tokens it forwards; no folder is shared between nodes; a killed worker, on either node,
is named in one line within the documented bound, and the rerun resumes to the same outputs; a
frozen worker stops the run when an exchange times out.

The process tests run the real CLI under `python -m torch.distributed.run` on the tiny random model:
lambada (log-likelihoods and the stop-word decodes continued from them), wikitext2 (rolling
windows), cbt_cn (ten candidates after one shared prefix) and cnn_dailymail (top-k sampling), 6
examples each, in batches of 2, so that each worker has several batches. "Two nodes" are two
torchrun launches on this host, joined by c10d rendezvous. Each runs in its own folder with its own
cache and output. `--local-addr` orders them (c10d gives rank 0 to the address that sorts first).
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, REPO
from gpt2eval.distributed.group import Group
from gpt2eval.distributed.watch import HARD_EXIT_S, STOP_WAIT_S
from gpt2eval.engine.chains import CUT_SHARE, EXCHANGE_CHAINS, chains, compute_chains, deal, pooled

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
TASKS = "lambada,wikitext2,cbt_cn,cnn_dailymail"

# Fault injection, in the test alone: run_eval.py under a wrapper whose worker of rank K sends
# itself SIGNAL (KILL: it dies; STOP: it freezes, its connections open) after its N-th scored batch,
# after writing the time to the stamp file; every worker's exchanges time out after TIMEOUT seconds.
FAULT = '''
import os, runpy, signal, sys, time
from datetime import timedelta
rank, after, sig, stamp, timeout = sys.argv[1:6]
from gpt2eval.distributed import group
group.EXCHANGE_TIMEOUT = timedelta(seconds=float(timeout))
if os.environ.get("RANK") == rank:
    from gpt2eval.engine import forward
    real, calls = forward.score_batch, []

    def score_batch(*args, **kw):
        out = real(*args, **kw)
        calls.append(1)
        if len(calls) == int(after):
            open(stamp, "w").write(repr(time.time()))
            os.kill(os.getpid(), getattr(signal, "SIG" + sig))
        return out
    forward.score_batch = score_batch  # before gpt2eval.engine.engine imports it
sys.argv = sys.argv[6:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def cli_args(model_dir) -> list[str]:
    """The run, with paths relative to the folder it runs in: a node-local cache and output."""
    return [str(REPO / "run_eval.py"), "--model", str(model_dir), "--reference-size", "small", "--tasks", TASKS,
            "--limit", "6", "--batch-size", "2", "--data-dir", str(DATA), "--no-progress",
            "--output", "out", "--cache", "cache.sqlite"]


def faulty(args: list[str], fault: str | None, folder: Path) -> list[str]:
    """args, run under the FAULT wrapper when `fault` ("RANK:N:SIGNAL[:TIMEOUT]") is given."""
    if not fault:
        return args
    wrapper = folder.parent / "fault.py"
    wrapper.write_text(FAULT)
    rank, after, sig, *timeout = fault.split(":")
    return [str(wrapper), rank, after, sig, str(folder.parent / "fault-at"), *(timeout or ["1800"]), *args]


def run_one(model_dir, folder: Path) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, *cli_args(model_dir)], env=ENV, cwd=folder, capture_output=True,
                          text=True, timeout=600)


def run_standalone(model_dir, folder: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    """Two workers on one node (torchrun --standalone), in one folder."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "--monitor-interval=0.1", *faulty(cli_args(model_dir), fault, folder)]
    return subprocess.run(cmd, env=ENV, cwd=folder, capture_output=True, text=True, timeout=600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_nodes(model_dir, root: Path, fault: str | None = None) -> dict[str, dict]:
    """Two torchrun launches, "a" (rank 0) and "b" (rank 1), each in root/a or root/b: their return
    code, stderr and the time each ended."""
    port, procs = free_port(), {}
    for node, addr in (("a", "127.0.0.1"), ("b", "127.0.0.2")):
        folder = root / node
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=test", f"--local-addr={addr}",
               "--monitor-interval=0.1", *faulty(cli_args(model_dir), fault, folder)]
        procs[node] = subprocess.Popen(cmd, env=ENV, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    ended = {}
    while len(ended) < 2:
        for node, p in procs.items():
            if node not in ended and p.poll() is not None:
                ended[node] = time.time()
        time.sleep(0.05)
    return {node: {"rc": p.returncode, "stderr": p.communicate(timeout=60)[1], "ended": ended[node]}
            for node, p in procs.items()}


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


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("one-process")
    done = run_one(tiny_model_dir, folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def assert_same_work(one: dict, many: dict, workers: int) -> None:
    """The same answers computed, the same tokens forwarded in all (nothing twice), shared out."""
    assert (one["workers"], many["workers"]) == (1, workers)
    for name in TASKS.split(","):
        a, b = one["tasks"][name], many["tasks"][name]
        assert a["items_computed_by_worker"] == [a["items_computed"]] and a["items_computed"] > 0
        assert len(b["items_computed_by_worker"]) == len(b["tokens_forwarded_by_worker"]) == workers
        assert sum(b["items_computed_by_worker"]) == b["items_computed"] == a["items_computed"]
        # LAMBADA's decodes continue from their scoring forward, CBT's prefix is forwarded once:
        # the workers together forward exactly what one process forwards.
        assert sum(b["tokens_forwarded_by_worker"]) == b["tokens_forwarded"] == a["tokens_forwarded"]
    for r in range(workers):
        assert sum(t["tokens_forwarded_by_worker"][r] for t in many["tasks"].values()) > 0


def test_two_workers_give_what_one_process_gives_and_forward_what_it_forwards(tiny_model_dir, one_process,
                                                                                  tmp_path):
    done = run_standalone(tiny_model_dir, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "comparison.csv" in outputs(tmp_path)
    assert outputs(tmp_path) == outputs(one_process)  # comparison.csv, samples: bit for bit
    assert_same_work(results(one_process), results(tmp_path), 2)
    assert cache_rows(tmp_path) == cache_rows(one_process)  # rank 0's cache holds every worker's answers
    assert {p.name for p in tmp_path.iterdir()} <= {"out", "cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm"}


def test_two_nodes_share_no_folder(tiny_model_dir, one_process, tmp_path):
    ran = run_two_nodes(tiny_model_dir, tmp_path)
    assert [ran[n]["rc"] for n in "ab"] == [0, 0], ran["a"]["stderr"][-3000:] + ran["b"]["stderr"][-3000:]
    a, b = tmp_path / "a", tmp_path / "b"
    assert outputs(a) == outputs(one_process)  # rank 0's node: every output, one process's bytes
    assert_same_work(results(one_process), results(a), 2)
    assert cache_rows(a) == cache_rows(one_process)
    # Rank 1's node wrote nothing: no output, no cache, no exchange file; its answers travelled over
    # the process group.
    assert not (b / "out").exists() and not list(b.glob("cache*"))


def test_a_killed_worker_on_either_node_is_named_and_the_rerun_resumes(tiny_model_dir, one_process, tmp_path):
    bound = HARD_EXIT_S + STOP_WAIT_S  # watch.py: named within one batch, at most HARD_EXIT_S after the news
    # Rank 1 (node b) is SIGKILLed after its second scored batch: rank 0 names it.
    ran = run_two_nodes(tiny_model_dir, tmp_path, fault="1:2:KILL")
    killed_at = float((tmp_path / "fault-at").read_text())
    assert ran["a"]["rc"] != 0 and ran["b"]["rc"] != 0
    lines = error_lines(ran["a"]["stderr"]) + error_lines(ran["b"]["stderr"])
    assert len(lines) == 1 and lines == error_lines(ran["a"]["stderr"]), ran["a"]["stderr"][-3000:]
    assert "worker rank 1 died without a word" in lines[0] and "run the same command again" in lines[0]
    assert ran["a"]["ended"] - killed_at < bound
    kept = len(cache_rows(tmp_path / "a"))
    assert 0 < kept < len(cache_rows(one_process))  # what reached rank 0 was kept, not everything

    # The rerun resumes; this time rank 0 (node a) is SIGKILLed after its second scored batch: rank 1
    # names it.
    (tmp_path / "fault-at").unlink()
    ran = run_two_nodes(tiny_model_dir, tmp_path, fault="0:2:KILL")
    killed_at = float((tmp_path / "fault-at").read_text())
    lines = error_lines(ran["a"]["stderr"]) + error_lines(ran["b"]["stderr"])
    assert len(lines) == 1 and lines == error_lines(ran["b"]["stderr"]), ran["b"]["stderr"][-3000:]
    assert "worker rank 0 died without a word" in lines[0]
    assert ran["b"]["ended"] - killed_at < bound
    assert len(cache_rows(tmp_path / "a")) > kept  # rank 0 stored its own batches, and rank 1's first chunk

    again = run_one(tiny_model_dir, tmp_path / "a")  # another number of workers: one plain process
    assert again.returncode == 0, again.stderr[-3000:]
    assert outputs(tmp_path / "a") == outputs(one_process)
    tasks = results(tmp_path / "a")["tasks"].values()
    assert sum(t["items_cached"] for t in tasks) > 0
    assert cache_rows(tmp_path / "a") == cache_rows(one_process)


def test_a_stuck_worker_stops_the_run_when_an_exchange_times_out(tiny_model_dir, tmp_path):
    """A frozen worker (SIGSTOP: alive, its connections open) sends no news: rank 0's exchange gives
    up after the exchange timeout (here 15 s) and says so in one line; nothing waits longer."""
    started = time.time()
    done = run_standalone(tiny_model_dir, tmp_path / "run", fault="1:2:STOP:15")
    frozen_at = float((tmp_path / "fault-at").read_text())
    assert done.returncode != 0
    assert len(error_lines(done.stderr)) == 1, done.stderr[-3000:]
    assert "an exchange between the workers failed" in error_lines(done.stderr)[0]
    assert "a worker is stuck or unreachable" in error_lines(done.stderr)[0]
    # torchrun then stops the frozen worker (SIGKILL after its own 30 s grace)
    assert frozen_at > started and time.time() - frozen_at < 15 + 2 * STOP_WAIT_S + 30 + 15


# ---- the pieces, in one process -------------------------------------------------------------
def test_a_batch_continuing_a_costly_prefix_joins_its_chain():
    # element -> (its prefix, the prefix's tokens, its own tokens)
    parts = {"p": ("P", 100, 10), "q": ("Q", 100, 10), "r": ("R", 100, 10), "s": ("S", 100, 10),
             "u": ("U", 10, 200), "v": ("V", 10, 200)}
    batches = [["p", "q"], ["q"], ["q", "r"], ["s"], ["s"], ["u"], ["u", "v"]]
    assert chains(batches, parts.get) == [[["p", "q"], ["q"], ["q", "r"]], [["s"], ["s"]], [["u"]], [["u", "v"]]]
    # U's 10 tokens are at most 1/CUT_SHARE of the 420 its batch forwards: forwarded again, rather
    # than tie the batches to one worker; S's 100 are more than 1/CUT_SHARE of 110
    assert 10 * CUT_SHARE <= 2 * 200 + 10 + 10 and 100 * CUT_SHARE > 110
    assert chains(batches) == [[b] for b in batches]  # no shared prefix: every batch alone


def test_scored_batches_pool_into_chains_up_to_the_limit_of_their_decodes():
    batches = [["a"], ["b"], ["c"], ["d"], ["e"]]
    cost = {"a": 50, "b": 40, "c": 20, "d": 90, "e": 300}
    # a+b fit 100; c would pass it; d starts its own; e is over the limit alone, but still a chain
    assert pooled(batches, lambda b: cost[b[0]], 100) == [[["a"], ["b"]], [["c"]], [["d"]], [["e"]]]
    assert pooled(batches, lambda b: cost[b[0]], 0) == [[b] for b in batches]
    assert pooled(batches, lambda b: 0, 0) == [batches]  # nothing to decode: nothing to wait for


def test_the_deal_gives_each_chain_to_one_worker_costliest_first_to_the_least_loaded():
    loads = [0, 0, 0]
    # 300 to rank 0, the 100s to ranks 1 and 2, then each to the least loaded (the lower rank on a tie)
    assert deal([100, 300, 100, 90, 50, 10], loads) == [1, 0, 2, 1, 2, 2]
    assert loads == [300, 190, 160]
    assert deal([40, 40], loads) == [2, 1]  # the ledger goes on
    # Enough chains of similar size: each worker's padded tokens within 10% of equal.
    import random
    rng = random.Random(0)
    for n in (2, 3, 8):
        costs = [rng.randint(500, 1024) for _ in range(EXCHANGE_CHAINS * n)]
        loads = [0] * n
        owners = deal(costs, loads)
        assert sorted(set(owners)) == list(range(n)) and sum(loads) == sum(costs)
        assert max(loads) <= 1.1 * sum(costs) / n


def test_one_process_computes_every_chain_in_order_each_from_an_empty_carry():
    seen, stored = [], []

    def compute(batch, carry):
        seen.append((batch, dict(carry)))
        carry[batch] = True
        return {batch: len(batch)}
    done = compute_chains(Group(), [["a", "bb"], ["ccc"]], len, compute, stored.append, lambda b: None)
    assert done == {"a": 1, "bb": 2, "ccc": 3}
    assert seen == [("a", {}), ("bb", {"a": True}), ("ccc", {})]  # carry within a chain, never across
    assert stored == [{"a": 1}, {"bb": 2}, {"ccc": 3}]  # batch by batch


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
