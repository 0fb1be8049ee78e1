"""Metric functions of the generation tasks, as the official scorers define them, and the two
pieces the QA scorers share: token F1 and the guard against golds that normalisation erases."""
from collections import Counter
from typing import Callable


def token_f1(pred_toks: list[str], gold_toks: list[str]) -> float:
    """F1 of the shared token multiset (both official QA scorers use it; they differ only in how
    they normalise and in what an empty answer scores, which the callers decide)."""
    num_same = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(pred_toks), num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def lowered(text: str) -> str:
    """Lower-cased, whitespace collapsed: all the guard keeps of SQuAD-style normalisation."""
    return " ".join(text.lower().split())


def guarded(normalize: Callable[[str], str], prediction: str, gold: str, guard: bool = True) -> tuple[str, str]:
    """(prediction, gold) as a QA scorer compares them: both through `normalize`, except where the
    gold has text that `normalize` erases (NQ-open's "A+", "---", ")", "*"; TriviaQA's "'A",
    "(a"): then both are only `lowered`. Unguarded, any answer that also normalises to "" ("A",
    "the", "!") would equal such a gold, so GPT-2's "A" for Sweden's blood type would match "A+"
    (the paper's Table 5 counts it wrong). guard=False: the official scripts' comparison."""
    gold_norm = normalize(gold)
    if guard and not gold_norm and gold.strip():
        return lowered(prediction), lowered(gold)
    return normalize(prediction), gold_norm
