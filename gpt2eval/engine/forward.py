"""Forwarding and scoring: GPT-2's forward fused where that is exact, and the LM head applied
only at the positions whose log-probability is asked for, in blocks (never [positions, vocab]).

`score_batch` scores one batch of `ScoreItem`s, `score_groups` one batch of items sharing
prefixes; each returns its answers with what it computed (`EngineStats`). Which items form a
batch is schedule.py's job. Also here: the transformers cache helpers decode.py shares.
"""
from __future__ import annotations

import inspect
import time
from typing import NamedTuple

import torch

from .encode import ScoreItem
from .heads import head_blocks, head_only, own_logits_logprobs, target_logprobs, to_device
from .stats import EngineStats

Answer = tuple[list[float], list[bool]]  # an item's targets: log-probabilities and greedy flags


class Scored(NamedTuple):
    """What `score_batch` computes."""
    answers: list[Answer]  # per item
    seeds: dict[int, tuple[list, torch.Tensor]]  # per kept item (keep): its context's keys/values, first logits
    counts: EngineStats


class ScoredGroups(NamedTuple):
    """What `score_groups` computes."""
    answers: list[list[Answer]]  # per group, per member
    counts: EngineStats

_FUSABLE = {"GPT2Model", "GPT2Block", "GPT2Attention", "GPT2MLP", "Conv1D", "Embedding", "Dropout", "ModuleList",
            "LayerNorm", "NewGELUActivation", "GELUTanh", "PytorchGELUTanh", "GELUActivation"}
# The activations the fused kernels compute, as torch's gelu(approximate=...): GPT-2's tanh form
# (llm.c's too) and the exact erf form ("gelu", nanoGPT's nn.GELU(); models/convert.py).
GELU_APPROXIMATE = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}


def fused_gpt2(model) -> bool:
    """Whether `gpt2_hidden_states` computes exactly this model's forward pass: a standard GPT-2 in
    eval mode made of torch's and transformers' own modules, with nothing attached that the fused
    path would bypass (hooks, a forward set on a module); otherwise the model itself is called."""
    from torch.nn.modules import module as nn_module
    cfg = model.config
    if not (getattr(cfg, "model_type", "") == "gpt2" and hasattr(model, "transformer") and not model.training
            and cfg.activation_function in GELU_APPROXIMATE and cfg.scale_attn_weights
            and not cfg.scale_attn_by_inverse_layer_idx and not cfg.reorder_and_upcast_attn
            and not cfg.add_cross_attention) or nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return False
    return all(_stock_module(m) for m in model.transformer.modules())


def _stock_module(m) -> bool:
    """One of GPT-2's own module types (not a subclass, adapter or quantized layer), with no hook and
    no forward set on the instance. (A forward replaced on the class itself is not detected.)"""
    return (type(m).__name__ in _FUSABLE and type(m).__module__.startswith(("torch.", "transformers."))
            and "forward" not in vars(m) and not m._forward_hooks and not m._forward_pre_hooks)


