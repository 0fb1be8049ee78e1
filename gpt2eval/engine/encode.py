"""Requests into token items and cache keys: the tokenizer only, no torch and no model.

Both log-likelihood request types reduce to one unit, a `ScoreItem`: a token sequence of at most
one window and the targets predicted at its last positions. Items are what gets batched and cached,
so a 100k-token perplexity stream is resumable window by window. A generation request becomes a
`Prompt` (its ids as the model sees them, after the request's own truncation rule). Plan mode
counts work through this same `Encoder`, so its numbers are the ones a real run forwards.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ..errors import UserError
from ..api.requests import Generation, Loglikelihood, RollingLoglikelihood


@dataclass(frozen=True)
class ScoreItem:
    input_ids: tuple[int, ...]
    targets: tuple[int, ...]  # predicted by the last len(targets) positions of input_ids

    def key(self) -> str:
        return digest(["score", self.input_ids, self.targets])


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()


def rolling_windows(tokens: list[int], eot: int, window: int, stride: int | None) -> list[ScoreItem]:
    """Split a token stream into items that score every token exactly once.

    The stream is prefixed with <|endoftext|> so that its first token has a context. The first
    window scores `window` tokens; each later one scores the next `stride` tokens and sees up to
    `window - stride` tokens before them (only the single previous token when stride == window).
    """
    stride = stride or window
    if not 0 < stride <= window:
        raise ValueError(f"stride must be in 1..{window}, got {stride}")
    seq = [eot] + list(tokens)
    items, start, end = [], 0, min(window, len(tokens))
    while start < len(tokens):
        items.append(ScoreItem(tuple(seq[max(0, end - window):end]), tuple(tokens[start:end])))
        start, end = end, min(end + stride, len(tokens))
    return items


def example_seed(run_seed: int, seed_key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{run_seed}/{seed_key}".encode()).digest()[:8], "little") & (2**63 - 1)


class BadRequest(UserError):
    """A request the engine cannot answer as asked; the message names the request (and, from
    Engine.run, the task). What is scored is never cut to make a request fit."""


class ContextTooLong(BadRequest, ValueError):
    pass


def describe(r) -> str:
    """A request in a few words, enough to find it in its task."""
    if isinstance(r, Loglikelihood):
        return f"Loglikelihood(context ending {r.context[-40:]!r}, continuation {r.continuation[:40]!r})"
    if isinstance(r, RollingLoglikelihood):
        return f"RollingLoglikelihood(text starting {r.text[:40]!r}, stride={r.stride})"
    return f"Generation(seed_key={r.seed_key!r}, context ending {r.context[-40:]!r}, max_new_tokens={r.max_new_tokens})"


def check_request(r, window: int, vocab: int) -> None:
    """The checks that need no tokens, so that Engine.run makes them for every request before any
    model work: a generation budget that leaves no room for a prompt, sampling that cannot be done,
    a rolling stride outside the window."""
    if isinstance(r, Generation):
        d = r.decoding
        if not 0 < r.max_new_tokens < window:
            raise BadRequest(f"{describe(r)}: max_new_tokens must be 1 to {window - 1} (the {window}-token window "
                             "holds the prompt and the new tokens)")
        if not d.greedy and not (0 < d.top_k <= vocab and d.temperature > 0):
            raise BadRequest(f"{describe(r)}: top-k sampling needs 0 < top_k <= {vocab} (the vocabulary) and "
                             f"temperature > 0, got top_k={d.top_k}, temperature={d.temperature}")
    elif isinstance(r, RollingLoglikelihood) and r.stride is not None and not 0 < r.stride <= window:
        raise BadRequest(f"{describe(r)}: stride must be 1 to {window} (the window), got {r.stride}")


def check_continuation(r: Loglikelihood, n_tokens: int, window: int) -> None:
    """Every continuation token is scored, each seeing at least one token before it."""
    if n_tokens == 0:
        raise BadRequest(f"{describe(r)}: the continuation is empty, so there is nothing to score")
    if n_tokens > window:
        raise BadRequest(f"{describe(r)}: the continuation is {n_tokens} tokens, longer than the {window}-token "
                         "window, and would be cut; score long text with RollingLoglikelihood")


@dataclass
class Prompt:
    """A generation request's token ids as the model sees them."""
    ids: list[int]
    n_prefix: int = 0   # leading ids that encode the request's `prefix` (0: none, or not reusable)
    dropped: int = 0    # tokens cut by Generation.truncate


