"""Scheduling: which work goes into which batch, under what budget, and what the cache already has.

The `Scheduler` knows nothing of tokenizers or of how a batch is computed: it is handed items,
their cache keys and a function that answers one batch, and it sorts (longest first, so padding
stays small), batches (a fixed count, or a token budget), retries smaller on out-of-memory, stores
each finished batch in the cache (an interrupted run loses at most one batch) and shows progress.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .errors import UserError

CPU_SCORING_BUDGET = 1024  # padded tokens per CPU scoring batch: activations stay in cache (measured)
CPU_GENERATION_BUDGET = 8192  # CPU generation: more rows per step, but a key/value cache that still fits (measured)


class Scheduler:
    """`cache` (optional) has get_many(keys)->dict and put_many(dict)."""

    def __init__(self, model, *, batch_size: int | str = "auto", cache=None, progress: bool = True,
                 window: int = 1024, log=print, stats: dict | None = None):
        self.model, self.batch_size, self.cache, self.progress = model, batch_size, cache, progress
        self.window, self.log = window, log
        self.device = next(model.parameters()).device
        self.stats = stats if stats is not None else {}
        self.max_batch: int | None = None  # lowered for the rest of the run by an out-of-memory error
        # Under torchrun (distributed.py): which batches are this worker's, and the others' answers.
        # Its batches must be every worker's, so neither the out-of-memory cap nor a free-memory
        # reading of its own may shape them: free_memory is then the workers' agreed figure.
        self.share = None
        self.free_memory: int | None = None

    # ---- scoring ---------------------------------------------------------------------------
    def score(self, items: list, score_batch, desc: str = "") -> list:
        """score_batch(items) -> one (logprobs, greedy flags) per item; cached items are not recomputed."""
        keys = [it.key() for it in items]
        done: dict = {}
        if self.cache is not None:
            done.update(self.cache.get_many(sorted(set(keys))))
        todo = sorted({k: it for k, it in zip(keys, items) if k not in done}.items(),
                      key=lambda kv: -len(kv[1].input_ids))  # longest first: padding stays small
        self.stats["items_cached"] += len(items) - len(todo)
        bar = tqdm(total=sum(len(it.targets) for _, it in todo), desc=desc or "scoring", unit="tok", unit_scale=True,
                   disable=not self.progress or not todo, leave=False)
        for batch in self.batches(todo, lambda kv: len(kv[1].input_ids), scoring=True):
            if self.share is not None and not self.share.mine("score", len(batch) * len(batch[0][1].input_ids)):
                continue
            scored = self.split_on_oom(batch, lambda part: score_batch([it for _, it in part]))
            fresh = dict(zip([k for k, _ in batch], scored))
            done.update(fresh)
            if self.cache is not None:
                self.cache.put_many(fresh)
            bar.update(sum(len(it.targets) for _, it in batch))
            bar.set_postfix_str(f"{len(done)}/{len(set(keys))} items", refresh=False)
        bar.close()
        if self.share is not None:  # the other workers' batches (rank 0 waits for them, the others stop)
            done.update(self.share.collect([k for k in dict.fromkeys(keys) if k not in done]))
        return [done[k] for k in keys]

    # ---- generation ------------------------------------------------------------------------
    def generate(self, keys: list[str], totals: list[int], groups: list[str], share, decode_batch,
                 from_cache, to_cache, desc: str = "") -> list:
        """Answers for generation requests, one per key. totals[i]: prompt + new tokens of request i;
        groups[i]: the prefix it may share; share(todo) -> {i: how many of its prompt's ids are shared
        (0: none)} for the requests not in the cache. decode_batch(indices, n_shared) -> answers;
        from_cache / to_cache convert answers to and from what the cache stores."""
        done: dict = {}
        if self.cache is not None:
            done.update({k: from_cache(v) for k, v in self.cache.get_many(sorted(set(keys))).items()})
        todo = list({k: i for i, k in enumerate(keys) if k not in done}.values())
        self.stats["items_cached"] += len(keys) - len(todo)
        n_shared = share(todo)
        # Sharers sorted so that each prefix's requests are adjacent (a prefix is then forwarded once,
        # even across batches), longest groups first; everything else longest first: little padding.
        longest: dict[str, int] = {}
        for i in todo:
            longest[groups[i]] = max(longest.get(groups[i], 0), totals[i])
        sharers = sorted((i for i in todo if n_shared[i]), key=lambda i: (-longest[groups[i]], groups[i], -totals[i]))
        alone = sorted((i for i in todo if not n_shared[i]), key=lambda i: -totals[i])
        bar = tqdm(total=len(todo), desc=desc or "generating", unit="ex", disable=not self.progress or not todo,
                   leave=False)
        previous: set = set()  # the shared prefixes of the batch before: a batch reusing one follows it
        for rows in (sharers, alone):
            for idx in self.batches(rows, lambda i: totals[i]):
                prefixes = {groups[i] for i in idx if n_shared[i]}
                continues, previous = bool(prefixes & previous), prefixes
                if self.share is not None and not self.share.mine("generate", len(idx) * max(totals[i] for i in idx), continues):
                    continue
                outs = self.split_on_oom(idx, lambda part: decode_batch(part, n_shared))
                fresh = {keys[i]: o for i, o in zip(idx, outs)}
                done.update(fresh)
                if self.cache is not None:
                    self.cache.put_many({k: to_cache(o) for k, o in fresh.items()})
                bar.update(len(idx))
        bar.close()
        if self.share is not None:
            done.update({k: from_cache(v) for k, v in
                         self.share.collect([k for k in dict.fromkeys(keys) if k not in done]).items()})
        return [done[k] for k in keys]

    # ---- batching --------------------------------------------------------------------------
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
            if self.share is None:
                n = min(n, self.max_batch or n)
            yield todo[i:i + n]
            i += n

    def split_on_oom(self, batch: list, forward) -> list:
        """forward(batch) -> one answer per element. Out of memory: retry in halves, and cap later
        batches at the size that fit, rather than lose a long run to one batch that is too large.
        Each answer depends only on its own item, so the results are those of a smaller batch."""
        if self.max_batch and len(batch) > self.max_batch:  # a batch formed without the cap (workers)
            return [a for i in range(0, len(batch), self.max_batch)
                    for a in self.split_on_oom(batch[i:i + self.max_batch], forward)]
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
            free = self.free_memory if self.free_memory is not None else torch.cuda.mem_get_info(self.device)[0]
            cfg = self.model.config
            per_token = 16 * cfg.hidden_size * (cfg.num_hidden_layers // 8 + 4) * self.model.dtype.itemsize
            return int(max(self.window, min(256 * 1024, 0.4 * free / per_token)))
        if self.device.type == "cpu":
            return CPU_SCORING_BUDGET if scoring else CPU_GENERATION_BUDGET
        return 16 * 1024
