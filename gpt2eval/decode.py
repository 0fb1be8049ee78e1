"""Batched generation with a key/value cache: greedy or top-k sampling, stop strings.

Left padding lets a batch of prompts of different lengths decode in lock-step. Each example draws
its samples from its own torch.Generator seeded by (run seed, seed_key), so a sample is the same
whatever batch it lands in, in whatever order, and after a resume.

Rows that share a prefix (a CoQA story's turns) continue from their own copy of the prefix's
keys/values, forwarded once (`_shared_cache`); the outputs are those of forwarding every prompt
whole (tested). Which prompts form a batch, and which prefix they share, is schedule.py's job.
"""
from __future__ import annotations

import inspect
import time

import torch

from .encode import example_seed
from .requests import Generation, GenerationResult


def suppressed_ids(tokenizer, words: tuple[str, ...], memo: dict, mode: str = "word_initial") -> list[int]:
    """Token ids never to choose (Decoding.suppress_mode): "word_initial", word-initial tokens
    spelling one of `words` in any case (mid-word pieces such as "s", "t" are parts of longer words
    and stay allowed); "stripped_text", every token whose whitespace-stripped text is one of `words`.
    `memo` keeps the answer per mode and set of words."""
    key = words if mode == "word_initial" else (mode, words)
    if key not in memo:
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        texts = [tokenizer.convert_tokens_to_string([p]) for p in pieces]
        if mode == "stripped_text":
            wanted = set(words)
            memo[key] = [i for i, t in enumerate(texts) if t.strip() in wanted]
        else:
            wanted = {w.lower() for w in words}
            memo[key] = [i for i, t in enumerate(texts) if t.startswith(" ") and t[1:].lower() in wanted]
    return memo[key]


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


def _left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists left-padded to one width, and the mask of their real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[b, width - len(r):] = 1
    return ids, mask


def _shared_cache(model, eot: int, stats: dict, shared: list[tuple[int, ...]], memo: dict):
    """A cache whose row b holds the keys/values of prefix shared[b], left-padded with zeros to
    the longest, and the mask of its real positions. Prefixes found in `memo` (those of the
    previous batch: a story's turns are adjacent) are not forwarded again; the others are
    forwarded once each, in one left-padded batch. `memo` is left holding this batch's prefixes."""
    from transformers import DynamicCache
    distinct = list(dict.fromkeys(shared))
    new = [p for p in distinct if p not in memo]
    if new:
        device = next(model.parameters()).device
        ids, mask = (t.to(device) for t in _left_pad([list(p) for p in new], eot))
        out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    use_cache=True, logits_to_keep=1)
        layers = [(layer[0], layer[1]) for layer in _cache_of(out)]
        for g, p in enumerate(new):  # each prefix's real positions: the last len(p), after its padding
            memo[p] = [(k[g, :, -len(p):], v[g, :, -len(p):]) for k, v in layers]
        stats["prefill_tokens"] += sum(len(p) for p in new)
        stats["tokens_forwarded"] += sum(len(p) for p in new)
    for p in [p for p in memo if p not in distinct]:
        del memo[p]
    width = max(len(p) for p in distinct)

    def rows(layer: int, kv: int) -> torch.Tensor:  # [batch, heads, width, dim]: zeros left of each prefix
        return torch.stack([torch.nn.functional.pad(memo[p][layer][kv], (0, 0, width - len(p), 0)) for p in shared])
    data = [(rows(layer, 0), rows(layer, 1)) for layer in range(len(memo[distinct[0]]))]
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in shared], device=data[0][0].device)
    if hasattr(DynamicCache, "from_legacy_cache"):  # transformers 4.x
        return DynamicCache.from_legacy_cache(tuple(data)), mask
    return DynamicCache(data), mask


