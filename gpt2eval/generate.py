"""Batched generation with a key/value cache: greedy or top-k sampling, stop strings, a budget.

Left padding lets a batch of prompts of different lengths decode in lock-step. Each example draws
its samples from its own torch.Generator seeded by (run seed, seed_key), so a sample is the same
whatever batch it lands in, in whatever order, and after a resume.
"""
from __future__ import annotations

import hashlib
import inspect
import time

import torch
from tqdm.auto import tqdm

from .requests import Generation, GenerationResult


def example_seed(run_seed: int, seed_key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{run_seed}/{seed_key}".encode()).digest()[:8], "little") & (2**63 - 1)


class ContextTooLong(ValueError):
    pass


def generation_key(engine, req: Generation, ctx_ids: list[int]) -> str:
    from .engine import _digest
    d = req.decoding
    seed = None if d.greedy else example_seed(engine.seed, req.seed_key)
    return _digest(["gen", ctx_ids, req.max_new_tokens, list(req.stop), d.top_k, d.temperature,
                    sorted(d.suppress_words), seed])


def suppressed_ids(engine, words: tuple[str, ...]) -> list[int]:
    """Token ids of word-initial tokens spelling one of `words`; mid-word pieces ("s", "t") are
    parts of longer words and stay allowed."""
    memo = engine.suppress_memo
    if words not in memo:
        tok, wanted = engine.tokenizer, {w.lower() for w in words}
        pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
        memo[words] = [i for i, p in enumerate(pieces)
                       if (t := tok.convert_tokens_to_string([p])).startswith(" ") and t[1:].lower() in wanted]
    return memo[words]


def generate_all(engine, requests: list[Generation], desc: str = "") -> list[GenerationResult]:
    encoded = []
    for r in requests:
        ids = engine.encode(r.context) or [engine.eot]
        if len(ids) + r.max_new_tokens > engine.window:
            raise ContextTooLong(
                f"prompt of {len(ids)} tokens + {r.max_new_tokens} new tokens exceeds the {engine.window}-token "
                f"window; the task must shorten its context (seed_key={r.seed_key!r})")
        encoded.append(ids)
    keys = [generation_key(engine, r, ids) for r, ids in zip(requests, encoded)]
    done: dict[str, GenerationResult] = {}
    if engine.cache is not None:
        done.update({k: GenerationResult(**v) for k, v in engine.cache.get_many(sorted(set(keys))).items()})
    todo = sorted({k: i for i, k in enumerate(keys) if k not in done}.items(),
                  key=lambda kv: -(len(encoded[kv[1]]) + requests[kv[1]].max_new_tokens))
    engine.stats["items_cached"] += len(requests) - len(todo)
    bar = tqdm(total=len(todo), desc=desc or "generating", unit="ex", disable=not engine.progress or not todo,
               leave=False)
    for batch in engine.batches(todo, lambda kv: len(encoded[kv[1]]) + requests[kv[1]].max_new_tokens):
        idx = [i for _, i in batch]
        outs = _generate_batch(engine, [requests[i] for i in idx], [encoded[i] for i in idx])
        fresh = {k: o for (k, _), o in zip(batch, outs)}
        done.update(fresh)
        if engine.cache is not None:
            engine.cache.put_many({k: vars(o) for k, o in fresh.items()})
        bar.update(len(batch))
    bar.close()
    return [done[k] for k in keys]


def _cache_kw(model) -> str:
    """transformers 5.x renamed `past_key_values` to `cache`; accept either."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(out):
    return out["cache"] if "cache" in out else out["past_key_values"]


def _choose(logits: torch.Tensor, req: Generation, gen: torch.Generator | None, banned: list[int]) -> int:
    d = req.decoding
    if banned:
        logits = logits.clone()
        logits[banned] = float("-inf")
    if d.greedy:
        return int(logits.argmax())
    top = torch.topk(logits / d.temperature, d.top_k)
    pick = torch.multinomial(torch.softmax(top.values, -1).cpu(), 1, generator=gen)
    return int(top.indices[pick.item()])


@torch.inference_mode()
def _generate_batch(engine, reqs: list[Generation], ctxs: list[list[int]]) -> list[GenerationResult]:
    model, device, eot, tok = engine.model, engine.device, engine.eot, engine.tokenizer
    width = max(len(c) for c in ctxs)
    ids = torch.full((len(ctxs), width), eot, dtype=torch.long)
    mask = torch.zeros((len(ctxs), width), dtype=torch.long)
    for b, c in enumerate(ctxs):
        ids[b, width - len(c):] = torch.tensor(c)
        mask[b, width - len(c):] = 1
    gens = [None if r.decoding.greedy else torch.Generator().manual_seed(example_seed(engine.seed, r.seed_key))
            for r in reqs]
    banned = [suppressed_ids(engine, r.decoding.suppress_words) if r.decoding.suppress_words else [] for r in reqs]
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    t0 = time.perf_counter()
    cache_kw = _cache_kw(model)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    new = [[] for _ in reqs]
    results: list[GenerationResult | None] = [None] * len(reqs)
    for step in range(max(r.max_new_tokens for r in reqs)):
        logits = out.logits[:, -1, :].float()
        nxt = []
        for b, r in enumerate(reqs):
            if results[b] is not None:
                nxt.append(eot)
                continue
            t = _choose(logits[b], r, gens[b], banned[b])
            nxt.append(t)
            if t == eot:
                results[b] = _finish(tok, new[b], r, "eos")
                continue
            new[b].append(t)
            results[b] = _check_stop(tok, new[b], r)
        if all(res is not None for res in results):
            break
        mask = torch.cat([mask, mask.new_ones((len(reqs), 1))], dim=1)
        positions = positions[:, -1:] + 1
        out = model(input_ids=torch.tensor(nxt, device=device)[:, None], attention_mask=mask,
                    position_ids=positions, use_cache=True, **{cache_kw: _cache_of(out)})
    engine.stats["forward_s"] += time.perf_counter() - t0
    engine.stats["tokens_forwarded"] += sum(len(c) for c in ctxs) + sum(len(n) for n in new)
    engine.stats["items_computed"] += len(reqs)
    return [res or _finish(tok, new[b], reqs[b], "length") for b, res in enumerate(results)]


def _check_stop(tok, new_ids: list[int], req: Generation) -> GenerationResult | None:
    if req.stop:
        text = tok.decode(new_ids)
        if any(s in text for s in req.stop):
            return _finish(tok, new_ids, req, "stop")
    if len(new_ids) >= req.max_new_tokens:
        return _finish(tok, new_ids, req, "length")
    return None


def _finish(tok, new_ids: list[int], req: Generation, why: str) -> GenerationResult:
    raw = tok.decode(new_ids)
    cut = min([raw.index(s) for s in req.stop if s in raw], default=len(raw))
    return GenerationResult(text=raw[:cut], raw_text=raw, n_tokens=len(new_ids),
                            stopped_by="stop" if cut < len(raw) else why)
