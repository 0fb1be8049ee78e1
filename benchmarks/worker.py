"""One timed benchmark run in its own process: one harness, one workload, one dtype.

    python benchmarks/worker.py {gpt2eval,lm_eval} {lambada,wikitext} --model-dir DIR --data-dir DIR
        --n N --dtype float32 --out result.json

The parent (bench_vs_lm_eval.py) reads the process's peak RSS from the operating system; this
process writes what only it knows: its evaluation wall time (model loaded, first request built ->
metrics computed), the metrics, and each document's log-likelihood (for the agreement check).
Only the harness under test is imported here.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lm_eval_tasks import bench_data  # noqa: E402  (stdlib only)

LM_EVAL_TASK = {"lambada": "gpt2eval_bench_lambada", "wikitext": "gpt2eval_bench_wikitext"}


def run_gpt2eval(args) -> dict:
    import torch

    from gpt2eval.api.data import DataSource
    from gpt2eval.engine.engine import Engine
    from gpt2eval.models.load import load
    from gpt2eval.api.requests import RollingLoglikelihood
    from gpt2eval.api.plugins import select
    t0 = time.perf_counter()
    lm = load(args.model_dir, device=args.device, dtype=args.dtype)
    engine = Engine(lm.model, lm.tokenizer, batch_size=args.batch_size, progress=False)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.workload == "lambada":
        task = select(["lambada"])[0]  # the task plugin's own split and prompt
        examples = task.load(DataSource(args.data_dir)).examples[:args.n]
        requests = task.requests(examples)["target"]  # log p(last word | passage)
        results = engine.run(requests, desc="lambada")
        per_doc = [r.logprob for r in results]
        metrics = {"perplexity": math.exp(-sum(per_doc) / len(per_doc)),
                   "acc": sum(r.is_greedy for r in results) / len(results)}
        decisions = [r.is_greedy for r in results]
    else:
        pages = bench_data.wikitext_pages(args.data_dir)[:args.n]
        requests = [RollingLoglikelihood(bench_data.wikitext_detokenizer({"page": p})) for p in pages]
        results = engine.run(requests, desc="wikitext")
        per_doc = [r.logprob for r in results]
        words = sum(bench_data.word_count(p) for p in pages)
        n_bytes = sum(len(p.encode("utf-8")) for p in pages)
        nll = -sum(per_doc)
        metrics = {"word_perplexity": math.exp(nll / words), "byte_perplexity": math.exp(nll / n_bytes),
                   "bits_per_byte": nll / n_bytes / math.log(2)}
        decisions = []
    eval_s = time.perf_counter() - t0
    return {"load_s": load_s, "eval_s": eval_s, "metrics": metrics, "per_doc": per_doc, "decisions": decisions,
            "threads": torch.get_num_threads(), "engine_stats": asdict(engine.stats)}


def run_lm_eval(args) -> dict:
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    t0 = time.perf_counter()
    lm = HFLM(pretrained=args.model_dir, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    load_s = time.perf_counter() - t0
    name = LM_EVAL_TASK[args.workload]
    t0 = time.perf_counter()
    manager = TaskManager(include_path=str(HERE / "lm_eval_tasks"), include_defaults=False,
                          metadata={"data_dir": str(args.data_dir)})
    out = simple_evaluate(model=lm, tasks=[name], task_manager=manager, limit=args.n, bootstrap_iters=0,
                          log_samples=True)
    eval_s = time.perf_counter() - t0
    metrics = {k.split(",")[0]: v for k, v in out["results"][name].items()
               if "," in k and "stderr" not in k and isinstance(v, float)}
    samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    if args.workload == "lambada":
        per_doc = [float(s["resps"][0][0][0]) for s in samples]
        decisions = [bool(s["resps"][0][0][1]) for s in samples]
    else:
        per_doc = [float(s["resps"][0][0]) for s in samples]
        decisions = []
    return {"load_s": load_s, "eval_s": eval_s, "metrics": metrics, "per_doc": per_doc, "decisions": decisions,
            "threads": torch.get_num_threads()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("harness", choices=["gpt2eval", "lm_eval"])
    p.add_argument("workload", choices=["lambada", "wikitext"])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--n", type=int, required=True, help="passages (lambada) or articles (wikitext)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", default="auto")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.batch_size != "auto":
        args.batch_size = int(args.batch_size)
    result = (run_gpt2eval if args.harness == "gpt2eval" else run_lm_eval)(args)
    result.update(harness=args.harness, workload=args.workload, dtype=args.dtype, n=args.n,
                  batch_size=args.batch_size)
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