class Encoder:
    """Turns requests into token items with one tokenizer and one window (and, for the cache keys
    of sampled generations, the run's seed)."""

    def __init__(self, tokenizer, window: int, seed: int = 1234):
        self.tokenizer, self.window, self.seed = tokenizer, window, seed
        self.eot = tokenizer.eos_token_id

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def loglikelihood(self, requests: list[Loglikelihood]) -> tuple[list[ScoreItem], list[bool]]:
        """One item per request, and whether its context was cut on the left to fit the window."""
        items, truncated = [], []
        for r in requests:
            context, continuation = r.context, r.continuation
            n_space = len(context) - len(context.rstrip(" "))  # the space belongs to the continuation
            if n_space:
                context, continuation = context[:-n_space], context[-n_space:] + continuation
            ctx = self.encode(context) or [self.eot]
            cont = self.encode(continuation)
            check_continuation(r, len(cont), self.window)
            full = (ctx + cont)[-(self.window + 1):]
            truncated.append(len(ctx) + len(cont) > self.window + 1)
            items.append(ScoreItem(tuple(full[:-1]), tuple(cont)))
        return items, truncated

    def rolling(self, requests: list[RollingLoglikelihood]) -> tuple[list[list[ScoreItem]], list[list[int]]]:
        """Each request's windows, and the character offset where each of its tokens starts."""
        encodings = [self.tokenizer(r.text, add_special_tokens=False, return_offsets_mapping=True) for r in requests]
        windows = [rolling_windows(e["input_ids"], self.eot, self.window, r.stride) for e, r in zip(encodings, requests)]
        return windows, [[start for start, _ in e["offset_mapping"]] for e in encodings]

    def prompt(self, r: Generation, prefix_ids: dict[str, list[int]]) -> Prompt:
        """The request's prompt: the whole context encoded (the tokens a plain encode gives), then
        cut per `r.truncate`. `prefix_ids` keeps each prefix's own tokens from one request to the next."""
        ids = self.encode(r.context) or [self.eot]
        if r.prefix and r.prefix not in prefix_ids:
            prefix_ids[r.prefix] = self.encode(r.prefix)
        pre = prefix_ids.get(r.prefix, [])
        # BPE can merge across the prefix's end ("...\n\n" alone is one token, "\n\nQ" is three), so
        # the prefix is reusable only where its own tokens really begin the context's tokens.
        n_prefix = len(pre) if pre and ids[:len(pre)] == pre else 0
        room = self.window - r.max_new_tokens
        if len(ids) <= room:
            return Prompt(ids, n_prefix)
        if r.truncate == "left" and room > 0:
            return Prompt(ids[-room:], 0, len(ids) - room)
        if r.truncate == "prefix_end" and pre:
            rest = ids[n_prefix:] if n_prefix else self.encode(r.context[len(r.prefix):])
            keep = room - len(rest)
            if keep > 0:
                return Prompt(pre[:keep] + rest, keep, len(pre) - keep)
        raise ContextTooLong(
            f"{describe(r)}: prompt of {len(ids)} tokens + {r.max_new_tokens} new tokens exceeds the "
            f"{self.window}-token window (truncate={r.truncate!r}); the task must shorten its context")

    def generation_key(self, r: Generation, ids: list[int]) -> str:
        """The cache key of a generation from these prompt ids: everything that decides its tokens,
        the run's seed included where it samples."""
        d = r.decoding
        seed = None if d.greedy else example_seed(self.seed, r.seed_key)
        return digest(["gen", ids, r.max_new_tokens, list(r.stop), d.top_k, d.temperature, sorted(d.suppress_words),
                       seed] + ([d.suppress_mode] if d.suppress_mode != "word_initial" else [])
                      + (["stop_after_word"] if r.stop_after_word else []))


def common_prefix(seqs: list[list[int]]) -> list[int]:
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
            n = len(common_prefix([prompts[i].ids[:prompts[i].n_prefix] for i in members]))
            out.update({i: min(n, len(prompts[i].ids) - 1) for i in members})
    return out


# ---- shared prefixes across requests ----------------------------------------------------------
MIN_SHARED = 16  # tokens: a shorter common prefix is not worth a second forward pass per batch


def _lcp(a: tuple[int, ...], b: tuple[int, ...], limit: int) -> int:
    n = min(len(a), len(b), limit)
    return next((j for j in range(n) if a[j] != b[j]), n)


def context_of(item: ScoreItem) -> tuple[int, ...]:
    """The ids up to and including the position that predicts the item's first target: for a
    log-likelihood request, its (possibly truncated) context, i.e. a generation prompt it shares."""
    return item.input_ids[:len(item.input_ids) - len(item.targets) + 1]


def prefix_groups(items: list[ScoreItem], min_shared: int = MIN_SHARED) -> tuple[list[tuple[tuple[int, ...], list[int]]],
                                                                                list[int]]:
    """Items whose ids begin with the same tokens (multiple-choice candidates after one context),
    found for any task: sorted by their ids, neighbours are grouped while they share at least
    `min_shared` leading ids that predict no target, and at least half of what the group shares
    so far. Returns (groups as (shared prefix, item indices), indices of the items left alone)."""
    order = sorted(range(len(items)), key=lambda i: items[i].input_ids)
    groups, alone = [], []
    run, shared = [], 0

    def flush():
        if len(run) > 1:
            groups.append((items[run[0]].input_ids[:shared], list(run)))
        else:
            alone.extend(run)
    for i in order:
        own = len(items[i].input_ids) - len(items[i].targets)  # ids before the first target's position
        if run:
            n = _lcp(items[run[0]].input_ids, items[i].input_ids, min(own, shared))
            if n >= min_shared and (len(run) == 1 or 2 * n >= shared):
                run.append(i)
                shared = n
                continue
            flush()
        run, shared = [i], own
    if run:
        flush()
    return groups, alone


def unique_prefix_tokens(sequences) -> int:
    """Tokens in the prefix tree of these sequences: what forwarding every shared prefix once
    would cost (each sequence adds what it does not share with its sorted neighbour)."""
    total, prev = 0, ()
    for seq in sorted(set(map(tuple, sequences))):
        total += len(seq) - _lcp(prev, seq, len(seq))
        prev = seq
    return total