def gpt2_hidden_states(model, ids: torch.Tensor, *, positions: torch.Tensor | None = None, past=None,
                       key_mask: torch.Tensor | None = None, keep_kv: list | None = None) -> torch.Tensor:
    """GPT-2's final hidden states for right-padded ids: the same operations as transformers'
    GPT2Model, with fewer passes over memory (one fused GELU kernel, tanh or exact as the model's
    configuration says, instead of several elementwise ones, residual stream updated in place, SDPA).

    Without `past` this is a plain causal forward (no masks). With `past` (per layer (k, v) of
    shape [batch, heads, S, head_dim]) the ids continue those S positions: `key_mask` [batch, S]
    says which of them are real, `positions` [batch, t] are the new tokens' positions, and the new
    tokens attend causally among themselves. `keep_kv` (a list) receives every layer's (k, v),
    past included: the cache a decode or a later suffix can continue from."""
    tr, cfg = model.transformer, model.config
    (b, t), d = ids.shape, cfg.n_embd
    heads, eps, approximate = cfg.n_head, cfg.layer_norm_epsilon, GELU_APPROXIMATE[cfg.activation_function]
    x = (tr.wte(ids) + (tr.wpe.weight[:t] if positions is None else tr.wpe(positions))).view(b * t, d)
    mask = None
    if past is not None:
        causal = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()
        mask = torch.cat([key_mask[:, None, None, :].expand(b, 1, t, key_mask.shape[1]),
                          causal.expand(b, 1, t, t)], dim=-1)
    for i, block in enumerate(tr.h):
        attn, mlp = block.attn, block.mlp
        h = torch.nn.functional.layer_norm(x, (d,), block.ln_1.weight, block.ln_1.bias, eps)
        q, k, v = torch.addmm(attn.c_attn.bias, h, attn.c_attn.weight).view(b, t, 3, heads, d // heads) \
            .permute(2, 0, 3, 1, 4).unbind(0)
        if past is not None:
            k, v = torch.cat([past[i][0], k], dim=2), torch.cat([past[i][1], v], dim=2)
        if keep_kv is not None:
            keep_kv.append((k, v))
        if mask is None:
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x.addmm_(a.transpose(1, 2).reshape(b * t, d), attn.c_proj.weight).add_(attn.c_proj.bias)
        h = torch.nn.functional.layer_norm(x, (d,), block.ln_2.weight, block.ln_2.bias, eps)
        h = torch.nn.functional.gelu(torch.addmm(mlp.c_fc.bias, h, mlp.c_fc.weight), approximate=approximate)
        x.addmm_(h, mlp.c_proj.weight).add_(mlp.c_proj.bias)
    return torch.nn.functional.layer_norm(x, (d,), tr.ln_f.weight, tr.ln_f.bias, eps).view(b, t, d)


def make_cache(layers: list):
    """transformers' DynamicCache holding per layer (k, v) [batch, heads, positions, head_dim]."""
    from transformers import DynamicCache
    if hasattr(DynamicCache, "from_legacy_cache"):  # transformers 4.x
        return DynamicCache.from_legacy_cache(tuple(layers))
    return DynamicCache(layers)


def cache_layers(cache) -> list:
    """The per-layer (k, v) of a transformers cache (either major version)."""
    return [(layer[0], layer[1]) for layer in cache]


def cache_kw(model) -> str:
    """transformers 5.x renamed `past_key_values` to `cache`; accept either."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def cache_of(out):
    return out["cache"] if "cache" in out else out["past_key_values"]


def hidden_states(model, ids: torch.Tensor, *, positions=None, past=None, key_mask=None,
                  keep_kv: list | None = None) -> torch.Tensor:
    """Final hidden states, as `gpt2_hidden_states` describes: fused for a stock GPT-2, else from
    the model's own base forward (with a transformers cache and a 2-D mask when there is a past)."""
    if fused_gpt2(model):
        return gpt2_hidden_states(model, ids, positions=positions, past=past, key_mask=key_mask, keep_kv=keep_kv)
    kw = {}
    if past is not None:
        ones = key_mask.new_ones(ids.shape)
        kw = {cache_kw(model.base_model): make_cache(list(past)), "attention_mask": torch.cat([key_mask, ones], 1).long(),
              "position_ids": positions}
    out = model.base_model(input_ids=ids, use_cache=keep_kv is not None, **kw)
    if keep_kv is not None:
        keep_kv.extend(cache_layers(cache_of(out)))
    return out.last_hidden_state


def _answers(items, lp: torch.Tensor, greedy: torch.Tensor) -> list[Answer]:
    lp_all, g_all = lp.cpu().tolist(), greedy.cpu().tolist()  # the batch's one device-to-host copy
    out, s = [], 0
    for it in items:
        out.append((lp_all[s:s + len(it.targets)], g_all[s:s + len(it.targets)]))
        s += len(it.targets)
    return out


@torch.inference_mode()
def score_batch(model, items: list[ScoreItem], eot: int, keep: dict[int, int] | None = None) -> Scored:
    """Log-probabilities and greedy flags of each item's targets, from one right-padded forward.

    keep {b: n}: also return, as seeds[b], the keys/values of item b's first n positions (copied)
    and the float32 next-token logits at position n-1: what a decode of its first n tokens starts
    from. Without keep, seeds is empty."""
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
    seeds: dict = {}
    if not head_only(model):  # its own head may scale or soft-cap: score its own forward's logits
        if keep:
            raise ValueError("a decode continued from a scoring forward needs the blocked head; the engine "
                             "turns context decodes off for models without it")
        lp, greedy = own_logits_logprobs(model, ids, rows, cols, targets)
    else:
        kv = [] if keep else None
        if keep:
            hidden = hidden_states(model, ids, keep_kv=kv)
        elif fused_gpt2(model):
            hidden = gpt2_hidden_states(model, ids)
        else:
            hidden = model.base_model(input_ids=ids, use_cache=False).last_hidden_state
        picked = hidden[to_device(rows, device), to_device(cols, device)]
        at, full_rows = list(keep or {}), None
        if at:  # a kept context ends where its item's targets begin: its next-token logits are those
            first_row = {}  # of the first target's row, taken from the head's blocks as they pass
            for j, b in enumerate(rows):
                first_row.setdefault(b, j)
            if all(cols[first_row[b]] == keep[b] - 1 for b in at):
                full_rows = [first_row[b] for b in at]
        head = target_logprobs(model.get_output_embeddings(), picked,  # the LM head only where needed
                               to_device(targets, device), *head_blocks(device, len(targets)),
                               host_targets=targets, full_rows=full_rows)
        lp, greedy = head.logprobs, head.greedy
        if keep:
            if head.full_logits is not None:
                first_logits = head.full_logits
            else:
                last = hidden[to_device(at, device), to_device([keep[b] - 1 for b in at], device)]
                first_logits = model.get_output_embeddings()(last).float()
            for j, b in enumerate(at):
                seeds[b] = ([(k[b, :, :keep[b]].clone(), v[b, :, :keep[b]].clone()) for k, v in kv], first_logits[j])
    out = _answers(items, lp, greedy)
    return Scored(out, seeds, EngineStats(forward_s=time.perf_counter() - t0, items_computed=len(items),
                                          tokens_forwarded=sum(len(it.input_ids) for it in items)))


@torch.inference_mode()
def score_groups(model, groups: list[tuple[tuple[int, ...], list[ScoreItem]]], eot: int,
                 memo: dict | None = None) -> ScoredGroups:
    """Score items that share a prefix with the prefix forwarded once per group: the prefixes as
    one right-padded batch (keys/values kept), then every item's rest as one batch continuing from
    its own group's keys/values. Every item's input_ids start with its group's prefix, and no
    target is predicted inside the prefix. The answers equal `score_batch`'s (tested to float
    tolerance: the same positions, attention split into two matrix products). `memo` keeps the
    prefixes' keys/values from one batch to the next (a group too large for one batch is split
    into consecutive runs), so a prefix is forwarded once."""
    device = next(model.parameters()).device
    top_position = (getattr(model.config, "n_positions", None) or model.config.max_position_embeddings) - 1
    t0 = time.perf_counter()
    prefixes = [p for p, _ in groups]
    memo = {} if memo is None else memo
    new = [p for p in dict.fromkeys(prefixes) if p not in memo]
    prefix_tokens = sum(len(p) for p in new)
    if new:
        pre_ids = torch.full((len(new), max(len(p) for p in new)), eot, dtype=torch.long)
        for g, p in enumerate(new):
            pre_ids[g, :len(p)] = torch.tensor(p)
        kv: list = []
        hidden_states(model, pre_ids.to(device), keep_kv=kv)
        for g, p in enumerate(new):
            memo[p] = [(k[g:g + 1, :, :len(p)], v[g:g + 1, :, :len(p)]) for k, v in kv]
    for p in [p for p in memo if p not in prefixes]:
        del memo[p]
    width_past = max(len(p) for p in prefixes)
    kv = [tuple(torch.cat([torch.nn.functional.pad(memo[p][layer][j], (0, 0, 0, width_past - len(p)))
                           for p in prefixes]) for j in (0, 1)) for layer in range(len(memo[prefixes[0]]))]
    flat = [(g, it) for g, (_, members) in enumerate(groups) for it in members]
    width = max(len(it.input_ids) - len(prefixes[g]) for g, it in flat)
    ids = torch.full((len(flat), width), eot, dtype=torch.long)
    positions = torch.zeros((len(flat), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for b, (g, it) in enumerate(flat):
        s, n = len(prefixes[g]), len(it.input_ids)
        ids[b, :n - s] = torch.tensor(it.input_ids[s:])
        positions[b] = torch.arange(s, s + width).clamp(max=top_position)  # padding
        rows += [b] * len(it.targets)
        cols += range(n - s - len(it.targets), n - s)
        targets += it.targets
    group_of = to_device([g for g, _ in flat], device)
    past = [(k.index_select(0, group_of), v.index_select(0, group_of)) for k, v in kv]
    key_mask = torch.zeros((len(flat), width_past), dtype=torch.bool)
    for b, (g, _) in enumerate(flat):
        key_mask[b, :len(prefixes[g])] = True
    hidden = hidden_states(model, ids.to(device), positions=positions.to(device), past=past,
                           key_mask=key_mask.to(device))
    picked = hidden[to_device(rows, device), to_device(cols, device)]
    head = target_logprobs(model.get_output_embeddings(), picked, to_device(targets, device),
                           *head_blocks(device, len(targets)), host_targets=targets)
    items = [it for _, it in flat]
    answers = iter(_answers(items, head.logprobs, head.greedy))
    rest_tokens = sum(len(it.input_ids) - len(prefixes[g]) for g, it in flat)
    counts = EngineStats(forward_s=time.perf_counter() - t0, tokens_forwarded=prefix_tokens + rest_tokens,
                         items_computed=len(items))
    return ScoredGroups([[next(answers) for _ in members] for _, members in groups], counts)
