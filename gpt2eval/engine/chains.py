"""Chains of batches, and which worker computes each: the scheduler's work shared among workers.

A chain is a run of consecutive batches that hand state on from one to the next (a shared prefix's
keys/values: `carry`; the contexts kept for decodes, which run after the chain's last batch:
`pooled`), or a single batch. Each chain starts with an empty carry, so its answers do
not depend on which worker computes it or on what that worker computed before. One process
computes every chain in order. Under torchrun, every worker forms the same chains and deals them
the same way (`deal`). Each worker computes its own chains, and after every chunk of
EXCHANGE_CHAINS chains per worker they exchange answers over the process group
(distributed/group.py). So nothing is forwarded twice, no batch differs from one process's, and a
failure costs the others at most one chunk.
"""
from __future__ import annotations

EXCHANGE_CHAINS = 16  # chains per worker between two exchanges: few waits, little lost on a failure
CUT_SHARE = 32  # a chain is cut where the prefixes it carries cost at most 1/32 of the next batch's work
POOL_CHAINS = 8  # scored batches are pooled for their decodes into chains of at most 1/8 of the decode work


def chains(batches, shared=None) -> list[list]:
    """Batches as chains. A batch joins the previous batch's chain when it continues some of that
    batch's shared prefixes (`shared(element)` -> (its prefix, the prefix's tokens, its own
    tokens)). The exception: forwarding those prefixes again costs at most 1/CUT_SHARE of what the
    batch forwards anyway (its own tokens, and each prefix once). Then the batch starts a chain of
    its own, in one process too, and may go to another worker. So a prefix that every request
    shares (Natural Questions' example pairs) costs a few percent more per batch, but does not put
    the whole task on one worker. Without `shared`, each batch is a chain."""
    out, previous = [], {}
    for batch in batches:
        parts = [shared(u) for u in batch] if shared else []
        prefixes = {prefix: n for prefix, n, _ in parts}
        carried = sum(prefixes[p] for p in prefixes.keys() & previous.keys())
        if carried and carried * CUT_SHARE > sum(own for _, _, own in parts) + sum(prefixes.values()):
            out[-1].append(batch)
        else:
            out.append([batch])
        previous = prefixes
    return out


def pooled(batches, cost, limit: int) -> list[list]:
    """Consecutive batches as chains whose summed cost(batch) stays within `limit` (a batch alone
    may exceed it). The scored batches whose forwards keep contexts for decodes: the decodes wait
    for the chain's last batch, so they run in generation batches as full as the limit allows,
    whatever the scoring budget (on CPU a scoring batch's decodes fill about a quarter of one)."""
    out, total = [], 0
    for batch in batches:
        c = cost(batch)
        if out and total + c <= limit:
            out[-1].append(batch)
            total += c
        else:
            out.append([batch])
            total = c
    return out


def deal(costs: list[int], loads: list[int]) -> list[int]:
    """The worker of each chain (costs: its padded tokens): the costliest first, each to the worker
    with the least load so far (`loads`, one per worker, updated; the lowest rank on a tie)."""
    owners = [0] * len(costs)
    for j in sorted(range(len(costs)), key=lambda j: (-costs[j], j)):
        owners[j] = min(range(len(loads)), key=lambda r: (loads[r], r))
        loads[owners[j]] += costs[j]
    return owners


def compute_chains(group, batch_chains: list[list], cost, compute, store, advance) -> dict:
    """Every chain's answers {key: answer}, on every worker of `group`.

    cost(batch): its padded tokens; compute(batch, carry) -> its answers; store(answers): into the
    cache (rank 0's; a no-op elsewhere), batch by batch for this worker's own, chunk by chunk for
    the others'; advance(batch): progress."""
    done: dict = {}
    loads = [0] * group.world_size
    per_chunk = EXCHANGE_CHAINS * group.world_size
    for start in range(0, len(batch_chains), per_chunk):
        chunk = batch_chains[start:start + per_chunk]
        owners = deal([sum(cost(b) for b in chain) for chain in chunk], loads)
        mine: dict = {}
        for chain in (c for c, owner in zip(chunk, owners) if owner == group.rank):
            carry: dict = {}
            for batch in chain:
                group.check()  # stop within one batch of another worker's failure
                fresh = compute(batch, carry)
                store(fresh)
                mine.update(fresh)
                advance(batch)
        done.update(mine)
        if group.world_size > 1:
            for rank, theirs in enumerate(group.gather(mine)):
                if rank != group.rank:
                    store(theirs)
                    done.update(theirs)
            for chain in (c for c, owner in zip(chunk, owners) if owner != group.rank):
                for batch in chain:
                    advance(batch)
    return done
