"""Batched generation with a key/value cache: greedy or top-k sampling, stop strings, a budget.

Left padding lets a batch of prompts of different lengths decode in lock-step. Each example draws
its samples from its own torch.Generator seeded by (run seed, seed_key), so a sample is the same
whatever batch it lands in, in whatever order, and after a resume.

Prompts are encoded whole, then cut only as their request's `truncate` says. Requests that share
a `prefix` (a CoQA story's turns) are batched side by side; the prefix's tokens are forwarded once
and every row continues from its own copy of their keys/values (a batch may hold several stories).
The outputs are those of forwarding every prompt whole (tested).
"""
from __future__ import annotations

import hashlib
import inspect
import time
from dataclasses import dataclass, replace

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
                    sorted(d.suppress_words), seed] + ([d.suppress_mode] if d.suppress_mode != "word_initial" else []))


def suppressed_ids(engine, words: tuple[str, ...], mode: str = "word_initial") -> list[int]:
    """Token ids never to choose (Decoding.suppress_mode): "word_initial", word-initial tokens
    spelling one of `words` in any case (mid-word pieces such as "s", "t" are parts of longer words
    and stay allowed); "stripped_text", every token whose whitespace-stripped text is one of `words`."""
    memo, key = engine.suppress_memo, (words if mode == "word_initial" else (mode, words))
    if key not in memo:
        tok = engine.tokenizer
        texts = [tok.convert_tokens_to_string([p]) for p in tok.convert_ids_to_tokens(list(range(len(tok))))]
        if mode == "stripped_text":
            wanted = set(words)
            memo[key] = [i for i, t in enumerate(texts) if t.strip() in wanted]
        else:
            wanted = {w.lower() for w in words}
            memo[key] = [i for i, t in enumerate(texts) if t.startswith(" ") and t[1:].lower() in wanted]
    return memo[key]


@dataclass
class Prompt:
    """A request's token ids as the model sees them."""
    ids: list[int]
    n_prefix: int = 0   # leading ids that encode the request's `prefix` (0: none, or not reusable)
    dropped: int = 0    # tokens cut by Generation.truncate


def encode_prompt(engine, r: Generation, prefix_ids: dict[str, list[int]]) -> Prompt:
    """Encode the whole context (the tokens a plain encode gives), then cut it per `r.truncate`."""
    ids = engine.encode(r.context) or [engine.eot]
    if r.prefix and r.prefix not in prefix_ids:
        prefix_ids[r.prefix] = engine.encode(r.prefix)
    pre = prefix_ids.get(r.prefix, [])
    # BPE can merge across the prefix's end ("...\n\n" alone is one token, "\n\nQ" is three), so
    # the prefix is reusable only where its own tokens really begin the context's tokens.
    n_prefix = len(pre) if pre and ids[:len(pre)] == pre else 0
    room = engine.window - r.max_new_tokens
    if len(ids) <= room:
        return Prompt(ids, n_prefix)
    if r.truncate == "left" and room > 0:
        return Prompt(ids[-room:], 0, len(ids) - room)
    if r.truncate == "prefix_end" and pre:
        rest = ids[n_prefix:] if n_prefix else engine.encode(r.context[len(r.prefix):])
        keep = room - len(rest)
        if keep > 0:
            return Prompt(pre[:keep] + rest, keep, len(pre) - keep)
    raise ContextTooLong(
        f"prompt of {len(ids)} tokens + {r.max_new_tokens} new tokens exceeds the {engine.window}-token "
        f"window (truncate={r.truncate!r}); the task must shorten its context (seed_key={r.seed_key!r})")


def _common_prefix(seqs: list[list[int]]) -> list[int]:
    first, n = seqs[0], min(len(s) for s in seqs)
    for s in seqs[1:]:
        n = next((j for j in range(n) if s[j] != first[j]), n)
    return first[:n]


def shared_lengths(requests: list[Generation], prompts: list[Prompt], todo: list[int]) -> dict[int, int]:
    """How many leading ids of each prompt come from a forward pass shared with other requests.

    Requests with the same `prefix` whose prompts begin with its tokens share their longest common
    leading ids (so the truncated variants of one article share what they have in common); each
    prompt keeps at least one id of its own, whose logits start the decoding. 0: not shared."""
    by_prefix: dict[str, list[int]] = {}
    for i in todo:
        if prompts[i].n_prefix:
            by_prefix.setdefault(requests[i].prefix, []).append(i)
    out = dict.fromkeys(todo, 0)
    for members in by_prefix.values():
        if len(members) > 1:
            n = len(_common_prefix([prompts[i].ids[:prompts[i].n_prefix] for i in members]))
            out.update({i: min(n, len(prompts[i].ids) - 1) for i in members})
    return out


