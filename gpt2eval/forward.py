"""Forwarding and scoring: GPT-2's forward fused where that is exact, and the LM head applied
only at the positions whose log-probability is asked for, in blocks (never [positions, vocab]).

`score_batch` scores one batch of `ScoreItem`s; which items form a batch is schedule.py's job.
"""
from __future__ import annotations

import time

import torch

from .encode import ScoreItem

HEAD_CHUNK = 2048  # positions per LM-head block (GPU)
VOCAB_BLOCK = 8192  # vocabulary entries per LM-head block (the logits are never [positions, vocab] at once)
# CPU, 2 cores, GPT-2 small (measured): 1,024 positions x 2,048 entries (8 MB of logits) scores a
# 1,024-token window's head in 480 ms against 580 ms with 8,192 entries; under 128 positions
# (LAMBADA's targets) wide blocks are as fast or faster, with fewer passes over their short rows.
CPU_HEAD_CHUNK, CPU_VOCAB_BLOCK, CPU_NARROW_BELOW = 1024, 2048, 128


_FUSABLE = {"GPT2Model", "GPT2Block", "GPT2Attention", "GPT2MLP", "Conv1D", "Embedding", "Dropout", "ModuleList",
            "LayerNorm", "NewGELUActivation", "GELUTanh", "PytorchGELUTanh"}


def fused_gpt2(model) -> bool:
    """Whether `gpt2_hidden_states` computes exactly this model's forward pass: a standard GPT-2 in
    eval mode made of torch's and transformers' own modules, with nothing attached that the fused
    path would bypass (hooks, a forward set on a module); otherwise the model itself is called."""
    from torch.nn.modules import module as nn_module
    cfg = model.config
    if not (getattr(cfg, "model_type", "") == "gpt2" and hasattr(model, "transformer") and not model.training
            and cfg.activation_function in ("gelu_new", "gelu_pytorch_tanh") and cfg.scale_attn_weights
            and not cfg.scale_attn_by_inverse_layer_idx and not cfg.reorder_and_upcast_attn
            and not cfg.add_cross_attention) or nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return False
    return all(_stock_module(m) for m in model.transformer.modules())


def _stock_module(m) -> bool:
    """One of GPT-2's own module types (not a subclass, adapter or quantized layer), with no hook and
    no forward set on the instance. (A forward replaced on the class itself is not detected.)"""
    return (type(m).__name__ in _FUSABLE and type(m).__module__.startswith(("torch.", "transformers."))
            and "forward" not in vars(m) and not m._forward_hooks and not m._forward_pre_hooks)


