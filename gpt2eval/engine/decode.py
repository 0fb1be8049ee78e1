"""Batched generation with a key/value cache: greedy or top-k sampling, stop strings.

Left padding lets a batch of prompts of different lengths decode in lock-step. Each example draws
its samples from its own torch.Generator seeded by (run seed, seed_key), so a sample is the same
whatever batch it lands in, in whatever order, and after a resume.

Two ways to step: a stock GPT-2 (forward.fused_gpt2) decodes through fused_decode.py, whose
rows share their context's keys/values read-only and write each step's in place; other models,
and rows sharing a prefix (a CoQA story's turns, each continuing its own copy of the prefix's
keys/values, forwarded once by `_shared_cache`), step through the model's own forward and a
transformers cache. Either way the outputs are those of forwarding every prompt whole (tested).
Which prompts form a batch, and which prefix they share, is schedule.py's job.
"""
from __future__ import annotations

import re
import time
from typing import NamedTuple

import torch

from .encode import example_seed
from .forward import cache_kw, cache_layers, cache_of, fused_gpt2, gpt2_hidden_states, make_cache
from .fused_decode import ContextDecoder, stack_contexts
from .heads import to_device
from .stats import EngineStats
from ..api.requests import Generation, GenerationResult


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


def _left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists left-padded to one width, and the mask of their real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[b, width - len(r):] = 1
    return ids, mask


def padded_cache(rows: list[list]):
    """A cache whose row b holds rows[b] (per layer (k, v) [heads, n_b, head_dim]), left-padded with
    zeros to the longest, and the mask of its real positions."""
    width = max(r[0][0].shape[1] for r in rows)

    def stack(layer: int, kv: int) -> torch.Tensor:  # [batch, heads, width, dim]: zeros left of each row
        return torch.stack([torch.nn.functional.pad(r[layer][kv], (0, 0, width - r[layer][kv].shape[1], 0))
                            for r in rows])
    data = [(stack(layer, 0), stack(layer, 1)) for layer in range(len(rows[0]))]
    mask = torch.tensor([[0] * (width - r[0][0].shape[1]) + [1] * r[0][0].shape[1] for r in rows],
                        device=data[0][0].device)
    return make_cache(data), mask


def _shared_cache(model, eot: int, counts: EngineStats, shared: list[tuple[int, ...]], memo: dict):
    """A cache whose row b holds the keys/values of prefix shared[b] (`padded_cache`). Prefixes
    found in `memo` (those of the previous batch: a story's turns are adjacent) are not forwarded
    again; the others are forwarded once each, in one left-padded batch, and added to `counts` (the
    decode's). `memo` is left holding this batch's prefixes."""
    distinct = list(dict.fromkeys(shared))
    new = [p for p in distinct if p not in memo]
    if new:
        device = next(model.parameters()).device
        ids, mask = (t.to(device) for t in _left_pad([list(p) for p in new], eot))
        out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    use_cache=True, logits_to_keep=1)
        layers = cache_layers(cache_of(out))
        for g, p in enumerate(new):  # each prefix's real positions: the last len(p), after its padding
            memo[p] = [(k[g, :, -len(p):], v[g, :, -len(p):]) for k, v in layers]
        counts.prefill_tokens += sum(len(p) for p in new)
        counts.tokens_forwarded += sum(len(p) for p in new)
    for p in [p for p in memo if p not in distinct]:
        del memo[p]
    return padded_cache([memo[p] for p in shared])


class Chooser:
    """The next token of every row at once: suppressed words masked as one [rows, vocab] tensor,
    one argmax for the greedy rows, one top-k for the sampled ones, one copy to the host. With each
    token comes the model's log-probability of it: the log-softmax of the logits it was chosen
    from, before any suppression or temperature (GenerationResult.token_logprobs).

    A sampled row draws one uniform number per step from its own generator, seeded by (run seed,
    seed_key), and takes the first of its top-k tokens whose cumulative probability exceeds it:
    the same sample whatever batch the example is in. Only those draws are per row, on the host."""

    def __init__(self, reqs: list[Generation], tokenizer, seed: int, suppress_memo: dict, vocab: int, device):
        self.device = device
        self.gens = [None if r.decoding.greedy else torch.Generator().manual_seed(example_seed(seed, r.seed_key))
                     for r in reqs]
        self.sampled = [b for b, g in enumerate(self.gens) if g is not None]
        self.ban = None
        if any(r.decoding.suppress_words for r in reqs):
            ban = torch.zeros((len(reqs), vocab), dtype=torch.bool)
            for b, r in enumerate(reqs):
                if r.decoding.suppress_words:
                    ban[b, suppressed_ids(tokenizer, r.decoding.suppress_words, suppress_memo,
                                       r.decoding.suppress_mode)] = True
            self.ban = ban.to(device)
        if self.sampled:
            ks = [reqs[b].decoding.top_k for b in self.sampled]
            self.k_max = max(ks)
            self.beyond_k = (torch.arange(self.k_max)[None, :] >= torch.tensor(ks)[:, None]).to(device)
            self.temperature = torch.tensor([[reqs[b].decoding.temperature] for b in self.sampled],
                                            dtype=torch.float32).to(device)
            self.sampled_rows = torch.tensor(self.sampled).to(device)
            self.greedy_rows = torch.tensor([g is None for g in self.gens]).to(device)

    def __call__(self, logits: torch.Tensor, active: list[bool]) -> tuple[list[int], list[float]]:
        logits = raw = logits.float()
        if self.ban is not None:
            logits = logits.masked_fill(self.ban[:logits.shape[0]], float("-inf"))
        pick = logits.argmax(dim=-1)
        if self.sampled:
            top = torch.topk(logits[self.sampled_rows] / self.temperature, self.k_max)
            probs = torch.softmax(top.values.masked_fill(self.beyond_k, float("-inf")), dim=-1)
            u = torch.tensor([float(torch.rand(1, generator=self.gens[b])) if active[b] else 0.0
                              for b in self.sampled], dtype=torch.float32).to(self.device)
            at = (probs.cumsum(-1) < u[:, None]).sum(-1).clamp(max=self.k_max - 1)
            sampled = top.indices.gather(1, at[:, None]).squeeze(1)
            pick = pick.index_put((self.sampled_rows,), sampled)
        logprob = torch.log_softmax(raw, dim=-1).gather(1, pick[:, None]).squeeze(1)
        ids, logprobs = torch.stack([pick.double(), logprob.double()]).cpu().tolist()  # the one copy (ids exact)
        return [int(i) for i in ids], logprobs


