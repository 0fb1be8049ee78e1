"""The order in which a report lists tasks, paper rows and sizes: the paper's. Tasks follow Table 3
left to right (LAMBADA, CBT-CN, CBT-NE, WikiText2, PTB, enwik8, text8, WikiText103, 1BW), then
Winograd, CoQA, CNN/Daily Mail, WMT-14 (Fr-En, En-Fr) and Natural Questions. A protocol variant of
a task (a task key with options, "lambada:preprocess=openai", "wikitext2:stride=256") follows the
task whose paper rows it is compared with; a task compared with no paper row comes last. Sizes:
small to xl, then any model that matches no size. Pure functions over names, so that every table sorts alike."""
from __future__ import annotations

from ..models.sizes import SIZES

PAPER_TASK_ORDER = ("lambada", "cbt_cn", "cbt_ne", "wikitext2", "ptb", "enwik8", "text8", "wikitext103", "1bw",
                    "winograd", "coqa", "cnn_dailymail", "wmt14_fr_en", "wmt14_en_fr", "natural_questions")
# Within a task, the paper's rows in the order the paper gives them (Table 3's PPL before its ACC,
# then Section 3.3's unfiltered LAMBADA accuracy; Table 4's settings and ROUGE scores).
_CNN_ROWS = [f"cnn_dailymail/{s}_{r}" for s in ("lead3", "tldr", "random3", "no_hint")
             for r in ("rouge1", "rouge2", "rougeL", "rouge_avg")]
PAPER_ROW_ORDER = ("lambada/ppl", "lambada/acc", "lambada/acc_without_stopword_filter", *_CNN_ROWS)


def _anchor(task: str, references) -> str | None:
    """The paper task a task belongs to: its name (a key's part before its options,
    "wikitext2:stride=256" -> wikitext2), else the paper task of one of its reference rows, else the
    paper task its name extends (a plugin's "ptb_rare" -> ptb)."""
    name = task.split(":", 1)[0]
    if name in PAPER_TASK_ORDER:
        return name
    for ref in references:
        owner = (ref or "").split("/")[0]
        if owner in PAPER_TASK_ORDER:
            return owner
    return next((t for t in PAPER_TASK_ORDER if task.startswith(t + "_")), None)


def task_key(task: str, references=()) -> tuple:
    """Sort key of a task, given the reference rows ("task/metric") its metrics are compared with:
    paper tasks in the paper's order, each task's variants right after it (by name), others last."""
    anchor = _anchor(task, references)
    if anchor is None:
        return (len(PAPER_TASK_ORDER), 1, task)
    return (PAPER_TASK_ORDER.index(anchor), 0 if task == anchor else 1, task)


def row_key(reference: str | None) -> int:
    """Sort key of a paper row within its task; rows not listed keep their order (a stable sort)."""
    return PAPER_ROW_ORDER.index(reference) if reference in PAPER_ROW_ORDER else len(PAPER_ROW_ORDER)


def size_key(size: str) -> int:
    """The four paper sizes first, small to xl; any other model after them (a stable sort)."""
    return list(SIZES).index(size) if size in SIZES else len(SIZES)


def task_order(references_by_task: dict[str, set]) -> list[str]:
    """Tasks (each with the reference rows of its metrics) in the report's order."""
    return sorted(references_by_task, key=lambda t: task_key(t, sorted(r for r in references_by_task[t] if r)))
