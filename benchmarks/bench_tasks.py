"""Whole tasks as users run them, against lm-evaluation-harness's nearest task; and how often the
shared tokens of a multiple-choice workload are forwarded.

    python benchmarks/bench_tasks.py --data-dir ../shared/data --lambada-n 300

  lambada   `python run_eval.py --tasks lambada --limit N --no-cache` in its own process: all four
            metrics (ppl, acc, acc_last_token, and the stop-word-filtered decode), default batching
            (--batch-size auto), against lm-eval's lambada_openai prompt (benchmarks/lm_eval_tasks)
            at its batch size 16, which computes perplexity and accuracy only: it has no decode.
            Times: the process (interpreter start to exit) and the evaluation (gpt2eval: the task's
            wall_s in results.json; lm-eval: simple_evaluate). Tokens: results.json's
            prompt_tokens_forwarded (scoring + prefill positions) over unique_prompt_tokens (the
            prefix tree of the task's prompts): how many times each passage is forwarded.
  mc        mc_workload.py: CBT-shaped questions (20 sentences, 10 candidates) from CBT's own books,
            through the engine with shared prefixes and with every request forwarded whole: tokens
            forwarded over unique tokens, and the wall time of each.
bench_vs_lm_eval.py keeps the log-likelihood-only comparison (LAMBADA without its decode, WikiText).
Writes tasks.json and tasks.md to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_vs_lm_eval import run_child  # noqa: E402

import mc_workload  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("GPT2EVAL_DATA_DIR", str(REPO.parent / "shared" / "data")))
    p.add_argument("--tokenizer", default=str(REPO.parent / "shared" / "tokenizers" / "gpt2"))
    p.add_argument("--model-dir", default="/tmp/gpt2eval-bench/model-small",
                   help="random GPT-2 small model folder; written when missing")
    p.add_argument("--out", default="/tmp/gpt2eval-bench/tasks")
    p.add_argument("--lambada-n", type=int, default=300, help="LAMBADA passages (default 300)")
    p.add_argument("--lm-eval-batch-size", default="16")
    p.add_argument("--mc-questions", type=int, default=4,
                   help="multiple-choice questions, 10 candidates each (default 4: the baseline that forwards every "
                        "request whole costs about 7,500 tokens per question)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def lambada(args, out: Path) -> dict:
    run_dir = out / "gpt2eval-lambada"
    cmd = [sys.executable, str(REPO / "run_eval.py"), "--model", args.model_dir, "--tasks", "lambada",
           "--limit", str(args.lambada_n), "--data-dir", args.data_dir, "--no-cache", "--no-progress",
           "--dtype", args.dtype, "--device", args.device, "--output", str(run_dir),
           "--overwrite"]  # the folder is this benchmark's own, written anew by each run
    ours = run_child(cmd, out / "gpt2eval-lambada.log")
    task = json.loads((run_dir / "results.json").read_text())["tasks"]["lambada"]
    ours.update(eval_s=task["wall_s"], metrics=task["metrics"],
                **{k: task[k] for k in ("tokens_forwarded", "prompt_tokens_forwarded", "unique_prompt_tokens",
                                        "decode_tokens", "decode_forwarded", "prefill_tokens")})
    res_file = out / "lm_eval-lambada.json"
    cmd = [sys.executable, str(HERE / "worker.py"), "lm_eval", "lambada", "--model-dir", args.model_dir,
           "--data-dir", args.data_dir, "--n", str(args.lambada_n), "--dtype", args.dtype, "--device", args.device,
           "--batch-size", args.lm_eval_batch_size, "--out", str(res_file)]
    theirs = run_child(cmd, out / "lm_eval-lambada.log")
    theirs.update({k: v for k, v in json.loads(res_file.read_text()).items() if k in ("eval_s", "metrics")})
    return {"n": args.lambada_n, "gpt2eval": ours, "lm_eval": theirs,
            "speedup_eval": theirs["eval_s"] / ours["eval_s"], "speedup_process": theirs["process_s"] / ours["process_s"],
            "passages_forwarded": ours["prompt_tokens_forwarded"] / ours["unique_prompt_tokens"]}


def multiple_choice(args) -> dict:
    from gpt2eval.engine.engine import Engine
    from gpt2eval.models.load import load
    lm = load(args.model_dir, device=args.device, dtype=args.dtype)
    reqs = mc_workload.requests(Path(args.data_dir) / "cbt" / "cbt_valid.txt", args.mc_questions)
    rows = {}
    for name, share in (("shared", True), ("whole", False)):
        engine = Engine(lm.model, lm.tokenizer, progress=False, share_prefixes=share)
        t0 = time.perf_counter()
        results = engine.run(reqs)
        wall = time.perf_counter() - t0
        rows[name] = {"wall_s": wall, "tokens_forwarded": engine.stats.tokens_forwarded,
                      "unique_prompt_tokens": engine.stats.unique_prompt_tokens,
                      "logprobs": [r.logprob for r in results]}
    shared, whole = rows["shared"], rows["whole"]
    return {"questions": args.mc_questions, "requests": len(reqs), **{k: {x: v for x, v in r.items() if x != "logprobs"}
                                                                    for k, r in rows.items()},
            "forwarded_over_unique": shared["tokens_forwarded"] / shared["unique_prompt_tokens"],
            "whole_over_unique": whole["tokens_forwarded"] / whole["unique_prompt_tokens"],
            "max_logprob_diff": max(abs(a - b) for a, b in zip(shared["logprobs"], whole["logprobs"])),
            "speedup": whole["wall_s"] / shared["wall_s"]}


def render(summary: dict) -> str:
    lam, mc = summary["lambada"], summary["mc"]
    ours, theirs = lam["gpt2eval"], lam["lm_eval"]
    return "\n".join([
        f"Whole tasks, {summary['dtype']} on {summary['device']} ({os.cpu_count()} cores; load average "
        f"{summary['load_at_start'][0]:.1f} at start, {summary['load_at_end'][0]:.1f} at end; other processes "
        f"kept {ours['others_cores']:.2f} / {theirs['others_cores']:.2f} cores busy during the two runs)", "",
        f"| LAMBADA, {lam['n']} passages | evaluation s | process s | metrics |", "|---|---:|---:|---|",
        f"| gpt2eval, the whole task (4 metrics, with the stop-word decode) | {ours['eval_s']:.1f} | "
        f"{ours['process_s']:.1f} | {', '.join(f'{k}={v:.4g}' for k, v in ours['metrics'].items())} |",
        f"| lm-eval lambada_openai, batch size {summary['lm_eval_batch_size']} (no decode) | {theirs['eval_s']:.1f} | "
        f"{theirs['process_s']:.1f} | {', '.join(f'{k}={v:.4g}' for k, v in theirs['metrics'].items())} |",
        f"| gpt2eval speed-up | {lam['speedup_eval']:.2f}x | {lam['speedup_process']:.2f}x | |", "",
        f"LAMBADA tokens: {ours['prompt_tokens_forwarded']} prompt positions forwarded for "
        f"{ours['unique_prompt_tokens']} unique prompt tokens ({lam['passages_forwarded']:.3f}x), plus "
        f"{ours['decode_tokens']} decode-step positions, of which {ours['decode_forwarded']} computed (rows of one "
        f"passage that agree are computed once); {ours['prefill_tokens']} prefilled for the decode.", "",
        f"Multiple choice, {mc['questions']} CBT-shaped questions x 10 candidates ({mc['requests']} requests): "
        f"shared prefixes forward {mc['shared']['tokens_forwarded']} tokens = {mc['forwarded_over_unique']:.3f}x the "
        f"{mc['shared']['unique_prompt_tokens']} unique ones (every request whole: {mc['whole_over_unique']:.2f}x); "
        f"{mc['shared']['wall_s']:.1f} s against {mc['whole']['wall_s']:.1f} s ({mc['speedup']:.2f}x); largest "
        f"log-likelihood difference {mc['max_logprob_diff']:.2g}."])


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from gpt2eval.models.load import make_random_model
    if not (Path(args.model_dir) / "config.json").exists():
        print(f"writing the random GPT-2 small model to {args.model_dir}", flush=True)
        make_random_model(args.model_dir, args.tokenizer, size="small", seed=0)
    summary = {"dtype": args.dtype, "device": args.device, "lm_eval_batch_size": args.lm_eval_batch_size,
               "load_at_start": os.getloadavg()}
    print("running LAMBADA (gpt2eval's whole task, then lm-eval) ...", flush=True)
    summary["lambada"] = lambada(args, out)
    print("running the multiple-choice workload ...", flush=True)
    summary["mc"] = multiple_choice(args)
    summary["load_at_end"] = os.getloadavg()
    (out / "tasks.json").write_text(json.dumps(summary, indent=1))
    text = render(summary)
    (out / "tasks.md").write_text(text + "\n")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