def generate_all(engine, requests: list[Generation], desc: str = "",
                 reuse_prefix: bool = True) -> list[GenerationResult]:
    """Answer generation requests; reuse_prefix=False forwards every prompt whole (same outputs)."""
    prefix_ids: dict[str, list[int]] = {}
    prompts = [encode_prompt(engine, r, prefix_ids) for r in requests]
    keys = [generation_key(engine, r, p.ids) for r, p in zip(requests, prompts)]
    done: dict[str, GenerationResult] = {}
    if engine.cache is not None:
        done.update({k: GenerationResult(**v) for k, v in engine.cache.get_many(sorted(set(keys))).items()})
    todo = list({k: i for i, k in enumerate(keys) if k not in done}.values())
    engine.stats["items_cached"] += len(requests) - len(todo)
    total = lambda i: len(prompts[i].ids) + requests[i].max_new_tokens  # noqa: E731
    n_shared = shared_lengths(requests, prompts, todo) if reuse_prefix else dict.fromkeys(todo, 0)
    # Sharers sorted so that each prefix's requests are adjacent (a prefix is then forwarded once,
    # even across batches), longest groups first; everything else longest first: little padding.
    longest: dict[str, int] = {}
    for i in todo:
        longest[requests[i].prefix] = max(longest.get(requests[i].prefix, 0), total(i))
    sharers = sorted((i for i in todo if n_shared[i]),
                     key=lambda i: (-longest[requests[i].prefix], requests[i].prefix, -total(i)))
    alone = sorted((i for i in todo if not n_shared[i]), key=lambda i: -total(i))
    bar = tqdm(total=len(todo), desc=desc or "generating", unit="ex", disable=not engine.progress or not todo,
               leave=False)
    memo: dict = {}  # shared prefix -> its keys/values, kept from one batch to the next
    for rows in (sharers, alone):
        for idx in engine.batches(rows, total):
            outs = engine.split_on_oom(idx, lambda part: _generate_batch(
                engine, [requests[i] for i in part], [prompts[i].ids for i in part], [n_shared[i] for i in part],
                memo))
            fresh = {keys[i]: o for i, o in zip(idx, outs)}
            done.update(fresh)
            if engine.cache is not None:
                engine.cache.put_many({k: vars(o) for k, o in fresh.items()})
            bar.update(len(idx))
    bar.close()
    return [replace(done[k], prompt_tokens=len(p.ids), truncated_tokens=p.dropped) for k, p in zip(keys, prompts)]


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


def _shared_cache(engine, shared: list[tuple[int, ...]], memo: dict):
    """A cache whose row b holds the keys/values of prefix shared[b], left-padded with zeros to
    the longest, and the mask of its real positions. Prefixes found in `memo` (those of the
    previous batch: a story's turns are adjacent) are not forwarded again; the others are
    forwarded once each, in one left-padded batch. `memo` is left holding this batch's prefixes."""
    from transformers import DynamicCache
    distinct = list(dict.fromkeys(shared))
    new = [p for p in distinct if p not in memo]
    if new:
        ids, mask = (t.to(engine.device) for t in _left_pad([list(p) for p in new], engine.eot))
        out = engine.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                           use_cache=True, logits_to_keep=1)
        layers = [(layer[0], layer[1]) for layer in _cache_of(out)]
        for g, p in enumerate(new):  # each prefix's real positions: the last len(p), after its padding
            memo[p] = [(k[g, :, -len(p):], v[g, :, -len(p):]) for k, v in layers]
        engine.stats["prefill_tokens"] += sum(len(p) for p in new)
        engine.stats["tokens_forwarded"] += sum(len(p) for p in new)
    for p in [p for p in memo if p not in distinct]:
        del memo[p]
    width = max(len(p) for p in distinct)

    def rows(layer: int, kv: int) -> torch.Tensor:  # [batch, heads, width, dim]: zeros left of each prefix
        return torch.stack([torch.nn.functional.pad(memo[p][layer][kv], (0, 0, width - len(p), 0)) for p in shared])
    data = [(rows(layer, 0), rows(layer, 1)) for layer in range(len(memo[distinct[0]]))]
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in shared], device=engine.device)
    if hasattr(DynamicCache, "from_legacy_cache"):  # transformers 4.x
        return DynamicCache.from_legacy_cache(tuple(data)), mask
    return DynamicCache(data), mask


@torch.inference_mode()
def _generate_batch(engine, reqs: list[Generation], ctxs: list[list[int]], n_shared: list[int] | None = None,
                    memo: dict | None = None) -> list[GenerationResult]:
    """Decode a batch in lock-step. Row b's first n_shared[b] ids are a prefix shared with other
    requests: its keys/values come from _shared_cache, and the row feeds only the rest of its
    prompt, laid out as [padding | prefix | padding | rest] with every padding masked and the
    positions counting real tokens only. Either every row shares a prefix or none does."""
    model, device, eot, tok = engine.model, engine.device, engine.eot, engine.tokenizer
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
        past, prefix_mask = _shared_cache(engine, [tuple(c[:n]) for c, n in zip(ctxs, n_shared)],
                                          {} if memo is None else memo)
        prior = {cache_kw: past}
        mask = torch.cat([prefix_mask, mask], dim=1)
    gens = [None if r.decoding.greedy else torch.Generator().manual_seed(example_seed(engine.seed, r.seed_key))
            for r in reqs]
    banned = [suppressed_ids(engine, r.decoding.suppress_words, r.decoding.suppress_mode)
              if r.decoding.suppress_words else [] for r in reqs]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                **prior)
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
    engine.stats["tokens_forwarded"] += sum(len(c) for c in rests) + sum(len(n) for n in new)
    engine.stats["prefill_tokens"] += sum(len(c) for c in rests)
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