class Generated(NamedTuple):
    """What `generate_batch` computes."""
    answers: list[dict]  # per row, `decoded(ids, ended)`
    counts: EngineStats


@torch.inference_mode()
def generate_batch(model, tokenizer, reqs: list[Generation], ctxs: list[list[int]], n_shared: list[int] | None = None,
                   memo: dict | None = None, *, seed: int, suppress_memo: dict,
                   seeds: list | None = None) -> Generated:
    """Decode a batch in lock-step; each row's answer is `decoded(ids, ended)`, what the result
    cache stores (`finish` turns it into text when it is read), returned with what was computed.
    Row b's first n_shared[b] ids are a prefix shared with other requests: its keys/values come
    from _shared_cache, and the row feeds only the rest of its prompt, laid out as [padding |
    prefix | padding | rest] with every padding masked and the positions counting real tokens
    only. Either every row shares a prefix or none does.

    seeds (optional): per row, its whole prompt's keys/values and the next-token logits after it
    (forward.score_batch's `keep`, from a log-likelihood forward over the same context): then no
    prompt token is forwarded again, and on the fused path rows holding the same seed (LAMBADA's
    two stop-word decodes of one passage) read one copy of its keys/values."""
    device, eot, tok = next(model.parameters()).device, tokenizer.eos_token_id, tokenizer
    n_shared = n_shared or [0] * len(ctxs)
    if any(n_shared) and not all(n_shared):
        raise ValueError("a batch mixes rows with and without a shared prefix")
    t0 = time.perf_counter()
    counts = EngineStats(items_computed=len(reqs))
    steps = max(r.max_new_tokens for r in reqs)
    rests = [] if seeds is not None else [c[n:] for c, n in zip(ctxs, n_shared)]
    if fused_gpt2(model) and not any(n_shared):
        logits, step, positions_run = _fused_start(model, ctxs, seeds, eot, steps)
    else:
        logits, step, positions_run = _transformers_start(model, ctxs, rests, n_shared, seeds, eot, counts, memo)
    choose = Chooser(reqs, tok, seed, suppress_memo, logits.shape[-1], device)
    new, logprobs = [[] for _ in reqs], [[] for _ in reqs]
    results: list[dict | None] = [None] * len(reqs)
    n_decoded = 0
    for _ in range(steps):
        nxt, nxt_logprobs = choose(logits, [res is None for res in results])
        for b, r in enumerate(reqs):
            if results[b] is not None:
                nxt[b] = eot
                continue
            if nxt[b] == eot:
                results[b] = decoded(new[b], "eos", logprobs[b] + [nxt_logprobs[b]])  # the end's own too
                continue
            new[b].append(nxt[b])
            logprobs[b].append(nxt_logprobs[b])
            ended = _check_stop(tok, new[b], r)
            results[b] = decoded(new[b], ended, logprobs[b]) if ended else None
        if all(res is not None for res in results):
            break
        active = [res is None for res in results]
        n_decoded += sum(active)  # positions of rows still decoding
        logits = step(nxt, active)
    counts.forward_s += time.perf_counter() - t0
    counts.tokens_forwarded += sum(len(c) for c in rests) + positions_run()  # the positions computed
    counts.prefill_tokens += sum(len(c) for c in rests)
    counts.decode_tokens += n_decoded  # what the answers needed
    counts.decode_forwarded += positions_run()  # what was computed
    return Generated([res or decoded(new[b], "length", logprobs[b]) for b, res in enumerate(results)], counts)


