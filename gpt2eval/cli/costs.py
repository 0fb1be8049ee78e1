"""What a run costs, counted from the tokenizer and the data alone (no weights): plan mode's counts.

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
"""
from __future__ import annotations

from dataclasses import dataclass

from ..engine.encode import Encoder, context_of, prefix_groups, shared_lengths
from ..api.answers import flatten
from ..api.requests import Generation, Loglikelihood, RollingLoglikelihood
from ..models.sizes import N_CTX, SIZES, VOCAB
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

    def flops(self, n_layer: int, d: int, vocab: int = VOCAB) -> float:
        return forward_flops(n_layer, d, self.tokens, self.attn_pairs, self.head_positions, vocab)

    def decode_flops(self, n_layer: int, d: int, vocab: int = VOCAB) -> float:
        return forward_flops(n_layer, d, self.decode_tokens, self.decode_attn_pairs, self.decode_tokens, vocab)


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
    requests = flatten(task.key, task.requests(examples))
    w = Work(task.key, examples=len(examples), requests=len(requests))
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
