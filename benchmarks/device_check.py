"""The first check on a machine with a GPU: is the fused forward right there, how fast are scoring
and generation for the four GPT-2 shapes, and what would the full paper reproduction take.

    python benchmarks/device_check.py --data-dir ../shared/data --out /tmp/device_check.json
    python benchmarks/device_check.py --quick          # a tiny CPU rehearsal of every step (tests)

1. Correctness, float32 and bfloat16: the engine's log-probabilities and greedy flags (fused GPT-2
   forward, shared-prefix path, decode continued from a log-likelihood forward) against
   transformers' own forward and log_softmax, on random GPT-2-small-shaped weights.
2. The token budget the engine computes for each size (free + reserved - allocated memory).
3. Per size (random weights, bfloat16 unless --dtype): scoring tokens/s for full 1,024-token
   windows and for short LAMBADA-like sequences, and the time of one decode step at the batch the
   engine forms for 256-token prompts (generation is bound by memory bandwidth, so it is measured,
   not derived from peak FLOP/s).
4. The projected time of the full reproduction per size: plan mode's counts of every task
   (gpt2eval.cli.plan.count_work on the real data) at those rates: scoring and prefill positions at the
   scoring rate of their length, decode steps (batched as the engine does) at the measured step time.
Sized to fit a few minutes of one GPU (not yet timed on one: no GPU has been lent to this project);
prints a table and writes --out as JSON.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIZES_TO_RUN = ("small", "medium", "large", "xl")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes on the CPU, a few seconds per step")
    p.add_argument("--device", default=None, help="default cuda (cpu with --quick)")
    p.add_argument("--dtype", default=None, help="dtype of the speed measurements (default bfloat16; float32 "
                   "with --quick)")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--tokenizer", default=str(REPO.parent / "shared" / "tokenizers" / "gpt2"))
    p.add_argument("--seconds", type=float, default=None, help="per measurement (default 4; 0.3 with --quick)")
    p.add_argument("--out", default="/tmp/gpt2eval-device-check.json")
    return p.parse_args(argv)


def random_model(size: str, device, dtype, quick: bool):
    from transformers import GPT2Config, GPT2LMHeadModel

    from gpt2eval.models.sizes import SIZES
    layers, width = (2, 64) if quick else SIZES[size][2]
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=layers, n_embd=width, n_head=max(1, width // 64), vocab_size=50257, n_positions=1024)
    with torch.device(device):
        model = GPT2LMHeadModel(cfg)
    return model.to(dtype).eval()


class FakeTokenizer:
    """Enough of a tokenizer for the engine on token ids (decoding for stop checks only)."""
    eos_token_id = 50256

    def decode(self, ids):
        return " ".join(map(str, ids))

    def __len__(self):
        return 50257


def check_correctness(device, quick: bool) -> list[dict]:
    from gpt2eval.engine.encode import ScoreItem
    from gpt2eval.engine.engine import Engine
    rng, rows = random.Random(0), []
    for dtype in (torch.float32, torch.bfloat16):
        model = random_model("small", device, dtype, quick)
        engine = Engine(model, FakeTokenizer(), progress=False)
        context = [rng.randrange(50256) for _ in range(300)]
        items = [ScoreItem(tuple(context + [rng.randrange(50256) for _ in range(k)]), tuple(
            rng.randrange(50256) for _ in range(k + 1))) for k in range(1, 11)]  # 10 candidates after one context
        items = [ScoreItem(it.input_ids, tuple(it.input_ids[301:]) + it.targets[-1:]) for it in items]
        shared = engine.score(items)
        whole = Engine(model, FakeTokenizer(), progress=False, share_prefixes=False).score(items)
        with torch.inference_mode():
            worst, flips = 0.0, 0
            for it, (lp, greedy), (lp_whole, _) in zip(items, shared, whole):
                logits = model(torch.tensor([it.input_ids], device=device)).logits[0].float()
                ref = torch.log_softmax(logits, -1)
                pos = range(len(it.input_ids) - len(it.targets), len(it.input_ids))
                ref_lp = [ref[p, t].item() for p, t in zip(pos, it.targets)]
                ref_greedy = [bool(logits[p].argmax() == t) for p, t in zip(pos, it.targets)]
                worst = max([worst] + [abs(a - b) for a, b in zip(lp, ref_lp)] + [abs(a - b) for a, b in zip(lp_whole, ref_lp)])
                flips += sum(a != b for a, b in zip(greedy, ref_greedy))
        same_decodes = check_context_decode(model, rng)
        tol = 1e-3 if dtype == torch.float32 else 0.15  # bfloat16: transformers' own forward differs by rounding
        exact = dtype == torch.float32
        rows.append({"dtype": str(dtype).split(".")[1], "max_abs_logprob_diff": worst, "greedy_flips": flips,
                     "same_decodes": same_decodes,
                     "ok": worst <= tol and (not exact or (flips == 0 and same_decodes == 1.0))})
    return rows


def check_context_decode(model, rng) -> float:
    """Share of greedy decodes continued from a log-likelihood forward (forward.score_batch's keys/
    values and last logits, decoded by fused_decode.py) that equal decodes prefilled and stepped by
    transformers' own forward (a no-op hook turns the fused paths off)."""
    from gpt2eval.engine.decode import generate_batch
    from gpt2eval.engine.encode import ScoreItem
    from gpt2eval.engine.forward import score_batch
    from gpt2eval.api.requests import Generation
    ctxs = [[rng.randrange(50256) for _ in range(rng.randint(20, 120))] for _ in range(8)]
    items = [ScoreItem(tuple(c), (rng.randrange(50256),)) for c in ctxs]  # context = all ids but the target's
    seeds = score_batch(model, items, 50256, keep={b: len(c) for b, c in enumerate(ctxs)}).seeds
    reqs = [Generation("", 8)] * len(ctxs)
    kw = {"seed": 0, "suppress_memo": {}}
    continued = generate_batch(model, FakeTokenizer(), reqs, ctxs, seeds=[seeds[b] for b in range(len(ctxs))],
                               **kw).answers
    hook = model.transformer.h[0].register_forward_hook(lambda *a: None)
    try:
        prefilled = generate_batch(model, FakeTokenizer(), reqs, ctxs, **kw).answers
    finally:
        hook.remove()
    return sum(a["token_ids"] == b["token_ids"] for a, b in zip(continued, prefilled)) / len(ctxs)  # decoded ids


