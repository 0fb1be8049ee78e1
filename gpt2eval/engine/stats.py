"""The engine's counters: what it computed, what the cache answered, how long the forwards took.

One `EngineStats` per engine accumulates over its life; the functions that compute a batch
(forward.score_batch, forward.score_groups, decode.generate_batch) return an `EngineStats` of
that batch alone, which the engine adds. The runner reports a task's share as the difference
of the engine's counters after and before it (results.json's fields of the same names).
"""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class EngineStats:
    items_computed: int = 0        # score items and generations computed (not found in the cache)
    items_cached: int = 0          # score items and generations the cache answered
    tokens_forwarded: int = 0      # positions run through the model: prompts, shared prefixes, decode steps
    forward_s: float = 0.0         # seconds spent computing batches
    oom_retries: int = 0           # batches retried in parts after running out of memory
    prefill_tokens: int = 0        # generation prompt positions forwarded before decoding
    decode_tokens: int = 0         # decode-step positions the answers needed (rows still decoding)
    decode_forwarded: int = 0      # decode-step positions computed (fewer where rows of one context agree)
    unique_prompt_tokens: int = 0  # the prefix tree of the prompts: every shared prefix counted once

    def add(self, other: EngineStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def since(self, before: EngineStats) -> EngineStats:
        """What was counted since `before` (an earlier copy of these counters)."""
        return EngineStats(**{f.name: getattr(self, f.name) - getattr(before, f.name) for f in fields(self)})
