"""Generation measurements through the engine API (Engine + the task plugins' Generation requests).

    python benchmarks/bench_generation.py --model-dir DIR --data-dir DIR [--limit 8] --out gen.json

- CoQA: prefix reuse on and off (each story's tokens forwarded once per batch, or in every prompt):
  prompt tokens forwarded ("prefill") and wall time; the outputs must be the same.
- TriviaQA and CNN/Daily Mail: batched (--batch-size auto) against one request at a time.
Without those task plugins, synthetic prompts (LAMBADA contexts, 32 greedy tokens) stand in and
the output says so. A random model rarely stops early, so most requests decode their full budget.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def task_requests(name: str, data, limit: int | None):
    from gpt2eval.api.answers import flatten
    from gpt2eval.api.requests import Generation
    from gpt2eval.api.plugins import select
    task = select([name])[0]
    examples = task.load(data).examples
    examples = examples[:limit] if limit else examples
    return [r for r in flatten(name, task.requests(examples)) if isinstance(r, Generation)]


def synthetic_requests(data, n: int):
    from gpt2eval.api.requests import Generation
    from gpt2eval.api.plugins import select
    lambada = select(["lambada"])[0]
    return [Generation(ctx, 32, seed_key=f"synthetic/{i}") for i, (ctx, _) in
            enumerate(lambada.load(data).examples[:n])]


def measure(lm, requests, *, batch_size, reuse_prefix: bool = True) -> dict:
    from gpt2eval.engine.engine import Engine

    engine = Engine(lm.model, lm.tokenizer, batch_size=batch_size, progress=False)
    t0 = time.perf_counter()
    results = engine.generate(requests, reuse_prefix=reuse_prefix)
    wall = time.perf_counter() - t0
    return {"requests": len(requests), "wall_s": wall, "prefill_tokens": engine.stats.prefill_tokens,
            "generated_tokens": sum(r.n_tokens for r in results), "texts": [r.raw_text for r in results]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--limit", type=int, default=8, help="TriviaQA questions and CNN/DM articles")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    from gpt2eval.api.data import DataSource
    from gpt2eval.errors import UserError
    from gpt2eval.models.load import load
    data = DataSource(args.data_dir)
    lm = load(args.model_dir, device=args.device, dtype=args.dtype)
    plans, source = [], "task plugins coqa, triviaqa, cnn_dailymail"
    try:
        coqa = task_requests("coqa", data, None)
        plans.append(("coqa", coqa, [("prefix reuse", "auto", True), ("no prefix reuse", "auto", False)]))
        for name in ("triviaqa", "cnn_dailymail"):
            reqs = task_requests(name, data, args.limit)
            plans.append((name, reqs, [("batched (auto)", "auto", True), ("one at a time", 1, True)]))
    except UserError as e:  # the generation tasks are not there (yet)
        source = f"SYNTHETIC prompts (LAMBADA contexts, 32 greedy tokens): {e}"
        plans = [("synthetic", synthetic_requests(data, 4 * args.limit),
                  [("batched (auto)", "auto", True), ("one at a time", 1, True)])]
    measure(lm, plans[0][1][:2], batch_size="auto")  # warm-up: one-off kernel set-up is not measured
    rows = []
    for workload, requests, variants in plans:
        first = None
        for variant, bs, reuse in variants:
            row = {"workload": workload, "variant": variant, **measure(lm, requests, batch_size=bs, reuse_prefix=reuse)}
            first = first or row["texts"]
            row["same_outputs"] = row["texts"] == first
            del row["texts"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps({"source": source, "dtype": args.dtype, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
