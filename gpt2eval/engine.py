"""The one scoring engine: answers every task's requests in length-sorted batches.

Both log-likelihood request types reduce to one unit, a `ScoreItem`: a token sequence of at most
one window and the targets predicted at its last positions. Items are what gets batched and cached,
so a 100k-token perplexity stream is resumable window by window. Generation is answered by
`gpt2eval.generate`, which shares the batching and the cache.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .errors import UserError
from .requests import (Generation, Loglikelihood, LoglikelihoodResult, Request, Result,
                       RollingLoglikelihood, RollingResult)

HEAD_CHUNK = 2048  # positions per LM-head block (GPU)
VOCAB_BLOCK = 8192  # vocabulary entries per LM-head block (the logits are never [positions, vocab] at once)
# CPU, 2 cores, GPT-2 small (measured): 1,024 positions x 2,048 entries (8 MB of logits) scores a
# 1,024-token window's head in 480 ms against 580 ms with 8,192 entries; under 128 positions
# (LAMBADA's targets) wide blocks are as fast or faster, with fewer passes over their short rows.
CPU_HEAD_CHUNK, CPU_VOCAB_BLOCK, CPU_NARROW_BELOW = 1024, 2048, 128
CPU_SCORING_BUDGET = 1024  # padded tokens per CPU scoring batch: activations stay in cache (measured)
CPU_GENERATION_BUDGET = 8192  # CPU generation: more rows per step, but a key/value cache that still fits (measured)


@dataclass(frozen=True)
class ScoreItem:
    input_ids: tuple[int, ...]
    targets: tuple[int, ...]  # predicted by the last len(targets) positions of input_ids

    def key(self) -> str:
        return _digest(["score", self.input_ids, self.targets])


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()


def rolling_windows(tokens: list[int], eot: int, window: int, stride: int | None) -> list[ScoreItem]:
    """Split a token stream into items that score every token exactly once.

    The stream is prefixed with <|endoftext|> so that its first token has a context. The first
    window scores `window` tokens; each later one scores the next `stride` tokens and sees up to
    `window - stride` tokens before them (only the single previous token when stride == window).
    """
    stride = stride or window
    if not 0 < stride <= window:
        raise ValueError(f"stride must be in 1..{window}, got {stride}")
    seq = [eot] + list(tokens)
    items, start, end = [], 0, min(window, len(tokens))
    while start < len(tokens):
        items.append(ScoreItem(tuple(seq[max(0, end - window):end]), tuple(tokens[start:end])))
        start, end = end, min(end + stride, len(tokens))
    return items


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


class Engine:
    """Answers requests with a causal LM. `cache` (optional) has get_many(keys)->dict and
    put_many(dict); results are stored batch by batch, so an interrupted run loses at most one batch."""

    def __init__(self, model, tokenizer, *, batch_size: int | str = "auto", seed: int = 1234,
                 cache=None, progress: bool = True, window: int | None = None, log=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.window = window or getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
        self.eot = tokenizer.eos_token_id
        self.batch_size = batch_size
        self.seed = seed
        self.cache = cache
        self.progress = progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.max_batch: int | None = None  # lowered for the rest of the run by an out-of-memory error
        self.suppress_memo: dict[tuple[str, ...], list[int]] = {}  # generate.suppressed_ids
        self.stats = {"items_computed": 0, "items_cached": 0, "tokens_forwarded": 0, "forward_s": 0.0,
                      "oom_retries": 0, "prefill_tokens": 0}

    # ---- public API ------------------------------------------------------------------------
    def run(self, requests: list[Request], desc: str = "") -> list[Result]:
        """Answer a mixed list of requests, returning results in the same order."""
        results: list[Result | None] = [None] * len(requests)
        for kind, method in ((Loglikelihood, self.loglikelihood), (RollingLoglikelihood, self.rolling_loglikelihood),
                             (Generation, self.generate)):
            idx = [i for i, r in enumerate(requests) if isinstance(r, kind)]
            if idx:
                for i, res in zip(idx, method([requests[i] for i in idx], desc=desc)):
                    results[i] = res
        return results

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def loglikelihood(self, requests: list[Loglikelihood], desc: str = "") -> list[LoglikelihoodResult]:
        items, truncated = [], []
        for r in requests:
            context, continuation = r.context, r.continuation
            n_space = len(context) - len(context.rstrip(" "))  # the space belongs to the continuation
            if n_space:
                context, continuation = context[:-n_space], context[-n_space:] + continuation
            ctx = self.encode(context) or [self.eot]
            cont = self.encode(continuation)
            if not cont:
                raise ValueError(f"empty continuation for context ending {context[-40:]!r}")
            full = (ctx + cont)[-(self.window + 1):]
            truncated.append(len(ctx) + len(cont) > self.window + 1)
            items.append(ScoreItem(tuple(full[:-1]), tuple(cont)))
        scored = self.score(items, desc=desc)
        return [LoglikelihoodResult(float(sum(lp)), all(g), lp, g, t) for (lp, g), t in zip(scored, truncated)]

    def rolling_loglikelihood(self, requests: list[RollingLoglikelihood], desc: str = "") -> list[RollingResult]:
        encodings = [self.tokenizer(r.text, add_special_tokens=False, return_offsets_mapping=True) for r in requests]
        per_request = [rolling_windows(e["input_ids"], self.eot, self.window, r.stride)
                       for e, r in zip(encodings, requests)]
        scored = iter(self.score([it for items in per_request for it in items], desc=desc))
        out = []
        for items, enc in zip(per_request, encodings):
            logprobs: list[float] = []
            for _ in items:
                logprobs.extend(next(scored)[0])
            out.append(RollingResult(logprobs, [start for start, _ in enc["offset_mapping"]]))
        return out

    def generate(self, requests: list[Generation], desc: str = ""):
        from .generate import generate_all  # generation lives in its own module
        return generate_all(self, requests, desc=desc)

    # ---- scoring ---------------------------------------------------------------------------
    def score(self, items: list[ScoreItem], desc: str = "") -> list[tuple[list[float], list[bool]]]:
        """Log-probabilities and greedy flags of each item's targets; cached items are not recomputed."""
        keys = [it.key() for it in items]
        done: dict[str, tuple[list[float], list[bool]]] = {}
        if self.cache is not None:
            done.update(self.cache.get_many(sorted(set(keys))))
        todo = sorted({k: it for k, it in zip(keys, items) if k not in done}.items(),
                      key=lambda kv: -len(kv[1].input_ids))  # longest first: padding stays small
        self.stats["items_cached"] += len(items) - len(todo)
        bar = tqdm(total=sum(len(it.targets) for _, it in todo), desc=desc or "scoring", unit="tok", unit_scale=True,
                   disable=not self.progress or not todo, leave=False)
        for batch in self.batches(todo, lambda kv: len(kv[1].input_ids), scoring=True):
            scored = self.split_on_oom(batch, lambda part: self._score_batch([it for _, it in part]))
            fresh = dict(zip([k for k, _ in batch], scored))
            done.update(fresh)
            if self.cache is not None:
                self.cache.put_many(fresh)
            bar.update(sum(len(it.targets) for _, it in batch))
            bar.set_postfix_str(f"{len(done)}/{len(set(keys))} items", refresh=False)
        bar.close()
        return [done[k] for k in keys]

    def batches(self, todo: list, length_of, scoring: bool = False):
        """Group length-sorted work into batches: a fixed count, or ("auto") a token budget."""
        i = 0
        while i < len(todo):
            if self.batch_size == "auto":
                budget, n = self.token_budget(scoring), 1
                while i + n < len(todo) and (n + 1) * length_of(todo[i]) <= budget:
                    n += 1
            else:
                n = int(self.batch_size)
            n = min(n, self.max_batch or n)
            yield todo[i:i + n]
            i += n

    def split_on_oom(self, batch: list, forward) -> list:
        """forward(batch) -> one answer per element. Out of memory: retry in halves, and cap later
        batches at the size that fit, rather than lose a long run to one batch that is too large.
        Each answer depends only on its own item, so the results are those of a smaller batch."""
        try:
            return forward(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise UserError(f"out of memory on {self.device} with a batch of one; free the device, or use a "
                                "smaller model, --dtype bfloat16 or another --device") from None
        # Retried outside the except block, so the failed attempt's tensors are already released.
        half = (len(batch) + 1) // 2
        self.max_batch = min(self.max_batch or half, half)
        self.stats["oom_retries"] += 1
        self.log(f"out of memory on a batch of {len(batch)}: retrying in batches of at most {self.max_batch}, "
                 "and keeping that limit for the rest of the run")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        out, i = [], 0
        while i < len(batch):  # max_batch may fall further while the first part is retried
            n = self.max_batch
            out += self.split_on_oom(batch[i:i + n], forward)
            i += n
        return out

    def token_budget(self, scoring: bool = False) -> int:
        """Tokens per padded batch for --batch-size auto: from free device memory on CUDA. On CPU,
        scoring batches of about one window keep the activations in cache, while generation gains
        from rows sharing each read of the weights in its one-token steps, up to where the growing
        key/value cache costs more (both measured on 2 cores; benchmarks/)."""
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            cfg = self.model.config
            per_token = 16 * cfg.hidden_size * (cfg.num_hidden_layers // 8 + 4) * self.model.dtype.itemsize
            return int(max(self.window, min(256 * 1024, 0.4 * free / per_token)))
        if self.device.type == "cpu":
            return CPU_SCORING_BUDGET if scoring else CPU_GENERATION_BUDGET
        return 16 * 1024

    @torch.inference_mode()
    def _score_batch(self, items: list[ScoreItem]) -> list[tuple[list[float], list[bool]]]:
        width = max(len(it.input_ids) for it in items)
        ids = torch.full((len(items), width), self.eot, dtype=torch.long)
        rows, cols, targets = [], [], []
        for b, it in enumerate(items):
            n = len(it.input_ids)
            ids[b, :n] = torch.tensor(it.input_ids)
            rows += [b] * len(it.targets)
            cols += range(n - len(it.targets), n)
            targets += it.targets
        t0 = time.perf_counter()
        # Right padding needs no attention mask: causal attention never looks at later (pad) positions.
        ids = ids.to(self.device)
        if fused_gpt2(self.model):
            hidden = gpt2_hidden_states(self.model, ids)
        else:
            hidden = self.model.base_model(input_ids=ids, use_cache=False).last_hidden_state
        picked = hidden[torch.tensor(rows, device=self.device), torch.tensor(cols, device=self.device)]
        if self.device.type == "cpu":
            block = CPU_HEAD_CHUNK, CPU_VOCAB_BLOCK if len(targets) >= CPU_NARROW_BELOW else VOCAB_BLOCK
        else:
            block = HEAD_CHUNK, VOCAB_BLOCK
        lp, greedy = target_logprobs(self.model.get_output_embeddings(), picked,  # the LM head only where needed
                                     torch.tensor(targets, device=self.device), *block)
        lp_all, g_all = lp.cpu().tolist(), greedy.cpu().tolist()
        self.stats["forward_s"] += time.perf_counter() - t0
        self.stats["tokens_forwarded"] += sum(len(it.input_ids) for it in items)
        self.stats["items_computed"] += len(items)
        out, s = [], 0
        for it in items:
            out.append((lp_all[s:s + len(it.targets)], g_all[s:s + len(it.targets)]))
            s += len(it.targets)
        return out
