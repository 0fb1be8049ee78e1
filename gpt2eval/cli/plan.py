"""Plan mode (`python run_eval.py plan`, `gpt2eval.plan()`): what a run costs before it starts.

The counts per task and size come from cli/costs.py (tokenizer and data only, no weights). Two
times per device: `seconds@` is FLOPs / peak FLOP/s; `bound@` is the lower bound that counts
decoding as memory-bound: a decode step reads every weight once (and the batch's keys/values),
whatever the number of rows, so its time is at least bytes read / memory bandwidth. Decode steps
are counted for batches as the engine forms them on a GPU of --device-memory-gb (its token budget).
With --workers N (torchrun, one device each) each worker does about 1/N of the batches (the
least-loaded one gets the next), so both times are divided by N.

Beside the four sizes, plan prices your own models (--model, or gpt2eval.plan() from a training
loop): a checkpoint's or folder's shape (layers, width, vocabulary rows, context) is read from its
header, model_args or config (`models.load.shape_of`), and the same counts are priced at it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..models.sizes import N_CTX, SIZES, VOCAB, cuda_token_budget
from .costs import (H100_BF16_TFLOPS, H100_HBM_TBPS, H100_MEMORY_GB, Work, architecture, count_work, decode_reads,
                    total_params)


@dataclass
class Plan:
    sizes: list[str]
    peaks_tflops: dict[str, float]          # device name -> peak TFLOP/s
    work: list[Work] = field(default_factory=list)
    unpriced: dict[str, str] = field(default_factory=dict)  # task -> why its data could not be read
    workers: int = 1                        # devices working at once (torchrun --nproc-per-node x nodes)
    bandwidth_tbps: float = H100_HBM_TBPS   # memory bandwidth of the devices named (bound@)
    memory_gb: float = H100_MEMORY_GB       # device memory: the engine's generation batches
    bytes_per_value: int = 2                # bfloat16 weights and keys/values
    shapes: dict = field(default_factory=dict)  # a model's name -> (n_layer, d, vocab rows, context); else a size

    def shape(self, name: str) -> tuple[int, int, int, int]:
        return self.shapes[name] if name in self.shapes else (*architecture(name), VOCAB, N_CTX)

    def rows(self) -> list[dict]:
        out = []
        for size in self.sizes:
            n_layer, d, vocab, n_ctx = self.shape(size)
            weights = total_params(n_layer, d, vocab, n_ctx) * self.bytes_per_value
            budget = cuda_token_budget(self.memory_gb * 1e9, d, n_layer, self.bytes_per_value)
            for w in self.work:
                f, fd = w.flops(n_layer, d, vocab), w.decode_flops(n_layer, d, vocab)
                steps, kv_reads = decode_reads(w.gen_shapes, budget)
                read_s = (steps * weights + kv_reads * 2 * n_layer * d * self.bytes_per_value) / (self.bandwidth_tbps * 1e12)
                out.append({"size": size, "params": total_params(n_layer, d, vocab, n_ctx), **asdict(w), "flops": f,
                            "decode_flops": fd, "decode_steps": steps, "decode_read_s": read_s,
                            **{f"seconds@{name}": f / (peak * 1e12 * self.workers)
                               for name, peak in self.peaks_tflops.items()},
                            **{f"bound@{name}": ((f - fd) / (peak * 1e12) + max(fd / (peak * 1e12), read_s)) / self.workers
                               for name, peak in self.peaks_tflops.items()}})
        return out

    def format(self) -> str:
        names = list(self.peaks_tflops)
        tw = max([14] + [len(w.task) for w in self.work])  # the task column fits the longest name
        sw = max([7] + [len(s) for s in self.sizes])  # and the size column a model's name
        head = (f"{'size':{sw}s} {'task':{tw}s} {'examples':>8s} {'score tok':>10s} {'fwd tok':>10s} {'prompt tok':>10s} "
                f"{'prefill':>9s} {'gen tok≤':>9s} {'FLOPs':>9s} " + " ".join(f"{'t@' + n:>14s}" for n in names)
                + " " + " ".join(f"{'bound@' + n:>18s}" for n in names))
        lines = [head, "-" * len(head)]
        rows = self.rows()
        for size in self.sizes:
            mine = [r for r in rows if r["size"] == size]
            for r in mine + [_total(size, mine, names)]:
                lines.append(f"{r['size']:{sw}s} {r['task']:{tw}s} {r['examples']:8d} {r['scored_tokens']:10d} "
                             f"{r['forwarded_tokens']:10d} {r['prompt_tokens']:10d} {r['prefill_tokens']:9d} "
                             f"{r['generate_tokens']:9d} {r['flops']:9.3g} "
                             + " ".join(f"{_dur(r['seconds@' + n]):>14s}" for n in names)
                             + " " + " ".join(f"{_dur(r['bound@' + n]):>18s}" for n in names))
        all_f = sum(r["flops"] for r in rows)
        on = f" on each of {self.workers} workers" if self.workers > 1 else ""
        lines.append(f"all sizes: {all_f:.3g} FLOPs; at peak: " + ", ".join(
            f"{_dur(all_f / (p * 1e12 * self.workers))} at {p:.4g} TFLOP/s{on} ({n})"
            for n, p in self.peaks_tflops.items()))
        lines.append(f"bound@: decode steps memory-bound at {self.bandwidth_tbps:g} TB/s, generation batched as on a "
                     f"{self.memory_gb:g} GB GPU; all sizes{on}: " + ", ".join(
                         f"{_dur(sum(r['bound@' + n] for r in rows))} ({n})" for n in names))
        for task, why in self.unpriced.items():
            lines.append(f"NOT PRICED {task}: {why}")
        if self.unpriced:
            lines.append(f"the totals leave out {len(self.unpriced)} task(s) whose data is not available")
        return "\n".join(lines)


def _total(size: str, rows: list[dict], names: list[str]) -> dict:
    keys = ["examples", "scored_tokens", "forwarded_tokens", "prompt_tokens", "prefill_tokens", "generate_tokens",
            "flops"]
    tot = {k: sum(r[k] for r in rows) for k in keys + [f"{t}@{n}" for n in names for t in ("seconds", "bound")]}
    return {"size": size, "task": "TOTAL", **tot}


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.3g} min" if seconds < 7200 else f"{seconds / 3600:.3g} h"


def make_plan(sizes: list[str], tasks: list, data, tokenizer, peaks_tflops: dict[str, float],
              limit: int | None = None, bandwidth_tbps: float = H100_HBM_TBPS,
              memory_gb: float = H100_MEMORY_GB, workers: int = 1, skip_unavailable: bool = False,
              shapes: dict | None = None) -> Plan:
    """skip_unavailable: a task whose data cannot be read (offline, not yet downloaded) is listed as
    not priced instead of stopping the plan. shapes: name -> (n_layer, d, vocab, context) of models
    that are not one of the sizes (`sizes` then names them)."""
    from ..errors import DataError
    plan = Plan(sizes, peaks_tflops, bandwidth_tbps=bandwidth_tbps, memory_gb=memory_gb, workers=workers,
                shapes=shapes or {})
    window = min([N_CTX] + [plan.shape(s)[3] for s in sizes])  # requests encoded as the smallest window does
    for task in tasks:
        try:
            with data.loading(task.name):  # a missing file named in a message is this task's
                ds = task.load(data)
        except DataError as e:
            if not skip_unavailable:
                raise DataError(f"{e} (plan --skip-unavailable prices the other tasks)") from None
            plan.unpriced[task.key] = str(e)
            continue
        examples = ds.examples[:limit] if limit else ds.examples
        plan.work.append(count_work(task, examples, tokenizer, window))
    return plan


def measure_matmul_peak(dtype: str = "float32", n: int = 2048, seconds: float = 3.0) -> float:
    """This machine's dense matmul FLOP/s in `dtype` (torch.mm of two n x n matrices, best of runs)."""
    import time

    import torch
    from ..models.load import DTYPES
    a, b = torch.randn(n, n, dtype=DTYPES[dtype]), torch.randn(n, n, dtype=DTYPES[dtype])
    torch.mm(a, b)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


