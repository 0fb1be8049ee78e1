"""Text processing and ROUGE for the CNN/Daily Mail summarization task.

GPT-2 samples 100 tokens after "TL;DR:" and keeps the first 3 generated
sentences as the summary, then reports ROUGE-1, ROUGE-2 and ROUGE-L F1 and
their average.  This module provides the pieces: an offline sentence splitter
(pysbd), the 3-sentence cut, a PTB detokenizer for references that ship
tokenized, and ROUGE via Google's ``rouge-score`` package.

ROUGE-L is summary-level, as in ROUGE-1.5.5, the scorer behind the CNN/DM
numbers of the paper's time: both texts are split into sentences (pysbd) and
rouge-score's ``rougeLsum`` takes the union LCS of each reference sentence with
the summary's sentences.  Its ``rougeL`` (one LCS over the whole text) counts a
word only if it keeps its order across sentences, which scores lower: on the
250 FRANK test articles lead-3 scores R-L 26.3 with it and 37.3 summary-level,
against 36.62 in Table 4 (R-1 41.1 vs 40.38).  How the summary's sentences are
joined (" " or "\\n") therefore does not matter.
"""

from __future__ import annotations

import functools
import statistics

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_SCORER_TYPES = {"rouge1": "rouge1", "rouge2": "rouge2", "rougeL": "rougeLsum"}  # ours -> rouge-score's


@functools.lru_cache(maxsize=1)
def _segmenter():
    import pysbd  # local import: only this module needs it

    return pysbd.Segmenter(language="en", clean=False)


@functools.lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(_SCORER_TYPES.values()), use_stemmer=True)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, stripped, with empty pieces dropped.

    pysbd with ``clean=False`` keeps the text as written (no rewriting of
    whitespace or quotes), handles abbreviations and decimals, and also breaks
    at blank lines, which generated text often contains.
    """
    pieces = (s.strip() for s in _segmenter().segment(text))
    return [s for s in pieces if s]


def first_sentences(text: str, n: int = 3, sep: str = " ") -> str:
    """The first ``n`` sentences of ``text`` joined by ``sep`` (GPT-2 used n=3)."""
    return sep.join(split_sentences(text)[:n])


# --- PTB detokenization ---------------------------------------------------

_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]",
             "-LCB-": "{", "-RCB-": "}"}
# Tokens glued to the previous token.
_ATTACH_LEFT = {".", ",", ":", ";", "?", "!", "%", ")", "]", "}", "'"}
# Tokens glued to the next token.
_ATTACH_RIGHT = {"(", "[", "{", "$", "£", "€", "#", "`"}
_CLITICS = {"'s", "'re", "'ve", "'ll", "'d", "'m", "n't"}


def detokenize_ptb(text: str) -> str:
    """Undo Stanford/PTB tokenization as found in CNN/DM reference highlights.

    Handles bracket escapes (-LRB- ...), ``...'' and `...' quotes, clitics
    ("Turkey 's", "is n't", "wo n't"), punctuation spacing, currency and
    percent signs, and the extra "." the tokenizer adds after a sentence-final
    abbreviation ("D.C. ." -> "D.C.").  A bare ' closes an open `-quote;
    otherwise it is a plural possessive ("Reports '" -> "Reports'") unless it
    follows a word not ending in "s" -- then the tokenizer mistook an opening
    quote ("number ' 3 '" -> "number '3'").  Spaced dashes ("-", "--") and
    ellipses stay spaced: their original spacing cannot be recovered.
    ROUGE's own tokenizer ignores punctuation, but not word splits such as
    "is n't" -> [is, n, t], which is why references are detokenized at all.
    """
    tokens = text.split()
    out: list[str] = []
    glue_next = False  # previous token asked to be glued to this one
    double_open = single_open = False
    for i, tok in enumerate(tokens):
        tok = _BRACKETS.get(tok, tok)
        left = tok in _ATTACH_LEFT or tok.lower() in _CLITICS
        right = tok in _ATTACH_RIGHT
        if tok == "``":
            tok, right, double_open = '"', True, True
        elif tok == "''":
            # Usually a closing quote; with no quote open (a tokenizer slip)
            # and more text following, it opens one.
            closing = double_open or i == len(tokens) - 1
            tok, left, right, double_open = '"', closing, not closing, not closing
        elif tok == "`":
            tok, single_open = "'", True
        elif tok == "'":
            prev = tokens[i - 1] if i else ""
            opening = (not single_open and prev.isalnum() and prev[-1] not in "sS"
                       and i < len(tokens) - 1)
            left, right, single_open = not opening, opening, opening
        if tok == "." and out and len(out[-1]) > 1 and out[-1].endswith(".") and out[-1] != "...":
            continue  # duplicated sentence-final period after an abbreviation
        if out and not left and not glue_next:
            out.append(" ")
        out.append(tok)
        glue_next = right
    return "".join(out)


# --- ROUGE -----------------------------------------------------------------

def rouge_scores(prediction: str, reference: str) -> dict:
    """ROUGE-1/2 and summary-level ROUGE-L F1 x 100, Porter stemming (rouge-score defaults
    otherwise).  Sentences are found with :func:`split_sentences` and put one per line, the
    sentence boundaries ``rougeLsum`` reads; ROUGE-1/2 ignore line breaks."""
    lines = lambda text: "\n".join(split_sentences(text))  # noqa: E731
    scores = _scorer().score(lines(reference), lines(prediction))  # rouge-score takes (target, prediction)
    return {name: 100.0 * scores[theirs].fmeasure for name, theirs in _SCORER_TYPES.items()}


def aggregate_rouge(per_example: list[dict]) -> dict:
    """Mean of each ROUGE score over examples plus ``rouge_avg`` (mean of the three).

    GPT-2's Table 4 reports R-1, R-2, R-L and "R-AVG", their average.
    """
    if not per_example:
        raise ValueError("no ROUGE scores to aggregate")
    means = {name: statistics.fmean(d[name] for d in per_example) for name in ROUGE_TYPES}
    means["rouge_avg"] = statistics.fmean(means[name] for name in ROUGE_TYPES)
    return means
