"""A task plugin's verdict, checked before it is recorded: the plugin's own arithmetic failing on a
number beyond the float range is one line that names the plugin, and metrics that are not finite
numbers are told apart. An infinite metric is a result (the perplexity of a model whose
log-probabilities are extreme overflows exp): it stays inf for the console and comparison.csv and
is null in results.json (strict JSON), with the reason beside it. A NaN is never a result: it is the
plugin's bug, named in one line, and null."""
from __future__ import annotations

import inspect
import math

from .api.task import Task
from .errors import UserError


def plugin_source(task: Task) -> str:
    try:
        return inspect.getsourcefile(type(task)) or type(task).__module__
    except TypeError:  # a class without a source file
        return type(task).__module__


def score(task: Task, examples: list, answered: dict):
    """task.score, with an overflow in the plugin's arithmetic named as the plugin's, in one line."""
    try:
        return task.score(examples, answered)
    except OverflowError as e:
        raise UserError(f"task {task.key}: its plugin {plugin_source(task)} failed on a number beyond the float range "
                        f"(OverflowError: {e}): a bug in the plugin (gpt2eval.api.uncertainty.safe_exp gives inf "
                        "instead of failing)") from None


def finite_metrics(task: Task, metrics: dict, log) -> tuple[dict, dict[str, str]]:
    """(metrics, {metric: why it is not a number}). An infinite value is a result (an overflowing
    perplexity): it stays inf here (console, comparison.csv) and is null in results.json, with the
    reason. A NaN is the plugin's bug: None, named in one line."""
    kept, why = dict(metrics), {}
    for m, v in metrics.items():
        try:
            v = float(v)  # numpy and torch scalars too
        except (TypeError, ValueError):
            continue
        if math.isnan(v):
            kept[m] = None
            why[m] = (f"NaN: a bug in the task plugin {plugin_source(task)} (its score() returned NaN for {m}); "
                      "recorded as null")
            log(f"warning: task {task.key}: metric {m} is {why[m]}")
        elif math.isinf(v):
            why[m] = (f"{'-' if v < 0 else ''}inf: beyond the largest float (1.8e308), as a perplexity whose "
                      "exponent overflows; shown as inf, recorded as null")
    return kept, why
