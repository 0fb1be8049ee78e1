"""One task on one loaded model: its requests through the engine, its answers scored by the plugin,
its samples and files written, and its entry of results.json (`run_task`). Under torchrun every
worker computes its share and rank 0 scores and writes.

The plugin's verdict is checked before it is recorded: the plugin's own arithmetic failing on a
number beyond the float range is one line that names the plugin, and metrics that are not finite
numbers are told apart. An infinite metric is a result (the perplexity of a model whose
log-probabilities are extreme overflows exp): it stays inf for the console and comparison.csv and
is null in results.json (strict JSON), with the reason beside it. A NaN is never a result: it is the
plugin's bug, named in one line, and null."""
from __future__ import annotations

import inspect
import math
import time
from dataclasses import replace
from pathlib import Path

from .api import answers, uncertainty
from .api.task import Task
from .engine.engine import Engine
from .errors import UserError
from .io import write_atomic, write_json, write_jsonl


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


def protocol_of(task: Task) -> dict:
    """The task's protocol with the value of each of its options (defaults included): what ran."""
    options = ", ".join(f"{k}={v}" for k, v in task.settings.items())
    return {**task.protocol, "options": options} if options else dict(task.protocol)


def run_task(task: Task, ds, engine: Engine, limit: int | None, out: Path | None, log, cache=None) -> dict | None:
    """One task's requests through the engine, scored; its samples and files written into `out`
    (nothing written when out is None). `cache`: the model's result cache view (its hits: the
    answers this task read from it). Under torchrun every worker computes its share and gets every
    answer; rank 0 scores and writes (the others return None)."""
    hits_before = cache.stats["hits"] if cache is not None else 0
    examples = ds.examples[:limit] if limit else ds.examples
    named = task.requests(examples)
    requests = answers.flatten(task.key, named)
    before = replace(engine.stats)
    t0 = time.perf_counter()
    results = engine.run(requests, desc=task.key)
    spent = engine.stats.since(before)
    counts = {k: getattr(spent, k) for k in ("items_computed", "tokens_forwarded", "decode_tokens", "decode_forwarded",
                                             "prefill_tokens", "oom_retries")}
    by_worker = engine.group.gather(counts)  # every worker's share of the work (torchrun)
    if engine.group.rank != 0:  # rank 0 has every answer, scores the task and writes the outputs
        return None
    wall = time.perf_counter() - t0
    scored = score(task, examples, answers.unflatten(named, results))
    pairs = uncertainty.variant_pairs({m: i.reference for m, i in task.metrics.items()}, scored.spread)
    spread = uncertainty.summarize(scored.metrics, scored.spread, list(dict.fromkeys(pairs + scored.pairs)))
    metrics, non_finite = finite_metrics(task, scored.metrics, log)
    reused = (cache.stats["hits"] - hits_before) if cache is not None else 0
    tokens = sum(c["tokens_forwarded"] for c in by_worker)  # by every worker
    decode_tokens = sum(c.get("decode_tokens", 0) for c in by_worker)
    decode_forwarded = sum(c.get("decode_forwarded", 0) for c in by_worker)
    subset = len(examples) < ds.n_full
    for row in scored.samples:
        row.setdefault("subset", subset)
    if out is not None:
        write_jsonl(out / "samples" / f"{task.file_stem}.jsonl", scored.samples)
        for relpath, obj in scored.files.items():  # a str is written as plain text (e.g. one segment per line)
            write_atomic(out / relpath, obj) if isinstance(obj, str) else write_json(out / relpath, obj)
    log(f"{task.key}: {len(examples)}/{ds.n_full} examples{' (SUBSET)' if subset else ''}, "
        f"{len(requests)} requests, {wall:.1f}s, " + (f"{reused} answers from the result cache, " if reused else "")
        + ", ".join(" ".join(filter(None, (f"{k}={'null' if v is None else format(v, '.4g')}",
                                          uncertainty.format_ci(spread.intervals.get(k)))))
                    for k, v in metrics.items()))
    plugin = {"source": plugin_source(task), **({"replaces": task.replaces} if getattr(task, "replaces", None) else {})}
    return {"metrics": metrics, **({"non_finite": non_finite} if non_finite else {}),
            "intervals": spread.intervals, "paired": spread.paired, "plugin": plugin,
            "files": [f"samples/{task.file_stem}.jsonl", *scored.files],  # what a later run here removes first
            "metric_info": {m: {"reference": i.reference, "variant": i.variant, "higher_is_better": i.higher_is_better}
                            for m, i in task.metrics.items()},
            "n_examples": len(examples), "n_full": ds.n_full, "subset": subset,
            "protocol": protocol_of(task), "options": task.settings, "data": ds.source, "extra": scored.extra,
            "n_requests": len(requests), "wall_s": wall, "tokens_forwarded": tokens,
            "tokens_per_s": tokens / wall if wall > 0 else None,
            "items_cached": spent.items_cached, "answers_from_cache": reused,
            "items_computed": sum(c["items_computed"] for c in by_worker),
            "items_computed_by_worker": [c["items_computed"] for c in by_worker],
            "tokens_forwarded_by_worker": [c["tokens_forwarded"] for c in by_worker],
            "oom_retries": sum(c["oom_retries"] for c in by_worker),
            "prefill_tokens": sum(c["prefill_tokens"] for c in by_worker),
            # every position run through the model = prompt positions (scoring + prefill) + decode steps;
            # decode_tokens: the decode-step positions the answers needed (rows still decoding);
            # decode_forwarded: those computed (fewer where rows of one context agree, decode.py);
            # unique_prompt_tokens: the prefix tree of the task's prompts (every shared prefix once)
            "decode_tokens": decode_tokens, "decode_forwarded": decode_forwarded,
            "prompt_tokens_forwarded": tokens - decode_forwarded,
            "unique_prompt_tokens": spent.unique_prompt_tokens}
