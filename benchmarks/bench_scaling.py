"""Scaling efficiency of torchrun data parallelism: work per second with N workers against one.

    python benchmarks/bench_scaling.py --data-dir ../shared/data --tokenizer ../shared/tokenizers/gpt2 \
        [--tasks lambada,wikitext2] [--limit 40] [--n-layer 4 --n-embd 256] [--workers 2] [--out DIR]

It writes a randomly initialised GPT-2 (its numbers are meaningless), then runs the real CLI on it:
  - one plain process with one thread per worker's share of the machine (the unit a worker gets:
    a GPU, or here cores / N),
  - `python -m torch.distributed.run --nproc-per-node N` with the same threads per worker,
  - one plain process with all the threads (what a single user process gets on this machine),
each with --no-cache, and checks that the first two give identical comparison.csv files. Work is the tokens
forwarded by all workers (results.json); its rate is over the tasks' wall time on rank 0, which
includes rank 0's wait for the others' answers but not process start-up and model loading, which
the end-to-end wall time (also printed) does include. Efficiency = rate(N workers) / (N x rate(one)).
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


def run(label: str, launcher: list[str], threads: int, args, model: Path, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [*launcher, str(REPO / "run_eval.py"), "--model", str(model), "--reference-size", "small",
           "--tasks", args.tasks, "--limit", str(args.limit), "--data-dir", args.data_dir, "--no-cache",
           "--no-progress", "--output", str(out)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    end_to_end = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
    res = json.loads((out / "results.json").read_text())
    tasks = res["tasks"].values()
    tokens = sum(t["tokens_forwarded"] for t in tasks)
    wall = sum(t["wall_s"] for t in tasks)
    return {"label": label, "workers": res["workers"], "threads_per_worker": threads, "tokens": tokens,
            "items": sum(t["items_computed"] for t in tasks),
            "items_by_worker": [sum(t["items_computed_by_worker"][r] for t in tasks) for r in range(res["workers"])],
            "tasks_wall_s": wall, "tokens_per_s": tokens / wall, "end_to_end_s": end_to_end,
            "comparison": (out / "comparison.csv").read_text()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--tasks", default="lambada,wikitext2")
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
    runs = [run("1 worker", [sys.executable], per_worker, args, model, out / "one"),
            run(f"{n} workers", torchrun, per_worker, args, model, out / "many"),
            run("1 process, all cores", [sys.executable], args.cores, args, model, out / "all")]
    one, many, every = runs
    same = one["comparison"] == many["comparison"]
    print(f"model: random GPT-2, {args.n_layer} layers x {args.n_embd}; tasks {args.tasks}, --limit {args.limit}; "
          f"{os.cpu_count()} cores")
    print(f"{'run':22s} {'workers':>7s} {'threads':>7s} {'tokens':>8s} {'items/worker':>14s} {'tasks s':>8s} "
          f"{'tok/s':>8s} {'end-to-end s':>12s}")
    for r in runs:
        print(f"{r['label']:22s} {r['workers']:7d} {r['threads_per_worker']:7d} {r['tokens']:8d} "
              f"{'/'.join(map(str, r['items_by_worker'])):>14s} {r['tasks_wall_s']:8.2f} {r['tokens_per_s']:8.0f} "
              f"{r['end_to_end_s']:12.1f}")
    speedup = many["tokens_per_s"] / one["tokens_per_s"]
    print(f"{n} workers against 1 (same threads each): {speedup:.2f}x work per second, scaling efficiency "
          f"{100 * speedup / n:.0f}%; against one process on all {args.cores} cores: "
          f"{many['tokens_per_s'] / every['tokens_per_s']:.2f}x")
    print(f"comparison.csv of {n} workers identical to one worker's: {same}; to the all-cores process's "
          f"(other thread count): {every['comparison'] == one['comparison']}")
    (out / "scaling.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "comparison"} for r in runs]
                                                 + [{"speedup": speedup, "efficiency": speedup / n, "same": same}],
                                                 indent=1))
    if not same:
        sys.exit("the runs' comparison.csv files differ")


if __name__ == "__main__":
    main()
