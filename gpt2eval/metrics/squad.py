"""Exact match and F1 as the official SQuAD v1.1 script (``evaluate-v1.1.py``) defines them, and the
NQ-open files they score (the paper's Natural Questions experiment uses "the exact match metric
commonly used on reading comprehension datasets like SQuAD", Section 3.8).

* Normalisation: lower-case, delete every ``string.punctuation`` character, replace the articles
  a/an/the by a space, collapse whitespace. CoQA's official script copied this function
  unchanged, so it is reused from :mod:`gpt2eval.metrics.coqa` rather than written twice.
* A question's score is the maximum over its gold answers (``metric_max_over_ground_truths``).
* F1 is the token-multiset F1 of the normalised strings, 0 when nothing is shared (the SQuAD
  script has no special case for empty answers, unlike CoQA's).
* One departure, on by default (``guard=False`` restores the script): a gold answer that
  normalisation erases ("A+", "---", ")", "*": four NQ-open dev golds) is compared only
  lower-cased (:func:`gpt2eval.metrics.guarded`), so "A" no longer matches "A+".
"""
from __future__ import annotations

from pathlib import Path

from . import guarded, token_f1
from .coqa import normalize_answer

__all__ = ["normalize_answer", "exact_match", "f1", "best_exact_match", "best_f1", "read_nq_open"]


def exact_match(prediction: str, ground_truth: str, guard: bool = True) -> bool:
    pred, gold = guarded(normalize_answer, prediction, ground_truth, guard)
    return pred == gold


def f1(prediction: str, ground_truth: str, guard: bool = True) -> float:
    pred, gold = guarded(normalize_answer, prediction, ground_truth, guard)
    return token_f1(pred.split(), gold.split())


def best_exact_match(prediction: str, golds: list[str], guard: bool = True) -> float:
    """1.0 if the prediction matches any gold answer after normalisation, else 0.0."""
    if not golds:
        raise ValueError("a question needs at least one gold answer")
    return float(max(exact_match(prediction, g, guard) for g in golds))


def best_f1(prediction: str, golds: list[str], guard: bool = True) -> float:
    if not golds:
        raise ValueError("a question needs at least one gold answer")
    return max(f1(prediction, g, guard) for g in golds)


def read_nq_open(path) -> list[dict]:
    """NQ-open JSONL (``{"question": str, "answer": [str, ...]}`` per line) as
    ``{"line", "question", "answers"}``; the natural_questions task and `run_eval.py score` both
    read gold files with this. A bad line is one error naming the file and the line."""
    from ..api.data import jsonl_rows
    from ..errors import DataError
    out = []
    for n, row in jsonl_rows(Path(path)):
        question, answers = (row.get("question"), row.get("answer")) if isinstance(row, dict) else (None, None)
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{path}, line {n}: no 'question' string; an NQ-open line is "
                            '{"question": str, "answer": [str, ...]}')
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise DataError(f"{path}, line {n}: 'answer' is not a non-empty list of strings")
        out.append({"line": n, "question": question, "answers": answers})
    return out