def _fused_start(model, ctxs: list[list[int]], seeds: list | None, eot: int, steps: int):
    """First logits and the step function of a fused GPT-2 decode (fused_decode.py): from the
    seeds' keys/values (rows holding the same seed share its context block), else from one
    right-padded prefill of the prompts."""
    device = next(model.parameters()).device
    if seeds is not None:
        context_of: dict[int, int] = {}  # a seed's id -> its context's index
        row_context = [context_of.setdefault(id(seed), len(context_of)) for seed in seeds]
        distinct = list({id(seed): seed for seed in seeds}.values())  # in the order of context_of
        layers, lengths = stack_contexts([kv for kv, _ in distinct])
        logits = torch.stack([first for _, first in seeds])
    else:
        lengths = [len(c) for c in ctxs]
        ids = torch.full((len(ctxs), max(lengths)), eot, dtype=torch.long)
        for b, c in enumerate(ctxs):
            ids[b, :len(c)] = torch.tensor(c, dtype=torch.long)
        layers: list = []
        hidden = gpt2_hidden_states(model, ids.to(device), keep_kv=layers)  # right padding: no mask
        last = hidden[to_device(list(range(len(ctxs))), device), to_device([n - 1 for n in lengths], device)]
        logits = model.get_output_embeddings()(last).float()
        row_context = list(range(len(ctxs)))
    decoder = ContextDecoder(model, layers, lengths, row_context, steps)
    return logits, decoder.step, lambda: decoder.positions_run


def _transformers_start(model, ctxs, rests, n_shared, seeds, eot: int, counts: EngineStats, memo):
    """First logits and the step function of a decode through the model's own forward and a
    transformers cache: left-padded prompts, continuing a shared prefix's keys/values or a seed's."""
    device, kw = next(model.parameters()).device, cache_kw(model)
    if seeds is not None:
        past, mask = padded_cache([kv for kv, _ in seeds])
        logits = torch.stack([first for _, first in seeds])
        positions = (mask.cumsum(-1) - 1)[:, -1:]
    else:
        ids, mask = _left_pad(rests, eot)
        ids, mask = ids.to(device), mask.to(device)
        prior = {}
        if any(n_shared):
            past, prefix_mask = _shared_cache(model, eot, counts, [tuple(c[:n]) for c, n in zip(ctxs, n_shared)],
                                              {} if memo is None else memo)
            prior = {kw: past}
            mask = torch.cat([prefix_mask, mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                    **prior)
        logits, past = out.logits[:, -1, :], cache_of(out)
    state = {"mask": mask, "positions": positions, "past": past, "run": 0}

    def step(ids: list[int], active: list[bool]) -> torch.Tensor:  # every row, finished ones too
        nxt = torch.tensor(ids).to(device)
        state["run"] += len(ids)
        state["mask"] = torch.cat([state["mask"], state["mask"].new_ones((len(nxt), 1))], dim=1)
        state["positions"] = state["positions"][:, -1:] + 1
        out = model(input_ids=nxt[:, None], attention_mask=state["mask"], position_ids=state["positions"],
                    use_cache=True, **{kw: state["past"]})
        state["past"] = cache_of(out)
        return out.logits[:, -1, :]
    return logits, step, lambda: state["run"]


_COMPLETE_WORD = re.compile(r"\S*\w\S*\s")


def first_word_complete(text: str) -> bool:
    """Whether `text` holds a complete word (Generation.stop_after_word): a whitespace-delimited
    run with a word character, followed by whitespace. Text appended later only adds words after
    that whitespace, so the first whitespace word, and the first word of any split that breaks at
    whitespace and keeps letters and digits (BERT's basic tokenizer), is final."""
    return _COMPLETE_WORD.search(text) is not None


def _check_stop(tok, new_ids: list[int], req: Generation) -> str | None:
    """Why to stop decoding this row now, if it is to stop: "stop", a stop string appeared or the
    first word is complete (stop_after_word); "length", the budget is spent."""
    if req.stop or req.stop_after_word:
        text = tok.decode(new_ids)
        if any(s in text for s in req.stop) or (req.stop_after_word and first_word_complete(text)):
            return "stop"
    if len(new_ids) >= req.max_new_tokens:
        return "length"
    return None


def decoded(new_ids: list[int], ended: str, token_logprobs: list[float]) -> dict:
    """A row's answer as the cache keeps it: the generated token ids (the end-of-text token not
    among them), the model's log-probability of each (Chooser), then of the end-of-text token where
    it ended the row, and why decoding ended ("eos", "stop" or "length"). Text is never cached, so a
    change to how it is cut never serves an old cut."""
    return {"token_ids": list(new_ids), "token_logprobs": list(token_logprobs), "ended": ended}


def finish(tok, answer: dict, req: Generation) -> GenerationResult:
    """The request's result from a decoded (or cached) answer: the text cut before the first stop string."""
    new_ids = answer["token_ids"]
    raw = tok.decode(new_ids)
    cut = min([raw.index(s) for s in req.stop if s in raw], default=len(raw))
    return GenerationResult(text=raw[:cut], raw_text=raw, n_tokens=len(new_ids),
                            stopped_by="stop" if cut < len(raw) else answer["ended"], token_ids=list(new_ids),
                            token_logprobs=list(answer["token_logprobs"]))
