"""gpt2eval from Python, for training loops: `evaluate` scores a model (a checkpoint path, a model
folder or hub id, a transformers model, or a live nanoGPT/llm.c-style `GPT` module) on tasks and
returns what results.json would hold; `plan` prices the same call beforehand, so that a loop can
budget it. Both go through the runner's own flow (runner.load_datasets, runner.evaluate_model):
the command line and this API compute the same numbers the same way.

`evaluate` writes files only when `output` is given (results.json, samples, comparison.csv: a run
folder that `compare` reads), and reads or writes a result cache only when `cache` is given. A
model object is left as it was found (models/live.py): parameters, training flags, device.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import UserError


def evaluate(model, tasks, *, tokenizer=None, data_dir=None, limit=None, batch_size="auto", device=None,
             dtype=None, cache=None, output=None, progress=True, step=None) -> dict:
    from . import run_folder, runner
    from .api.data import DataSource
    from .cache.store import ResultCache
    from .models.live import adapt, kept_as_found
    from .models.load import check_model, load, named_tokenizer, tokenizer_label
    from .models.sizes import GPT2_TOKENIZER
    from .reporting.compare import load_references
    if dtype is not None and dtype not in _dtypes():
        raise UserError(f"dtype {dtype!r}: choose from {', '.join(_dtypes())}")
    path = _path(model)
    cfg = runner.RunConfig(models=[path or "in-memory"], tasks=_tasks(tasks), output=_optional_path(output),
                           data_dir=None if data_dir is None else str(data_dir), limit=_limit(limit),
                           batch_size=_batch_size(batch_size), device=device or "auto", dtype=dtype or "float32",
                           progress=progress, settings={"api": "gpt2eval.evaluate"}, cache=_optional_path(cache),
                           tokenizer=str(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else None)
    log = (lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None)
    earlier = run_folder.check(cfg) if cfg.output is not None else None  # as a run: refuses another run's folder
    if path:
        check_model(path)
    datasets, _ = runner.load_datasets(cfg, DataSource(cfg.data_dir, log=log), log)  # before the model, as a run
    if earlier is not None:
        run_folder.clear(earlier)
    store = ResultCache(cfg.cache) if cfg.cache else None
    try:
        with kept_as_found(model):
            if path:
                lm = load(path, device=cfg.device, dtype=cfg.dtype, tokenizer=tokenizer)
            else:
                spec = tokenizer if tokenizer is not None else _own_tokenizer(model) or GPT2_TOKENIZER
                lm = adapt(model, named_tokenizer(spec), tokenizer_label(spec), device=device, dtype=dtype,
                           fingerprinted=store is not None)
            if step is not None:
                lm.step = int(step)
            results = runner.evaluate_model(lm, cfg, datasets, store, cfg.output, log,
                                            earlier=earlier.results.get(cfg.output) if earlier else None)
            if cfg.output is not None:
                runner.write_comparison(results, cfg.output, load_references(), log)
    finally:
        if store is not None:
            store.close()
    return results


def plan(model, tasks, *, tokenizer=None, data_dir=None, limit=None, peak_tflops=None, measure_peak=False,
         dtype="float32") -> dict:
    from .api.data import DataSource
    from .cli.costs import H100_BF16_TFLOPS
    from .cli.plan import make_plan, measure_matmul_peak
    from .models.formats import detect_format
    from .models.live import object_shape, unwrap
    from .models.load import named_tokenizer, shape_of
    from .models.sizes import GPT2_TOKENIZER
    path = _path(model)
    if path:
        shape, name = shape_of(path), Path(path).stem or path
    else:
        shape, name = object_shape(model), type(unwrap(model)).__name__
    peaks = {"peak": float(peak_tflops or H100_BF16_TFLOPS)}
    if measure_peak:
        peaks["here"] = measure_matmul_peak(dtype) / 1e12
    own = path if path and detect_format(path) == "hf" else None  # a checkpoint or module: GPT-2's
    tok = named_tokenizer(tokenizer if tokenizer is not None else own or GPT2_TOKENIZER)
    p = make_plan([name], _tasks(tasks), DataSource(None if data_dir is None else str(data_dir)), tok, peaks,
                  _limit(limit), shapes={name: shape})
    rows = p.rows()
    return {"model": name, "shape": dict(zip(("n_layer", "n_embd", "vocab", "n_positions"), shape)),
            "rows": rows, "flops": sum(r["flops"] for r in rows),
            "seconds": {k: sum(r[f"seconds@{k}"] for r in rows) for k in peaks},
            "bound_seconds": {k: sum(r[f"bound@{k}"] for r in rows) for k in peaks}}


def _own_tokenizer(model) -> str | None:
    """A transformers model's own tokenizer folder or hub id, where its config names one."""
    name = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    return name or None


def _path(model) -> str | None:
    return str(model) if isinstance(model, (str, os.PathLike)) else None


def _optional_path(p) -> Path | None:
    return None if p is None else Path(p)


def _tasks(tasks) -> list:
    """Task names (a list, or one comma-separated string) or Task objects, as Task objects."""
    from .api.plugins import parse_tasks, select
    from .api.task import Task
    items = parse_tasks(tasks) if isinstance(tasks, str) else list(tasks)
    if not items:
        raise UserError("tasks is empty: name at least one task (python run_eval.py --list-tasks)")
    out = []
    for t in items:
        if not isinstance(t, (str, Task)):
            raise UserError(f"tasks: {t!r} is neither a task name nor a Task")
        out += select([t]) if isinstance(t, str) else [t]
    return out


def _limit(limit):
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise UserError(f"limit must be a positive integer or None, got {limit!r}")
    return limit


def _batch_size(size):
    if size != "auto" and (not isinstance(size, int) or size <= 0):
        raise UserError(f"batch_size must be 'auto' or a positive integer, got {size!r}")
    return size


def _dtypes() -> tuple[str, ...]:
    from .models.sizes import DTYPE_NAMES
    return DTYPE_NAMES
