"""LAMBADA through the engine for one set of weights in three files: a transformers folder, a nanoGPT
ckpt.pt and an llm.c model .bin. Does a checkpoint get the fast paths a folder gets?

    python benchmarks/bench_checkpoints.py --limit 200 --repeats 3
    python benchmarks/bench_checkpoints.py --limit 50 --random-shape 6,384   # a random 6-layer, 384-wide GPT-2

The weights: tiny-lambada (../shared/models/tiny-lambada) or, with --random-shape L,D, a random GPT-2
of that shape. The nanoGPT file has its vocabulary padded to 50,304 (small random rows, as after
training from scratch) and is scored as nanoGPT scores it (exact GELU, all 50,304 rows); the llm.c
file (version 3, float32) as llm.c does (tanh GELU, 50,257 rows). `unfused` is the nanoGPT file with
a no-op forward hook on the model, which turns the fused forward and decode off (forward.fused_gpt2):
what the checkpoint would cost without them. Each repeat runs every variant once, in turn; the
table gives the best and the median of the task's wall time (task_run.run_task: every request of
`--limit` passages, the target's log-likelihood and both stop-word decodes), the median CPU time of
the process over the task (all its threads), and the load time. On a machine shared with other work
the wall time says little: on this project's 2 shared cores one and the same run took from 0.7 s to
37 s as other jobs came and went; CPU time varies far less. No result cache. Writes the files and
bench.json (every run's times) under --out.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from own_gpt2 import TINY, tiny_gpt, tiny_state, write_llmc, write_nanogpt  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--tokenizer", default=str(REPO.parent / "shared" / "tokenizers" / "gpt2"))
    p.add_argument("--limit", type=int, default=200, help="LAMBADA passages (default 200)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--random-shape", default=None, metavar="L,D", help="a random GPT-2 of L layers, D wide")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1: CPU time is not inflated by "
                   "threads spinning while other jobs hold the cores)")
    p.add_argument("--out", default="/tmp/gpt2eval-bench/checkpoints")
    return p.parse_args(argv)


def write_files(args, out: Path) -> dict[str, Path]:
    import torch
    from gpt2eval.models.load import make_random_model
    folder = TINY
    if args.random_shape:
        layers, width = (int(x) for x in args.random_shape.split(","))
        folder = make_random_model(out / "hf", args.tokenizer, n_layer=layers, n_embd=width, seed=0)
    cfg = json.loads((folder / "config.json").read_text())
    shape = dict(n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"], block_size=cfg["n_positions"])
    torch.manual_seed(0)
    return {"hf": folder,
            "nanogpt": write_nanogpt(out / "ckpt.pt", tiny_gpt(50304, folder=folder)),
            "llmc": write_llmc(out / "model_00000000.bin", tiny_state(folder), **shape)}


def run_once(name: str, path: Path, args, task, ds) -> dict:
    from gpt2eval.engine.engine import Engine
    from gpt2eval.engine.forward import fused_gpt2
    from gpt2eval.models.load import load
    from gpt2eval.task_run import run_task
    t0 = time.perf_counter()
    lm = load(str(path), device=args.device, tokenizer=None if name == "hf" else args.tokenizer)
    loaded = time.perf_counter() - t0
    if name == "unfused":
        lm.model.transformer.register_forward_hook(lambda *a: None)  # any hook: the fused path would bypass it
    engine = Engine(lm.model, lm.tokenizer, progress=False)
    cpu0 = time.process_time()
    result = run_task(task, ds, engine, args.limit, None, lambda msg: None)
    return {"load_s": loaded, "wall_s": result["wall_s"], "cpu_s": time.process_time() - cpu0, "ppl": result["metrics"]["ppl"],
            "tokens": result["tokens_forwarded"], "fused": fused_gpt2(lm.model), "blocked_head": engine.share_prefixes,
            "vocab_rows": lm.model.get_output_embeddings().weight.shape[0]}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    from gpt2eval.api.data import DataSource
    from gpt2eval.api.plugins import select
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = write_files(args, out)
    files["unfused"] = files["nanogpt"]
    task = select(["lambada"])[0]
    ds = task.load(DataSource(args.data_dir))
    runs: dict[str, list[dict]] = {name: [] for name in files}
    for _ in range(args.repeats):
        for name, path in files.items():
            runs[name].append(run_once(name, path, args, task, ds))
    head = f"{'variant':8s} {'file':20s} {'rows':>6s} {'fused':>5s} {'load s':>7s} {'best s':>7s} {'median s':>9s} " \
           f"{'cpu s':>7s} {'tok/s best':>10s} {'ppl':>9s}"
    lines = [f"LAMBADA --limit {args.limit}, {args.repeats} repeats, device {args.device}, threads "
             f"{args.threads or 'default'}, weights {args.random_shape or 'tiny-lambada'}", head, "-" * len(head)]
    for name, rs in runs.items():
        walls = [r["wall_s"] for r in rs]
        lines.append(f"{name:8s} {files[name].name:20s} {rs[0]['vocab_rows']:6d} {str(rs[0]['fused']):>5s} "
                     f"{min(r['load_s'] for r in rs):7.2f} {min(walls):7.2f} {statistics.median(walls):9.2f} "
                     f"{statistics.median(r['cpu_s'] for r in rs):7.2f} "
                     f"{rs[0]['tokens'] / min(walls):10.0f} {rs[0]['ppl']:9.3f}")
    for what, key, pick in (("best wall", "wall_s", min), ("median CPU", "cpu_s", statistics.median)):
        t = {name: pick(r[key] for r in rs) for name, rs in runs.items()}
        lines.append(f"{what} over the transformers folder's: nanoGPT {t['nanogpt'] / t['hf']:.3f}, "
                     f"llm.c {t['llmc'] / t['hf']:.3f}, nanoGPT unfused {t['unfused'] / t['hf']:.3f}")
    print("\n".join(lines))
    (out / "bench.json").write_text(json.dumps({"args": vars(args), "runs": runs, "files": {k: str(v) for k, v in
                                                                                            files.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
