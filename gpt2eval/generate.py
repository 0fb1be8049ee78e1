"""Generation's names as they were before the engine split (kept for callers and tests): the
encoding lives in encode.py, the batched decoding in decode.py, the batching in schedule.py."""
from __future__ import annotations

from .decode import generate_batch, suppressed_ids  # noqa: F401
from .encode import ContextTooLong, Prompt, encode_prompt, example_seed, generation_key, shared_lengths  # noqa: F401
from .requests import Generation, GenerationResult


def generate_all(engine, requests: list[Generation], desc: str = "",
                 reuse_prefix: bool = True) -> list[GenerationResult]:
    """Answer generation requests; reuse_prefix=False forwards every prompt whole (same outputs)."""
    return engine.generate(requests, desc=desc, reuse_prefix=reuse_prefix)
