"""Scheduling: which work goes into which batch, under what budget, and what the cache already has.

The `Scheduler` knows nothing of tokenizers or of how a batch is computed: it is handed work
(score items, or `GenerationRow`s) with its cache keys and a function that answers one batch, and
it sorts (longest first, so padding stays small), batches (a fixed count, or a token budget),
retries smaller on out-of-memory, stores each finished batch in the cache (an interrupted run
loses at most one batch) and shows progress.

The token budget is a hard invariant: a batch's padded tokens (its rows times its widest row,
summed over a batch's parts: a shared prefix and the rows continuing it) never exceed it, unless
one unit alone is larger. Scoring and generation have their own budget and their own cap, which
an out-of-memory error lowers (in tokens) for the rest of the run.

Chains and workers. Batches are grouped into chains. A chain is a run of consecutive batches that
hand state on from one to the next (a shared prefix's keys/values), or a single batch. A chain
starts with empty state (`carry`), so its answers do not depend on which worker computes it, or on
what that worker computed before. Scored batches whose forwards keep contexts for decodes are
pooled into chains, and their decodes run after the chain's last batch (engine.ContextDecodes).
Under torchrun (`group`, distributed/group.py) every worker forms the same chains from the same
work. Each chain goes to one worker (`deal`), and the workers exchange their
answers after each chunk of chains. Nothing is forwarded twice, and the answers are one process's,
bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .chains import POOL_CHAINS, chains, compute_chains, pooled
from .encode import prefix_groups
from .stats import EngineStats
from ..distributed.group import Group
from ..errors import UserError
from ..models.sizes import cuda_token_budget

CPU_SCORING_BUDGET = 1024  # padded tokens per CPU scoring batch: activations stay in cache (measured)
CPU_GENERATION_BUDGET = 8192  # CPU generation: more rows per step, but a key/value cache that still fits (measured)
KINDS = ("score", "generate")


def padded_tokens(shapes: list[list[tuple[int, int]]]) -> int:
    """Padded tokens of a batch of units, each unit a list of parts (rows, width): part j of every
    unit is stacked into one tensor, as wide as its widest."""
    total = 0
    for j in range(max(len(s) for s in shapes)):
        parts = [s[j] for s in shapes if len(s) > j]
        total += sum(r for r, _ in parts) * max(w for _, w in parts)
    return total


@dataclass(frozen=True)
class GenerationRow:
    """One generation to compute, as the scheduler batches it."""
    index: int  # the request's position, for the function that decodes a batch
    key: str  # its cache key
    width: int  # prompt + new tokens: its width in a batch
    prefix: str  # the prefix it may share with other rows (Generation.prefix)
    n_shared: int  # leading prompt ids forwarded once for the rows sharing its prefix (0: none)


class Scheduler:
    """`cache` (optional) has get_many(keys)->dict and put_many(dict); under torchrun only rank 0
    has one. `budgets` (optional): the token budgets {"score": n, "generate": n} of an earlier
    run, so that a resumed run batches as it did. `stats`: the engine's counters, to which the
    scheduler adds cache hits and out-of-memory retries. `group`: this process's place among the
    workers (distributed.group.Group; default: one process)."""

    def __init__(self, model, *, batch_size: int | str = "auto", cache=None, progress: bool = True,
                 window: int = 1024, log=print, stats: EngineStats | None = None, budgets: dict | None = None,
                 group: Group | None = None):
        self.model, self.batch_size, self.cache, self.progress = model, batch_size, cache, progress
        self.window, self.log = window, log
        self.device = next(model.parameters()).device
        self.stats = stats if stats is not None else EngineStats()
        self.group = group or Group()
        self.budgets = dict(budgets or {})  # computed once per run (token_budget), then kept
        self.caps: dict[str, int | None] = dict.fromkeys(KINDS)  # lowered by out-of-memory errors
        if self.group.world_size > 1:  # every worker batches under the same budgets: the least of theirs
            own = {kind: self.token_budget(kind == "score") for kind in KINDS}
            self.budgets = {kind: min(b[kind] for b in self.group.gather(own)) for kind in KINDS}

    # ---- scoring ---------------------------------------------------------------------------
    def score(self, items: list, score_batch, desc: str = "", *, score_groups=None, kept=(),
              decode_kept=None) -> dict:
        """{key: (logprobs, greedy flags)} of every item; cached items are not recomputed.

        score_batch(items) answers one batch. With `score_groups(groups, carry)`, items sharing a
        prefix (encode.prefix_groups) are answered in groups, the prefix forwarded once. kept {key:
        the padded tokens of the decodes that continue its forward}: the items whose forward keeps
        its context's keys/values for a decode: never grouped, and weighed heavier in the budget.
        decode_kept() -> {key: answer}: the decodes of what the scored batches kept, run after the
        last batch of their chain (chains.pooled); their answers are in the result too."""
        keys = [it.key() for it in items]
        done = self.cached(keys)
        todo = sorted({k: it for k, it in zip(keys, items) if k not in done}.items(),
                      key=lambda kv: -len(kv[1].input_ids))  # longest first: padding stays small
        self.stats.items_cached += len(items) - len(todo)
        # Counted in sequences scored: one per log-likelihood request (a passage, a candidate), one per
        # window of a rolling perplexity; the task's name is the bar's label.
        bar = tqdm(total=len(todo), desc=desc or "scoring", unit="seq", disable=not self.progress or not todo,
                   leave=False)
        groups, alone = [], list(range(len(todo)))
        if score_groups is not None:
            shareable = [j for j, (k, _) in enumerate(todo) if k not in kept]
            found, rest = prefix_groups([todo[j][1] for j in shareable])
            groups = [(prefix, [todo[shareable[j]] for j in members]) for prefix, members in found]
            alone = sorted([j for j, (k, _) in enumerate(todo) if k in kept] + [shareable[j] for j in rest])
        singles = [todo[j] for j in alone]
        kv_weight = 2 if self.device.type == "cuda" else 1  # kept keys/values about double a row's memory
        shape = lambda kv: [(1, len(kv[1].input_ids) * (kv_weight if kv[0] in kept else 1))]  # noqa: E731

        batches = list(self.batches(singles, shape, "score"))
        if decode_kept is None:
            single_chains = chains(batches)
        else:  # pooled: a chain's decodes fill a generation batch, and there are enough chains to
            # share among workers (the same chains whatever their number)
            decodes = lambda batch: sum(kept.get(k, 0) for k, _ in batch)  # noqa: E731
            limit = min(self._shaping("generate")[0], sum(map(decodes, batches)) // POOL_CHAINS)
            single_chains = pooled(batches, decodes, limit)
        ends = {id(chain[-1]) for chain in single_chains}

        def single(batch: list, carry: dict) -> dict:
            answers = self.split_on_oom(batch, lambda part: score_batch([it for _, it in part]), "score", shape)
            fresh = dict(zip([k for k, _ in batch], answers))
            if decode_kept is not None and id(batch) in ends:  # the chain's decodes, after its last batch
                fresh.update(decode_kept())
            return fresh
        done.update(self._compute(single_chains, shape, single, len, bar))

        def grouped(batch: list, carry: dict) -> dict:
            answers = self.split_on_oom(batch, lambda part: score_groups(
                [(prefix, [it for _, it in members]) for prefix, members in part], carry), "score", self._group_shape)
            return dict(zip([k for _, members in batch for k, _ in members], [a for per in answers for a in per]))
        group_chains = chains(self.batches(self._fit(groups), self._group_shape, "score"), lambda g: (
            g[0], len(g[0]), sum(len(it.input_ids) - len(g[0]) for _, it in g[1])))
        done.update(self._compute(group_chains, self._group_shape, grouped,
                                  lambda batch: sum(len(members) for _, members in batch), bar))
        bar.close()
        return done

    @staticmethod
    def _group_shape(group) -> list[tuple[int, int]]:
        prefix, members = group
        return [(1, len(prefix)), (len(members), max(len(it.input_ids) - len(prefix) for _, it in members))]

    def _fit(self, groups: list) -> list:
        """Groups longest prefix first, each cut into runs of members that fit the budget alone."""
        budget, out = self._shaping("score")[0], []
        for prefix, members in sorted(groups, key=lambda g: -len(g[0])):
            members = sorted(members, key=lambda kv: -len(kv[1].input_ids))
            run: list = []
            for m in members:
                if run and padded_tokens([self._group_shape((prefix, run + [m]))]) > budget:
                    out.append((prefix, run))
                    run = []
                run.append(m)
            out.append((prefix, run))
        return out

    # ---- generation ------------------------------------------------------------------------
    def lookup(self, keys: list[str], answered: dict, prefetched: dict | None = None) -> tuple[dict, list[int]]:
        """The answers at hand for these generation keys, and the requests left to compute (the
        first of each key). `answered`: keys decoded in this run already (and stored), e.g. from a
        scoring forward; `prefetched`: what an earlier lookup of these keys found in the cache (not
        looked up twice). Requests answered from the cache, or by an earlier request with the same
        key, count as cached."""
        if prefetched is None:
            prefetched = self.cached([k for k in dict.fromkeys(keys) if k not in answered])
        done = {**answered, **prefetched}
        todo = list({k: i for i, k in enumerate(keys) if k not in done}.values())
        self.stats.items_cached += len(keys) - len(todo) - sum(k in answered for k in keys)
        return done, todo

    def generate(self, rows: list[GenerationRow], decode_batch, desc: str = "") -> dict:
        """Answers {key: answer} for the generations left to compute (`lookup`), one row per key.
        decode_batch(rows, carry) answers one batch, whose rows either all share a prefix or none
        do; `carry` keeps a shared prefix's keys/values for the next batch of its chain."""
        # Sharers sorted so that each prefix's rows are adjacent (a prefix is then forwarded once,
        # even across batches), longest groups first; everything else longest first: little padding.
        longest: dict[str, int] = {}
        for r in rows:
            longest[r.prefix] = max(longest.get(r.prefix, 0), r.width)
        sharers = sorted((r for r in rows if r.n_shared), key=lambda r: (-longest[r.prefix], r.prefix, -r.width))
        alone = sorted((r for r in rows if not r.n_shared), key=lambda r: -r.width)
        bar = tqdm(total=len(rows), desc=desc or "generating", unit="ex", disable=not self.progress or not rows,
                   leave=False)
        shape = lambda r: [(1, r.width)]  # noqa: E731

        def decode(batch: list, carry: dict) -> dict:
            return {r.key: a for r, a in zip(batch, self.split_on_oom(batch, lambda part: decode_batch(part, carry),
                                                                      "generate", shape))}
        batch_chains = chains(self.batches(sharers, shape, "generate"),
                              lambda r: (r.prefix, r.n_shared, r.width - r.n_shared))
        batch_chains += chains(self.batches(alone, shape, "generate"))
        done = self._compute(batch_chains, shape, decode, len, bar)
        bar.close()
        return done

    def _compute(self, batch_chains: list[list], shape, compute, count, bar) -> dict:
        """chains.compute_chains with this scheduler's costs (padded tokens), cache and progress bar."""
        return compute_chains(self.group, batch_chains, lambda batch: padded_tokens([shape(u) for u in batch]),
                              compute, self.store, lambda batch: bar.update(count(batch)))

    def store(self, fresh: dict) -> None:
        if self.cache is not None and fresh:
            self.cache.put_many(fresh)

    def cached(self, keys: list[str]) -> dict:
        """What rank 0's cache holds for these keys (a lookup: counted as hits), on every worker."""
        found = dict(self.cache.get_many(sorted(set(keys)))) if self.cache is not None and keys else {}
        return self.group.broadcast(found) if keys else found

    # ---- batching --------------------------------------------------------------------------
    def batches(self, todo: list, shape, kind: str):
        """Group sorted work into batches: a fixed count of rows, or ("auto") as many as the token
        budget holds; either way never more padded tokens than the kind's out-of-memory cap.
        shape(unit) -> its parts as (rows, width) (see padded_tokens)."""
        i = 0
        while i < len(todo):
            limit, cap = self._shaping(kind)  # a retry may have lowered the cap meanwhile
            batch, rows = [todo[i]], shape(todo[i])[-1][0]
            shapes = [shape(todo[i])]
            while i + len(batch) < len(todo):
                nxt = shape(todo[i + len(batch)])
                if self.batch_size == "auto":
                    if padded_tokens(shapes + [nxt]) > limit:
                        break
                elif rows + nxt[-1][0] > int(self.batch_size) or (cap and padded_tokens(shapes + [nxt]) > cap):
                    break
                batch.append(todo[i + len(batch)])
                shapes.append(nxt)
                rows += nxt[-1][0]
            yield batch
            i += len(batch)

    def _shaping(self, kind: str) -> tuple[int, int | None]:
        """The limit and cap that shape batches. Under torchrun every worker must form the same
        batches, so no out-of-memory cap of one worker may shape them: split_on_oom applies it."""
        if self.group.world_size > 1:
            return self.token_budget(kind == "score"), None
        return self.limit(kind), self.caps[kind]

    def limit(self, kind: str) -> int:
        """The padded tokens a batch of this kind may hold: the budget, lowered by any cap."""
        budget = self.token_budget(kind == "score")
        return min(budget, self.caps[kind]) if self.caps[kind] else budget

    def split_on_oom(self, batch: list, forward, kind: str = "score", shape=None) -> list:
        """forward(batch) -> one answer per element. Out of memory: lower the kind's cap to half the
        batch's padded tokens, retry in parts under it, and keep it for the rest of the run, rather
        than lose a long run to one batch that is too large. Each answer depends only on its own
        item, so the results are those of smaller batches."""
        shape = shape or (lambda _: [(1, 1)])
        if self.caps[kind] and len(batch) > 1 and padded_tokens([shape(u) for u in batch]) > self.caps[kind]:
            return self._in_parts(batch, forward, kind, shape)  # formed without the cap (torchrun)
        try:
            return forward(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise UserError(f"out of memory on {self.device} with a batch of one; free the device, or use a "
                                "smaller model, --dtype bfloat16 or another --device") from None
        # Retried outside the except block, so the failed attempt's tensors are already released.
        tokens = padded_tokens([shape(u) for u in batch])
        self.caps[kind] = min(self.caps[kind] or tokens, max(1, tokens // 2))
        self.stats.oom_retries += 1
        self.log(f"out of memory on a batch of {len(batch)} ({tokens} padded tokens): retrying {kind} batches of "
                 f"at most {self.caps[kind]} padded tokens, and keeping that limit for the rest of the run")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return self._in_parts(batch, forward, kind, shape)

    def _in_parts(self, batch: list, forward, kind: str, shape) -> list:
        """forward over consecutive parts of the batch, each within the kind's cap."""
        out, i = [], 0
        while i < len(batch):  # the cap may fall further while the first part is retried
            part = [batch[i]]
            while i + len(part) < len(batch) and \
                    padded_tokens([shape(u) for u in batch[i:i + len(part) + 1]]) <= self.caps[kind]:
                part.append(batch[i + len(part)])
            out += self.split_on_oom(part, forward, kind, shape)
            i += len(part)
        return out

    def token_budget(self, scoring: bool = False) -> int:
        """Padded tokens per batch for --batch-size auto. On CUDA from the memory this process can
        use (free + reserved by torch's allocator - allocated), computed once per run and kept
        (describe() records it). On CPU, scoring batches of about one window keep the activations
        in cache, while generation gains from rows sharing each read of the weights in its
        one-token steps, up to where the growing key/value cache costs more (both measured on 2
        cores; benchmarks/)."""
        kind = "score" if scoring else "generate"
        if kind not in self.budgets:
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                usable = free + torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
                cfg = self.model.config
                budget = cuda_token_budget(usable, cfg.hidden_size, cfg.num_hidden_layers, self.model.dtype.itemsize,
                                           self.window)
                self.budgets = {"score": budget, "generate": budget}
            elif self.device.type == "cpu":
                self.budgets = {"score": CPU_SCORING_BUDGET, "generate": CPU_GENERATION_BUDGET}
            else:
                self.budgets = {"score": 16 * 1024, "generate": 16 * 1024}
        return self.budgets[kind]
