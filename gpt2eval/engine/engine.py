"""The one scoring engine: answers every task's requests in length-sorted batches.

It composes one module per job, data flowing one way:
    encode.py    requests -> token items (`ScoreItem`, `Prompt`) and cache keys (no torch)
    schedule.py  items -> batches under a budget, cache lookups and stores, out-of-memory retries
    chains.py    batches -> chains, each computed by one worker (torchrun) and exchanged
    forward.py   one batch of items -> log-probabilities and greedy flags (fused GPT-2 forward)
    decode.py    one batch of prompts -> generations (key/value cache, shared prefixes)
    stats.py     what was computed, as `EngineStats`
`ContextDecodes` here pairs the two: generations decoded from a scoring forward over their prompt.
"""
from __future__ import annotations

import sys
from dataclasses import replace

from .decode import finish, generate_batch
from .encode import (BadRequest, Encoder, Prompt, ScoreItem, check_request, context_of, shared_lengths,
                     unique_prefix_tokens)
from .forward import score_batch, score_groups
from .heads import head_only
from .schedule import GenerationRow, Scheduler
from .stats import EngineStats
from ..api.requests import (Generation, GenerationResult, Loglikelihood, LoglikelihoodResult, Request, Result,
                            RollingLoglikelihood, RollingResult)
from ..distributed.group import Group


