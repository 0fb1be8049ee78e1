"""Plan mode: what a run costs, counted from the tokenizer and the data alone (no weights).

Every task's requests go through the engine's own encoding (`encode.Encoder`, no model), so the
token counts are the ones a real run forwards, duplicates removed as the engine removes them.

FLOPs of one forward pass over a sequence of L tokens of which H reach the LM head:
    2 * N * L                       N = non-embedding parameters = n_layer * (12 d^2 + 13 d) + 2 d
  + 4 * d * n_layer * L (L + 1) / 2  attention: QK^T and AV over the causal (query, key) pairs only
  + 2 * d * V * H                   the LM head, only where a log-probability or next token is needed
Generation is counted at its full budget (every request decodes max_new_tokens): prefill once
(a shared CoQA story once per group; nothing for a prompt that is a log-likelihood request's
context, which the engine decodes from that request's forward pass), then one single-token forward
per further new token. Log-likelihood items sharing a prefix (multiple choice) forward it once.

Two times per device: `seconds@` is FLOPs / peak FLOP/s; `bound@` is the lower bound that counts
decoding as memory-bound: a decode step reads every weight once (and the batch's keys/values),
whatever the number of rows, so its time is at least bytes read / memory bandwidth. Decode steps
are counted for batches as the engine forms them on a GPU of --device-memory-gb (its token budget).
With --workers N (torchrun, one device each) each worker does about 1/N of the batches (the
least-loaded one gets the next), so both times are divided by N.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..engine.encode import Encoder, context_of, prefix_groups, shared_lengths
from ..api.answers import flatten
from ..api.requests import Generation, Loglikelihood, RollingLoglikelihood
from ..models.sizes import N_CTX, SIZES, VOCAB, cuda_token_budget
H100_BF16_TFLOPS = 989.0  # NVIDIA H100 SXM, dense bfloat16 tensor-core peak
H100_HBM_TBPS = 3.35  # NVIDIA H100 SXM, HBM3 memory bandwidth (TB/s)
H100_MEMORY_GB = 80


def architecture(size: str) -> tuple[int, int]:
    return SIZES[size][2]


def non_embedding_params(n_layer: int, d: int) -> int:
    """Per block: qkv 3d^2+3d, attention output d^2+d, MLP 8d^2+5d, two layer norms 4d; final norm 2d."""
    return n_layer * (12 * d * d + 13 * d) + 2 * d


def total_params(n_layer: int, d: int, vocab: int = VOCAB, n_ctx: int = N_CTX) -> int:
    """Token and position embeddings plus the blocks; the LM head is tied to the token embedding."""
    return vocab * d + n_ctx * d + non_embedding_params(n_layer, d)


def forward_flops(n_layer: int, d: int, tokens: int, attn_pairs: int, head_positions: int,
                  vocab: int = VOCAB) -> float:
    """Useful forward FLOPs (module docstring); the arguments may be sums over many forwards."""
    return (2.0 * non_embedding_params(n_layer, d) * tokens + 4.0 * d * n_layer * attn_pairs
            + 2.0 * d * vocab * head_positions)


def causal_pairs(length: int, start: int = 0) -> int:
    """(query, key) pairs of causal attention for the queries at positions start..length-1."""
    return (length * (length + 1) - start * (start + 1)) // 2


@dataclass
class Work:
    """What one task asks of the model, independent of its size."""
    task: str
    examples: int = 0
    requests: int = 0
    sequences: int = 0            # scoring forwards (one per distinct item / window)
    scored_tokens: int = 0        # log-probabilities computed (LM head positions of scoring)
    forwarded_tokens: int = 0     # tokens fed to the model for scoring
    generations: int = 0
    prompt_tokens: int = 0        # prompts as encoded (after any truncation)
    prefill_tokens: int = 0       # prompt tokens forwarded, a shared prefix once
    generate_tokens: int = 0      # sum of max_new_tokens (an upper bound)
    tokens: int = 0               # all forwarded tokens: scoring + prefill + decoding
    attn_pairs: int = 0
    head_positions: int = 0
    decode_tokens: int = 0        # of `tokens`: the single-token decode steps' positions
    decode_attn_pairs: int = 0
    from_context: int = 0         # generations decoded from a log-likelihood request's forward

    def __post_init__(self):
        self.gen_shapes: list[tuple[int, int]] = []  # (prompt tokens, max_new_tokens) per generation

    def flops(self, n_layer: int, d: int) -> float:
        return forward_flops(n_layer, d, self.tokens, self.attn_pairs, self.head_positions)

    def decode_flops(self, n_layer: int, d: int) -> float:
        return forward_flops(n_layer, d, self.decode_tokens, self.decode_attn_pairs, self.decode_tokens)


def decode_reads(shapes: list[tuple[int, int]], budget: int) -> tuple[int, int]:
    """(decode steps, key/value token-reads) of generations batched as the engine does: longest
    first, padded prompt + new tokens within the budget, every step of a batch reading each row's
    keys/values, padding included."""
    steps = kv = 0
    rows = sorted(shapes, key=lambda s: -(s[0] + s[1]))
    i = 0
    while i < len(rows):
        n = 1
        while i + n < len(rows) and (n + 1) * (rows[i][0] + rows[i][1]) <= budget:
            n += 1
        batch = rows[i:i + n]
        width, new = max(p for p, _ in batch), max(g for _, g in batch)
        steps += new - 1
        kv += len(batch) * sum(width + s for s in range(1, new))
        i += n
    return steps, kv


def count_work(task, examples: list, tokenizer, window: int = N_CTX) -> Work:
    """Encode a task's requests for these examples exactly as the engine would, and count."""
    requests = flatten(task.name, task.requests(examples))
    w = Work(task.name, examples=len(examples), requests=len(requests))
    enc = Encoder(tokenizer, window)
    ll_items, _ = enc.loglikelihood([r for r in requests if isinstance(r, Loglikelihood)])
    windows, _ = enc.rolling([r for r in requests if isinstance(r, RollingLoglikelihood)])
    gens = [r for r in requests if isinstance(r, Generation)]
    prefix_ids: dict[str, list[int]] = {}
    prompts = [enc.prompt(r, prefix_ids) for r in gens]
    # As Engine.run: the first log-likelihood item whose context is a generation's prompt is scored
    # with its keys/values kept, and that generation decodes from them (no prefill).
    waiting, kept = {tuple(p.ids) for p in prompts}, set()
    for it in ll_items:
        if context_of(it) in waiting:
            waiting.discard(context_of(it))
            kept.add(it.key())
    decoded_from = {context_of(it) for it in ll_items if it.key() in kept}
    unique = list({it.key(): it for it in ll_items + [it for per in windows for it in per]}.values())
    groups, alone = prefix_groups([it for it in unique if it.key() not in kept])
    shareable = [it for it in unique if it.key() not in kept]
    for it in [it for it in unique if it.key() in kept] + [shareable[i] for i in alone]:
        n = len(it.input_ids)
        w.forwarded_tokens += n
        w.attn_pairs += causal_pairs(n)
        _count_scored(w, it)
    for prefix, members in groups:  # the prefix once, then each member's rest continuing from it
        s = len(prefix)
        w.forwarded_tokens += s
        w.attn_pairs += causal_pairs(s)
        for i in members:
            n = len(shareable[i].input_ids)
            w.forwarded_tokens += n - s
            w.attn_pairs += causal_pairs(n, s)
            _count_scored(w, shareable[i])
    shared = shared_lengths(gens, prompts, list(range(len(gens))))
    shared_prefixes: set[tuple[int, ...]] = set()
    for i, (r, p) in enumerate(zip(gens, prompts)):
        n, s, g = len(p.ids), shared[i], r.max_new_tokens
        w.generations += 1
        w.prompt_tokens += n
        w.generate_tokens += g
        w.gen_shapes.append((n, g))
        decode_pairs = (g - 1) * n + g * (g - 1) // 2
        if tuple(p.ids) in decoded_from:
            w.from_context += 1
            w.attn_pairs += decode_pairs
        else:
            if s:
                shared_prefixes.add(tuple(p.ids[:s]))
            w.prefill_tokens += n - s
            w.attn_pairs += causal_pairs(n, s) + decode_pairs  # prefill the rest, then decode
        w.head_positions += g  # one next-token distribution per new token
        w.tokens += g - 1      # the last new token is never fed back
        w.decode_tokens += g - 1
        w.decode_attn_pairs += decode_pairs
    for p in shared_prefixes:  # each shared prefix is forwarded once (and gives one next-token distribution)
        w.prefill_tokens += len(p)
        w.attn_pairs += causal_pairs(len(p))
        w.head_positions += 1
    w.tokens += w.forwarded_tokens + w.prefill_tokens
    return w


