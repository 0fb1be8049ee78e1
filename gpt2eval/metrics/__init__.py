"""Metric functions of the generation tasks, as the official scorers define them."""
from collections import Counter


def token_f1(pred_toks: list[str], gold_toks: list[str]) -> float:
    """F1 of the shared token multiset (both official QA scorers use it; they differ only in how
    they normalise and in what an empty answer scores, which the callers decide)."""
    num_same = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(pred_toks), num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)
