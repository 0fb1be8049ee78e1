"""One evaluation run: for each model, each task's requests go through the engine and come back
as metrics, samples and a comparison with the paper. results.json is rewritten after every task,
so a crash keeps every finished task. Output paths (run_folder), data (every task's, with
--skip-unavailable those that cannot be read left out and named) and the cache file are checked
before any model loads. A metric that is not a finite number is recorded as null with the reason
(an overflowing perplexity is inf on the console and in comparison.csv; a NaN is the plugin's bug)."""
from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, hub, run_folder
from .distributed.group import Group, join
from .distributed.watch import guarded
from .cache.store import ResultCache
from .reporting.compare import comparison_rows, format_table, load_references, write_csv
from .api.data import DataSource
from .engine.engine import Engine
from .errors import DataError, UserError
from .cache.fingerprint import model_label
from .io import write_json
from .models.load import LoadedModel, check_model, load
from .models.random import MEANINGLESS, is_random, load_random
from .models.sizes import SIZES
from .api.task import Task
from .task_run import run_task


@dataclass
class RunConfig:
    models: list[str]                    # sizes ("small"), model ids / folders, nanoGPT / llm.c checkpoint files,
    tasks: list[Task]                    # random:SIZE
    output: Path | None                  # None (gpt2eval.evaluate without output=): no file is written
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
    tokenizer: str | None = None          # --tokenizer: instead of the model's own (a checkpoint's, random's: GPT-2's)
    skip_unavailable: bool = False        # leave out (and name) the tasks whose data cannot be read
    overwrite: bool = False               # remove another run's files from --output first (run_folder)


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


def evaluate(cfg: RunConfig, log=print) -> list[dict]:
    earlier = run_folder.check(cfg, cfg.overwrite)  # before any data or model: never fail after the work
    for model in cfg.models:  # a checkpoint's format and length: a sweep never stops on a bad file half-way
        check_model(SIZES[model][0] if model in SIZES else model)
    sampled = [t for t in cfg.tasks if hasattr(t, "samples")]  # a task that samples says so by this attribute
    if cfg.samples != 1 and not sampled:
        raise UserError(f"--samples {cfg.samples} draws several samples per example for tasks that sample "
                        "(cnn_dailymail); none of the chosen tasks does: drop --samples or add such a task")
    for t in sampled:
        t.samples = cfg.samples
    datasets, skipped = load_datasets(cfg, DataSource(cfg.data_dir, log=log), log)
    group = join()  # under torchrun: this worker's place among the workers; else a group of one
    cache = None
    try:
        with guarded(group):  # a worker that fails or dies: one line, from rank 0 (distributed/watch.py)
            # Before any model too: a bad file fails cheap. Rank 0 alone keeps the answers and writes
            # the outputs (every worker's answers reach it over the process group): no shared folder.
            if group.rank == 0:
                cache = ResultCache(cfg.cache) if cfg.cache else None
                run_folder.clear(earlier)  # every check has passed: the earlier run's files go
            return evaluate_models(cfg, datasets, cache, group, log, skipped, earlier.results)
    finally:
        if cache is not None:
            cache.close()  # also on Ctrl-C: every finished batch is already committed


def load_datasets(cfg: RunConfig, data: DataSource, log=print) -> tuple[dict, dict[str, str]]:
    """Every task's data, loaded (and verified) before any model: fail fast, fail cheap. With
    --skip-unavailable a task whose data cannot be read is left out: (datasets, {task: reason})."""
    datasets, skipped = {}, {}
    for task in cfg.tasks:
        try:
            with data.loading(task.key):
                ds = task.load(data)
            if not ds.examples:
                raise DataError(f"task {task.key}: the data has no examples")
        except DataError as e:
            if not cfg.skip_unavailable:
                more = "; or add --skip-unavailable to run the other tasks without it" if len(cfg.tasks) > 1 else ""
                raise DataError(f"{e}{more}") from None
            skipped[task.key] = str(e)
            log(f"skipped {task.key}: {e}")
            continue
        datasets[task.key] = ds
    if not datasets:
        raise DataError(f"the data of no task can be read, so nothing can run ({', '.join(skipped)}); "
                        f"the first reason: {next(iter(skipped.values()))}")
    return datasets, skipped


def load_model(model_id: str, cfg: RunConfig, device: str, log=print):
    """random:SIZE is built in memory (models/random.py); anything else is read by models.load, a hub
    id only when the hub can be reached or its files are in the local hub cache (one line otherwise)."""
    if is_random(model_id):
        return load_random(model_id, tokenizer=cfg.tokenizer, device=device, dtype=cfg.dtype, seed=cfg.seed, log=log)
    local = Path(model_id).expanduser().exists()
    if not local and (why := hub.unreachable(hub.MODELS)) and not hub.in_hub_cache(model_id):
        raise UserError(f"cannot load model {model_id}: it is not in the local hub cache ({hub.hub_cache_dir()}) and "
                        f"the hub cannot be reached ({why}); pass --model with a local model folder, or "
                        "--model random:SIZE to try the pipeline offline")
    log(f"loading {model_id} ({cfg.dtype})")
    return load(model_id, device=device, dtype=cfg.dtype, tokenizer=cfg.tokenizer)


