"""The `stride` option of every language-modelling task: how a long stream is cut into windows.

The paper does not say how its context windows were handled. The default, disjoint windows of the
model's full 1,024 tokens, scores each token once with whatever context its window gives it (the
first token of a window sees only the token before it). `stride=S` scores the stream in
overlapping windows instead: every window after the first scores only its last S tokens and sees
up to 1,024 - S tokens before them (gpt2eval.engine.encode.rolling_windows), so each token has more
context and the model forwards about 1,024 / S times as many tokens. A reported re-run by the
first author used stride 32 on raw WikiText (karpathy/llm.c PRs 276 and 374; disputed there).
Every token is still scored exactly once, so the normalisation does not change.
"""
from __future__ import annotations

from ..api.task import Option
from ..errors import UserError

STRIDE = Option(None, "tokens each window scores: overlapping windows, each scoring its last STRIDE tokens and "
                      "seeing up to 1024 - STRIDE before them (default: disjoint 1024-token windows)", kind=int)


def check_stride(task: str, stride: int | None) -> None:
    """One line for a stride that no window can have (the engine checks it against the model's window)."""
    if stride is not None and stride < 1:
        raise UserError(f"task {task}: option stride={stride} must be a positive number of tokens "
                        "(at most the model's window, 1024)")


def windows(stride: int | None) -> str:
    """The protocol's words for the windows of one stream."""
    if stride is None:
        return "disjoint 1024-token windows"
    return (f"overlapping 1024-token windows, stride {stride}: each after the first scores its last {stride} tokens, "
            f"conditioned on up to {1024 - stride} before them")
