"""The one scoring engine: answers every task's requests in length-sorted batches.

It composes one module per job, data flowing one way:
    encode.py    requests -> token items (`ScoreItem`, `Prompt`) and cache keys (no torch)
    schedule.py  items -> batches under a budget, cache lookups and stores, out-of-memory retries
    forward.py   one batch of items -> log-probabilities and greedy flags (fused GPT-2 forward)
    decode.py    one batch of prompts -> generations (key/value cache, shared prefixes)
"""
from __future__ import annotations

import sys
from dataclasses import replace

from .decode import finish, generate_batch, suppressed_ids
from ..distributed.workers import ShareDone
from .encode import (BadRequest, ContextTooLong, Encoder, Prompt, ScoreItem, context_of, digest, rolling_windows,  # noqa: F401
                     check_request, shared_lengths, unique_prefix_tokens)
from .forward import fused_gpt2, gpt2_hidden_states, score_batch, score_groups, target_logprobs  # noqa: F401
from .heads import head_only
from ..api.requests import (Generation, GenerationResult, Loglikelihood, LoglikelihoodResult, Request, Result,
                       RollingLoglikelihood, RollingResult)
from .schedule import Scheduler

_digest = digest  # the name generate.py and older callers used


class Engine:
    """Answers requests with a causal LM. `cache` (optional) has get_many(keys)->dict and
    put_many(dict); results are stored batch by batch, so an interrupted run loses at most one batch."""

    def __init__(self, model, tokenizer, *, batch_size: int | str = "auto", seed: int = 1234,
                 cache=None, progress: bool = True, window: int | None = None, log=None,
                 share_prefixes: bool = True, share_context: bool = True, budgets: dict | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.window = window or getattr(model.config, "n_positions", None) or model.config.max_position_embeddings
        self.eot = tokenizer.eos_token_id
        self.seed = seed
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.suppress_memo: dict[tuple[str, ...], list[int]] = {}  # decode.suppressed_ids
        # share_prefixes: log-likelihood items sharing a prefix forward it once (multiple choice);
        # share_context: a generation decodes from the forward of the log-likelihood item whose
        # context is its prompt. Both off: every request is forwarded whole (the same answers).
        # Both score from the hidden states through the blocked head, which only GPT-2 and the other
        # heads.HEAD_ONLY models compute as their own; the rest forward every request whole.
        exact_head = head_only(model)
        self.share_prefixes, self.share_context = share_prefixes and exact_head, share_context and exact_head
        self.stats = {"items_computed": 0, "items_cached": 0, "tokens_forwarded": 0, "forward_s": 0.0,
                      "oom_retries": 0, "prefill_tokens": 0, "decode_tokens": 0, "decode_forwarded": 0,
                      "unique_prompt_tokens": 0}
        self.encoder = Encoder(tokenizer, self.window, seed)
        self.scheduler = Scheduler(model, batch_size=batch_size, cache=cache, progress=progress, window=self.window,
                                   log=self.log, stats=self.stats, budgets=budgets)

    # The scheduler's settings, readable and settable on the engine as before the split.
    batch_size = property(lambda self: self.scheduler.batch_size,
                          lambda self, v: setattr(self.scheduler, "batch_size", v))
    cache = property(lambda self: self.scheduler.cache, lambda self, v: setattr(self.scheduler, "cache", v))
    progress = property(lambda self: self.scheduler.progress, lambda self, v: setattr(self.scheduler, "progress", v))
    caps = property(lambda self: self.scheduler.caps)  # out-of-memory caps in padded tokens, per kind

    # ---- public API ------------------------------------------------------------------------
    def run(self, requests: list[Request], desc: str = "") -> list[Result]:
        """Answer a mixed list of requests, returning results in the same order.

        A generation whose prompt is exactly the context of a log-likelihood request (LAMBADA's
        stop-word decode after its target's log-likelihood) is decoded from that request's forward
        pass: the keys/values of the context and the logits at its last position; its prompt is
        not forwarded again. `desc`: the task's name, in progress bars and in the one-line error
        about a request that cannot be answered."""
        results: list[Result | None] = [None] * len(requests)
        try:
            vocab = len(self.tokenizer)
            for r in requests:  # before any model work
                check_request(r, self.window, vocab)
            by_kind = {kind: [i for i, r in enumerate(requests) if isinstance(r, kind)]
                       for kind in (Loglikelihood, RollingLoglikelihood, Generation)}
            ll, rolling, gens = ([requests[i] for i in by_kind[k]] for k in (Loglikelihood, RollingLoglikelihood, Generation))
            items, truncated = self.encoder.loglikelihood(ll)
            windows, starts = self.encoder.rolling(rolling)
            prefix_ids: dict[str, list[int]] = {}
            prompts = [self.encoder.prompt(r, prefix_ids) for r in gens]
            self.stats["unique_prompt_tokens"] += unique_prefix_tokens(
                [it.input_ids for it in items] + [it.input_ids for w in windows for it in w] + [p.ids for p in prompts])
            answered: dict[str, dict] = {}  # generations decoded from a scoring forward, as cached
            prefetched = None  # the generations' cache rows, when looked up before scoring
            keep, on_seeds, flush = {}, None, lambda: None
            if self.share_context and gens and items:
                prefetched = self.scheduler.cached([self.encoder.generation_key(r, p.ids) for r, p in zip(gens, prompts)])
                keep, on_seeds, flush = self._context_decodes(items, gens, prompts, answered, set(prefetched))
            try:
                scored = self.score(items + [it for w in windows for it in w], desc=desc, keep=keep, on_seeds=on_seeds)
            except ShareDone:  # a worker under torchrun: its share is computed, rank 0 has the rest
                scored = None
            flush()
            if scored is not None:
                for i, (lp, g), t in zip(by_kind[Loglikelihood], scored, truncated):
                    results[i] = LoglikelihoodResult(float(sum(lp)), all(g), lp, g, t)
                rest = iter(scored[len(items):])
                for i, w, token_starts in zip(by_kind[RollingLoglikelihood], windows, starts):
                    results[i] = RollingResult([lp for _ in w for lp in next(rest)[0]], token_starts)
            if gens:
                try:
                    answers = self._generate(gens, prompts, desc, True, answered, prefetched)
                except ShareDone:
                    return results
                for i, res in zip(by_kind[Generation], answers):
                    results[i] = res
        except BadRequest as e:
            if not desc:
                raise
            raise type(e)(f"task {desc}: {e}") from None
        return results

    def encode(self, text: str) -> list[int]:
        return self.encoder.encode(text)

    def loglikelihood(self, requests: list[Loglikelihood], desc: str = "") -> list[LoglikelihoodResult]:
        return self.run(requests, desc)

    def rolling_loglikelihood(self, requests: list[RollingLoglikelihood], desc: str = "") -> list[RollingResult]:
        return self.run(requests, desc)

    def generate(self, requests: list[Generation], desc: str = "", reuse_prefix: bool = True) -> list[GenerationResult]:
        """Answer generation requests; reuse_prefix=False forwards every prompt whole (same outputs)."""
        prefix_ids: dict[str, list[int]] = {}
        prompts = [self.encoder.prompt(r, prefix_ids) for r in requests]
        self.stats["unique_prompt_tokens"] += unique_prefix_tokens([p.ids for p in prompts])
        return self._generate(requests, prompts, desc, reuse_prefix, {})

    def _generate(self, requests: list[Generation], prompts: list[Prompt], desc: str, reuse_prefix: bool,
                  answered: dict, prefetched: dict | None = None) -> list[GenerationResult]:
        keys = [self.encoder.generation_key(r, p.ids) for r, p in zip(requests, prompts)]
        memo: dict = {}  # shared prefix -> its keys/values, kept from one batch to the next

        def share(todo: list[int]) -> dict[int, int]:
            return shared_lengths(requests, prompts, todo) if reuse_prefix else dict.fromkeys(todo, 0)

        def decode(part: list[int], n_shared: dict[int, int]) -> list[dict]:
            return generate_batch(self.model, self.tokenizer, [requests[i] for i in part], [prompts[i].ids for i in part],
                                  [n_shared[i] for i in part], memo, seed=self.seed, stats=self.stats,
                                  suppress_memo=self.suppress_memo)
        answers = self.scheduler.generate(
            keys, [len(p.ids) + r.max_new_tokens for r, p in zip(requests, prompts)], [r.prefix for r in requests],
            share, decode, dict, dict, desc=desc, answered=answered,  # token ids cached; text cut on reading
            prefetched=prefetched)
        return [replace(finish(self.tokenizer, a, r), prompt_tokens=len(p.ids), truncated_tokens=p.dropped)
                for a, r, p in zip(answers, requests, prompts)]

    def _context_decodes(self, items: list[ScoreItem], gens: list[Generation], prompts: list[Prompt],
                         answered: dict, cached: set[str]):
        """Pair each generation not in the cache with a log-likelihood item whose context is its
        prompt. Returns keep ({item key: context length}, for the scheduler), on_seeds (collects
        the seeds of scored batches and decodes them a generation batch at a time into
        `answered`) and flush (decodes what is left)."""
        keys = [self.encoder.generation_key(r, p.ids) for r, p in zip(gens, prompts)]
        waiting: dict[tuple[int, ...], list[int]] = {}
        for j, (p, k) in enumerate(zip(prompts, keys)):
            if k not in cached:
                waiting.setdefault(tuple(p.ids), [])
                if k not in (keys[x] for x in waiting[tuple(p.ids)]):
                    waiting[tuple(p.ids)].append(j)
        paired: dict[str, list[int]] = {}
        for it in items:
            ctx = context_of(it)
            if ctx in waiting and it.key() not in paired:
                paired[it.key()] = waiting.pop(ctx)
        keep = {k: len(prompts[js[0]].ids) for k, js in paired.items()}
        pending: list[tuple[int, object]] = []
        shape = lambda row: [(1, len(prompts[row[0]].ids) + gens[row[0]].max_new_tokens)]  # noqa: E731

        def decode(part: list) -> list[GenerationResult]:
            return generate_batch(self.model, self.tokenizer, [gens[j] for j, _ in part],
                                  [prompts[j].ids for j, _ in part], seed=self.seed, stats=self.stats,
                                  suppress_memo=self.suppress_memo, seeds=[seed for _, seed in part])

        def flush(final: bool = True):
            batches = list(self.scheduler.batches(list(pending), shape, "generate"))
            pending.clear()
            if not final:  # the last batch may still fill up with the next scoring batch's seeds
                pending.extend(batches.pop())
            for batch in batches:
                fresh = {keys[j]: res for (j, _), res in
                         zip(batch, self.scheduler.split_on_oom(batch, decode, "generate", shape))}
                answered.update(fresh)
                self.scheduler.store(fresh, dict)

        def on_seeds(seeds: dict) -> None:
            pending.extend((j, seed) for k, seed in seeds.items() for j in paired[k])
            if sum(shape(row)[0][1] for row in pending) >= self.scheduler.limit("generate"):
                flush(final=False)
        return keep, on_seeds, flush

    def suppressed_ids(self, words: tuple[str, ...]) -> list[int]:
        return suppressed_ids(self.tokenizer, words, self.suppress_memo)  # word-initial mode

    # ---- scoring ---------------------------------------------------------------------------
    def score(self, items: list[ScoreItem], desc: str = "", keep: dict | None = None,
              on_seeds=None) -> list[tuple[list[float], list[bool]]]:
        """Log-probabilities and greedy flags of each item's targets; cached items are not recomputed.
        Items sharing a prefix are scored with it forwarded once (share_prefixes)."""
        memo: dict = {}  # a shared prefix's keys/values, from one batch to the next
        groups = (lambda g: score_groups(self.model, g, self.eot, self.stats, memo)) if self.share_prefixes else None
        return self.scheduler.score(items, self._score_batch, desc=desc, score_groups=groups, keep=keep,
                                    on_seeds=on_seeds)

    def _score_batch(self, items: list[ScoreItem], keep: dict | None = None):
        return score_batch(self.model, items, self.eot, self.stats, keep=keep)

    def describe(self) -> dict:
        """What the run's batching was: recorded in results.json, so a resumed run can batch alike."""
        return {"batch_size": self.batch_size, "token_budgets": {k: self.scheduler.token_budget(k == "score")
                                                                 for k in ("score", "generate")},
                "oom_caps": dict(self.scheduler.caps), "share_prefixes": self.share_prefixes,
                "share_context": self.share_context}

    def token_budget(self, scoring: bool = False) -> int:
        return self.scheduler.token_budget(scoring)