class Engine:
    """Answers requests with a causal LM. `cache` (optional) has get_many(keys)->dict and
    put_many(dict); results are stored batch by batch, so an interrupted run loses at most one batch.
    `group` (distributed.group.Group): this process's rank among the workers of a torchrun run, which
    share the work and all get every answer; default: one process."""

    def __init__(self, model, tokenizer, *, batch_size: int | str = "auto", seed: int = 1234,
                 cache=None, progress: bool = True, window: int | None = None, log=None,
                 share_prefixes: bool = True, share_context: bool = True, budgets: dict | None = None,
                 group: Group | None = None):
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
        self.stats = EngineStats()
        self.encoder = Encoder(tokenizer, self.window, seed)
        self.scheduler = Scheduler(model, batch_size=batch_size, cache=cache, progress=progress, window=self.window,
                                   log=self.log, stats=self.stats, budgets=budgets, group=group)
        self.group = self.scheduler.group

    # ---- public API ------------------------------------------------------------------------
    def run(self, requests: list[Request], desc: str = "") -> list[Result]:
        """Answer a mixed list of requests, returning results in the same order.

        A generation whose prompt is exactly the context of a log-likelihood request (LAMBADA's
        stop-word decode after its target's log-likelihood) is decoded from that request's forward
        pass (`ContextDecodes`). `desc`: the task's name, in progress bars and in the one-line
        error about a request that cannot be answered."""
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
            self.stats.unique_prompt_tokens += unique_prefix_tokens(
                [it.input_ids for it in items] + [it.input_ids for w in windows for it in w] + [p.ids for p in prompts])
            context, prefetched = None, None  # prefetched: the generations' cache rows, looked up before scoring
            if self.share_context and gens and items:
                keys = [self.encoder.generation_key(r, p.ids) for r, p in zip(gens, prompts)]
                prefetched = self.scheduler.cached(keys)
                context = ContextDecodes(self.scheduler, self._decode, items, gens, prompts, keys, set(prefetched))
            scored = self.score(items + [it for w in windows for it in w], desc=desc, context=context)
            for i, (lp, g), t in zip(by_kind[Loglikelihood], scored, truncated):
                results[i] = LoglikelihoodResult(float(sum(lp)), all(g), lp, g, t)
            rest = iter(scored[len(items):])
            for i, w, token_starts in zip(by_kind[RollingLoglikelihood], windows, starts):
                results[i] = RollingResult([lp for _ in w for lp in next(rest)[0]], token_starts)
            if gens:
                answered = context.answered if context is not None else {}
                answers = self._generate(gens, prompts, desc, True, answered, prefetched)
                for i, res in zip(by_kind[Generation], answers):
                    results[i] = res
        except BadRequest as e:
            if not desc:
                raise
            raise type(e)(f"task {desc}: {e}") from None
        return results

    def generate(self, requests: list[Generation], desc: str = "", reuse_prefix: bool = True) -> list[GenerationResult]:
        """Answer generation requests; reuse_prefix=False forwards every prompt whole (same outputs)."""
        prefix_ids: dict[str, list[int]] = {}
        prompts = [self.encoder.prompt(r, prefix_ids) for r in requests]
        self.stats.unique_prompt_tokens += unique_prefix_tokens([p.ids for p in prompts])
        return self._generate(requests, prompts, desc, reuse_prefix, {})

    def _generate(self, requests: list[Generation], prompts: list[Prompt], desc: str, reuse_prefix: bool,
                  answered: dict, prefetched: dict | None = None) -> list[GenerationResult]:
        """`answered`, `prefetched`: see Scheduler.lookup."""
        keys = [self.encoder.generation_key(r, p.ids) for r, p in zip(requests, prompts)]
        done, todo = self.scheduler.lookup(keys, answered, prefetched)
        # The prefixes shared among the requests left to compute, which the scheduler batches together.
        n_shared = shared_lengths(requests, prompts, todo) if reuse_prefix else dict.fromkeys(todo, 0)
        rows = [GenerationRow(i, keys[i], len(prompts[i].ids) + requests[i].max_new_tokens, requests[i].prefix,
                              n_shared[i]) for i in todo]

        def decode(part: list[GenerationRow], carry: dict) -> list[dict]:  # carry: a prefix's keys/values
            return self._decode([requests[r.index] for r in part], [prompts[r.index].ids for r in part],
                                n_shared=[r.n_shared for r in part], memo=carry)
        done.update(self.scheduler.generate(rows, decode, desc))  # token ids cached; text cut on reading
        return [replace(finish(self.tokenizer, done[k], r), prompt_tokens=len(p.ids), truncated_tokens=p.dropped)
                for k, r, p in zip(keys, requests, prompts)]

    def _decode(self, requests: list[Generation], ids: list[list[int]], *, n_shared: list[int] | None = None,
                memo: dict | None = None, seeds: list | None = None) -> list[dict]:
        """One batch through decode.generate_batch, its counts added to the engine's."""
        out = generate_batch(self.model, self.tokenizer, requests, ids, n_shared, memo, seed=self.seed,
                             suppress_memo=self.suppress_memo, seeds=seeds)
        self.stats.add(out.counts)
        return out.answers

    # ---- scoring ---------------------------------------------------------------------------
    def score(self, items: list[ScoreItem], desc: str = "",
              context: ContextDecodes | None = None) -> list[tuple[list[float], list[bool]]]:
        """Log-probabilities and greedy flags of each item's targets; cached items are not recomputed.
        Items sharing a prefix are scored with it forwarded once (share_prefixes). `context`: the
        items whose forward a decode continues from (their keys/values are kept and handed to it)."""
        keep = context.keep if context is not None else {}

        def batch(part: list[ScoreItem]) -> list:
            keys = [it.key() for it in part] if keep else []
            wanted = {b: keep[k] for b, k in enumerate(keys) if k in keep}
            out = score_batch(self.model, part, self.eot, keep=wanted)
            self.stats.add(out.counts)
            if wanted:
                context.add_seeds({keys[b]: seed for b, seed in out.seeds.items()})
            return out.answers

        def groups(part: list, carry: dict) -> list:  # carry: a shared prefix's keys/values
            out = score_groups(self.model, part, self.eot, carry)
            self.stats.add(out.counts)
            return out.answers
        answers = self.scheduler.score(items, batch, desc=desc, score_groups=groups if self.share_prefixes else None,
                                       kept=context.decode_tokens if context is not None else {},
                                       decode_kept=context.decode if context is not None else None)
        if context is not None:  # the decodes every worker continued from its scored batches
            context.answered = {k: answers[k] for k in context.keys if k in answers}
        return [answers[it.key()] for it in items]

    def describe(self) -> dict:
        """What the run's batching was: recorded in results.json, so a resumed run can batch alike."""
        return {"batch_size": self.scheduler.batch_size,
                "token_budgets": {k: self.scheduler.token_budget(k == "score") for k in ("score", "generate")},
                "oom_caps": dict(self.scheduler.caps), "share_prefixes": self.share_prefixes,
                "share_context": self.share_context}


