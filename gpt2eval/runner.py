"""One evaluation run: for each model, each task's requests go through the engine and come back
as metrics, samples and a comparison with the paper. results.json is rewritten after every task,
so a crash keeps every finished task."""
from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from . import __version__
from .api import uncertainty
from .distributed.group import Group, join
from .distributed.watch import guarded
from .cache.store import ResultCache
from .reporting.compare import comparison_rows, format_table, load_references, write_csv
from .api.data import DataSource
from .engine.engine import Engine
from .errors import UserError
from .cache.fingerprint import model_label
from .io import write_atomic, write_json, write_jsonl
from .models.load import load
from .models.sizes import SIZES
from .api.task import Task


@dataclass
class RunConfig:
    models: list[str]                    # sizes ("small") or model ids / folders
    tasks: list[Task]
    output: Path
    data_dir: str | None = None
    limit: int | None = None
    batch_size: int | str = "auto"
    device: str = "auto"
    dtype: str = "float32"
    seed: int = 1234
    progress: bool = True
    reference_size: str | None = None     # paper size to compare with when the shape matches none
    settings: dict = field(default_factory=dict)  # the command line, recorded verbatim
    cache: Path | None = None             # result cache file (cache.default_path); None: no cache
    samples: int = 1                      # draws per example for tasks that sample (cnn_dailymail)


def versions() -> dict:
    import datasets
    import torch
    import transformers
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "datasets": datasets.__version__, "gpt2eval": __version__}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_dirs(cfg: RunConfig) -> list[tuple[str, Path]]:
    """One model writes to --output; several write to --output/<size or name> each."""
    if len(cfg.models) == 1:
        return [(cfg.models[0], cfg.output)]
    return [(m, cfg.output / (m if m in SIZES else Path(m).name)) for m in cfg.models]


def reference_size(lm, model_name: str, override: str | None) -> dict:
    """Which paper size the comparison uses: the asked-for size, else the matching shape, else
    --reference-size (recorded, so a table never passes off a custom model as a paper size)."""
    if model_name in SIZES:
        return {"size": model_name, "size_from": "--sizes"}
    if lm.size:
        return {"size_from": "architecture matches"}
    if override:
        return {"size": override, "paper_size": SIZES[override][1], "size_from": "--reference-size"}
    return {"size_from": "no match"}


def check_outputs(cfg: RunConfig) -> None:
    """Refuse an output path that cannot be written, before any data or model is loaded (never a
    traceback after the whole evaluation): a file where a folder goes or the reverse, a folder
    below a file, a folder that cannot be written. Creates nothing."""
    where = f"--output {cfg.output}"
    runs = [out for _, out in run_dirs(cfg)]
    files = [out / name for out in runs for name in ("results.json", "comparison.csv")]
    for path in [cfg.output] + [out / sub for out in runs for sub in ("", "samples", "predictions")]:
        if path.exists() and not path.is_dir():
            raise UserError(f"{where}: {path} is a file, not a folder; choose another --output or move the file")
    for path in files:
        if path.is_dir():
            raise UserError(f"{where}: {path} is a folder, where the run writes a file; choose another --output")
    existing = Path(cfg.output).expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{where}: {existing} is a file, so no folder can be made below it; choose another --output")
    try:  # a real write, not os.access: read-only mounts, and root, which os.access always lets through
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".gpt2eval-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{where}: cannot write in {existing} ({e.strerror or e}); choose another --output") from None


def evaluate(cfg: RunConfig, log=print) -> list[dict]:
    check_outputs(cfg)
    sampled = [t for t in cfg.tasks if hasattr(t, "samples")]  # a task that samples says so by this attribute
    if cfg.samples != 1 and not sampled:
        raise UserError(f"--samples {cfg.samples} draws several samples per example for tasks that sample "
                        "(cnn_dailymail); none of the chosen tasks does: drop --samples or add such a task")
    for t in sampled:
        t.samples = cfg.samples
    data = DataSource(cfg.data_dir)
    datasets = {}
    for task in cfg.tasks:  # load (and verify) every dataset before any model: fail fast, fail cheap
        ds = task.load(data)
        if not ds.examples:
            raise UserError(f"task {task.name}: the data has no examples")
        datasets[task.name] = ds
    group = join()  # under torchrun: this worker's place among the workers; else a group of one
    cache = None
    try:
        with guarded(group):  # a worker that fails or dies: one line, from rank 0
            # Before any model too: a bad file fails cheap. Rank 0 alone keeps the answers (every
            # worker's reach it over the process group): no file is shared between nodes.
            cache = ResultCache(cfg.cache) if cfg.cache and group.rank == 0 else None
            return evaluate_models(cfg, datasets, cache, group, log)
    finally:
        if cache is not None:
            cache.close()  # also on Ctrl-C: every finished batch is already committed