# ---- the `plan` subcommand --------------------------------------------------------------------
def add_arguments(p) -> None:
    p.add_argument("--sizes", default=None, help="comma-separated GPT-2 sizes (default all four)")
    p.add_argument("--model", default=None, help="instead of --sizes: your own model(s) as `run --model` takes "
                   "them (checkpoint files, folders, comma list, quoted glob), priced at their own shape")
    p.add_argument("--tasks", default="lambada,ptb,wikitext103,wikitext2", help="comma-separated task names")
    p.add_argument("--data-dir", default=None, help="folder of upstream data files (else $GPT2EVAL_DATA_DIR, else hub)")
    p.add_argument("--limit", type=int, default=None, help="only the first N examples of each task")
    p.add_argument("--tokenizer", default="openai-community/gpt2",
                   help="GPT-2 tokenizer: hub id or folder (all four sizes share it)")
    p.add_argument("--peak-tflops", default=str(H100_BF16_TFLOPS),
                   help=f"device peak(s) in TFLOP/s, comma-separated (default {H100_BF16_TFLOPS:g}: H100 SXM dense bf16)")
    p.add_argument("--bandwidth-tbps", type=float, default=H100_HBM_TBPS,
                   help=f"device memory bandwidth for the bound@ columns (default {H100_HBM_TBPS:g}: H100 SXM)")
    p.add_argument("--device-memory-gb", type=float, default=H100_MEMORY_GB,
                   help="device memory, for the generation batches of the bound@ columns (default 80)")
    p.add_argument("--measure-peak", action="store_true", help="also measure this machine's matmul peak (--dtype)")
    p.add_argument("--dtype", default="float32", help="dtype of --measure-peak")
    p.add_argument("--include-path", action="append", default=[], help="folder of extra task plugins (repeatable)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--skip-unavailable", action="store_true", help="list tasks whose data cannot be read "
                   "(offline, not downloaded) as not priced, instead of stopping")
    p.add_argument("--workers", type=int, default=1, help="workers (devices) sharing the run under torchrun: "
                   "the time bound is for N of them")


