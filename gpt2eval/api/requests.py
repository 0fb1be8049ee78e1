"""The three things a task may ask of a model, and the answers it gets back.

Tasks never call the model: they build these requests, the engine answers them in batches,
and the task turns the answers into metrics (lm-evaluation-harness's contract, without its layers).
Requests are frozen dataclasses so that they can be hashed into cache keys and sent to other
processes unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loglikelihood:
    """log p(continuation | context). A space between the two belongs to the continuation:
    GPT-2's BPE merges a leading space into the next word (" Paris" is one token)."""
    context: str
    continuation: str


@dataclass(frozen=True)
class RollingLoglikelihood:
    """log p of every token of a long text, conditioned on <|endoftext|> for its first token.

    stride=None scores disjoint windows of the model's full context. With stride S every window
    after the first scores only its last S tokens and sees up to (window - S) earlier tokens.
    """
    text: str
    stride: int | None = None


@dataclass(frozen=True)
class Decoding:
    """How the next token is chosen; top_k=0 means greedy.

    `suppress_words`: tokens spelling one of these words are never chosen (the LAMBADA stop-word
    filters). Words, not token ids, so that tasks stay independent of the tokenizer. Which tokens,
    by `suppress_mode`:
    - "word_initial": a token with a leading space (" the", " The") whose text is one of the words,
      case-insensitively; mid-word pieces ("s", "t") stay allowed.
    - "stripped_text": any token whose text, stripped of whitespace, is exactly one of the words
      (case-sensitive, word-initial or not: "the", " the", "s"), as cybertronai/bflm's filter does."""
    top_k: int = 0
    temperature: float = 1.0
    suppress_words: tuple[str, ...] = ()
    suppress_mode: str = "word_initial"

    def __post_init__(self):
        if self.suppress_mode not in ("word_initial", "stripped_text"):
            raise ValueError(f"suppress_mode must be 'word_initial' or 'stripped_text', got {self.suppress_mode!r}")

    @property
    def greedy(self) -> bool:
        return self.top_k == 0

    def describe(self) -> str:
        base = "greedy" if self.greedy else f"top-k sampling (k={self.top_k}, T={self.temperature})"
        return base + (f", {len(self.suppress_words)} words suppressed ({self.suppress_mode})"
                       if self.suppress_words else "")


@dataclass(frozen=True)
class Generation:
    """Continue `context` for at most `max_new_tokens` tokens, cut at the first stop string.

    `seed_key` names the example (e.g. "cnn_dailymail/<id>"): sampling draws from a random stream
    derived from (run seed, seed_key) alone, so a sample never depends on batching or order.
    `prefix` (optional) is a leading part of `context` shared by other requests (a CoQA story):
    the engine may compute its key/value cache once and reuse it; outputs are the same either way.

    `truncate` says what to cut, in whole tokens, when prompt + max_new_tokens exceed the window:
    "" raises ContextTooLong (the default: nothing is ever cut silently); "left" drops the
    prompt's first tokens (keeps its end); "prefix_end" drops the last tokens of `prefix` and
    keeps the rest of the context whole (an article cut at its end, its "TL;DR:" kept).

    `stop_after_word`: also stop as soon as the output holds one complete word, a run of
    non-whitespace with a letter, digit or underscore in it followed by whitespace (decode.
    first_word_complete). For a task that reads only the output's first word (LAMBADA), whatever
    comes after it cannot change the answer, so it need not be decoded. The text is not cut.
    """
    context: str
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    stop_after_word: bool = False
    decoding: Decoding = field(default_factory=Decoding)
    seed_key: str = ""
    prefix: str = ""
    truncate: str = ""

    def __post_init__(self):
        if self.truncate not in ("", "left", "prefix_end"):
            raise ValueError(f"truncate must be '', 'left' or 'prefix_end', got {self.truncate!r}")
        if self.prefix and not self.context.startswith(self.prefix):
            raise ValueError("Generation.prefix must be a leading part of Generation.context")


Request = Loglikelihood | RollingLoglikelihood | Generation


@dataclass
class LoglikelihoodResult:
    logprob: float                 # summed over the continuation's tokens
    is_greedy: bool                # every continuation token was the argmax
    token_logprobs: list[float]
    token_is_greedy: list[bool]
    truncated: bool = False        # the context was cut on the left to fit the window


@dataclass
class RollingResult:
    token_logprobs: list[float]    # one per GPT-2 token of the text, in order
    token_starts: list[int]        # character offset in the text where each token starts

    @property
    def logprob(self) -> float:
        return float(sum(self.token_logprobs))

    @property
    def n_tokens(self) -> int:
        return len(self.token_logprobs)

    def by_piece(self, pieces: list[str]) -> tuple[list[float], list[int]]:
        """NLL and token count of each of the consecutive pieces (lines, blocks) the text is made of:
        a token belongs to the piece where it starts."""
        from bisect import bisect_right
        starts, pos = [], 0
        for piece in pieces:
            starts.append(pos)
            pos += len(piece)
        nll, tokens = [0.0] * len(pieces), [0] * len(pieces)
        for lp, start in zip(self.token_logprobs, self.token_starts):
            i = bisect_right(starts, start) - 1
            nll[i] -= lp
            tokens[i] += 1
        return nll, tokens


@dataclass
class GenerationResult:
    text: str                      # generated text, cut before the first stop string
    raw_text: str                  # everything generated, stop string included
    n_tokens: int                  # tokens generated
    stopped_by: str = ""           # "stop", "eos" or "length"
    prompt_tokens: int = 0         # prompt length as fed to the model, after any truncation
    truncated_tokens: int = 0      # prompt tokens cut to fit the window (Generation.truncate)
    token_ids: list[int] = field(default_factory=list)  # the generated ids (end-of-text not among them)
    # log p(each generated id | prompt and the ids before it), then of the end-of-text token where it
    # ended decoding (stopped_by "eos"): the model's own distribution, before any suppressed words or
    # temperature; exp(sum) is the probability of the whole generation
    token_logprobs: list[float] = field(default_factory=list)


Result = LoglikelihoodResult | RollingResult | GenerationResult