def _count_scored(w: Work, it) -> None:
    w.sequences += 1
    w.scored_tokens += len(it.targets)
    w.head_positions += len(it.targets)


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

    def rows(self) -> list[dict]:
        out = []
        for size in self.sizes:
            n_layer, d = architecture(size)
            weights = total_params(n_layer, d) * self.bytes_per_value
            budget = cuda_token_budget(self.memory_gb * 1e9, d, n_layer, self.bytes_per_value)
            for w in self.work:
                f, fd = w.flops(n_layer, d), w.decode_flops(n_layer, d)
                steps, kv_reads = decode_reads(w.gen_shapes, budget)
                read_s = (steps * weights + kv_reads * 2 * n_layer * d * self.bytes_per_value) / (self.bandwidth_tbps * 1e12)
                out.append({"size": size, "params": total_params(n_layer, d), **asdict(w), "flops": f,
                            "decode_flops": fd, "decode_steps": steps, "decode_read_s": read_s,
                            **{f"seconds@{name}": f / (peak * 1e12 * self.workers)
                               for name, peak in self.peaks_tflops.items()},
                            **{f"bound@{name}": ((f - fd) / (peak * 1e12) + max(fd / (peak * 1e12), read_s)) / self.workers
                               for name, peak in self.peaks_tflops.items()}})
        return out

    def format(self) -> str:
        names = list(self.peaks_tflops)
        tw = max([14] + [len(w.task) for w in self.work])  # the task column fits the longest name
        head = (f"{'size':7s} {'task':{tw}s} {'examples':>8s} {'score tok':>10s} {'fwd tok':>10s} {'prompt tok':>10s} "
                f"{'prefill':>9s} {'gen tok≤':>9s} {'FLOPs':>9s} " + " ".join(f"{'t@' + n:>14s}" for n in names)
                + " " + " ".join(f"{'bound@' + n:>18s}" for n in names))
        lines = [head, "-" * len(head)]
        rows = self.rows()
        for size in self.sizes:
            mine = [r for r in rows if r["size"] == size]
            for r in mine + [_total(size, mine, names)]:
                lines.append(f"{r['size']:7s} {r['task']:{tw}s} {r['examples']:8d} {r['scored_tokens']:10d} "
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
              memory_gb: float = H100_MEMORY_GB, workers: int = 1, skip_unavailable: bool = False) -> Plan:
    """skip_unavailable: a task whose data cannot be read (offline, not yet downloaded) is listed as
    not priced instead of stopping the plan."""
    from ..errors import DataError
    plan = Plan(sizes, peaks_tflops, bandwidth_tbps=bandwidth_tbps, memory_gb=memory_gb, workers=workers)
    for task in tasks:
        try:
            with data.loading(task.name):  # a missing file named in a message is this task's
                ds = task.load(data)
        except DataError as e:
            if not skip_unavailable:
                raise DataError(f"{e} (plan --skip-unavailable prices the other tasks)") from None
            plan.unpriced[task.name] = str(e)
            continue
        examples = ds.examples[:limit] if limit else ds.examples
        plan.work.append(count_work(task, examples, tokenizer))
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
    p.add_argument("--sizes", default="small,medium,large,xl", help="comma-separated GPT-2 sizes")
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
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
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
                     args.device_memory_gb, args.workers, args.skip_unavailable)
    print(plan.format())
    if args.json:
        Path(args.json).write_text(json.dumps(plan.rows(), indent=1))
    return 0
