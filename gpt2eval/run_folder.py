"""A run's output folder: every path checked before any work, and never a mix of two runs.

`check` refuses, as one line and before any data or model is loaded, an --output that cannot take
the run's files (a file where a folder goes or the reverse, a folder that cannot be written, a
full disk: gpt2eval.io.check_output). It also reads what an earlier run left there. A folder holds
one run: the files a run writes (results.json, comparison.csv, samples/, predictions/, and for
several models their subfolders and the merged report) are replaced as a whole, never mixed with
an earlier run's, which would leave, say, samples/lambada.jsonl of a run whose results.json lists
no lambada. So:

- the same run again (the same `identity`: models, tasks with their options, --limit, --seed,
  --samples, --dtype, --tokenizer, --reference-size) is a resume: its earlier files are removed
  and rewritten, the result cache answering what was computed before (the earlier results.json is
  read first, so that the resumed run batches as the first did);
- another run's files make the run stop with one line that names them, unless --overwrite asks to
  remove them first. Refusing is the default because a folder may hold hours of someone's results
  that the result cache cannot give back (--no-cache, another cache file, another machine).

Only the names a run writes are removed; anything else in the folder is left alone.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .io import check_output
from .models.formats import run_names
from .models.sizes import SIZES
from .reporting.report import DEFAULT_NAMES

# What one model's run writes in its folder; a task's other files are listed in results.json ("files").
RUN_ENTRIES = ("results.json", "comparison.csv", "samples", "predictions", "references")
FOLDERS = ("samples", "predictions", "references")
IDENTITY = ("models", "tasks", "limit", "seed", "samples", "dtype", "tokenizer", "reference_size")


@dataclass
class Earlier:
    """What earlier runs left in the output folder: the results.json of each run folder this run
    resumes (by folder), and the files and folders to remove before this run writes its own."""
    results: dict[Path, dict] = field(default_factory=dict)
    remove: list[Path] = field(default_factory=list)
    emptied: list[Path] = field(default_factory=list)  # subfolders of earlier runs: removed once empty


def identity(cfg) -> dict:
    """What makes two runs the same run (recorded in results.json, settings.identity)."""
    return json.loads(json.dumps({"models": list(cfg.models), "tasks": [t.key for t in cfg.tasks],
                                  "limit": cfg.limit, "seed": cfg.seed, "samples": cfg.samples, "dtype": cfg.dtype,
                                  "tokenizer": cfg.tokenizer, "reference_size": cfg.reference_size}))


def run_dirs(cfg) -> list[tuple[str, Path]]:
    """One model writes to --output; several write to --output/<size or name> each (a checkpoint by
    its file name without suffix, model_00004000: models.formats.run_names)."""
    if len(cfg.models) == 1:
        return [(cfg.models[0], Path(cfg.output))]
    return [(m, Path(cfg.output) / name) for m, name in zip(cfg.models, run_names(cfg.models, tuple(SIZES)))]


def check(cfg, overwrite: bool = False) -> Earlier:
    """Refuse an output the run cannot write, or one holding another run (without `overwrite`);
    say what to remove before writing. Creates and removes nothing."""
    where = f"--output {cfg.output}"
    dirs = [out for _, out in run_dirs(cfg)]
    check_output(cfg.output, where, folder=True)
    for out in dirs:
        check_output(out, where, folder=True)
        for sub in FOLDERS:
            check_output(out / sub, where, folder=True)
        for name in ("results.json", "comparison.csv"):
            check_output(out / name, where)
    mine, earlier = identity(cfg), Earlier()
    top = Path(cfg.output)
    if len(dirs) > 1 and (top / "results.json").is_file():  # a single-model run's folder, reused for several
        _refuse_or_remove(where, top, _read(top / "results.json"), overwrite, earlier)
    for sub in _run_subfolders(top):  # run folders of an earlier run of several models, not this run's
        if sub not in dirs:
            _refuse_or_remove(where, sub, _read(sub / "results.json"), overwrite, earlier)
            earlier.emptied.append(sub)
    for out in dirs:
        if (out / "results.json").is_file():
            old = _read(out / "results.json")
            if (old or {}).get("settings", {}).get("identity") == mine:
                earlier.results[out] = old
                _remove_run(out, old, earlier)
            else:
                _refuse_or_remove(where, out, old, overwrite, earlier)
        elif left := _existing(out, RUN_ENTRIES):  # files without a results.json: a run killed early
            _unknown(where, out, left, overwrite, earlier)
    if len(dirs) > 1 and (report := _existing(top, ("comparison.csv", *DEFAULT_NAMES.values()))):
        if earlier.results:  # the merged report of the run this one resumes
            earlier.remove += report
        else:
            _unknown(where, top, report, overwrite, earlier)
    return earlier


def clear(earlier: Earlier) -> None:
    """Remove what `check` found of earlier runs (after every check has passed, before any write)."""
    for path in earlier.remove:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for folder in sorted(set(earlier.emptied), key=lambda p: -len(p.parts)):  # deepest first; kept if not empty
        try:
            folder.rmdir()
        except OSError:
            pass


def _unknown(where: str, folder: Path, left: list[Path], overwrite: bool, earlier: Earlier) -> None:
    if not overwrite:
        raise UserError(f"{where}: {folder} holds {', '.join(p.name for p in left)} of an earlier run whose settings "
                        "are unknown (it has no results.json); choose another --output, or add --overwrite to remove "
                        "those first")
    earlier.remove += left


def _read(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


def _existing(folder: Path, names) -> list[Path]:
    return [folder / n for n in names if (folder / n).exists() or (folder / n).is_symlink()]


def _run_subfolders(top: Path) -> list[Path]:
    """Subfolders holding a results.json: the run folders of a run of several models."""
    return sorted(p.parent for p in top.glob("*/results.json")) if top.is_dir() else []


def _describe(old: dict | None) -> str:
    if not old:
        return "a results.json this gpt2eval cannot read"
    ident = (old.get("settings") or {}).get("identity")
    model = (old.get("model") or {}).get("id", "?")
    if not ident:
        return f"model {model}, tasks {', '.join(old.get('tasks') or {}) or 'none'} (a run of an older gpt2eval)"
    limit = f", --limit {ident['limit']}" if ident.get("limit") else ""
    return f"model {model}, tasks {', '.join(ident.get('tasks') or [])}{limit}, seed {ident.get('seed')}"


def _refuse_or_remove(where: str, folder: Path, old: dict | None, overwrite: bool, earlier: Earlier) -> None:
    if not overwrite:
        raise UserError(f"{where}: {folder} holds another run's results ({_describe(old)}), which would mix with "
                        "this run's; choose another --output, or add --overwrite to remove that run's files first")
    _remove_run(folder, old, earlier)


def _remove_run(folder: Path, old: dict | None, earlier: Earlier) -> None:
    """The run's own entries, and every other file its results.json lists (a plugin's `files`)."""
    earlier.remove += _existing(folder, RUN_ENTRIES)
    for task in ((old or {}).get("tasks") or {}).values():
        for rel in (task.get("files") or []) if isinstance(task, dict) else []:
            path = folder / rel
            if not Path(rel).is_absolute() and ".." not in Path(rel).parts and path.is_file():
                earlier.remove.append(path)
                earlier.emptied += [p for p in path.parents if p != folder and folder in p.parents]