class ContextDecodes:
    """Generations decoded from a scoring forward: each generation the cache does not hold, whose
    prompt is the context of a log-likelihood item, continues from that item's forward (the keys/
    values of its context and the logits at its last position); its prompt is not forwarded again.

    `keep` {item key: context length}: the items whose forward keeps its context. `add_seeds` takes
    what a scored batch kept, and `decode` decodes what the batches of a chain kept after its last
    batch, on the worker that scored them: consecutive scored batches are pooled into one chain
    until their decodes (`decode_tokens`) fill a generation batch (chains.pooled), the same chains
    whatever the number of workers. `answered` {generation key: answer}: what was decoded, by
    every worker (Engine.score)."""

    def __init__(self, scheduler: Scheduler, decode, items: list[ScoreItem], gens: list[Generation],
                 prompts: list[Prompt], keys: list[str], cached: set[str]):
        self.scheduler, self.decode_batch = scheduler, decode  # decode(requests, ids, seeds=...) -> answers
        self.gens, self.prompts, self.keys = gens, prompts, keys
        waiting: dict[tuple[int, ...], list[int]] = {}  # prompt ids -> its generations (one per key)
        for j, (p, k) in enumerate(zip(prompts, keys)):
            if k not in cached:
                waiting.setdefault(tuple(p.ids), [])
                if k not in (keys[x] for x in waiting[tuple(p.ids)]):
                    waiting[tuple(p.ids)].append(j)
        self.paired: dict[str, list[int]] = {}  # item key -> the generations continuing its context
        for it in items:
            ctx = context_of(it)
            if ctx in waiting and it.key() not in self.paired:
                self.paired[it.key()] = waiting.pop(ctx)
        self.keep = {k: len(prompts[js[0]].ids) for k, js in self.paired.items()}
        # {item key: the padded tokens of the decodes that continue its forward}: how chains pool them
        self.decode_tokens = {k: sum(self._shape((j, None))[0][1] for j in js) for k, js in self.paired.items()}
        self.pending: list[tuple[int, object]] = []  # (generation, seed) of the batch being scored
        self.answered: dict[str, dict] = {}

    def _shape(self, row: tuple[int, object]) -> list[tuple[int, int]]:
        j = row[0]
        return [(1, len(self.prompts[j].ids) + self.gens[j].max_new_tokens)]

    def add_seeds(self, seeds: dict) -> None:
        """seeds {item key: (keys/values, first logits)}, from forward.score_batch's keep."""
        self.pending.extend((j, seed) for k, seed in seeds.items() for j in self.paired[k])

    def decode(self) -> dict:
        """{generation key: answer} for the seeds taken since the last call, in generation batches."""
        answers: dict = {}
        for batch in self.scheduler.batches(self.pending, self._shape, "generate"):
            out = self.scheduler.split_on_oom(batch, self._decode_batch, "generate", self._shape)
            answers.update({self.keys[j]: answer for (j, _), answer in zip(batch, out)})
        self.pending = []
        return answers

    def _decode_batch(self, part: list[tuple[int, object]]) -> list[dict]:
        return self.decode_batch([self.gens[j] for j, _ in part], [self.prompts[j].ids for j, _ in part],
                                 seeds=[seed for _, seed in part])
