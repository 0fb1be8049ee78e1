"""A 10-candidate multiple-choice workload built from real shared text: CBT's validation books.

The Children's Book Test's shape (Hill et al. 2016), as the GPT-2 paper scores it: 20 sentences of
a book as context, then a query sentence with one word left out and 10 candidate words; each
candidate is scored as log p(candidate + rest of the query | context + query's beginning). The
text is `cbt/cbt_valid.txt` (the books' plain text, ../shared/data/SOURCES.md); the query is the
21st sentence, the blanked word its longest word, the other 9 candidates the next-longest distinct
words of the context (CBT's distractors are words of the context too). It is a workload for
measuring how often shared tokens are forwarded, not a reproduction of CBT's questions.
"""
from __future__ import annotations

from pathlib import Path

CONTEXT_SENTENCES, CANDIDATES = 20, 10


def sentences(path: Path) -> list[str]:
    """The book sentences of cbt_valid.txt (one per line), without the _BOOK_TITLE_ lines."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("_BOOK_TITLE_")]


def questions(path: Path, n: int) -> list[tuple[str, list[str], int]]:
    """n questions as (context, continuations, index of the true one), from consecutive stretches
    of 21 sentences."""
    text, out, start = sentences(path), [], 0
    while len(out) < n and start + CONTEXT_SENTENCES < len(text):
        context, query = text[start:start + CONTEXT_SENTENCES], text[start + CONTEXT_SENTENCES]
        start += CONTEXT_SENTENCES + 1
        words = query.split(" ")
        blank = max(range(len(words)), key=lambda i: (len(words[i]), -i))
        if not words[blank].isalpha() or blank == 0:
            continue
        pool = sorted({w for s in context for w in s.split(" ") if w.isalpha() and w != words[blank]},
                      key=lambda w: (-len(w), w))[:CANDIDATES - 1]
        if len(pool) < CANDIDATES - 1:
            continue
        options = [words[blank]] + pool
        gold = (len(out) * 3) % CANDIDATES  # the true word at varying positions
        options[0], options[gold] = options[gold], options[0]
        rest = " ".join(words[blank + 1:])
        ctx = " ".join(context) + " " + " ".join(words[:blank])
        out.append((ctx, [" " + o + (" " + rest if rest else "") for o in options], gold))
    return out


def requests(path: Path, n: int):
    """The workload as the engine sees it: plain Loglikelihood requests, 10 per shared context."""
    from gpt2eval.api.requests import Loglikelihood
    return [Loglikelihood(ctx, cont) for ctx, conts, _ in questions(path, n) for cont in conts]