def run(args) -> int:
    from ..api.data import DataSource
    from ..errors import UserError
    from ..models.load import load_tokenizer
    from ..api.plugins import parse_tasks, select
    if args.model and args.sizes:
        raise UserError("give either --model or --sizes, not both")
    shapes = {}
    if args.model:
        from ..models.formats import expand_models, run_names
        from ..models.load import shape_of
        models = expand_models(args.model)
        shapes = {name: shape_of(m) for m, name in zip(models, run_names(models, tuple(SIZES)))}
        sizes = list(shapes)
    else:
        sizes = [s.strip() for s in (args.sizes or ",".join(SIZES)).split(",") if s.strip()]
        unknown = [s for s in sizes if s not in SIZES]
        if unknown or not sizes:
            raise UserError(f"unknown size(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SIZES)}")
    try:
        peaks = {f"{float(x):g}TFLOP/s": float(x) for x in args.peak_tflops.split(",") if x.strip()}
    except ValueError:
        raise UserError(f"--peak-tflops expects numbers, got {args.peak_tflops!r}") from None
    if args.measure_peak:
        peaks[f"here-{args.dtype}"] = measure_matmul_peak(args.dtype) / 1e12
    tasks = select(parse_tasks(args.tasks), args.include_path)
    try:
        tokenizer = load_tokenizer(args.tokenizer)
    except Exception as e:  # noqa: BLE001 - one clear line
        raise UserError(f"cannot load the tokenizer {args.tokenizer!r} ({type(e).__name__}); pass --tokenizer "
                        "with a local GPT-2 tokenizer folder when offline") from None
    if args.workers < 1:
        raise UserError(f"--workers must be a positive integer, got {args.workers}")
    plan = make_plan(sizes, tasks, DataSource(args.data_dir), tokenizer, peaks, args.limit, args.bandwidth_tbps,
                     args.device_memory_gb, args.workers, args.skip_unavailable, shapes)
    print(plan.format())
    if args.json:
        Path(args.json).write_text(json.dumps(plan.rows(), indent=1))
    return 0
