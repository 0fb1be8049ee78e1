"""gpt2eval against lm-evaluation-harness, side by side on one machine, in one run.

    pip install -e '.[bench]'
    python benchmarks/bench_vs_lm_eval.py --data-dir ../shared/data --tokenizer ../shared/tokenizers/gpt2

Both harnesses score the same randomly initialised GPT-2-small-shaped model (124M parameters, real
tokenizer; written to --model-dir on first use) on:
  lambada   the first N passages of OpenAI's lambada_test.jsonl (lm-eval's lambada_openai prompt)
  wikitext  the first K articles of WikiText-2 raw test, lm-eval's `wikitext` semantics: one
            document per article, disjoint 1024-token windows, lm-eval's de-tokenizer, and
            word_perplexity = exp(total NLL / words of the original article)
Each (harness, workload, dtype) runs in its own process (benchmarks/worker.py); its peak RSS is the
operating system's figure for that process (wait4 rusage). Definitions, printed with the results:
  tokens     GPT-2 tokens of the requests' text, encoded once, identical for both harnesses:
             context + continuation for LAMBADA, the de-tokenized article for WikiText
  tokens/s   tokens / evaluation wall time (model loaded -> metrics computed); the process wall
             time (interpreter start to exit) is shown too
  MFU        useful forward FLOPs (gpt2eval.cli.plan: 2*N*tokens forwarded + causal attention + LM head
             at scored positions only) / evaluation wall time / this machine's torch.mm peak in
             that dtype: the best of the measurements at the start and just before and after each
             run, so a slow moment of the machine cannot flatter a run. The same FLOPs for both
             harnesses. A virtual machine's speed drifts by 10-20% over minutes, so the best peak of
             a long benchmark is higher than the speed at which any one run could have gone; "MFU
             around" divides by the mean of the two peaks measured just before and just after the
             run instead. Both are printed.
  ceiling    FLOP/s of the model's own matmul shapes alone (its four per-layer weight shapes and
             an LM-head block, 1024 rows), as a share of the peak: the MFU of a forward pass that
             spent no time outside its matmuls. The real forward also runs attention, GELU,
             layer norms and the log-softmax, so its MFU is lower.
Writes bench.json and bench.md to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from lm_eval_tasks import bench_data  # noqa: E402

WORKLOADS = ("lambada", "wikitext")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="gpt2eval vs lm-evaluation-harness: speed, memory, agreement")
    p.add_argument("--data-dir", default=os.environ.get("GPT2EVAL_DATA_DIR", str(REPO.parent / "shared" / "data")))
    p.add_argument("--tokenizer", default=str(REPO.parent / "shared" / "tokenizers" / "gpt2"),
                   help="GPT-2 tokenizer folder (for the random model)")
    p.add_argument("--model-dir", default="/tmp/gpt2eval-bench/model-small",
                   help="random GPT-2 small model folder; written when missing")
    p.add_argument("--out", default="/tmp/gpt2eval-bench/results", help="folder for bench.json, bench.md, logs")
    p.add_argument("--workloads", default="lambada,wikitext")
    p.add_argument("--lambada-n", type=int, default=500, help="LAMBADA passages (default 500)")
    p.add_argument("--wikitext-k", type=int, default=6, help="WikiText-2 articles (default 6)")
    p.add_argument("--dtypes", default="float32,bfloat16", help="gpt2eval dtypes (float32 is the reference)")
    p.add_argument("--lm-eval-dtypes", default="float32", help="lm-eval dtypes ('' to skip lm-eval)")
    p.add_argument("--batch-size", default="auto", help="gpt2eval --batch-size (default auto)")
    p.add_argument("--lm-eval-batch-sizes", default="1,16",
                   help="lm-eval batch_size(s), each a separate run (default 1,16: lm-eval's default, and batched)")
    p.add_argument("--generation", action=argparse.BooleanOptionalAction, default=True,
                   help="also run benchmarks/bench_generation.py (CoQA prefix reuse, batched vs one at a time)")
    p.add_argument("--gen-limit", type=int, default=8, help="TriviaQA / CNN-DM examples for the generation part")
    p.add_argument("--repeat", type=int, default=1,
                   help="run every configuration R times and keep the fastest (the same for both harnesses)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--peak-seconds", type=float, default=3.0,
                   help="seconds of torch.mm for the peak measured at the start (half that before each run)")
    return p.parse_args(argv)


def busy_cpu_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (/proc/stat; 0 where there is none)."""
    try:
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_child(cmd: list[str], log: Path) -> dict:
    """Run one process: its wall time, peak RSS, and how busy other processes kept the machine
    meanwhile (others_cores: CPU seconds not spent by this process / wall seconds)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    load_before, busy_before = os.getloadavg()[0], busy_cpu_seconds()
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    others = busy_cpu_seconds() - busy_before - usage.ru_utime - usage.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed (exit {proc.returncode}); see {log}:\n"
                         + "".join(log.read_text().splitlines(keepends=True)[-15:]))
    return {"process_s": wall, "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
            "load_before": load_before, "load_after": os.getloadavg()[0], "others_cores": max(0.0, others / wall)}


def workload_requests(name: str, n: int, data_dir: str):
    """The requests gpt2eval's side sends (tokens and FLOPs are counted from these, for both sides)."""
    from gpt2eval.api.data import DataSource
    from gpt2eval.api.requests import RollingLoglikelihood
    from gpt2eval.api.plugins import select
    if name == "lambada":
        task = select(["lambada"])[0]
        examples = task.load(DataSource(data_dir)).examples[:n]
        return task.requests(examples)["target"]  # log p(last word | passage)
    pages = bench_data.wikitext_pages(data_dir)[:n]
    return [RollingLoglikelihood(bench_data.wikitext_detokenizer({"page": p})) for p in pages]