def measure(fn, seconds: float) -> float:
    """Seconds per call of fn (after one warm-up), the best of the calls made within `seconds`."""
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def measure_size(size: str, device, dtype, quick: bool, seconds: float) -> dict:
    from gpt2eval.engine.decode import generate_batch
    from gpt2eval.engine.encode import ScoreItem
    from gpt2eval.engine.engine import Engine
    from gpt2eval.api.requests import Generation
    model = random_model(size, device, dtype, quick)
    engine = Engine(model, FakeTokenizer(), progress=False, budgets={"score": 256, "generate": 512} if quick else None)
    budgets = {k: engine.scheduler.token_budget(k == "score") for k in ("score", "generate")}
    rng = random.Random(1)
    ids = lambda n: tuple(rng.randrange(50256) for _ in range(n))  # noqa: E731
    window = 64 if quick else 1024
    out = {"size": size, "params": sum(p.numel() for p in model.parameters()), "budgets": budgets, "window": window}
    for name, length, targets in (("window", window, window), ("short", 96, 2)):
        rows = max(1, budgets["score"] // length)
        items = lambda: [ScoreItem(ids(length), ids(targets)) for _ in range(rows)]  # noqa: E731
        s = measure(lambda: engine.score(items()), seconds)  # fresh items: no cache, no sharing
        out[f"score_{name}_tok_s"] = rows * length / s
    prompt, new = (24, 4) if quick else (256, 32)
    rows = max(1, min(512, budgets["generate"] // (prompt + new)))
    run = lambda n: generate_batch(model, FakeTokenizer(), [Generation("", n)] * rows,  # noqa: E731
                                   [list(ids(prompt)) for _ in range(rows)], seed=0, suppress_memo={})
    # One step = (a run of `new` tokens - a run of one token, i.e. the prefill) / the further steps.
    step = max(1e-6, (measure(lambda: run(new), seconds) - measure(lambda: run(1), seconds)) / (new - 1))
    out.update(decode_rows=rows, decode_step_s=step, decode_tok_s=rows / step)
    del model, engine
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def project(sizes: list[dict], args) -> list[dict]:
    """Hours of the full reproduction per size, from plan mode's counts and the measured rates."""
    from gpt2eval.api.data import DataSource
    from gpt2eval.models.load import load_tokenizer
    from gpt2eval.cli.costs import count_work, decode_reads
    from gpt2eval.api.plugins import discover
    tokenizer = load_tokenizer(args.tokenizer)
    data, work = DataSource(args.data_dir), []
    for name, cls in sorted(discover().items()):
        task = cls()
        try:
            examples = task.load(data).examples[:8 if args.quick else None]
        except Exception as e:  # noqa: BLE001 - a task whose data is missing is reported, not fatal
            print(f"  {name}: no projection ({type(e).__name__}: {str(e)[:120]})", flush=True)
            continue
        work.append(count_work(task, examples, tokenizer))
    rows = []
    for m in sizes:
        total = 0.0
        for w in work:
            positions = w.tokens - w.decode_tokens
            mean_len = positions / max(1, w.sequences + w.generations)
            rate = m["score_window_tok_s"] if mean_len > 400 else m["score_short_tok_s"]
            steps, _ = decode_reads(w.gen_shapes, m["budgets"]["generate"])
            seconds = positions / rate + steps * m["decode_step_s"]
            rows.append({"size": m["size"], "task": w.task, "positions": positions, "decode_steps": steps,
                         "projected_s": seconds})
            total += seconds
        rows.append({"size": m["size"], "task": "TOTAL", "projected_s": total})
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.quick else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --quick for the CPU rehearsal")
    seconds = args.seconds if args.seconds is not None else (0.3 if args.quick else 4.0)
    args.dtype = args.dtype or ("float32" if args.quick else "bfloat16")
    dtype = getattr(torch, args.dtype)
    t0 = time.perf_counter()
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "dtype": args.dtype, "quick": args.quick}
    print(f"device {report['device']}; 1. fused forward against transformers ...", flush=True)
    report["correctness"] = check_correctness(device, args.quick)
    for row in report["correctness"]:
        print(f"  {row['dtype']}: max |logprob diff| {row['max_abs_logprob_diff']:.2e}, greedy flips "
              f"{row['greedy_flips']}, decodes continued from a scoring forward equal to prefilled ones: "
              f"{row['same_decodes']:.0%}: {'OK' if row['ok'] else 'FAILED'}", flush=True)
    print("2-3. budgets and speeds per size ...", flush=True)
    report["sizes"] = []
    for size in SIZES_TO_RUN:
        m = measure_size(size, device, dtype, args.quick, seconds)
        report["sizes"].append(m)
        print(f"  {size}: budgets {m['budgets']}; scoring {m['score_window_tok_s']:.0f} tok/s ({m['window']}-token windows), "
              f"{m['score_short_tok_s']:.0f} tok/s (96-token sequences); decode step {m['decode_step_s'] * 1e3:.1f} ms "
              f"for {m['decode_rows']} rows ({m['decode_tok_s']:.0f} new tok/s)", flush=True)
    print("4. projected full reproduction (plan mode's counts at the measured rates) ...", flush=True)
    report["projection"] = project(report["sizes"], args)
    for row in report["projection"]:
        if row["task"] == "TOTAL":
            print(f"  {row['size']}: {row['projected_s'] / 60:.1f} min", flush=True)
    report["wall_s"] = time.perf_counter() - t0
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"done in {report['wall_s']:.0f} s; written {args.out}")
    return 0 if all(r["ok"] for r in report["correctness"]) else 1


if __name__ == "__main__":
    sys.exit(main())
