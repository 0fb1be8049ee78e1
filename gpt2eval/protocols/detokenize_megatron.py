"""The public zero-shot de-tokenizers of Megatron-LM, reimplemented from their published rules.

Megatron-LM's tasks/zeroshot_gpt/detokenizer.py defines a WikiText and a PTB de-tokenizer as fixed
sequences of plain text rewrites (no token analysis); lm-evaluation-harness's wikitext task uses the
WikiText one unchanged (lm_eval/tasks/wikitext/preprocess_wikitext.py, `wikitext_detokenizer`).
lm-evaluation-harness has no PTB de-tokenizer (its paloma_ptb task scores the text as it is), so the
PTB rules are tested against Megatron-LM's source as written there. The rules are listed below in
their published order, each step in one of three forms: a literal rewrite, a pair of marks whose
inner edges lose their whitespace, or (once) a regular expression. A pair is a mark and the first
closing mark after it, scanned left to right; a mark with no closing mark after it is left alone.

Both rule sets are defined on a whole text, and Megatron-LM applies them to a whole test file. On
the WikiText-103 test file that joins lines: the quote and bracket pairs reach across lines (an
unclosed `'` on one line pairs with one on a later line) and strip the newlines at their inner
edges, 4,358 lines becoming 4,332. The tasks keep per-line bookkeeping (original tokens per line),
so `by_line` applies the rules to each line alone, framed by a newline on either side as it sits
inside the file: the rules that drop the space at a line's edges then act as they do in the file,
and no pair crosses a line. The normalisation (original tokens) is the task's, not Megatron's.
"""
from __future__ import annotations

import re

# One step: ("text", old, new) rewrites every non-overlapping `old`, left to right; ("pair", open,
# close) removes the whitespace just inside each pair; ("regex", pattern, new) substitutes.
Step = tuple[str, str, str]

WIKITEXT_STEPS: tuple[Step, ...] = (
    ("text", "s '", "s'"),                 # a plural possessive: "ships ' guns"
    # As published, a pattern between literal slashes: it matches only "/' " + digit + "/" and writes
    # the literal text "/'[0-9]/" (the WikiText test files have no such text); kept for fidelity.
    ("regex", r"/' [0-9]/", "/'[0-9]/"),
    ("text", " @-@ ", "-"), ("text", " @,@ ", ","), ("text", " @.@ ", "."),  # split numbers and hyphens
    ("text", " : ", ": "), ("text", " ; ", "; "), ("text", " . ", ". "),      # no space before punctuation
    ("text", " ! ", "! "), ("text", " ? ", "? "), ("text", " , ", ", "),
    ("pair", "(", ")"), ("pair", "[", "]"), ("pair", "{", "}"), ("pair", '"', '"'), ("pair", "'", "'"),
    ("text", "= = = =", "===="), ("text", "= = =", "==="), ("text", "= =", "=="),  # heading markers
    ("text", " \N{DEGREE SIGN} ", "\N{DEGREE SIGN}"),
    ("text", " \n", "\n"), ("text", "\n ", "\n"),  # no space at a line's edges
    ("text", " N ", " 1 "),                # a number placeholder as a digit
    ("text", " 's", "'s"),
)

PTB_STEPS: tuple[Step, ...] = (
    ("text", " '", "'"),                   # clitics and possessives: " 's", " 're", " '"
    ("text", " \n", "\n"), ("text", "\n ", "\n"),
    ("text", " n't", "n't"),
    # The number placeholder as a digit; the rewrite also drops the space before
    # it ("up N" -> "up1"), and of "N N" it rewrites only the first (the second's leading space went with the first).
    ("text", " N ", "1 "),
    ("text", "$ 1", "$1"), ("text", "# 1", "#1"),
)


def tighten_pairs(text: str, opening: str, closing: str) -> str:
    """Each `opening` and the first `closing` after it, with the whitespace inside their edges removed
    ("( 2004 )" -> "(2004)"); scanning goes on after the closing mark."""
    out, pos = [], 0
    while True:
        start = text.find(opening, pos)
        end = text.find(closing, start + 1) if start >= 0 else -1
        if end < 0:
            out.append(text[pos:])
            return "".join(out)
        out += [text[pos:start + 1], text[start + 1:end].strip(), closing]
        pos = end + 1


def apply_steps(steps: tuple[Step, ...], text: str) -> str:
    """The rule set on one text, step by step, in order."""
    for kind, a, b in steps:
        if kind == "text":
            text = text.replace(a, b)
        elif kind == "pair":
            text = tighten_pairs(text, a, b)
        else:
            text = re.sub(a, lambda _: b, text)
    return text


def by_line(steps: tuple[Step, ...], text: str) -> str:
    """The rules applied to each line of `text` alone, framed by newlines as inside a file; the
    line count is kept."""
    lines = []
    for line in text.split("\n"):
        framed = apply_steps(steps, "\n" + line + "\n")
        assert framed[0] == framed[-1] == "\n", "no rule removes a newline outside a pair"
        lines.append(framed[1:-1])
    return "\n".join(lines)


def wikitext_detokenize_megatron(text: str) -> str:
    """Megatron-LM's (and lm-evaluation-harness's) WikiText rules, line by line.
      | a guest @-@ starring role as " Craig " ( 2004 ) , in Teddy 's Story . |
      ->  |a guest-starring role as "Craig" (2004), in Teddy's Story.|"""
    return by_line(WIKITEXT_STEPS, text)


def ptb_detokenize_megatron(text: str) -> str:
    """Megatron-LM's PTB rules, line by line.
      | it was n't worth $ N up N N |  ->  |it wasn't worth $1 up1 N|"""
    return by_line(PTB_STEPS, text)