def gpt2_hidden_states(model, ids: torch.Tensor) -> torch.Tensor:
    """GPT-2's final hidden states for right-padded ids, without a key/value cache or masks: the
    same operations as transformers' GPT2Model, with fewer passes over memory (one fused tanh-GELU
    kernel instead of eight elementwise ones, residual stream updated in place, causal SDPA)."""
    tr, cfg = model.transformer, model.config
    (b, t), d = ids.shape, cfg.n_embd
    heads, eps = cfg.n_head, cfg.layer_norm_epsilon
    x = (tr.wte(ids) + tr.wpe.weight[:t]).view(b * t, d)
    for block in tr.h:
        attn, mlp = block.attn, block.mlp
        h = torch.nn.functional.layer_norm(x, (d,), block.ln_1.weight, block.ln_1.bias, eps)
        q, k, v = torch.addmm(attn.c_attn.bias, h, attn.c_attn.weight).view(b, t, 3, heads, d // heads) \
            .permute(2, 0, 3, 1, 4).unbind(0)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x.addmm_(a.transpose(1, 2).reshape(b * t, d), attn.c_proj.weight).add_(attn.c_proj.bias)
        h = torch.nn.functional.layer_norm(x, (d,), block.ln_2.weight, block.ln_2.bias, eps)
        h = torch.nn.functional.gelu(torch.addmm(mlp.c_fc.bias, h, mlp.c_fc.weight), approximate="tanh")
        x.addmm_(h, mlp.c_proj.weight).add_(mlp.c_proj.bias)
    return torch.nn.functional.layer_norm(x, (d,), tr.ln_f.weight, tr.ln_f.bias, eps).view(b, t, d)


def target_logprobs(head, hidden: torch.Tensor, targets: torch.Tensor, rows: int, cols: int = VOCAB_BLOCK):
    """log p(target) in float32, and whether the target is the argmax, from the LM head applied at
    `hidden` [n, d] only. The logits are made `rows` x `cols` at a time (a slice of the head's
    weight stays in cache) and folded into a running max and sum of exp(logit - max):
    log p = x_target - max - log(sum(exp(x - max))), as log_softmax computes it.

    The greedy flag needs no argmax over every block (on CPU a max with indices costs about ten
    times a plain max): the full row's argmax, ties going to the lower id, is the target exactly
    when the first block to reach the row's maximum is the target's own block and the target is
    the first maximum inside it. So each row gets one argmax, over its own block only."""
    weight, bias = head.weight, getattr(head, "bias", None)  # [vocab, d]; GPT-2's head has no bias
    logprobs, greedy = [], []
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
            own = ((tgt >= v0) & (tgt < v0 + logits.shape[1])).nonzero().squeeze(1)
            if len(own):
                own_logits = logits[own]
                chosen[own] = own_logits.gather(1, (tgt[own] - v0)[:, None]).squeeze(1)
                own_argmax[own] = own_logits.argmax(dim=-1) + v0
            first_top_block = torch.where(top > best, v0, first_top_block)  # a tie keeps the earlier block
            block_total = logits.sub_(top[:, None]).exp_().sum(-1)  # in place: one buffer per block
            new_best = torch.maximum(best, top)
            total = total * (best - new_best).exp() + block_total * (top - new_best).exp()
            best = new_best
        logprobs.append(chosen - best - total.log())
        greedy.append((first_top_block == tgt - tgt % cols) & (own_argmax == tgt))
    return torch.cat(logprobs), torch.cat(greedy)


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


@torch.inference_mode()
def score_batch(model, items: list[ScoreItem], eot: int, stats: dict) -> list[tuple[list[float], list[bool]]]:
    """Log-probabilities and greedy flags of each item's targets, from one right-padded forward."""
    width = max(len(it.input_ids) for it in items)
    device = next(model.parameters()).device
    ids = torch.full((len(items), width), eot, dtype=torch.long)
    rows, cols, targets = [], [], []
    for b, it in enumerate(items):
        n = len(it.input_ids)
        ids[b, :n] = torch.tensor(it.input_ids)
        rows += [b] * len(it.targets)
        cols += range(n - len(it.targets), n)
        targets += it.targets
    t0 = time.perf_counter()
    # Right padding needs no attention mask: causal attention never looks at later (pad) positions.
    ids = ids.to(device)
    if not head_only(model):  # its own head may scale or soft-cap: score its own forward's logits
        lp, greedy = own_logits_logprobs(model, ids, rows, cols, targets)
    else:
        if fused_gpt2(model):
            hidden = gpt2_hidden_states(model, ids)
        else:
            hidden = model.base_model(input_ids=ids, use_cache=False).last_hidden_state
        picked = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
        if device.type == "cpu":
            block = CPU_HEAD_CHUNK, CPU_VOCAB_BLOCK if len(targets) >= CPU_NARROW_BELOW else VOCAB_BLOCK
        else:
            block = HEAD_CHUNK, VOCAB_BLOCK
        lp, greedy = target_logprobs(model.get_output_embeddings(), picked,  # the LM head only where needed
                                     torch.tensor(targets, device=device), *block)
    lp_all, g_all = lp.cpu().tolist(), greedy.cpu().tolist()
    stats["forward_s"] += time.perf_counter() - t0
    stats["tokens_forwarded"] += sum(len(it.input_ids) for it in items)
    stats["items_computed"] += len(items)
    out, s = [], 0
    for it in items:
        out.append((lp_all[s:s + len(it.targets)], g_all[s:s + len(it.targets)]))
        s += len(it.targets)
    return out
