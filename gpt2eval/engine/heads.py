"""The LM head: `target_logprobs`, the blocked head that scores only the asked-for positions, and
which architectures it scores exactly.

The blocked head (hidden states x output embedding, folded a block of the vocabulary at a time)
is only this model's own computation where nothing follows the head: GPT-2 and Llama. Granite
divides its logits by `logits_scaling`, Gemma2 soft-caps them, Cohere scales them: every such
model is scored from the logits of its own forward, at the asked-for positions only.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

HEAD_CHUNK = 2048  # positions per LM-head block (GPU)
VOCAB_BLOCK = 8192  # vocabulary entries per LM-head block (the logits are never [positions, vocab] at once)
# CPU, 2 cores, GPT-2 small (measured): 1,024 positions x 2,048 entries (8 MB of logits) scores a
# 1,024-token window's head in 480 ms against 580 ms with 8,192 entries; under 128 positions
# (LAMBADA's targets) wide blocks are as fast or faster, with fewer passes over their short rows.
CPU_HEAD_CHUNK, CPU_VOCAB_BLOCK, CPU_NARROW_BELOW = 1024, 2048, 128

# Causal LMs whose logits are exactly output_embedding(base_model(ids).last_hidden_state), with
# nothing after the head (no scaling or soft-capping): the blocked head may stand in for their own.
# Each is checked against the model's forward in tests/test_heads.py; add one only with such a test.
HEAD_ONLY = {"GPT2LMHeadModel", "LlamaForCausalLM"}
OWN_LOGITS_BUDGET = {"cuda": 2 << 30, "cpu": 256 << 20}  # bytes of float32 logits per forward (else 512 MiB)


def head_only(model) -> bool:
    """Whether the blocked head (`target_logprobs`) computes this model's own logits: one of the
    HEAD_ONLY classes itself (not a subclass), its head a plain Linear, no hook anywhere on the head
    or the model's top that the blocked head would bypass."""
    head = model.get_output_embeddings()
    return (type(model).__name__ in HEAD_ONLY and type(model).__module__.startswith("transformers.")
            and type(head) is torch.nn.Linear and "forward" not in vars(head) and "forward" not in vars(model)
            and not (head._forward_hooks or head._forward_pre_hooks or model._forward_hooks
                     or model._forward_pre_hooks))