@torch.inference_mode()
def generate_batch(model, tokenizer, reqs: list[Generation], ctxs: list[list[int]], n_shared: list[int] | None = None,
                   memo: dict | None = None, *, seed: int, stats: dict, suppress_memo: dict) -> list[dict]:
    """Decode a batch in lock-step; each row's answer is `decoded(ids, ended)`, what the result
    cache stores (`finish` turns it into text when it is read). Row b's first n_shared[b] ids are a prefix shared with other
    requests: its keys/values come from _shared_cache, and the row feeds only the rest of its
    prompt, laid out as [padding | prefix | padding | rest] with every padding masked and the
    positions counting real tokens only. Either every row shares a prefix or none does."""
    device, eot, tok = next(model.parameters()).device, tokenizer.eos_token_id, tokenizer
    n_shared = n_shared or [0] * len(ctxs)
    if any(n_shared) and not all(n_shared):
        raise ValueError("a batch mixes rows with and without a shared prefix")
    t0 = time.perf_counter()
    cache_kw = _cache_kw(model)
    rests = [c[n:] for c, n in zip(ctxs, n_shared)]
    ids, mask = _left_pad(rests, eot)
    ids, mask = ids.to(device), mask.to(device)
    prior = {}
    if any(n_shared):
        past, prefix_mask = _shared_cache(model, eot, stats, [tuple(c[:n]) for c, n in zip(ctxs, n_shared)],
                                          {} if memo is None else memo)
        prior = {cache_kw: past}
        mask = torch.cat([prefix_mask, mask], dim=1)
    gens = [None if r.decoding.greedy else torch.Generator().manual_seed(example_seed(seed, r.seed_key))
            for r in reqs]
    banned = [suppressed_ids(tok, r.decoding.suppress_words, suppress_memo, r.decoding.suppress_mode)
              if r.decoding.suppress_words else [] for r in reqs]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                **prior)
    new = [[] for _ in reqs]
    results: list[dict | None] = [None] * len(reqs)
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
                results[b] = decoded(new[b], "eos")
                continue
            new[b].append(t)
            results[b] = _check_stop(tok, new[b], r)
        if all(res is not None for res in results):
            break
        mask = torch.cat([mask, mask.new_ones((len(reqs), 1))], dim=1)
        positions = positions[:, -1:] + 1
        out = model(input_ids=torch.tensor(nxt, device=device)[:, None], attention_mask=mask,
                    position_ids=positions, use_cache=True, **{cache_kw: _cache_of(out)})
    stats["forward_s"] += time.perf_counter() - t0
    stats["tokens_forwarded"] += sum(len(c) for c in rests) + sum(len(n) for n in new)
    stats["prefill_tokens"] += sum(len(c) for c in rests)
    stats["items_computed"] += len(reqs)
    return [res or decoded(new[b], "length") for b, res in enumerate(results)]


def _check_stop(tok, new_ids: list[int], req: Generation) -> dict | None:
    """Whether to stop decoding this row now: a stop string appeared, or the budget is spent."""
    if req.stop:
        text = tok.decode(new_ids)
        if any(s in text for s in req.stop):
            return decoded(new_ids, "stop")
    if len(new_ids) >= req.max_new_tokens:
        return decoded(new_ids, "length")
    return None


def decoded(new_ids: list[int], ended: str) -> dict:
    """A row's answer as the cache keeps it: the generated token ids (the end-of-text token not
    among them) and why decoding ended ("eos", "stop" or "length"). Text is never cached, so a
    change to how it is cut never serves an old cut."""
    return {"token_ids": list(new_ids), "ended": ended}


def finish(tok, answer: dict, req: Generation) -> GenerationResult:
    """The request's result from a decoded (or cached) answer: the text cut before the first stop string."""
    new_ids = answer["token_ids"]
    raw = tok.decode(new_ids)
    cut = min([raw.index(s) for s in req.stop if s in raw], default=len(raw))
    return GenerationResult(text=raw[:cut], raw_text=raw, n_tokens=len(new_ids),
                            stopped_by="stop" if cut < len(raw) else answer["ended"], token_ids=list(new_ids))