def evaluate_models(cfg: RunConfig, datasets: dict, cache: ResultCache | None, group: Group, log=print,
                    skipped: dict | None = None, earlier: dict | None = None) -> list[dict]:
    """`skipped`: {task: why its data cannot be read}; `earlier`: {run folder: the results.json of
    the run this one resumes there} (run_folder.check)."""
    earlier = earlier or {}
    refs = load_references()
    all_rows, all_results = [], []
    writer = group.rank == 0  # under torchrun the others only compute their share
    if not writer:
        log = lambda msg: None  # noqa: E731 - rank 0 speaks for the run
    for model_name, out in run_folder.run_dirs(cfg):  # one model: --output; several: --output/<size or name>
        model_id = SIZES[model_name][0] if model_name in SIZES else model_name
        lm = load_model(model_id, cfg, group.device(cfg.device), log)
        results = evaluate_model(lm, cfg, datasets, cache, out, log, group, model_name, skipped, earlier.get(out))
        del lm  # the next size loads into the memory this one held
        free_device_memory()
        if not writer:
            continue
        all_rows += write_comparison(results, out, refs, log)
        all_results.append(results)
    if len(all_results) > 1:
        write_csv(cfg.output / "comparison.csv", all_rows)
        from .reporting.report import write_report_folder  # merged tables, plots, report.md / .html beside the runs
        write_report_folder(cfg.output, log)
    return all_results


def evaluate_model(lm: LoadedModel, cfg: RunConfig, datasets: dict, cache: ResultCache | None, out: Path | None,
                   log=print, group: Group | None = None, model_name: str = "", skipped: dict | None = None,
                   earlier: dict | None = None) -> dict:
    """Every task of `cfg` whose data was read, on one loaded model: the results.json dict, rewritten
    in `out` after each task (no file at all when out is None: gpt2eval.evaluate without output=).
    `earlier`: the results.json this run resumes in `out` (its token budgets are reused). `group`:
    this process's place among the workers of a torchrun run (default: one process)."""
    group = group or Group()
    writer = group.rank == 0
    tasks = [t for t in cfg.tasks if t.key in datasets]
    model_cache = None
    if cache is not None:
        v = versions()
        label = model_label(lm.model_id)
        model_cache = cache.for_model(lm.fingerprint, label=label, info={
            "dtype": lm.dtype, "device": lm.device, "torch": v["torch"], "transformers": v["transformers"]})
        if writer and (note := model_cache.not_reused_message(label)):
            log(note)
    engine = Engine(lm.model, lm.tokenizer, batch_size=cfg.batch_size, seed=cfg.seed,
                    progress=cfg.progress and writer, cache=model_cache, log=log,
                    budgets=previous_budgets(earlier, lm), group=group)
    for task in tasks:  # all checked before any runs: never fail after hours of another task
        if engine.window < task.min_context:
            raise UserError(f"model {lm.model_id} has a {engine.window}-token context but task {task.key} "
                            f"needs {task.min_context}")
    results = {"schema": 1, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "git_commit": git_commit(), "versions": versions(),
               "model": {**lm.describe(), **reference_size(lm, model_name, cfg.reference_size)},
               "settings": {**cfg.settings, "limit": cfg.limit, "batch_size": cfg.batch_size, "seed": cfg.seed,
                            "identity": run_folder.identity(cfg)},
               "cache": model_cache.stats if model_cache else None,  # live counters, current at each write
               "workers": group.world_size, "skipped": skipped or {}, "tasks": {}}
    for task in tasks:
        task_result = run_task(task, datasets[task.key], engine, cfg.limit, out, log, model_cache)
        if writer:
            results["tasks"][task.key] = task_result
            results["engine"] = engine.describe()  # token budgets (computed once per run) and caps
            if out is not None:
                write_json(out / "results.json", results)
    return results


def write_comparison(results: dict, out: Path, refs: list[dict], log=print) -> list[dict]:
    """A run's comparison.csv beside its results.json, and its table on the log; returns the rows."""
    rows = comparison_rows(results, refs)
    write_csv(out / "comparison.csv", rows)
    model_id = results["model"]["id"]
    log(f"\n{model_id}: results in {out}\n" + format_table(rows) + summary(results, model_id))
    return rows


def summary(results: dict, model_id: str) -> str:
    """What the table does not say: a random model, skipped tasks, metrics that are not numbers,
    answers reused from the result cache."""
    lines = []
    if results["model"].get("random"):
        lines.append(f"{model_id}: {MEANINGLESS}")
    for task, why in results.get("skipped", {}).items():
        lines.append(f"skipped {task}: {why}")
    for task, t in results["tasks"].items():
        for metric, why in t.get("non_finite", {}).items():
            lines.append(f"{task} {metric}: {why}")
    stats = results.get("cache") or {}
    if stats.get("hits"):
        lines.append(f"result cache {stats['path']}: {stats['hits']} answers read from it instead of computed, "
                     f"{stats.get('misses', 0)} computed")
    return "".join("\n" + line for line in lines)


def previous_budgets(old: dict | None, lm) -> dict | None:
    """The token budgets an earlier run of these weights on this device recorded (its results.json,
    read before the folder was cleared): a resumed run batches as the first did (its cached answers
    are then those it would compute)."""
    try:
        if old["model"]["fingerprint"] == lm.fingerprint and old["model"]["device"] == lm.device:
            return old["engine"]["token_budgets"]
    except (KeyError, TypeError):
        pass
    return None


def free_device_memory() -> None:
    import gc

    import torch
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