def model_shape(model_dir: str) -> tuple[int, int]:
    """(n_layer, n_embd) of the benchmarked model: the FLOPs are counted for its real shape."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return cfg["n_layer"], cfg["n_embd"]


def count_workload(requests, tokenizer, shape: tuple[int, int]) -> dict:
    from gpt2eval.cli.costs import count_work

    class Fixed:
        name = key = "bench"

        def requests(self, examples):
            return {"workload": requests}

    enc = lambda s: len(tokenizer(s, add_special_tokens=False)["input_ids"]) if s else 0  # noqa: E731
    tokens = sum(enc(r.text) if hasattr(r, "text") else enc(r.context.rstrip(" ")) + enc(
        r.context[len(r.context.rstrip(" ")):] + r.continuation) for r in requests)
    w = count_work(Fixed(), [None], tokenizer)
    return {"tokens": tokens, "flops": w.flops(*shape), "forwarded_tokens": w.forwarded_tokens,
            "scored_tokens": w.scored_tokens, "sequences": w.sequences}


def measure_peaks(dtypes: set[str], seconds: float = 3.0) -> dict:
    """Best torch.mm FLOP/s per dtype, over square matrices of 2048 and 4096."""
    from gpt2eval.cli.plan import measure_matmul_peak
    return {d: max(measure_matmul_peak(d, n, seconds / 2) for n in (2048, 4096)) for d in sorted(dtypes)}


def measure_gemm_ceiling(shape: tuple[int, int], dtype: str, seconds: float = 3.0, rows: int = 1024) -> float:
    """FLOP/s of the model's own matmul shapes at `rows` tokens, run back to back (best pass): per
    layer qkv, attention output, MLP in and MLP out, plus one 2048-entry LM-head block."""
    import torch

    from gpt2eval.models.load import DTYPES
    _, d = shape
    kinds = [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d), (d, 2048)]
    mats = [(torch.randn(rows, k, dtype=DTYPES[dtype]), torch.randn(k, n, dtype=DTYPES[dtype])) for k, n in kinds]
    flops = sum(2 * rows * k * n for k, n in kinds)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for a, b in mats:
            torch.mm(a, b)
        best = max(best, flops / (time.perf_counter() - t))
    return best


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    from gpt2eval.models.load import load_tokenizer, make_random_model
    if not (Path(args.model_dir) / "config.json").exists():
        print(f"writing the random GPT-2 small model to {args.model_dir}", flush=True)
        make_random_model(args.model_dir, args.tokenizer, size="small", seed=0)
    tokenizer = load_tokenizer(args.model_dir)
    shape = model_shape(args.model_dir)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    ours = [d for d in args.dtypes.split(",") if d]
    theirs = [d for d in args.lm_eval_dtypes.split(",") if d]
    load_at_start = os.getloadavg()
    print(f"load average at start: {load_at_start}; measuring torch.mm peaks ...", flush=True)
    peaks = measure_peaks(set(ours) | set(theirs), args.peak_seconds)
    ceilings = {d: measure_gemm_ceiling(shape, d, args.peak_seconds / 2) for d in peaks}
    print("peak matmul: " + ", ".join(f"{d} {p / 1e9:.0f} GFLOP/s" for d, p in peaks.items())
          + "; the model's own matmuls: " + ", ".join(f"{d} {c / 1e9:.0f}" for d, c in ceilings.items()), flush=True)
    configs = []
    for wl in workloads:
        n = args.lambada_n if wl == "lambada" else args.wikitext_k
        counts = count_workload(workload_requests(wl, n, args.data_dir), tokenizer, shape)
        configs += [(wl, n, counts, "lm_eval", d, bs) for d in theirs for bs in args.lm_eval_batch_sizes.split(",") if bs]
        configs += [(wl, n, counts, "gpt2eval", d, args.batch_size) for d in ours]
    tries: dict[int, list[dict]] = {i: [] for i in range(len(configs))}
    for rep in range(args.repeat):  # round after round, so that a drift in machine speed hits every run alike
        order = list(enumerate(configs))  # odd rounds backwards: no run always follows the same neighbour
        for i, (wl, n, counts, harness, dtype, bs) in (order if rep % 2 == 0 else order[::-1]):
            tag = f"{wl}-{harness}-{dtype}-bs{bs}"
            res_file = out / "logs" / f"{tag}.json"
            cmd = [sys.executable, str(HERE / "worker.py"), harness, wl, "--model-dir", args.model_dir,
                   "--data-dir", args.data_dir, "--n", str(n), "--dtype", dtype, "--device", args.device,
                   "--batch-size", str(bs), "--out", str(res_file)]
            print(f"running {tag} (round {rep + 1}/{args.repeat}) ...", flush=True)
            peak = measure_peaks({dtype}, args.peak_seconds / 2)[dtype]  # the machine's speed drifts
            peaks[dtype] = max(peaks[dtype], peak)
            proc = run_child(cmd, out / "logs" / f"{tag}.log")
            after = measure_peaks({dtype}, args.peak_seconds / 2)[dtype]
            peaks[dtype] = max(peaks[dtype], after)
            run = {**json.loads(res_file.read_text()), **proc, **counts, "peak_flops_before": peak,
                   "peak_flops_after": after}
            run["tokens_per_s"] = counts["tokens"] / run["eval_s"]
            run["mfu"] = counts["flops"] / run["eval_s"] / peaks[dtype]  # provisional: the best peak so far
            run["mfu_around"] = counts["flops"] / run["eval_s"] / ((peak + after) / 2)
            tries[i].append(run)
            print("  " + report.one_line(run), flush=True)
    runs = []
    for i in range(len(configs)):
        run = dict(min(tries[i], key=lambda r: r["eval_s"]))  # the fastest try of each configuration
        run["eval_s_all"] = [r["eval_s"] for r in tries[i]]
        run["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in tries[i])
        run["peak_flops"] = peaks[run["dtype"]]  # the best of every peak measured in this run
        run["mfu"] = run["flops"] / run["eval_s"] / run["peak_flops"]
        runs.append(run)
    generation = None
    if args.generation:
        gen_file = out / "logs" / "generation.json"
        cmd = [sys.executable, str(HERE / "bench_generation.py"), "--model-dir", args.model_dir,
               "--data-dir", args.data_dir, "--limit", str(args.gen_limit), "--device", args.device,
               "--out", str(gen_file)]
        print("running the generation measurements ...", flush=True)
        proc = run_child(cmd, out / "logs" / "generation.log")
        generation = {**json.loads(gen_file.read_text()), **proc}
    summary = {"machine": report.machine(), "peaks_flops": peaks, "gemm_ceiling_flops": ceilings,
               "model_shape": shape, "settings": vars(args), "runs": runs,
               "generation": generation, "load_at_start": load_at_start, "load_at_end": os.getloadavg()}
    (out / "bench.json").write_text(json.dumps(summary, indent=1))
    text = report.render(summary)
    (out / "bench.md").write_text(text)
    print("\n" + text)
    print(f"\nwritten: {out / 'bench.json'}, {out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