def own_logits_logprobs(model, ids: torch.Tensor, rows: list[int], cols: list[int], targets: list[int]):
    """log p(target) in float32 and greedy flags from the logits of the model's own forward (its
    scaling, soft-capping, whatever its head does), at the asked-for positions only
    (`logits_to_keep` as a boolean mask). The positions are taken in order, as many per forward as
    OWN_LOGITS_BUDGET allows; each forward takes only the rows it needs, cut after the last needed
    column (exact for a causal model). A row split between two forwards is forwarded twice."""
    vocab = model.get_output_embeddings().weight.shape[0]
    per_forward = max(1, OWN_LOGITS_BUDGET.get(ids.device.type, 512 << 20) // (4 * vocab))
    logprobs, greedy = [], []
    for s in range(0, len(targets), per_forward):
        r, c = rows[s:s + per_forward], cols[s:s + per_forward]
        t = torch.tensor(targets[s:s + per_forward], device=ids.device)
        sub = ids[r[0]:r[-1] + 1, :max(c) + 1]
        keep = torch.zeros(sub.shape, dtype=torch.bool, device=ids.device)
        keep[torch.tensor(r, device=ids.device) - r[0], torch.tensor(c, device=ids.device)] = True
        logits = model(input_ids=sub, use_cache=False, logits_to_keep=keep).logits.float()  # [kept, vocab], row-major
        logprobs.append(torch.log_softmax(logits, -1).gather(1, t[:, None]).squeeze(1))
        greedy.append(logits.argmax(-1) == t)  # ties: the lower id, as target_logprobs
    return torch.cat(logprobs), torch.cat(greedy)


def to_device(values: list[int], device: torch.device) -> torch.Tensor:
    """A host list as a long tensor on `device`; on CUDA through pinned memory without waiting for
    the queued kernels (a plain copy from pageable memory synchronises)."""
    t = torch.tensor(values, dtype=torch.long)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class TargetLogprobs(NamedTuple):
    """What `target_logprobs` computes, per row of `hidden`."""
    logprobs: torch.Tensor  # [n] float32: log p(target)
    greedy: torch.Tensor  # [n] bool: the target is the argmax
    full_logits: torch.Tensor | None  # [len(full_rows), vocab] float32, where full_rows was given


def target_logprobs(head, hidden: torch.Tensor, targets: torch.Tensor, rows: int, cols: int = VOCAB_BLOCK,
                    host_targets: list[int] | None = None, full_rows: list[int] | None = None) -> TargetLogprobs:
    """log p(target) in float32, and whether the target is the argmax, from the LM head applied at
    `hidden` [n, d] only. The logits are made `rows` x `cols` at a time (a slice of the head's
    weight stays in cache) and folded into a running max and sum of exp(logit - max):
    log p = x_target - max - log(sum(exp(x - max))), as log_softmax computes it.

    The greedy flag needs no argmax over every block (on CPU a max with indices costs about ten
    times a plain max): the full row's argmax, ties going to the lower id, is the target exactly
    when the first block to reach the row's maximum is the target's own block and the target is
    the first maximum inside it. So each row gets one argmax, over its own block only. Which rows'
    targets fall in which block is worked out on the host (`host_targets`, else one copy of
    `targets`), so the device never waits for a per-block `nonzero()`.

    full_rows (optional): rows of `hidden` whose every logit is also wanted (`full_logits`): a
    decode continuing from there starts from them, and they are taken from the blocks as they
    pass rather than from a second pass over the head's weight."""
    weight, bias = head.weight, getattr(head, "bias", None)  # [vocab, d]; GPT-2's head has no bias
    host = targets.tolist() if host_targets is None else list(host_targets)
    # Rows grouped by chunk, then by the block of their target: each block's rows are one slice of `order`.
    order, spans = [], {}
    for s in range(0, len(host), rows):
        chunk = sorted(range(s, min(s + rows, len(host))), key=lambda r: host[r] // cols)
        for r in chunk:
            key = (s, host[r] // cols)
            lo, _ = spans.get(key, (len(order), 0))
            spans[key] = (lo, len(order) + 1)
            order.append(r - s)
    order_dev = to_device(order, hidden.device)
    logprobs, greedy = [], []
    full = None if full_rows is None else torch.empty((len(full_rows), weight.shape[0]), dtype=torch.float32,
                                                        device=hidden.device)
    full_in = {}  # chunk start -> (rows of the chunk, their rows in `full`), on the device
    for j, r in enumerate(full_rows or []):
        full_in.setdefault(r - r % rows, ([], []))
        full_in[r - r % rows][0].append(r % rows)
        full_in[r - r % rows][1].append(j)
    full_in = {s: (to_device(a, hidden.device), to_device(b, hidden.device)) for s, (a, b) in full_in.items()}
    for s in range(0, len(targets), rows):
        x, tgt = hidden[s:s + rows], targets[s:s + rows]
        best = torch.full(tgt.shape, float("-inf"), device=x.device)
        total, chosen = torch.zeros_like(best), torch.zeros_like(best)
        first_top_block = torch.zeros_like(tgt)  # start of the first block that reached the running max
        own_argmax = torch.zeros_like(tgt)  # argmax inside the target's own block
        for v0 in range(0, weight.shape[0], cols):
            logits = torch.nn.functional.linear(x, weight[v0:v0 + cols],
                                                None if bias is None else bias[v0:v0 + cols]).float()
            top = logits.amax(dim=-1)
            if (s, v0 // cols) in spans:
                lo, hi = spans[(s, v0 // cols)]
                own = order_dev[lo:hi]
                own_logits = logits[own]
                chosen[own] = own_logits.gather(1, (tgt[own] - v0)[:, None]).squeeze(1)
                own_argmax[own] = own_logits.argmax(dim=-1) + v0
            if s in full_in:
                full[full_in[s][1], v0:v0 + cols] = logits[full_in[s][0]]
            first_top_block = torch.where(top > best, v0, first_top_block)  # a tie keeps the earlier block
            block_total = logits.sub_(top[:, None]).exp_().sum(-1)  # in place: one buffer per block
            new_best = torch.maximum(best, top)
            total = total * (best - new_best).exp() + block_total * (top - new_best).exp()
            best = new_best
        logprobs.append(chosen - best - total.log())
        greedy.append((first_top_block == tgt - tgt % cols) & (own_argmax == tgt))
    return TargetLogprobs(torch.cat(logprobs), torch.cat(greedy), full)


def head_blocks(device: torch.device, n_targets: int) -> tuple[int, int]:
    if device.type == "cpu":
        return CPU_HEAD_CHUNK, CPU_VOCAB_BLOCK if n_targets >= CPU_NARROW_BELOW else VOCAB_BLOCK
    return HEAD_CHUNK, VOCAB_BLOCK
