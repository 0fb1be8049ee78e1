"""The GPT-2 sizes and the paper's numbers about them: plain constants, no torch, so that the
commands that only read results (compare, score, report, plan) start fast."""

# The four public checkpoints, as (hub id, paper's name, (n_layer, n_embd)).
SIZES = {
    "small": ("openai-community/gpt2", "117M", (12, 768)),
    "medium": ("openai-community/gpt2-medium", "345M", (24, 1024)),
    "large": ("openai-community/gpt2-large", "762M", (36, 1280)),
    "xl": ("openai-community/gpt2-xl", "1542M", (48, 1600)),
}
GPT2_TOKENIZER = SIZES["small"][0]  # the tokenizer all four share: a checkpoint's default (--tokenizer)
PAPER_PARAMS = {"small": 117e6, "medium": 345e6, "large": 762e6, "xl": 1542e6}  # Table 2's parameter counts
VOCAB = 50257  # GPT-2's vocabulary (its byte-level BPE, <|endoftext|> = 50256)
N_CTX = 1024   # GPT-2's context window
DTYPE_NAMES = ("float32", "bfloat16", "float16")  # the --dtype choices (load.DTYPES maps them to torch)


def activation_bytes_per_token(hidden: int, layers: int, itemsize: int) -> int:
    """The engine's estimate of device memory per batched token (activations and keys/values)."""
    return 16 * hidden * (layers // 8 + 4) * itemsize


def cuda_token_budget(usable_bytes: float, hidden: int, layers: int, itemsize: int, window: int = N_CTX) -> int:
    """Padded tokens per batch on a GPU with this much usable memory: 40% of it at the estimate
    above, at least one window and at most 256k tokens (schedule.Scheduler.token_budget)."""
    return int(max(window, min(256 * 1024, 0.4 * usable_bytes / activation_bytes_per_token(hidden, layers, itemsize))))