def evaluate_models(cfg: RunConfig, datasets: dict, cache: ResultCache | None, group: Group,
                    log=print) -> list[dict]:
    refs = load_references()
    all_rows, all_results = [], []
    writer = group.rank == 0  # under torchrun the others only compute their share
    if not writer:
        log = lambda msg: None  # noqa: E731 - rank 0 speaks for the run
    for model_name, out in run_dirs(cfg):
        model_id = SIZES[model_name][0] if model_name in SIZES else model_name
        log(f"loading {model_id} ({cfg.dtype})")
        lm = load(model_id, device=group.device(cfg.device), dtype=cfg.dtype)
        model_cache = None
        if cache is not None:
            v = versions()
            label = model_label(model_id)
            model_cache = cache.for_model(lm.fingerprint, label=label, info={
                "dtype": lm.dtype, "device": lm.device, "torch": v["torch"], "transformers": v["transformers"]})
            if writer and (note := model_cache.not_reused_message(label)):
                log(note)
        engine = Engine(lm.model, lm.tokenizer, batch_size=cfg.batch_size, seed=cfg.seed,
                        progress=cfg.progress and writer, cache=model_cache, log=log,
                        budgets=previous_budgets(out, lm), group=group)
        for task in cfg.tasks:  # all checked before any runs: never fail after hours of another task
            if engine.window < task.min_context:
                raise UserError(f"model {model_id} has a {engine.window}-token context but task {task.name} "
                                f"needs {task.min_context}")
        results = {"schema": 1, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "git_commit": git_commit(), "versions": versions(),
                   "model": {**lm.describe(), **reference_size(lm, model_name, cfg.reference_size)},
                   "settings": {**cfg.settings, "limit": cfg.limit, "batch_size": cfg.batch_size, "seed": cfg.seed},
                   "cache": model_cache.stats if model_cache else None,  # live counters, current at each write
                   "workers": group.world_size, "tasks": {}}
        for task in cfg.tasks:
            task_result = run_task(task, datasets[task.name], engine, cfg.limit, out, log)
            if writer:
                results["tasks"][task.name] = task_result
                results["engine"] = engine.describe()  # token budgets (computed once per run) and caps
                write_json(out / "results.json", results)
        del engine, lm, model_cache  # the next size loads into the memory this one held
        free_device_memory()
        if not writer:
            continue
        rows = comparison_rows(results, refs)
        write_csv(out / "comparison.csv", rows)
        log(f"\n{model_id}: results in {out}\n" + format_table(rows))
        all_rows += rows
        all_results.append(results)
    if len(all_results) > 1:
        write_csv(cfg.output / "comparison.csv", all_rows)
        from .reporting.report import write_report_folder  # merged tables, plots, report.md / .html beside the runs
        write_report_folder(cfg.output, log)
    return all_results


def previous_budgets(out: Path, lm) -> dict | None:
    """The token budgets an earlier run of these weights on this device recorded in the same output
    folder: a resumed run batches as the first did (its cached answers are then those it would compute)."""
    import json
    try:
        old = json.loads((out / "results.json").read_text())
        if old["model"]["fingerprint"] == lm.fingerprint and old["model"]["device"] == lm.device:
            return old["engine"]["token_budgets"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def free_device_memory() -> None:
    import gc

    import torch
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_task(task: Task, ds, engine: Engine, limit: int | None, out: Path, log) -> dict | None:
    examples = ds.examples[:limit] if limit else ds.examples
    requests = task.requests(examples)
    before = replace(engine.stats)
    t0 = time.perf_counter()
    results = engine.run(requests, desc=task.name)
    spent = engine.stats.since(before)
    counts = {k: getattr(spent, k) for k in ("items_computed", "tokens_forwarded", "decode_tokens", "decode_forwarded",
                                             "prefill_tokens", "oom_retries")}
    by_worker = engine.group.gather(counts)  # every worker's share of the work (torchrun)
    if engine.group.rank != 0:  # rank 0 has every answer, scores the task and writes the outputs
        return None
    wall = time.perf_counter() - t0
    scored = task.score(examples, results)
    pairs = uncertainty.variant_pairs({m: i.reference for m, i in task.metrics.items()}, scored.spread)
    spread = uncertainty.summarize(scored.metrics, scored.spread, list(dict.fromkeys(pairs + scored.pairs)))
    tokens = sum(c["tokens_forwarded"] for c in by_worker)  # by every worker
    decode_tokens = sum(c.get("decode_tokens", 0) for c in by_worker)
    decode_forwarded = sum(c.get("decode_forwarded", 0) for c in by_worker)
    subset = len(examples) < ds.n_full
    for row in scored.samples:
        row.setdefault("subset", subset)
    write_jsonl(out / "samples" / f"{task.name}.jsonl", scored.samples)
    for relpath, obj in scored.files.items():  # a str is written as plain text (e.g. one segment per line)
        write_atomic(out / relpath, obj) if isinstance(obj, str) else write_json(out / relpath, obj)
    log(f"{task.name}: {len(examples)}/{ds.n_full} examples{' (SUBSET)' if subset else ''}, "
        f"{len(requests)} requests, {wall:.1f}s, " + ", ".join(
            f"{k}={v:.4g}" + (f" {uncertainty.format_ci(spread.intervals[k])}" if k in spread.intervals else "")
            for k, v in scored.metrics.items()))
    return {"metrics": scored.metrics, "intervals": spread.intervals, "paired": spread.paired,
            "metric_info": {m: {"reference": i.reference, "variant": i.variant, "higher_is_better": i.higher_is_better}
                            for m, i in task.metrics.items()},
            "n_examples": len(examples), "n_full": ds.n_full, "subset": subset,
            "protocol": task.protocol, "data": ds.source, "extra": scored.extra,
            "n_requests": len(requests), "wall_s": wall, "tokens_forwarded": tokens,
            "tokens_per_s": tokens / wall if wall > 0 else None,
            "items_cached": spent.items_cached,
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
