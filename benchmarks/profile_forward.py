"""Where one scoring window's time goes: the engine's forward on a full 1,024-token window, split
by kind of work with torch.profiler, against this machine's matmul peak.

    python benchmarks/profile_forward.py [--model-dir DIR] [--dtype float32] [--repeat 5]

The window is what WikiText costs per 1,024 tokens: the fused GPT-2 forward and the LM head at
every position (`forward.score_batch`). The table gives each kind's share of the time and the
FLOP/s of the matmuls alone, and the MFU the window would reach if everything that is not a matmul
(attention, GELU, layer norms, the log-softmax folding) took no time at all: the ceiling that no
scheduling of the same kernels can pass.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # for bench_vs_lm_eval's peak measurement

KINDS = {  # profiler op name -> kind of work; anything else is "other"
    "aten::addmm": "matmul", "aten::addmm_": "matmul", "aten::mm": "matmul", "aten::bmm": "matmul",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
    "aten::_scaled_dot_product_flash_attention": "attention",
    "aten::gelu": "gelu", "aten::native_layer_norm": "layer norm",
    "aten::amax": "log-softmax folding", "aten::exp_": "log-softmax folding", "aten::sub_": "log-softmax folding",
    "aten::sum": "log-softmax folding", "aten::argmax": "log-softmax folding",
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", default="/tmp/gpt2eval-bench/model-small",
                   help="a GPT-2 model folder (bench_vs_lm_eval.py writes a random small one here)")
    p.add_argument("--tokenizer", default=str(HERE.parent.parent / "shared" / "tokenizers" / "gpt2"),
                   help="GPT-2 tokenizer, for writing the random model when --model-dir has none")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeat", type=int, default=5, help="timed windows (after one warm-up)")
    args = p.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from gpt2eval.engine.encode import ScoreItem
    from gpt2eval.engine.forward import score_batch
    from gpt2eval.models.load import load, make_random_model
    from bench_vs_lm_eval import measure_peaks
    from gpt2eval.cli.costs import causal_pairs, forward_flops
    if not (Path(args.model_dir) / "config.json").exists():
        make_random_model(args.model_dir, args.tokenizer, size="small", seed=0)
    lm = load(args.model_dir, device="cpu", dtype=args.dtype)
    cfg = lm.model.config
    ids = torch.randint(0, cfg.vocab_size, (cfg.n_positions + 1,), generator=torch.Generator().manual_seed(0)).tolist()
    item = ScoreItem(tuple(ids[:-1]), tuple(ids[1:]))  # a full window, every position scored
    score_batch(lm.model, [item], lm.tokenizer.eos_token_id)  # warm-up
    walls, kinds = [], defaultdict(list)
    for _ in range(args.repeat):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            score_batch(lm.model, [item], lm.tokenizer.eos_token_id)
            walls.append(time.perf_counter() - t0)
        spent = defaultdict(float)
        for ev in prof.key_averages():
            spent[KINDS.get(ev.key, "other")] += ev.self_cpu_time_total / 1e6
        for k, v in spent.items():
            kinds[k].append(v)
    peak = measure_peaks({args.dtype}, 2.0)[args.dtype]  # the benchmark's own peak: best of 2048^2 and 4096^2
    n, d, layers, vocab = cfg.n_positions, cfg.n_embd, cfg.n_layer, cfg.vocab_size
    flops = forward_flops(layers, d, n, causal_pairs(n), n, vocab)
    matmul_flops = flops - 4 * d * layers * causal_pairs(n)  # all but attention's score and value products
    wall = statistics.median(walls)
    spent = {k: statistics.median(v) for k, v in kinds.items()}
    profiled = sum(spent.values())
    print(f"{args.model_dir}, {args.dtype}, {torch.get_num_threads()} threads; one window of {n} tokens, "
          f"every position scored: {flops / 1e9:.0f} GFLOP ({matmul_flops / 1e9:.0f} in weight matmuls)")
    print(f"wall {wall * 1e3:.0f} ms (median of {args.repeat}); matmul peak {peak / 1e9:.0f} GFLOP/s; "
          f"MFU {flops / wall / peak:.0%}\n")
    print("| work | ms | share |\n|---|---:|---:|")
    for k, v in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {v * 1e3:.0f} | {v / profiled:.0%} |")
    mm = spent.get("matmul", 0.0)
    print(f"\nmatmuls alone: {matmul_flops / mm / 1e9:.0f} GFLOP/s ({matmul_flops / mm / peak:.0%} of peak); "
          f"with everything else taking no time the window's MFU would be {flops / mm / peak:.0%}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
