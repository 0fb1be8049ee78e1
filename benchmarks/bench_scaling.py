"""Scale-out under torchrun: tokens forwarded and wall time, one worker against N, task by task.

    python benchmarks/bench_scaling.py --data-dir ../shared/data --tokenizer ../shared/tokenizers/gpt2 \
        [--tasks lambada,wikitext2,cbt_cn,cnn_dailymail] [--limit 40] [--n-layer 4 --n-embd 256] \
        [--workers 2] [--out DIR]

It writes a randomly initialised GPT-2 (its numbers are meaningless), then runs the real CLI on it,
each with --no-cache:
  - one plain process with one thread per worker's share of the machine (the unit a worker gets:
    a GPU, or here cores / N),
  - `python -m torch.distributed.run --nproc-per-node N` with the same threads per worker,
  - one plain process with all the threads (what a single user process gets on this machine).
For each task it prints the tokens forwarded by one process and by the N workers together (their
ratio must stay within 1.05: no work is done twice), each worker's share and how far the busiest
worker is above an equal share ("spread", in tokens forwarded), and the task's wall time
on rank 0 (model work, the workers' exchanges and scoring; not start-up and model loading, which
the end-to-end time includes). It checks that the runs' comparison.csv files are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_RATIO = 1.05  # tokens forwarded by all workers / by one process, on every task (issue 24)


def run(label: str, launcher: list[str], threads: int, args, model: Path, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [*launcher, str(REPO / "run_eval.py"), "--model", str(model), "--reference-size", "small",
           "--tasks", args.tasks, "--limit", str(args.limit), "--data-dir", args.data_dir, "--no-cache",
           "--no-progress", "--output", str(out), "--overwrite"]  # the folder is this benchmark's own, rerun
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    end_to_end = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
    res = json.loads((out / "results.json").read_text())
    return {"label": label, "workers": res["workers"], "threads_per_worker": threads, "end_to_end_s": end_to_end,
            "tasks": {name: {"tokens": t["tokens_forwarded"], "by_worker": t["tokens_forwarded_by_worker"],
                             "items_by_worker": t["items_computed_by_worker"], "wall_s": t["wall_s"]}
                      for name, t in res["tasks"].items()},
            "comparison": (out / "comparison.csv").read_text()}


def spread(by_worker: list[int]) -> float:
    """How far the busiest worker's tokens are above an equal share, in percent (0: equal)."""
    mean = sum(by_worker) / len(by_worker)
    return 100 * (max(by_worker) / mean - 1) if mean else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--tasks", default="lambada,wikitext2,cbt_cn,cnn_dailymail")
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="threads for the all-cores process")
    p.add_argument("--out", default="/tmp/gpt2eval-bench-scaling")
    args = p.parse_args()
    out = Path(args.out)
    model = out / "model"
    if not (model / "config.json").exists():
        subprocess.run([sys.executable, str(REPO / "run_eval.py"), "make-random-model", str(model), "--tokenizer",
                        args.tokenizer, "--n-layer", str(args.n_layer), "--n-embd", str(args.n_embd)],
                       check=True, capture_output=True)
    n, per_worker = args.workers, max(1, args.cores // args.workers)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"]
    one = run("1 worker", [sys.executable], per_worker, args, model, out / "one")
    many = run(f"{n} workers", torchrun, per_worker, args, model, out / "many")
    every = run("1 process, all cores", [sys.executable], args.cores, args, model, out / "all")
    print(f"model: random GPT-2, {args.n_layer} layers x {args.n_embd}; tasks {args.tasks}, --limit {args.limit}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {per_worker} thread(s) per worker")
    print(f"{'task':15s} {'tokens, 1':>10s} {f'tokens, {n}':>10s} {'ratio':>6s} {'tokens by worker':>20s} "
          f"{'items by worker':>16s} {'spread':>7s} {'wall 1 s':>9s} {f'wall {n} s':>9s} {'all cores s':>11s}")
    ratios = {}
    for name, a in one["tasks"].items():
        b, c = many["tasks"][name], every["tasks"][name]
        ratios[name] = sum(b["by_worker"]) / a["tokens"] if a["tokens"] else 1.0
        print(f"{name:15s} {a['tokens']:10d} {sum(b['by_worker']):10d} {ratios[name]:6.3f} "
              f"{'/'.join(map(str, b['by_worker'])):>20s} {'/'.join(map(str, b['items_by_worker'])):>16s} "
              f"{spread(b['by_worker']):6.1f}% {a['wall_s']:9.2f} {b['wall_s']:9.2f} {c['wall_s']:11.2f}")
    walls = [sum(t["wall_s"] for t in r["tasks"].values()) for r in (one, many, every)]
    print(f"{'all tasks':15s} {'':>10s} {'':>10s} {'':>6s} {'':>20s} {'':>16s} {'':>7s} {walls[0]:9.2f} "
          f"{walls[1]:9.2f} {walls[2]:11.2f}")
    print(f"end to end (start-up and model loading included): 1 worker {one['end_to_end_s']:.1f} s, {n} workers "
          f"{many['end_to_end_s']:.1f} s, 1 process on all cores {every['end_to_end_s']:.1f} s")
    same = one["comparison"] == many["comparison"]
    print(f"comparison.csv of {n} workers identical to one worker's: {same}; to the all-cores process's "
          f"(other thread count): {every['comparison'] == one['comparison']}")
    (out / "scaling.json").write_text(json.dumps({"runs": [{k: v for k, v in r.items() if k != "comparison"}
                                                            for r in (one, many, every)],
                                                   "ratios": ratios, "same": same}, indent=1))
    if not same:
        sys.exit("the runs' comparison.csv files differ")
    if max(ratios.values()) > MAX_RATIO:
        sys.exit(f"the workers forwarded more than {MAX_RATIO}x the tokens of one process: {ratios}")


if __name__ == "__main__":
    main()
