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
from .distributed import ShareDone
from .encode import BadRequest, ContextTooLong, Encoder, check_request, ScoreItem, digest, rolling_windows, shared_lengths  # noqa: F401
from .forward import fused_gpt2, gpt2_hidden_states, score_batch, target_logprobs  # noqa: F401
from .requests import (Generation, GenerationResult, Loglikelihood, LoglikelihoodResult, Request, Result,
                       RollingLoglikelihood, RollingResult)
from .schedule import Scheduler

_digest = digest  # the name generate.py and older callers used


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
        self.seed = seed
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.suppress_memo: dict[tuple[str, ...], list[int]] = {}  # decode.suppressed_ids
        self.stats = {"items_computed": 0, "items_cached": 0, "tokens_forwarded": 0, "forward_s": 0.0,
                      "oom_retries": 0, "prefill_tokens": 0}
        self.encoder = Encoder(tokenizer, self.window, seed)
        self.scheduler = Scheduler(model, batch_size=batch_size, cache=cache, progress=progress, window=self.window,
                                   log=self.log, stats=self.stats)

    # The scheduler's settings, readable and settable on the engine as before the split.
    batch_size = property(lambda self: self.scheduler.batch_size,
                          lambda self, v: setattr(self.scheduler, "batch_size", v))
    cache = property(lambda self: self.scheduler.cache, lambda self, v: setattr(self.scheduler, "cache", v))
    progress = property(lambda self: self.scheduler.progress, lambda self, v: setattr(self.scheduler, "progress", v))
    max_batch = property(lambda self: self.scheduler.max_batch,
                         lambda self, v: setattr(self.scheduler, "max_batch", v))

    # ---- public API ------------------------------------------------------------------------
    def run(self, requests: list[Request], desc: str = "") -> list[Result]:
        """Answer a mixed list of requests, returning results in the same order. `desc`: the task's
        name, in progress bars and in the one-line error about a request that cannot be answered."""
        results: list[Result | None] = [None] * len(requests)
        try:
            vocab = len(self.tokenizer)
            for r in requests:  # before any model work
                check_request(r, self.window, vocab)
            for kind, method in ((Loglikelihood, self.loglikelihood),
                                 (RollingLoglikelihood, self.rolling_loglikelihood), (Generation, self.generate)):
                idx = [i for i, r in enumerate(requests) if isinstance(r, kind)]
                if idx:
                    try:
                        answers = method([requests[i] for i in idx], desc=desc)
                    except ShareDone:  # a worker under torchrun: its share is computed, rank 0 has the rest
                        continue
                    for i, res in zip(idx, answers):
                        results[i] = res
        except BadRequest as e:
            if not desc:
                raise
            raise type(e)(f"task {desc}: {e}") from None
        return results

    def encode(self, text: str) -> list[int]:
        return self.encoder.encode(text)

    def loglikelihood(self, requests: list[Loglikelihood], desc: str = "") -> list[LoglikelihoodResult]:
        items, truncated = self.encoder.loglikelihood(requests)
        scored = self.score(items, desc=desc)
        return [LoglikelihoodResult(float(sum(lp)), all(g), lp, g, t) for (lp, g), t in zip(scored, truncated)]

    def rolling_loglikelihood(self, requests: list[RollingLoglikelihood], desc: str = "") -> list[RollingResult]:
        per_request, starts = self.encoder.rolling(requests)
        scored = iter(self.score([it for items in per_request for it in items], desc=desc))
        out = []
        for items, token_starts in zip(per_request, starts):
            logprobs: list[float] = []
            for _ in items:
                logprobs.extend(next(scored)[0])
            out.append(RollingResult(logprobs, token_starts))
        return out

    def generate(self, requests: list[Generation], desc: str = "", reuse_prefix: bool = True) -> list[GenerationResult]:
        """Answer generation requests; reuse_prefix=False forwards every prompt whole (same outputs)."""
        prefix_ids: dict[str, list[int]] = {}
        prompts = [self.encoder.prompt(r, prefix_ids) for r in requests]
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
            share, decode, dict, dict, desc=desc)  # token ids are cached; the text is cut here, on reading
        return [replace(finish(self.tokenizer, a, r), prompt_tokens=len(p.ids), truncated_tokens=p.dropped)
                for a, r, p in zip(answers, requests, prompts)]

    def suppressed_ids(self, words: tuple[str, ...]) -> list[int]:
        return suppressed_ids(self.tokenizer, words, self.suppress_memo)

    # ---- scoring ---------------------------------------------------------------------------
    def score(self, items: list[ScoreItem], desc: str = "") -> list[tuple[list[float], list[bool]]]:
        """Log-probabilities and greedy flags of each item's targets; cached items are not recomputed."""
        return self.scheduler.score(items, self._score_batch, desc=desc)

    def _score_batch(self, items: list[ScoreItem]) -> list[tuple[list[float], list[bool]]]:
        return score_batch(self.model, items, self.eot, self.stats)

    def batches(self, todo: list, length_of, scoring: bool = False):
        return self.scheduler.batches(todo, length_of, scoring)

    def split_on_oom(self, batch: list, forward) -> list:
        return self.scheduler.split_on_oom(batch, forward)

    def token_budget(self, scoring: bool = False) -> int:
        return self.scheduler.token_budget(scoring)
